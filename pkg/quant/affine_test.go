package quant

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/floats/scalar"
)

// ortParams are onnxruntime.quantization.quant_utils.compute_scale_zp results (ORT 1.32.0),
// computed once with qmin/qmax from get_qmin_qmax_for_qType(type, reduce_range, symmetric).
// The scale is given as float32 bits so that the comparison is exact.
var ortParams = []struct {
	qt          QType
	reduce, sym bool
	lo, hi      float32
	scaleBits   uint32
	zp          int32
}{
	{Int8, false, false, -1.0, 1.0, 0x3c008081, 0},
	{Int8, false, false, -0.3, 2.7, 0x3c40c0c1, -102},
	{Int8, false, false, 0.5, 3.0, 0x3c40c0c1, -128},
	{Int8, false, false, -4.0, -1.0, 0x3c808081, 127},
	{Int8, false, false, 0.0, 0.0, 0x3f800000, 0},
	{Int8, false, false, -0.0001, 6.02, 0x3cc1660f, -128},
	{Int8, false, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Int8, false, false, -2.5, 0.1, 0x3c270d74, 117},
	{Int8, false, true, -1.0, 1.0, 0x3c010204, 0},
	{Int8, false, true, -0.3, 2.7, 0x3cae291f, 0},
	{Int8, false, true, 0.5, 3.0, 0x3cc18306, 0},
	{Int8, false, true, -4.0, -1.0, 0x3d010204, 0},
	{Int8, false, true, 0.0, 0.0, 0x3f800000, 0},
	{Int8, false, true, -0.0001, 6.02, 0x3d422827, 0},
	{Int8, false, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Int8, false, true, -2.5, 0.1, 0x3ca14285, 0},
	{Int8, true, false, -1.0, 1.0, 0x3c800000, 0},
	{Int8, true, false, -0.3, 2.7, 0x3cc00000, -51},
	{Int8, true, false, 0.5, 3.0, 0x3cc00000, -64},
	{Int8, true, false, -4.0, -1.0, 0x3d000000, 64},
	{Int8, true, false, 0.0, 0.0, 0x3f800000, 0},
	{Int8, true, false, -0.0001, 6.02, 0x3d40a4a9, -64},
	{Int8, true, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Int8, true, false, -2.5, 0.1, 0x3ca66666, 59},
	{Int8, true, true, -1.0, 1.0, 0x3c800000, 0},
	{Int8, true, true, -0.3, 2.7, 0x3d2ccccd, 0},
	{Int8, true, true, 0.5, 3.0, 0x3d400000, 0},
	{Int8, true, true, -4.0, -1.0, 0x3d800000, 0},
	{Int8, true, true, 0.0, 0.0, 0x3f800000, 0},
	{Int8, true, true, -0.0001, 6.02, 0x3dc0a3d7, 0},
	{Int8, true, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Int8, true, true, -2.5, 0.1, 0x3d200000, 0},
	{Uint8, false, false, -1.0, 1.0, 0x3c008081, 128},
	{Uint8, false, false, -0.3, 2.7, 0x3c40c0c1, 26},
	{Uint8, false, false, 0.5, 3.0, 0x3c40c0c1, 0},
	{Uint8, false, false, -4.0, -1.0, 0x3c808081, 255},
	{Uint8, false, false, 0.0, 0.0, 0x3f800000, 0},
	{Uint8, false, false, -0.0001, 6.02, 0x3cc1660f, 0},
	{Uint8, false, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint8, false, false, -2.5, 0.1, 0x3c270d74, 245},
	{Uint8, false, true, -1.0, 1.0, 0x3c008081, 128},
	{Uint8, false, true, -0.3, 2.7, 0x3cad7a47, 128},
	{Uint8, false, true, 0.5, 3.0, 0x3cc0c0c1, 128},
	{Uint8, false, true, -4.0, -1.0, 0x3d008081, 128},
	{Uint8, false, true, 0.0, 0.0, 0x3f800000, 0},
	{Uint8, false, true, -0.0001, 6.02, 0x3d41653c, 128},
	{Uint8, false, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint8, false, true, -2.5, 0.1, 0x3ca0a0a1, 128},
	{Uint8, true, false, -1.0, 1.0, 0x3c810204, 64},
	{Uint8, true, false, -0.3, 2.7, 0x3cc18306, 13},
	{Uint8, true, false, 0.5, 3.0, 0x3cc18306, 0},
	{Uint8, true, false, -4.0, -1.0, 0x3d010204, 127},
	{Uint8, true, false, 0.0, 0.0, 0x3f800000, 0},
	{Uint8, true, false, -0.0001, 6.02, 0x3d4228fb, 0},
	{Uint8, true, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint8, true, false, -2.5, 0.1, 0x3ca7b5d2, 122},
	{Uint8, true, true, -1.0, 1.0, 0x3c810204, 64},
	{Uint8, true, true, -0.3, 2.7, 0x3d2e291f, 64},
	{Uint8, true, true, 0.5, 3.0, 0x3d418306, 64},
	{Uint8, true, true, -4.0, -1.0, 0x3d810204, 64},
	{Uint8, true, true, 0.0, 0.0, 0x3f800000, 0},
	{Uint8, true, true, -0.0001, 6.02, 0x3dc22827, 64},
	{Uint8, true, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint8, true, true, -2.5, 0.1, 0x3d214285, 64},
	{Int4, false, false, -1.0, 1.0, 0x3e088889, 0},
	{Int4, false, false, -0.3, 2.7, 0x3e4ccccd, -6},
	{Int4, false, false, 0.5, 3.0, 0x3e4ccccd, -8},
	{Int4, false, false, -4.0, -1.0, 0x3e888889, 7},
	{Int4, false, false, 0.0, 0.0, 0x3f800000, 0},
	{Int4, false, false, -0.0001, 6.02, 0x3ecd7c70, -8},
	{Int4, false, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Int4, false, false, -2.5, 0.1, 0x3e317e4b, 6},
	{Int4, false, true, -1.0, 1.0, 0x3e088889, 0},
	{Int4, false, true, -0.3, 2.7, 0x3eb851ec, 0},
	{Int4, false, true, 0.5, 3.0, 0x3ecccccd, 0},
	{Int4, false, true, -4.0, -1.0, 0x3f088889, 0},
	{Int4, false, true, 0.0, 0.0, 0x3f800000, 0},
	{Int4, false, true, -0.0001, 6.02, 0x3f4d7b90, 0},
	{Int4, false, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Int4, false, true, -2.5, 0.1, 0x3eaaaaab, 0},
	{Int4, true, false, -1.0, 1.0, 0x3e924925, 0},
	{Int4, true, false, -0.3, 2.7, 0x3edb6db7, -3},
	{Int4, true, false, 0.5, 3.0, 0x3edb6db7, -4},
	{Int4, true, false, -4.0, -1.0, 0x3f124925, 3},
	{Int4, true, false, 0.0, 0.0, 0x3f800000, 0},
	{Int4, true, false, -0.0001, 6.02, 0x3f5c29e5, -4},
	{Int4, true, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Int4, true, false, -2.5, 0.1, 0x3ebe2be3, 3},
	{Int4, true, true, -1.0, 1.0, 0x3e924925, 0},
	{Int4, true, true, -0.3, 2.7, 0x3f457c58, 0},
	{Int4, true, true, 0.5, 3.0, 0x3f5b6db7, 0},
	{Int4, true, true, -4.0, -1.0, 0x3f924925, 0},
	{Int4, true, true, 0.0, 0.0, 0x3f800000, 0},
	{Int4, true, true, -0.0001, 6.02, 0x3fdc28f6, 0},
	{Int4, true, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Int4, true, true, -2.5, 0.1, 0x3f36db6e, 0},
	{Uint4, false, false, -1.0, 1.0, 0x3e088889, 8},
	{Uint4, false, false, -0.3, 2.7, 0x3e4ccccd, 2},
	{Uint4, false, false, 0.5, 3.0, 0x3e4ccccd, 0},
	{Uint4, false, false, -4.0, -1.0, 0x3e888889, 15},
	{Uint4, false, false, 0.0, 0.0, 0x3f800000, 0},
	{Uint4, false, false, -0.0001, 6.02, 0x3ecd7c70, 0},
	{Uint4, false, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint4, false, false, -2.5, 0.1, 0x3e317e4b, 14},
	{Uint4, false, true, -1.0, 1.0, 0x3e088889, 8},
	{Uint4, false, true, -0.3, 2.7, 0x3eb851ec, 8},
	{Uint4, false, true, 0.5, 3.0, 0x3ecccccd, 8},
	{Uint4, false, true, -4.0, -1.0, 0x3f088889, 8},
	{Uint4, false, true, 0.0, 0.0, 0x3f800000, 0},
	{Uint4, false, true, -0.0001, 6.02, 0x3f4d7b90, 8},
	{Uint4, false, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint4, false, true, -2.5, 0.1, 0x3eaaaaab, 8},
	{Uint4, true, false, -1.0, 1.0, 0x3e924925, 4},
	{Uint4, true, false, -0.3, 2.7, 0x3edb6db7, 1},
	{Uint4, true, false, 0.5, 3.0, 0x3edb6db7, 0},
	{Uint4, true, false, -4.0, -1.0, 0x3f124925, 7},
	{Uint4, true, false, 0.0, 0.0, 0x3f800000, 0},
	{Uint4, true, false, -0.0001, 6.02, 0x3f5c29e5, 0},
	{Uint4, true, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint4, true, false, -2.5, 0.1, 0x3ebe2be3, 7},
	{Uint4, true, true, -1.0, 1.0, 0x3e924925, 4},
	{Uint4, true, true, -0.3, 2.7, 0x3f457c58, 4},
	{Uint4, true, true, 0.5, 3.0, 0x3f5b6db7, 4},
	{Uint4, true, true, -4.0, -1.0, 0x3f924925, 4},
	{Uint4, true, true, 0.0, 0.0, 0x3f800000, 0},
	{Uint4, true, true, -0.0001, 6.02, 0x3fdc28f6, 4},
	{Uint4, true, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint4, true, true, -2.5, 0.1, 0x3f36db6e, 4},
	{Int16, false, false, -1.0, 1.0, 0x38000080, 0},
	{Int16, false, false, -0.3, 2.7, 0x384000c0, -26214},
	{Int16, false, false, 0.5, 3.0, 0x384000c0, -32768},
	{Int16, false, false, -4.0, -1.0, 0x38800080, 32767},
	{Int16, false, false, 0.0, 0.0, 0x3f800000, 0},
	{Int16, false, false, -0.0001, 6.02, 0x38c0a569, -32767},
	{Int16, false, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Int16, false, false, -2.5, 0.1, 0x3826670d, 30246},
	{Int16, false, true, -1.0, 1.0, 0x38000100, 0},
	{Int16, false, true, -0.3, 2.7, 0x38acce27, 0},
	{Int16, false, true, 0.5, 3.0, 0x38c00180, 0},
	{Int16, false, true, -4.0, -1.0, 0x39000100, 0},
	{Int16, false, true, 0.0, 0.0, 0x3f800000, 0},
	{Int16, false, true, -0.0001, 6.02, 0x3940a558, 0},
	{Int16, false, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Int16, false, true, -2.5, 0.1, 0x38a00140, 0},
	{Int16, true, false, -1.0, 1.0, 0x38800000, 0},
	{Int16, true, false, -0.3, 2.7, 0x38c00000, -13107},
	{Int16, true, false, 0.5, 3.0, 0x38c00000, -16384},
	{Int16, true, false, -4.0, -1.0, 0x39000000, 16384},
	{Int16, true, false, 0.0, 0.0, 0x3f800000, 0},
	{Int16, true, false, -0.0001, 6.02, 0x3940a4a9, -16383},
	{Int16, true, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Int16, true, false, -2.5, 0.1, 0x38a66666, 15124},
	{Int16, true, true, -1.0, 1.0, 0x38800000, 0},
	{Int16, true, true, -0.3, 2.7, 0x392ccccd, 0},
	{Int16, true, true, 0.5, 3.0, 0x39400000, 0},
	{Int16, true, true, -4.0, -1.0, 0x39800000, 0},
	{Int16, true, true, 0.0, 0.0, 0x3f800000, 0},
	{Int16, true, true, -0.0001, 6.02, 0x39c0a3d7, 0},
	{Int16, true, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Int16, true, true, -2.5, 0.1, 0x39200000, 0},
	{Uint16, false, false, -1.0, 1.0, 0x38000080, 32768},
	{Uint16, false, false, -0.3, 2.7, 0x384000c0, 6554},
	{Uint16, false, false, 0.5, 3.0, 0x384000c0, 0},
	{Uint16, false, false, -4.0, -1.0, 0x38800080, 65535},
	{Uint16, false, false, 0.0, 0.0, 0x3f800000, 0},
	{Uint16, false, false, -0.0001, 6.02, 0x38c0a569, 1},
	{Uint16, false, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint16, false, false, -2.5, 0.1, 0x3826670d, 63014},
	{Uint16, false, true, -1.0, 1.0, 0x38000080, 32768},
	{Uint16, false, true, -0.3, 2.7, 0x38accd7a, 32768},
	{Uint16, false, true, 0.5, 3.0, 0x38c000c0, 32768},
	{Uint16, false, true, -4.0, -1.0, 0x39000080, 32768},
	{Uint16, false, true, 0.0, 0.0, 0x3f800000, 0},
	{Uint16, false, true, -0.0001, 6.02, 0x3940a498, 32768},
	{Uint16, false, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint16, false, true, -2.5, 0.1, 0x38a000a0, 32768},
	{Uint16, true, false, -1.0, 1.0, 0x38800100, 16384},
	{Uint16, true, false, -0.3, 2.7, 0x38c00180, 3277},
	{Uint16, true, false, 0.5, 3.0, 0x38c00180, 0},
	{Uint16, true, false, -4.0, -1.0, 0x39000100, 32767},
	{Uint16, true, false, 0.0, 0.0, 0x3f800000, 0},
	{Uint16, true, false, -0.0001, 6.02, 0x3940a62a, 1},
	{Uint16, true, false, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint16, true, false, -2.5, 0.1, 0x38a667b3, 31507},
	{Uint16, true, true, -1.0, 1.0, 0x38800100, 16384},
	{Uint16, true, true, -0.3, 2.7, 0x392cce27, 16384},
	{Uint16, true, true, 0.5, 3.0, 0x39400180, 16384},
	{Uint16, true, true, -4.0, -1.0, 0x39800100, 16384},
	{Uint16, true, true, 0.0, 0.0, 0x3f800000, 0},
	{Uint16, true, true, -0.0001, 6.02, 0x39c0a558, 16384},
	{Uint16, true, true, -1e-39, 1e-39, 0x3f800000, 0},
	{Uint16, true, true, -2.5, 0.1, 0x39200140, 16384},
}

