package quant

import (
	"fmt"
	"math"
)

// QType is an integer quantization target. The values are ONNX TensorProto.DataType numbers
// (the same as pkg/tensor's DType), so a QType converts to an ONNX element type by a cast.
type QType int32

// Quantized integer types, numbered as ONNX numbers them.
const (
	Uint8  QType = 2
	Int8   QType = 3
	Uint16 QType = 4
	Int16  QType = 5
	Uint4  QType = 21
	Int4   QType = 22
)

// String names the type as ONNX does ("int8", "uint4", ...).
func (t QType) String() string {
	switch t {
	case Uint8:
		return "uint8"
	case Int8:
		return "int8"
	case Uint16:
		return "uint16"
	case Int16:
		return "int16"
	case Uint4:
		return "uint4"
	case Int4:
		return "int4"
	}
	return fmt.Sprintf("qtype(%d)", int32(t))
}

// Valid reports whether t is one of the integer types above.
func (t QType) Valid() bool {
	switch t {
	case Uint8, Int8, Uint16, Int16, Uint4, Int4:
		return true
	}
	return false
}

// Signed reports whether t holds negative values.
func (t QType) Signed() bool { return t == Int8 || t == Int16 || t == Int4 }

// Range returns the integer interval [qmin, qmax] a quantized value may take, following
// onnxruntime.quantization's get_qmin_qmax_for_qType:
//   - reduceRange (for CPUs whose u8×s8 dot products saturate, e.g. pre-VNNI x86) takes
//     precedence: uint8 [0,127], int8 [-64,64], uint16 [0,32767], int16 [-16384,16384],
//     uint4 [0,7], int4 [-4,3];
//   - symmetric narrows int8 to [-127,127] and int16 to [-32767,32767] so that +a and −a are
//     both representable; the other types keep their full range;
//   - otherwise the full range of the type.
//
// It panics on an invalid QType: that is a programming error, not a data error.
func (t QType) Range(reduceRange, symmetric bool) (qmin, qmax int32) {
	if reduceRange {
		switch t {
		case Uint8:
			return 0, 127
		case Int8:
			return -64, 64
		case Uint16:
			return 0, 32767
		case Int16:
			return -16384, 16384
		case Uint4:
			return 0, 7
		case Int4:
			return -4, 3
		}
	}
	switch t {
	case Uint8:
		return 0, 255
	case Int8:
		if symmetric {
			return -127, 127
		}
		return -128, 127
	case Uint16:
		return 0, 65535
	case Int16:
		if symmetric {
			return -32767, 32767
		}
		return -32768, 32767
	case Uint4:
		return 0, 15
	case Int4:
		return -8, 7
	}
	panic(fmt.Sprintf("quant: invalid QType %d", int32(t)))
}

// ParamOptions are the knobs of onnxruntime.quantization's quantize_data beyond the type.
type ParamOptions struct {
	// Symmetric makes the real range [-a, a], a = max(|min|, |max|), with zero point 0 for
	// signed types and the middle of the range (128 for uint8) for unsigned ones.
	Symmetric bool
	// ReduceRange uses one bit less (see QType.Range).
	ReduceRange bool
	// MinRealRange, when > 0, widens max so that max − min ≥ MinRealRange (ORT's
	// min_real_range, used to keep scales of near-constant tensors away from 0).
	MinRealRange float32
}

// ComputeParams returns the scale and zero point for a tensor whose values span [min, max],
// as onnxruntime.quantization computes them for qt (full range; see ComputeParamsWith for
// reduced range). The range is first widened to include 0 so that 0 is exactly
// representable (padding and ReLU outputs depend on it).
func ComputeParams(min, max float32, qt QType, symmetric bool) (scale float32, zeroPoint int32) {
	return ComputeParamsWith(min, max, qt, ParamOptions{Symmetric: symmetric})
}

// ComputeParamsWith is ComputeParams with all of ORT's options.
func ComputeParamsWith(min, max float32, qt QType, o ParamOptions) (scale float32, zeroPoint int32) {
	qmin, qmax := qt.Range(o.ReduceRange, o.Symmetric)
	return ComputeScaleZP(min, max, qmin, qmax, o.Symmetric, o.MinRealRange)
}

// tinyFloat32 is numpy.finfo(float32).tiny, the smallest normal float32: ORT replaces any
// scale below it by 1.0 (with zero point 0), so an all-zero tensor gets scale 1.
const tinyFloat32 = 1.1754943508222875e-38

