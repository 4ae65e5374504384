package quant

import (
	"fmt"
	"math"
)

// Float8 E4M3FN, the "fn" (finite, no infinities) 8-bit float that ONNX (opset 19+) and
// TensorRT use for FP8 activations and weights. One byte:
//
//	bit 7 sign | bits 6..3 exponent, bias 7 | bits 2..0 mantissa
//
// exponent 1..15 is normal, (1 + m/8)·2^(e−7); exponent 0 is subnormal, m/8·2^−6; the two
// codes 0x7f and 0xff are NaN, so 0x7e (1.75·2^8 = 448) is the largest finite magnitude and
// 0x01 (2^−9) the smallest nonzero one.
const (
	// E4M3Max is the largest finite E4M3FN magnitude; symmetric FP8 scales are amax/E4M3Max.
	E4M3Max = 448
	// e4m3MaxCode and e4m3NaN are the codes of +448 and of NaN (the sign bit is added).
	e4m3MaxCode = 0x7e
	e4m3NaN     = 0x7f
	// e4m3MinNormalExp is the exponent (of 2) of the smallest normal, 2^−6; below it the
	// spacing is fixed at 2^−9.
	e4m3MinNormalExp = -6
	e4m3MantBits     = 3
	e4m3Bias         = 7
)

// ToE4M3FN converts v to E4M3FN bits as ONNX QuantizeLinear and Cast do with saturate=1:
// round to nearest, ties to even; magnitudes beyond 448 (infinities included) saturate to
// ±448; NaN becomes NaN (0x7f, or 0xff for a negative NaN). The sign of zero is kept.
func ToE4M3FN(v float32) byte {
	bits := math.Float32bits(v)
	sign := byte(bits>>24) & 0x80
	a := float64(math.Float32frombits(bits &^ (1 << 31)))
	switch {
	case a != a:
		return sign | e4m3NaN
	case a >= E4M3Max:
		return sign | e4m3MaxCode
	}
	// The spacing of representable values around a: 2^(e−3) for a normal a in [2^e, 2^(e+1)),
	// 2^−9 below the smallest normal. a/spacing is exact (a power of two divides it), so one
	// RoundToEven is the whole rounding.
	_, exp := math.Frexp(a) // a = f·2^exp, f in [0.5, 1)
	e := exp - 1
	if a == 0 || e < e4m3MinNormalExp {
		e = e4m3MinNormalExp
	}
	r := math.RoundToEven(math.Ldexp(a, e4m3MantBits-e)) // in [8, 16] for normals, [0, 8] below
	if a < math.Ldexp(1, e4m3MinNormalExp) {
		// Subnormal: the code is the mantissa count itself; r = 8 is the smallest normal,
		// whose code (exponent 1, mantissa 0) is also 8.
		return sign | byte(r)
	}
	// Normal: exponent field e+7, mantissa r−8. r = 16 (rounded up to the next power of
	// two) carries into the exponent, which this sum does by itself. a < 448 keeps the
	// result at or below 0x7e.
	return sign | byte((e+e4m3Bias)<<e4m3MantBits+int(r)-8)
}

// E4M3Scale is the symmetric FP8 scale for a range of magnitude amax: amax/448 (float32
// division), so amax maps to the largest finite value. A zero, subnormal-tiny or non-finite
// amax gives 1 (the tensor is all zeros, or its range is unusable; callers reject the
// latter first), as the integer scales do for an empty range.
func E4M3Scale(amax float32) float32 {
	s := amax / E4M3Max
	if !(s >= tinyFloat32) || math.IsInf(float64(s), 0) {
		return 1
	}
	return s
}

// QuantizeE4M3FN writes ToE4M3FN(src[i] / scale) (float32 division, as ONNX Runtime's
// QuantizeLinear computes it) into dst.
func QuantizeE4M3FN(dst []byte, src []float32, scale float32) {
	_ = dst[len(src)-1:]
	for i, v := range src {
		dst[i] = ToE4M3FN(v / scale)
	}
}

// E4M3ScalesPerChannel returns one symmetric scale per index of axis of a row-major tensor
// of the given shape: that channel's largest finite magnitude over 448.
func E4M3ScalesPerChannel(src []float32, shape []int, axis int) ([]float32, error) {
	outer, ch, inner, err := channelSplit(len(src), shape, axis)
	if err != nil {
		return nil, err
	}
	amax := make([]float32, ch)
	for o := 0; o < outer; o++ {
		for c := 0; c < ch; c++ {
			base := (o*ch + c) * inner
			for _, v := range src[base : base+inner] {
				if a := float32(math.Abs(float64(v))); a > amax[c] && !math.IsInf(float64(a), 0) {
					amax[c] = a
				}
			}
		}
	}
	for c, a := range amax {
		amax[c] = E4M3Scale(a)
	}
	return amax, nil
}

// QuantizeE4M3FNPerChannel is QuantizeE4M3FN with scales[c] for every element whose index
// along axis is c.
func QuantizeE4M3FNPerChannel(dst []byte, src []float32, shape []int, axis int, scales []float32) error {
	outer, ch, inner, err := channelSplit(len(src), shape, axis)
	if err != nil {
		return err
	}
	if len(scales) != ch || len(dst) < len(src) {
		return fmt.Errorf("quant: %d scales and %d outputs for %d channels of %d values", len(scales), len(dst), ch, len(src))
	}
	for o := 0; o < outer; o++ {
		for c := 0; c < ch; c++ {
			base := (o*ch + c) * inner
			QuantizeE4M3FN(dst[base:base+inner], src[base:base+inner], scales[c])
		}
	}
	return nil
}

// channelSplit views a row-major shape as [outer, shape[axis], inner].
func channelSplit(n int, shape []int, axis int) (outer, ch, inner int, err error) {
	if axis < 0 || axis >= len(shape) {
		return 0, 0, 0, fmt.Errorf("quant: axis %d out of range for shape %v", axis, shape)
	}
	outer, inner = 1, 1
	for i, d := range shape {
		switch {
		case i < axis:
			outer *= d
		case i > axis:
			inner *= d
		}
	}
	ch = shape[axis]
	if outer*ch*inner != n || ch == 0 {
		return 0, 0, 0, fmt.Errorf("quant: shape %v does not hold %d values", shape, n)
	}
	return outer, ch, inner, nil
}