func TestComputeParamsMatchesORT(t *testing.T) {
	for _, c := range ortParams {
		s, zp := ComputeParamsWith(c.lo, c.hi, c.qt, ParamOptions{Symmetric: c.sym, ReduceRange: c.reduce})
		if math.Float32bits(s) != c.scaleBits || zp != c.zp {
			t.Errorf("%v reduce=%v sym=%v [%v, %v]: got scale %v (%#08x) zp %d, ORT gives %v (%#08x) zp %d",
				c.qt, c.reduce, c.sym, c.lo, c.hi, s, math.Float32bits(s), zp,
				math.Float32frombits(c.scaleBits), c.scaleBits, c.zp)
		}
	}
}

func TestComputeParamsHandComputed(t *testing.T) {
	// Symmetric int8: scale = max|x| / 127, zero point 0.
	s, zp := ComputeParams(-0.5, 2.54, Int8, true)
	if !scalar.EqualWithinAbsOrRel(float64(s), 2.54/127, 0, 1e-7) || zp != 0 {
		t.Errorf("int8 symmetric: got %v, %d", s, zp)
	}
	// Symmetric uint8: the middle of [0, 255] rounds half to even: 128.
	s, zp = ComputeParams(-1, 1, Uint8, true)
	if !scalar.EqualWithinAbsOrRel(float64(s), 2.0/255, 0, 1e-7) || zp != 128 {
		t.Errorf("uint8 symmetric: got %v, %d", s, zp)
	}
	// Asymmetric uint8 on [0, 6] (ReLU6): zero point 0, scale 6/255.
	s, zp = ComputeParams(0, 6, Uint8, false)
	if !scalar.EqualWithinAbsOrRel(float64(s), 6.0/255, 0, 1e-7) || zp != 0 {
		t.Errorf("uint8 relu6: got %v, %d", s, zp)
	}
	// A range not containing 0 is widened to contain it: [2, 4] → [0, 4].
	s, zp = ComputeParams(2, 4, Int8, false)
	if !scalar.EqualWithinAbsOrRel(float64(s), 4.0/255, 0, 1e-7) || zp != -128 {
		t.Errorf("int8 [2,4]: got %v, %d", s, zp)
	}
	// Zero range: scale 1, zero point 0 (ORT), not a division by zero.
	for _, qt := range []QType{Int8, Uint8, Int4, Uint4, Int16, Uint16} {
		for _, sym := range []bool{false, true} {
			if s, zp := ComputeParams(0, 0, qt, sym); s != 1 || zp != 0 {
				t.Errorf("%v sym=%v zero range: got %v, %d", qt, sym, s, zp)
			}
		}
	}
	// min_real_range: [0, 0.001] widened to [0, 0.01] (ORT: 0x38247b86, zp 0).
	s, zp = ComputeParamsWith(0, 0.001, Uint8, ParamOptions{MinRealRange: 0.01})
	if math.Float32bits(s) != 0x38247b86 || zp != 0 {
		t.Errorf("min real range: got %v (%#08x), %d", s, math.Float32bits(s), zp)
	}
}