// ComputeScaleZP is onnxruntime.quantization's compute_scale_zp for explicit integer bounds:
//
//	rmin, rmax ← min(rmin, 0), max(rmax, 0)
//	rmax ← max(rmax, rmin + minRealRange)           (only when minRealRange > 0)
//	symmetric: rmin, rmax ← −a, +a with a = max(|rmin|, |rmax|)
//	scale = (rmax − rmin)/(qmax − qmin)             (computed in float64, stored as float32)
//	scale < smallest normal float32 → scale 1, zero point 0
//	symmetric: zp = round((qmin + qmax)/2); else zp = round(qmin − rmin/scale)
//
// with rounding half to even. NaN bounds count as 0 and infinite ones as ±MaxFloat32, so the
// result is always finite; the zero point is clamped into [qmin, qmax].
func ComputeScaleZP(rmin, rmax float32, qmin, qmax int32, symmetric bool, minRealRange float32) (float32, int32) {
	if qmin > 0 || qmax < 0 || qmin > qmax {
		panic(fmt.Sprintf("quant: invalid integer range [%d, %d]: it must contain 0", qmin, qmax))
	}
	rmin, rmax = finiteOrZero(rmin), finiteOrZero(rmax)
	rmin = min(rmin, 0)
	rmax = max(rmax, 0)
	if minRealRange > 0 {
		rmax = max(rmax, rmin+minRealRange)
	}
	if symmetric {
		a := max(abs32(rmin), abs32(rmax))
		rmin, rmax = -a, a
	}
	dr := float64(rmax) - float64(rmin)
	dq := float64(qmax) - float64(qmin)
	scale := dr / dq
	if scale < tinyFloat32 {
		return 1, 0
	}
	var zp float64
	if symmetric {
		zp = math.RoundToEven((float64(qmin) + float64(qmax)) / 2)
	} else {
		zp = math.RoundToEven(float64(qmin) - float64(rmin)/scale)
	}
	return float32(scale), int32(min(max(zp, float64(qmin)), float64(qmax)))
}

func finiteOrZero(x float32) float32 {
	switch {
	case x != x:
		return 0
	case x > math.MaxFloat32:
		return math.MaxFloat32
	case x < -math.MaxFloat32:
		return -math.MaxFloat32
	}
	return x
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// Quantize is ONNX QuantizeLinear for one value: saturate(round(x/scale) + zp) to
// [qmin, qmax], with the division done in float32 and rounding half to even, as the ONNX
// reference and ORT's CPU kernel do. NaN quantizes to the zero point (ONNX leaves it
// undefined; Go's float→int conversion of NaN is not portable).
func Quantize(x, scale float32, zp, qmin, qmax int32) int32 {
	v := x / scale
	if v != v {
		return min(max(zp, qmin), qmax)
	}
	r := math.RoundToEven(float64(v)) + float64(zp)
	if r <= float64(qmin) {
		return qmin
	}
	if r >= float64(qmax) {
		return qmax
	}
	return int32(r)
}

// Dequantize is ONNX DequantizeLinear for one value: (q − zp)·scale in float32.
func Dequantize(q int32, scale float32, zp int32) float32 { return float32(q-zp) * scale }

// Integer is the element types quantized slices may be stored in.
type Integer interface {
	~int8 | ~uint8 | ~int16 | ~uint16 | ~int32
}

// QuantizeSlice quantizes src into dst (same length) with one scale and zero point.
func QuantizeSlice[T Integer](dst []T, src []float32, scale float32, zp, qmin, qmax int32) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("quant: QuantizeSlice: dst has %d elements, src %d", len(dst), len(src)))
	}
	for i, x := range src {
		dst[i] = T(Quantize(x, scale, zp, qmin, qmax))
	}
}

// DequantizeSlice is the inverse of QuantizeSlice.
func DequantizeSlice[T Integer](dst []float32, src []T, scale float32, zp int32) {
	if len(dst) != len(src) {
		panic(fmt.Sprintf("quant: DequantizeSlice: dst has %d elements, src %d", len(dst), len(src)))
	}
	for i, q := range src {
		dst[i] = Dequantize(int32(q), scale, zp)
	}
}

