package quant

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/floats/scalar"
)

func TestRTNHandComputed(t *testing.T) {
	// One row, K = 10, groups of 4: [4, 4, 2] (the last group is short). Values are chosen
	// so that every scale is exact in float32 and x/scale hits exact ties.
	w := []float32{
		-7.5, -3.5, 0, 2.5, // symmetric: a = 7.5, scale 2a/15 = 1, zero 8
		0, 0, 0, 0, // all zero: scale 2/15 (range taken as [-1, 1]), codes = zero
		1.875, -1.875, // short group: scale 0.25
	}
	g, err := QuantizeRTN(w, 1, 10, GroupOptions{Bits: 4, GroupSize: 4, Symmetric: true})
	if err != nil {
		t.Fatal(err)
	}
	// -7.5 → -8 (half to even) → code 0; -3.5 → -4 → 4; 2.5 → 2 → 10.
	// 1.875/0.25 = 7.5 → 8 → 16 clips to 15 (the symmetric grid's top); -7.5 → 0.
	wantCodes := []uint8{0, 4, 8, 10, 8, 8, 8, 8, 15, 0}
	for i, c := range g.Codes {
		if c != wantCodes[i] {
			t.Errorf("symmetric code %d: %d, want %d", i, c, wantCodes[i])
		}
	}
	wantScales := []float64{1, 2.0 / 15, 0.25}
	for i, s := range g.Scales {
		if !scalar.EqualWithinAbsOrRel(float64(s), wantScales[i], 0, 1e-7) || g.Zeros[i] != 8 {
			t.Errorf("symmetric group %d: scale %v zero %d, want %v 8", i, s, g.Zeros[i], wantScales[i])
		}
	}
	if g.NumGroups() != 3 {
		t.Errorf("groups: %d, want 3", g.NumGroups())
	}

	// Asymmetric: [-4, 3.5, 1.25, -0.75]: scale 7.5/15 = 0.5, zero 8; codes
	// -8+8 = 0, 7+8 = 15, round(2.5)+8 = 10, round(-1.5)+8 = 6.
	// [0.75, 7.5]: the range is widened to [0, 7.5]: scale 0.5, zero 0, codes 2 (1.5 → 2), 15.
	w = []float32{-4, 3.5, 1.25, -0.75, 0.75, 7.5}
	g, err = QuantizeRTN(w, 1, 6, GroupOptions{Bits: 4, GroupSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	wantCodes = []uint8{0, 15, 10, 6, 2, 15}
	for i, c := range g.Codes {
		if c != wantCodes[i] {
			t.Errorf("asymmetric code %d: %d, want %d", i, c, wantCodes[i])
		}
	}
	if g.Scales[0] != 0.5 || g.Zeros[0] != 8 || g.Scales[1] != 0.5 || g.Zeros[1] != 0 {
		t.Errorf("asymmetric params: scales %v zeros %v, want [0.5 0.5] [8 0]", g.Scales, g.Zeros)
	}
	deq := g.Dequantize()
	for i, v := range deq {
		s := g.Scales[i/4]
		if !scalar.EqualWithinAbsOrRel(float64(v), float64(w[i]), float64(s)/2, 0) {
			t.Errorf("dequantized %d: %v, original %v (scale %v)", i, v, w[i], s)
		}
	}
}

func TestRTNShapesAndDefaults(t *testing.T) {
	r := &testRNG{s: 3}
	for _, c := range []struct{ n, k, gs, bits, wantGS int }{
		{3, 300, 0, 0, 128}, {2, 100, -1, 4, 100}, {5, 64, 32, 8, 32}, {1, 1, 128, 2, 1}, {4, 33, 32, 3, 32},
	} {
		w := r.normals(c.n*c.k, 0, 1)
		for _, sym := range []bool{false, true} {
			g, err := QuantizeRTN(w, c.n, c.k, GroupOptions{Bits: c.bits, GroupSize: c.gs, Symmetric: sym})
			if err != nil {
				t.Fatal(err)
			}
			bits := c.bits
			if bits == 0 {
				bits = 4
			}
			ng := (c.k + c.wantGS - 1) / c.wantGS
			if g.GroupSize != c.wantGS || g.NumGroups() != ng || g.Bits != bits || len(g.Scales) != c.n*ng {
				t.Fatalf("%+v: group size %d, %d groups, %d bits", c, g.GroupSize, g.NumGroups(), g.Bits)
			}
			deq := g.Dequantize()
			for i, v := range deq {
				if int(g.Codes[i]) >= 1<<bits {
					t.Fatalf("%+v: code %d out of range", c, g.Codes[i])
				}
				s := g.Scales[(i/c.k)*ng+(i%c.k)/c.wantGS]
				// Only the symmetric grid's top can clip, by at most one step.
				tol := float64(s)/2 + 1e-6
				if sym {
					tol = float64(s) + 1e-6
				}
				if math.Abs(float64(v-w[i])) > tol {
					t.Fatalf("%+v sym=%v: element %d: %v → %v (scale %v)", c, sym, i, w[i], v, s)
				}
			}
		}
	}
	if _, err := QuantizeRTN(make([]float32, 6), 2, 3, GroupOptions{Bits: 9}); err == nil {
		t.Error("9 bits: want an error")
	}
	if _, err := QuantizeRTN(make([]float32, 5), 2, 3, GroupOptions{}); err == nil {
		t.Error("5 values for 2×3: want an error")
	}
}

func TestTranspose(t *testing.T) {
	r := &testRNG{s: 11}
	w := r.normals(37*70, 0, 1) // [N=37, K=70]
	kn := ToKN(w, 37, 70)
	for n := 0; n < 37; n++ {
		for k := 0; k < 70; k++ {
			if kn[k*37+n] != w[n*70+k] {
				t.Fatalf("ToKN[%d,%d] = %v, want %v", k, n, kn[k*37+n], w[n*70+k])
			}
		}
	}
	back := FromKN(kn, 70, 37)
	for i := range w {
		if back[i] != w[i] {
			t.Fatalf("FromKN(ToKN(w))[%d] = %v, want %v", i, back[i], w[i])
		}
	}
}