func TestComputeParamsNonFinite(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	for _, c := range [][2]float32{{nan, nan}, {nan, 1}, {-1, nan}, {-inf, inf}, {0, inf}} {
		s, zp := ComputeParams(c[0], c[1], Int8, false)
		if s != s || math.IsInf(float64(s), 0) || s <= 0 || zp < -128 || zp > 127 {
			t.Errorf("range %v: got scale %v zp %d, want a finite positive scale and an int8 zero point", c, s, zp)
		}
	}
}

func TestRangeTable(t *testing.T) {
	cases := []struct {
		qt          QType
		reduce, sym bool
		lo, hi      int32
	}{
		{Int8, false, false, -128, 127}, {Int8, false, true, -127, 127}, {Int8, true, true, -64, 64},
		{Uint8, false, true, 0, 255}, {Uint8, true, false, 0, 127},
		{Int4, false, true, -8, 7}, {Int4, true, false, -4, 3}, {Uint4, false, false, 0, 15}, {Uint4, true, false, 0, 7},
		{Int16, false, true, -32767, 32767}, {Uint16, true, false, 0, 32767},
	}
	for _, c := range cases {
		if lo, hi := c.qt.Range(c.reduce, c.sym); lo != c.lo || hi != c.hi {
			t.Errorf("%v reduce=%v sym=%v: got [%d, %d], want [%d, %d]", c.qt, c.reduce, c.sym, lo, hi, c.lo, c.hi)
		}
	}
}