// axisSplit views a row-major tensor of the given shape as [outer, shape[axis], inner].
// A negative axis counts from the end, as in ONNX.
func axisSplit(shape []int, axis, size int) (outer, ch, inner int, err error) {
	if axis < 0 {
		axis += len(shape)
	}
	if axis < 0 || axis >= len(shape) {
		return 0, 0, 0, fmt.Errorf("axis %d out of range for rank %d", axis, len(shape))
	}
	outer, inner = 1, 1
	for i, d := range shape {
		if d < 0 {
			return 0, 0, 0, fmt.Errorf("negative dimension %d in shape %v", d, shape)
		}
		switch {
		case i < axis:
			outer *= d
		case i > axis:
			inner *= d
		}
	}
	ch = shape[axis]
	if outer*ch*inner != size {
		return 0, 0, 0, fmt.Errorf("shape %v has %d elements, slice %d", shape, outer*ch*inner, size)
	}
	return outer, ch, inner, nil
}

// ChannelRanges returns the minimum and maximum of every slice of x along axis (the
// per-channel ranges ORT's per-channel weight quantization starts from). NaNs are skipped;
// a channel with no finite value gets [0, 0].
func ChannelRanges(x []float32, shape []int, axis int) (mins, maxs []float32, err error) {
	outer, ch, inner, err := axisSplit(shape, axis, len(x))
	if err != nil {
		return nil, nil, fmt.Errorf("channel ranges: %w", err)
	}
	mins = make([]float32, ch)
	maxs = make([]float32, ch)
	seen := make([]bool, ch)
	for o := 0; o < outer; o++ {
		for c := 0; c < ch; c++ {
			base := (o*ch + c) * inner
			for _, v := range x[base : base+inner] {
				if v != v {
					continue
				}
				if !seen[c] {
					mins[c], maxs[c], seen[c] = v, v, true
					continue
				}
				mins[c] = min(mins[c], v)
				maxs[c] = max(maxs[c], v)
			}
		}
	}
	return mins, maxs, nil
}

// ComputeParamsPerChannel returns one scale and zero point per slice of x along axis
// (axis 0 for Conv weights [OC, IC, kh, kw], the output axis for MatMul weights).
func ComputeParamsPerChannel(x []float32, shape []int, axis int, qt QType, o ParamOptions) (scales []float32, zps []int32, err error) {
	mins, maxs, err := ChannelRanges(x, shape, axis)
	if err != nil {
		return nil, nil, err
	}
	scales = make([]float32, len(mins))
	zps = make([]int32, len(mins))
	for c := range mins {
		scales[c], zps[c] = ComputeParamsWith(mins[c], maxs[c], qt, o)
	}
	return scales, zps, nil
}

// QuantizePerChannel quantizes x (row-major, shape) with scales[c], zps[c] for the c-th slice
// along axis, as ONNX QuantizeLinear with a 1-D scale and an axis attribute.
func QuantizePerChannel[T Integer](dst []T, x []float32, shape []int, axis int, scales []float32, zps []int32, qmin, qmax int32) error {
	outer, ch, inner, err := axisSplit(shape, axis, len(x))
	if err != nil {
		return fmt.Errorf("quantize per channel: %w", err)
	}
	if len(dst) != len(x) || len(scales) != ch || len(zps) != ch {
		return fmt.Errorf("quantize per channel: dst %d, scales %d, zero points %d for %d elements in %d channels",
			len(dst), len(scales), len(zps), len(x), ch)
	}
	for o := 0; o < outer; o++ {
		for c := 0; c < ch; c++ {
			base := (o*ch + c) * inner
			QuantizeSlice(dst[base:base+inner], x[base:base+inner], scales[c], zps[c], qmin, qmax)
		}
	}
	return nil
}

// DequantizePerChannel is the inverse of QuantizePerChannel (ONNX DequantizeLinear with axis).
func DequantizePerChannel[T Integer](dst []float32, q []T, shape []int, axis int, scales []float32, zps []int32) error {
	outer, ch, inner, err := axisSplit(shape, axis, len(q))
	if err != nil {
		return fmt.Errorf("dequantize per channel: %w", err)
	}
	if len(dst) != len(q) || len(scales) != ch || len(zps) != ch {
		return fmt.Errorf("dequantize per channel: dst %d, scales %d, zero points %d for %d elements in %d channels",
			len(dst), len(scales), len(zps), len(q), ch)
	}
	for o := 0; o < outer; o++ {
		for c := 0; c < ch; c++ {
			base := (o*ch + c) * inner
			DequantizeSlice(dst[base:base+inner], q[base:base+inner], scales[c], zps[c])
		}
	}
	return nil
}
