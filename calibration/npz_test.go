package calibration

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// Fixture arrays: x[i][r][c] = 100i + 10r + c, ids[i][j] = 7i + j, h holds float16 bits.
func fixtureX(n int) *[6][2][3]float32 {
	var x [6][2][3]float32
	for i := 0; i < n; i++ {
		for r := 0; r < 2; r++ {
			for c := 0; c < 3; c++ {
				x[i][r][c] = float32(100*i + 10*r + c)
			}
		}
	}
	return &x
}

func fixtureIDs() *[6][5]int64 {
	var v [6][5]int64
	for i := range v {
		for j := range v[i] {
			v[i][j] = int64(7*i + j)
		}
	}
	return &v
}

// float16 bits: 1, 0.5, -2, 65504 (max), 0, -0.25 ... per sample i: {f16[i], f16[i+1]}.
var f16Bits = []uint16{0x3C00, 0x3800, 0xC000, 0x7BFF, 0x0000, 0xB400, 0x3C00}
var f16Vals = []float32{1, 0.5, -2, 65504, 0, -0.25, 1}

func fixtureH() *[6][2]uint16 {
	var h [6][2]uint16
	for i := range h {
		h[i] = [2]uint16{f16Bits[i], f16Bits[i+1]}
	}
	return &h
}

func wantX(i int) []float32 {
	var v []float32
	for r := 0; r < 2; r++ {
		for c := 0; c < 3; c++ {
			v = append(v, float32(100*i+10*r+c))
		}
	}
	return v
}

func wantIDs(i int) []int64 {
	v := make([]int64, 5)
	for j := range v {
		v[j] = int64(7*i + j)
	}
	return v
}

var threeInputs = []tensor.Spec{
	{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 2, 3}, DimNames: []string{"N", "", ""}},
	spec("ids", tensor.Int64, -1, 5),
	spec("h", tensor.Float16, -1, 2),
}

