package quant

import (
	"math"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/floats/scalar"
)

// awqCase returns a weight and activations where a few input channels carry much larger
// activations than the rest: the situation AWQ is built for.
func awqCase(seed uint64, n, k, rows int) (w, x []float32) {
	x = correlatedActivations(seed, rows, k)
	return (&testRNG{s: seed + 1}).normals(n*k, 0, 0.05), x
}

func TestAWQBeatsRTN(t *testing.T) {
	for _, sh := range []struct{ n, k, rows, gs int }{{32, 128, 256, 32}, {64, 256, 300, 128}, {16, 200, 128, 64}} {
		w, x := awqCase(uint64(sh.k), sh.n, sh.k, sh.rows)
		for _, o := range []AWQOptions{
			{GroupOptions: GroupOptions{GroupSize: sh.gs}},
			{GroupOptions: GroupOptions{GroupSize: sh.gs, Symmetric: true}},
			{GroupOptions: GroupOptions{GroupSize: sh.gs}, DuoScaling: true},
			{GroupOptions: GroupOptions{GroupSize: sh.gs}, NoClip: true},
		} {
			res, err := AWQ(w, sh.n, sh.k, x, sh.rows, o)
			if err != nil {
				t.Fatal(err)
			}
			// RTN measured independently of AWQ's bookkeeping.
			rtn, _ := QuantizeRTN(w, sh.n, sh.k, o.GroupOptions)
			dw := rtn.Dequantize()
			for i := range dw {
				dw[i] -= w[i]
			}
			eRTN := OutputSqErr(x, sh.rows, sh.k, dw, sh.n) / float64(sh.rows*sh.n)
			t.Logf("N=%d K=%d gs=%d sym=%v duo=%v clip=%v: α=%.2f output MSE RTN %.4g, scaled %.4g, final %.4g (%.1f%% of RTN)",
				sh.n, sh.k, sh.gs, o.Symmetric, o.DuoScaling, !o.NoClip, res.Alpha, eRTN, res.ScaledError, res.Error, 100*res.Error/eRTN)
			if !scalar.EqualWithinAbsOrRel(res.RTNError, eRTN, 0, 1e-9) {
				t.Errorf("reported RTN error %v, measured %v", res.RTNError, eRTN)
			}
			if !(res.ScaledError <= eRTN) || !(res.Error <= eRTN) {
				t.Errorf("%+v: AWQ error %v (scaled %v) exceeds RTN's %v", o, res.Error, res.ScaledError, eRTN)
			}
			if o.NoClip && res.Error != res.ScaledError {
				t.Errorf("no clipping: final error %v differs from the scale search's %v", res.Error, res.ScaledError)
			}
			// The effective weight is deq/s, and X/s against deq gives the same output.
			deq := res.Dequantize()
			for i, v := range deq {
				s := res.InputScales[i%sh.k]
				if !(s > 0) || math.IsInf(float64(s), 0) {
					t.Fatalf("input scale %d = %v", i%sh.k, s)
				}
				deq[i] = v/s - w[i]
			}
			if e := OutputSqErr(x, sh.rows, sh.k, deq, sh.n) / float64(sh.rows*sh.n); !scalar.EqualWithinAbsOrRel(e, res.Error, 0, 1e-9) {
				t.Errorf("re-measured final error %v, reported %v", e, res.Error)
			}
		}
	}
}

func TestAWQDeterministic(t *testing.T) {
	w, x := awqCase(4, 24, 96, 150)
	o := AWQOptions{GroupOptions: GroupOptions{GroupSize: 32}}
	a, err := AWQ(w, 24, 96, x, 150, o)
	if err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(1)
	b, err := AWQ(w, 24, 96, x, 150, o)
	runtime.GOMAXPROCS(prev)
	if err != nil {
		t.Fatal(err)
	}
	if a.Alpha != b.Alpha || a.Error != b.Error {
		t.Errorf("α %v vs %v, error %v vs %v on one CPU", a.Alpha, b.Alpha, a.Error, b.Error)
	}
	for i := range a.Codes {
		if a.Codes[i] != b.Codes[i] {
			t.Fatalf("code %d differs on one CPU", i)
		}
	}
	for i := range a.InputScales {
		if a.InputScales[i] != b.InputScales[i] {
			t.Fatalf("input scale %d differs on one CPU", i)
		}
	}
}

func TestAWQScalesNormalised(t *testing.T) {
	sx := []float64{0.5, 2, 8, 0}
	s := make([]float32, 4)
	awqScales(s, sx, nil, 0.5)
	// s_x^0.5 = [0.707, 1.414, 2.828, 0 → 1e-4]; divided by sqrt(2.828·1e-4).
	norm := math.Sqrt(math.Sqrt(8) * 1e-4)
	want := []float64{math.Sqrt(0.5) / norm, math.Sqrt(2) / norm, math.Sqrt(8) / norm, 1e-4 / norm}
	for i := range s {
		if !scalar.EqualWithinAbsOrRel(float64(s[i]), want[i], 0, 1e-6) {
			t.Errorf("s[%d] = %v, want %v", i, s[i], want[i])
		}
	}
	awqScales(s, sx, nil, 0)
	for i := range s {
		if s[i] != 1 {
			t.Errorf("α = 0: s[%d] = %v, want 1 (plain RTN)", i, s[i])
		}
	}
}

func TestAWQRejectsBadInput(t *testing.T) {
	w := make([]float32, 8)
	if _, err := AWQ(w, 2, 4, make([]float32, 7), 2, AWQOptions{}); err == nil {
		t.Error("7 activations for 2×4: want an error")
	}
	x := make([]float32, 8)
	x[3] = float32(math.NaN())
	if _, err := AWQ(w, 2, 4, x, 2, AWQOptions{}); err == nil {
		t.Error("NaN activation: want an error")
	}
	if _, err := AWQ(w, 2, 4, make([]float32, 8), 2, AWQOptions{}); err != nil {
		t.Errorf("all-zero weights and activations: %v", err)
	}
}
