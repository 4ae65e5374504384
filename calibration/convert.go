package calibration

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/x448/float16"
)

// Conversions are deliberately few: float types convert among themselves (numpy defaults to
// float64, fp16 models are fed fp32 data) and integer types widen or narrow to int32/int64
// with a range check (numpy's default int is int64, many models take int32 ids). Anything
// else, such as float data for an integer input, is refused: it is almost always a mistake.

func isFloatKind(d tensor.DType) bool {
	return d == tensor.Float16 || d == tensor.Float32 || d == tensor.Float64 || d == tensor.BFloat16
}

func isIntKind(d tensor.DType) bool {
	switch d {
	case tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		return true
	}
	return false
}

// convertible reports whether data of type from may feed an input of type to.
func convertible(from, to tensor.DType) bool {
	switch {
	case from == to:
		return true
	case isFloatKind(from) && isFloatKind(to):
		return true
	case isIntKind(from) && (to == tensor.Int32 || to == tensor.Int64):
		return true
	}
	return false
}

// dtypeError explains a refused conversion the way the user can fix it.
func dtypeError(where, input string, from, to tensor.DType) error {
	return fmt.Errorf("%s: input %q: dtype %s cannot feed a %s input; save the data as %s", where, input, from, to, to)
}

// convertData converts little-endian elements of type from into type to. src is reused
// when the types match; otherwise a new slice is returned.
func convertData(from, to tensor.DType, src []byte) ([]byte, error) {
	if from == to {
		return src, nil
	}
	le := binary.LittleEndian
	n := int(int64(len(src)) * 8 / int64(from.Bits()))
	out := make([]byte, to.ByteSize(int64(n)))
	if isFloatKind(from) && isFloatKind(to) {
		get := floatGetter(from, src)
		switch to {
		case tensor.Float32:
			for i := 0; i < n; i++ {
				le.PutUint32(out[4*i:], math.Float32bits(float32(get(i))))
			}
		case tensor.Float64:
			for i := 0; i < n; i++ {
				le.PutUint64(out[8*i:], math.Float64bits(get(i)))
			}
		case tensor.Float16:
			for i := 0; i < n; i++ {
				le.PutUint16(out[2*i:], float16.Fromfloat32(float32(get(i))).Bits())
			}
		case tensor.BFloat16:
			for i := 0; i < n; i++ {
				le.PutUint16(out[2*i:], tensor.Float32ToBF16(float32(get(i))))
			}
		}
		return out, nil
	}
	if isIntKind(from) && (to == tensor.Int32 || to == tensor.Int64) {
		for i := 0; i < n; i++ {
			v, ok := intAt(from, src, i)
			if to == tensor.Int64 {
				if !ok {
					return nil, fmt.Errorf("element %d does not fit in int64", i)
				}
				le.PutUint64(out[8*i:], uint64(v))
				continue
			}
			if !ok || v < math.MinInt32 || v > math.MaxInt32 {
				return nil, fmt.Errorf("element %d does not fit in int32", i)
			}
			le.PutUint32(out[4*i:], uint32(int32(v)))
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot convert %s to %s", from, to)
}

func floatGetter(d tensor.DType, b []byte) func(int) float64 {
	le := binary.LittleEndian
	switch d {
	case tensor.Float16:
		return func(i int) float64 { return float64(float16.Frombits(le.Uint16(b[2*i:])).Float32()) }
	case tensor.BFloat16:
		return func(i int) float64 { return float64(tensor.BF16ToFloat32(le.Uint16(b[2*i:]))) }
	case tensor.Float32:
		return func(i int) float64 { return float64(math.Float32frombits(le.Uint32(b[4*i:]))) }
	default:
		return func(i int) float64 { return math.Float64frombits(le.Uint64(b[8*i:])) }
	}
}

// intAt reads integer element i as int64; ok is false for a uint64 above MaxInt64.
func intAt(d tensor.DType, b []byte, i int) (int64, bool) {
	le := binary.LittleEndian
	switch d {
	case tensor.Int8:
		return int64(int8(b[i])), true
	case tensor.Uint8:
		return int64(b[i]), true
	case tensor.Int16:
		return int64(int16(le.Uint16(b[2*i:]))), true
	case tensor.Uint16:
		return int64(le.Uint16(b[2*i:])), true
	case tensor.Int32:
		return int64(int32(le.Uint32(b[4*i:]))), true
	case tensor.Uint32:
		return int64(le.Uint32(b[4*i:])), true
	case tensor.Int64:
		return int64(le.Uint64(b[8*i:])), true
	default: // Uint64
		v := le.Uint64(b[8*i:])
		return int64(v), v <= math.MaxInt64
	}
}

// swapBytes reverses each size-byte element in place (big-endian .npy data).
func swapBytes(b []byte, size int) {
	if size < 2 {
		return
	}
	for i := 0; i+size <= len(b); i += size {
		for l, r := i, i+size-1; l < r; l, r = l+1, r-1 {
			b[l], b[r] = b[r], b[l]
		}
	}
}

// fromFloat32 encodes float32 values as dt (float32, float16, float64 or bfloat16); used
// by readers that compute in float32 (images, random data).
func fromFloat32(dt tensor.DType, v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	out, _ := convertData(tensor.Float32, dt, b)
	return out
}