func TestNPZSamples(t *testing.T) {
	// Each case writes the same 6 samples in another container; all must read back
	// bit-exact and in order.
	cases := []struct {
		name  string
		build func(dir string) string
	}{
		{"stored", func(dir string) string {
			return writeNPZ(t, filepath.Join(dir, "d.npz"),
				array{key: "x", val: fixtureX(6)}, array{key: "ids", val: fixtureIDs()}, array{key: "h", val: fixtureH(), f16: true})
		}},
		{"deflated", func(dir string) string {
			return writeNPZ(t, filepath.Join(dir, "d.npz"),
				array{key: "x", val: fixtureX(6), deflate: true}, array{key: "ids", val: fixtureIDs(), deflate: true},
				array{key: "h", val: fixtureH(), f16: true, deflate: true})
		}},
		{"folder of two npz", func(dir string) string {
			x, ids, h := fixtureX(6), fixtureIDs(), fixtureH()
			var x1 [4][2][3]float32
			var x2 [2][2][3]float32
			var i1 [4][5]int64
			var i2 [2][5]int64
			var h1 [4][2]uint16
			var h2 [2][2]uint16
			copy(x1[:], x[:4])
			copy(x2[:], x[4:])
			copy(i1[:], ids[:4])
			copy(i2[:], ids[4:])
			copy(h1[:], h[:4])
			copy(h2[:], h[4:])
			// b_ sorts after a_, and a stray file of another kind is ignored.
			writeNPZ(t, filepath.Join(dir, "b_tail.npz"), array{key: "x", val: &x2}, array{key: "ids", val: &i2, deflate: true}, array{key: "h", val: &h2, f16: true})
			writeNPZ(t, filepath.Join(dir, "a_head.npz"), array{key: "h", val: &h1, f16: true}, array{key: "x", val: &x1}, array{key: "ids", val: &i1})
			os.WriteFile(filepath.Join(dir, "README.txt"), []byte("notes"), 0o644)
			return dir
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := open(t, c.build(t.TempDir()), threeInputs, Options{})
			if src.Len() != 6 {
				t.Fatalf("Len = %d, want 6", src.Len())
			}
			for pass := 0; pass < 2; pass++ { // the second pass checks Reset
				got := drain(t, src)
				if len(got) != 6 {
					t.Fatalf("pass %d: %d samples, want 6", pass, len(got))
				}
				for i, s := range got {
					if len(s) != 3 {
						t.Fatalf("sample %d has %d inputs", i, len(s))
					}
					x, ids, h := s["x"], s["ids"], s["h"]
					if x.DType != tensor.Float32 || !reflect.DeepEqual(x.Shape, []int64{1, 2, 3}) || !equalF32(x.Float32s(), wantX(i)) {
						t.Errorf("sample %d x = %s%v %v, want float32[1 2 3] %v", i, x.DType, x.Shape, x.Float32s(), wantX(i))
					}
					if !reflect.DeepEqual(ids.Shape, []int64{1, 5}) || !reflect.DeepEqual(ids.Int64s(), wantIDs(i)) {
						t.Errorf("sample %d ids = %v %v", i, ids.Shape, ids.Int64s())
					}
					if h.DType != tensor.Float16 || !reflect.DeepEqual(h.Uint16s(), []uint16{f16Bits[i], f16Bits[i+1]}) {
						t.Errorf("sample %d h = %s %#x", i, h.DType, h.Uint16s())
					}
				}
				if err := src.Reset(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestNPYAndConversions(t *testing.T) {
	dir := t.TempDir()
	var f64 [3][2]float64
	var i64 [3][2]int64
	for i := range f64 {
		f64[i] = [2]float64{float64(i) + 0.1, -float64(i)}
		i64[i] = [2]int64{int64(i), 1 << 20}
	}
	var h [3][2]uint16
	for i := range h {
		h[i] = [2]uint16{f16Bits[i], f16Bits[i+1]}
	}
	// A big-endian int32 array with a version-1 header, as older numpy writes it.
	be := []byte("\x93NUMPY\x01\x00")
	hdr := "{'descr': '>i4', 'fortran_order': False, 'shape': (2, 2), }"
	for (10+len(hdr)+1)%64 != 0 {
		hdr += " "
	}
	hdr += "\n"
	be = binary.LittleEndian.AppendUint16(be, uint16(len(hdr)))
	be = append(be, hdr...)
	for _, v := range []int32{1, -2, 300, 1 << 30} {
		be = binary.BigEndian.AppendUint32(be, uint32(v))
	}
	os.WriteFile(filepath.Join(dir, "be.npy"), be, 0o644)

	cases := []struct {
		name string
		data string
		in   tensor.Spec
		want [][]float32
	}{
		{"npy float64 feeds float32", writeNPY(t, filepath.Join(dir, "f64.npy"), array{val: &f64}),
			spec("x", tensor.Float32, -1, 2),
			[][]float32{{0.1, 0}, {1.1, -1}, {2.1, -2}}},
		{"npy int64 narrows to int32", writeNPY(t, filepath.Join(dir, "i64.npy"), array{val: &i64}),
			spec("x", tensor.Int32, -1, 2),
			[][]float32{{0, 1 << 20}, {1, 1 << 20}, {2, 1 << 20}}},
		{"npy float16 widens to float32", writeNPY(t, filepath.Join(dir, "h.npy"), array{val: &h, f16: true}),
			spec("x", tensor.Float32, -1, 2),
			[][]float32{f16Vals[0:2], f16Vals[1:3], f16Vals[2:4]}},
		{"npy big-endian v1 header", filepath.Join(dir, "be.npy"),
			spec("x", tensor.Int64, 2),
			[][]float32{{1, -2}, {300, 1 << 30}}},
		{"npz positional arr_0", writeNPZ(t, filepath.Join(dir, "pos.npz"), array{key: "arr_0", val: &f64, deflate: true}),
			spec("input", tensor.Float64, 1, 2),
			[][]float32{{float32(0.1), 0}, {float32(1.1), -1}, {float32(2.1), -2}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := drain(t, open(t, c.data, []tensor.Spec{c.in}, Options{}))
			if len(got) != len(c.want) {
				t.Fatalf("%d samples, want %d", len(got), len(c.want))
			}
			for i, s := range got {
				v := s[c.in.Name]
				if v.DType != c.in.DType {
					t.Errorf("sample %d dtype %s, want %s", i, v.DType, c.in.DType)
				}
				if g := f32s(t, v); !equalF32(g, c.want[i]) {
					t.Errorf("sample %d = %v, want %v", i, g, c.want[i])
				}
			}
		})
	}
	// float64 → float32 rounds to nearest: check the exact bits of one awkward value.
	got := drain(t, open(t, filepath.Join(dir, "f64.npy"), []tensor.Spec{spec("x", tensor.Float32, -1, 2)}, Options{}))
	if b := math.Float32bits(got[0]["x"].Float32s()[0]); b != math.Float32bits(float32(0.1)) {
		t.Errorf("0.1 as float32 bits %#x, want %#x", b, math.Float32bits(float32(0.1)))
	}
}

func TestNPZBatchLimitReset(t *testing.T) {
	data := writeNPZ(t, tmp(t, "d.npz"), array{key: "x", val: fixtureX(6), deflate: true},
		array{key: "ids", val: fixtureIDs()}, array{key: "h", val: fixtureH(), f16: true})
	cases := []struct {
		name    string
		ins     []tensor.Spec
		opts    Options
		wantLen int
		sizes   []int64 // batch size of each Next
	}{
		{"batch 4 keeps the partial batch", threeInputs, Options{Batch: 4}, 2, []int64{4, 2}},
		{"batch 4 limit 5", threeInputs, Options{Batch: 4, Limit: 5}, 2, []int64{4, 1}},
		{"limit 3", threeInputs, Options{Limit: 3}, 3, []int64{1, 1, 1}},
		{"fixed batch 4 drops the partial batch", []tensor.Spec{spec("x", tensor.Float32, 4, 2, 3), spec("ids", tensor.Int64, 4, 5), spec("h", tensor.Float16, -1, 2)},
			Options{}, 1, []int64{4}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := open(t, data, c.ins, c.opts)
			if src.Len() != c.wantLen {
				t.Errorf("Len = %d, want %d", src.Len(), c.wantLen)
			}
			for pass := 0; pass < 2; pass++ {
				got := drain(t, src)
				if len(got) != len(c.sizes) {
					t.Fatalf("%d batches, want %d", len(got), len(c.sizes))
				}
				first := 0
				for b, s := range got {
					n := c.sizes[b]
					x := s["x"]
					if !reflect.DeepEqual(x.Shape, []int64{n, 2, 3}) {
						t.Fatalf("batch %d x shape %v, want [%d 2 3]", b, x.Shape, n)
					}
					var want []float32
					var wantID []int64
					for i := first; i < first+int(n); i++ {
						want = append(want, wantX(i)...)
						wantID = append(wantID, wantIDs(i)...)
					}
					if !equalF32(x.Float32s(), want) || !reflect.DeepEqual(s["ids"].Int64s(), wantID) {
						t.Errorf("batch %d = %v %v, want %v %v", b, x.Float32s(), s["ids"].Int64s(), want, wantID)
					}
					if !reflect.DeepEqual(s["h"].Shape, []int64{n, 2}) {
						t.Errorf("batch %d h shape %v", b, s["h"].Shape)
					}
					first += int(n)
				}
				if err := src.Reset(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestNPZModelWithoutBatchAxis(t *testing.T) {
	// An input [2,3] with an array [6,2,3]: each row is fed as is, with no axis added.
	data := writeNPZ(t, tmp(t, "d.npz"), array{key: "x", val: fixtureX(6)})
	got := drain(t, open(t, data, []tensor.Spec{spec("x", tensor.Float32, 2, 3)}, Options{}))
	if len(got) != 6 || !reflect.DeepEqual(got[5]["x"].Shape, []int64{2, 3}) || !equalF32(got[5]["x"].Float32s(), wantX(5)) {
		t.Fatalf("got %d samples, last %v %v", len(got), got[5]["x"].Shape, got[5]["x"].Float32s())
	}
	if _, err := Open(data, []tensor.Spec{spec("x", tensor.Float32, 2, 3)}, Options{Batch: 2}); err == nil {
		t.Error("Batch 2 over an input without batch axis: no error")
	}
}

func TestNPYFolder(t *testing.T) {
	dir := t.TempDir()
	x := fixtureX(6)
	var a [2][2][3]float32
	var b [4][2][3]float32
	copy(a[:], x[:2])
	copy(b[:], x[2:])
	writeNPY(t, filepath.Join(dir, "part-1.npy"), array{val: &a})
	writeNPY(t, filepath.Join(dir, "part-2.npy"), array{val: &b})
	src := open(t, dir, []tensor.Spec{spec("pixel_values", tensor.Float32, 1, 2, 3)}, Options{})
	if src.Len() != 6 {
		t.Errorf("Len = %d", src.Len())
	}
	for i, s := range drain(t, src) {
		if v := s["pixel_values"]; !reflect.DeepEqual(v.Shape, []int64{1, 2, 3}) || !equalF32(v.Float32s(), wantX(i)) {
			t.Errorf("sample %d = %v %v", i, v.Shape, v.Float32s())
		}
	}
}