// TestQuantizeRoundsHalfToEven pins ONNX QuantizeLinear rounding against ORT's
// quantize_nparray (numpy round: half to even), including saturation.
func TestQuantizeRoundsHalfToEven(t *testing.T) {
	x := []float32{0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 127.5, 128.5, -128.5, -129.5, 3.49999, 1e9, -1e9}
	wantI8 := []int8{0, 2, 2, 0, -2, -2, 127, 127, -128, -128, 3, 127, -128}
	wantU8 := []uint8{128, 130, 130, 128, 126, 126, 255, 255, 0, 0, 131, 255, 0}
	gotI8 := make([]int8, len(x))
	gotU8 := make([]uint8, len(x))
	QuantizeSlice(gotI8, x, 1, 0, -128, 127)
	QuantizeSlice(gotU8, x, 1, 128, 0, 255)
	for i := range x {
		if gotI8[i] != wantI8[i] || gotU8[i] != wantU8[i] {
			t.Errorf("x=%v: got int8 %d uint8 %d, want %d %d", x[i], gotI8[i], gotU8[i], wantI8[i], wantU8[i])
		}
	}
	// The division is done in float32: 0.25/0.1f is below 2.5, 0.35/0.1f is 3.5 exactly.
	x = []float32{0.1, 0.25, 0.35, -0.05, 0.15, 0.45}
	want := []int8{1, 2, 4, 0, 2, 4}
	got := make([]int8, len(x))
	QuantizeSlice(got, x, 0.1, 0, -128, 127)
	for i := range x {
		if got[i] != want[i] {
			t.Errorf("x=%v scale 0.1: got %d, want %d (ORT)", x[i], got[i], want[i])
		}
	}
	if q := Quantize(float32(math.NaN()), 0.1, 3, -128, 127); q != 3 {
		t.Errorf("NaN quantized to %d, want the zero point 3", q)
	}
	if q := Quantize(float32(math.Inf(-1)), 0.1, 3, -8, 7); q != -8 {
		t.Errorf("-Inf quantized to %d, want -8", q)
	}
}

func TestQuantizeRoundTripSingleElement(t *testing.T) {
	x := []float32{-0.7}
	s, zp := ComputeParams(x[0], x[0], Int8, false)
	q := make([]int8, 1)
	QuantizeSlice(q, x, s, zp, -128, 127)
	back := make([]float32, 1)
	DequantizeSlice(back, q, s, zp)
	if !scalar.EqualWithinAbsOrRel(float64(back[0]), -0.7, float64(s)/2, 0) {
		t.Errorf("single element: %v → %d → %v (scale %v, zp %d)", x[0], q[0], back[0], s, zp)
	}
}

func TestPerChannelAnyAxis(t *testing.T) {
	// x [2, 3, 2]: channel c of axis 1 holds values scaled by (c+1).
	shape := []int{2, 3, 2}
	x := make([]float32, 12)
	for o := 0; o < 2; o++ {
		for c := 0; c < 3; c++ {
			for i := 0; i < 2; i++ {
				x[(o*3+c)*2+i] = float32(c+1) * float32(o*2+i-1) // -1, 0, 1, 2 times (c+1)
			}
		}
	}
	for _, axis := range []int{1, -2} {
		scales, zps, err := ComputeParamsPerChannel(x, shape, axis, Int8, ParamOptions{Symmetric: true})
		if err != nil {
			t.Fatal(err)
		}
		for c := range scales {
			want := 2 * float64(c+1) / 127
			if !scalar.EqualWithinAbsOrRel(float64(scales[c]), want, 0, 1e-7) || zps[c] != 0 {
				t.Errorf("axis %d channel %d: scale %v zp %d, want %v 0", axis, c, scales[c], zps[c], want)
			}
		}
		q := make([]int8, len(x))
		if err := QuantizePerChannel(q, x, shape, axis, scales, zps, -127, 127); err != nil {
			t.Fatal(err)
		}
		// Every channel's largest value maps to 127 and its -1·(c+1) to round(-127/2) = -64.
		for o := 0; o < 2; o++ {
			for c := 0; c < 3; c++ {
				for i := 0; i < 2; i++ {
					want := []int8{-64, 0, 64, 127}[o*2+i] // ±63.5 rounds half to even: ±64
					if got := q[(o*3+c)*2+i]; got != want {
						t.Errorf("axis %d q[%d,%d,%d] = %d, want %d", axis, o, c, i, got, want)
					}
				}
			}
		}
		back := make([]float32, len(x))
		if err := DequantizePerChannel(back, q, shape, axis, scales, zps); err != nil {
			t.Fatal(err)
		}
		for i := range x {
			c := (i / 2) % 3
			if !scalar.EqualWithinAbsOrRel(float64(back[i]), float64(x[i]), float64(scales[c])/2, 0) {
				t.Errorf("axis %d element %d: %v → %v", axis, i, x[i], back[i])
			}
		}
	}
	if _, _, err := ComputeParamsPerChannel(x, shape, 3, Int8, ParamOptions{}); err == nil {
		t.Error("axis 3 of a rank-3 tensor: want an error")
	}
	if _, _, err := ComputeParamsPerChannel(x[:11], shape, 0, Int8, ParamOptions{}); err == nil {
		t.Error("11 values for shape [2 3 2]: want an error")
	}
}
