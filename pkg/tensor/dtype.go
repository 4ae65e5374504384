// Package tensor is the in-memory dense tensor that every layer of optimctl passes around:
// calibration readers produce it, the runtime consumes and returns it, validation compares it.
// Storage is little-endian element bytes, so any ONNX element type fits without a type switch
// at every boundary; typed views and conversions live here once.
package tensor

import "fmt"

// DType is an element type. The numbering is ONNX's TensorProto.DataType, so values cross
// the IR boundary without a table.
type DType int32

// Element types, numbered as ONNX numbers them.
const (
	Undefined      DType = 0
	Float32        DType = 1
	Uint8          DType = 2
	Int8           DType = 3
	Uint16         DType = 4
	Int16          DType = 5
	Int32          DType = 6
	Int64          DType = 7
	String         DType = 8
	Bool           DType = 9
	Float16        DType = 10
	Float64        DType = 11
	Uint32         DType = 12
	Uint64         DType = 13
	Complex64      DType = 14
	Complex128     DType = 15
	BFloat16       DType = 16
	Float8E4M3FN   DType = 17
	Float8E4M3FNUZ DType = 18
	Float8E5M2     DType = 19
	Float8E5M2FNUZ DType = 20
	Uint4          DType = 21
	Int4           DType = 22
	Float4E2M1     DType = 23
	Float8E8M0     DType = 24
	Uint2          DType = 25
	Int2           DType = 26
)

var dtypeInfo = map[DType]struct {
	name string
	bits int
}{
	Float32: {"float32", 32}, Uint8: {"uint8", 8}, Int8: {"int8", 8}, Uint16: {"uint16", 16},
	Int16: {"int16", 16}, Int32: {"int32", 32}, Int64: {"int64", 64}, String: {"string", 0},
	Bool: {"bool", 8}, Float16: {"float16", 16}, Float64: {"float64", 64}, Uint32: {"uint32", 32},
	Uint64: {"uint64", 64}, Complex64: {"complex64", 64}, Complex128: {"complex128", 128},
	BFloat16: {"bfloat16", 16}, Float8E4M3FN: {"float8e4m3fn", 8}, Float8E4M3FNUZ: {"float8e4m3fnuz", 8},
	Float8E5M2: {"float8e5m2", 8}, Float8E5M2FNUZ: {"float8e5m2fnuz", 8}, Uint4: {"uint4", 4},
	Int4: {"int4", 4}, Float4E2M1: {"float4e2m1", 4}, Float8E8M0: {"float8e8m0", 8},
	Uint2: {"uint2", 2}, Int2: {"int2", 2},
}

// String returns the lower-case name used in reports ("float32", "int4", ...).
func (d DType) String() string {
	if i, ok := dtypeInfo[d]; ok {
		return i.name
	}
	return fmt.Sprintf("dtype(%d)", int32(d))
}

// ParseDType is the inverse of String.
func ParseDType(s string) (DType, error) {
	for d, i := range dtypeInfo {
		if i.name == s {
			return d, nil
		}
	}
	return Undefined, fmt.Errorf("unknown element type %q", s)
}

// Bits is the storage width of one element; 0 for strings and unknown types.
func (d DType) Bits() int { return dtypeInfo[d].bits }

// Known reports whether d is a defined ONNX element type.
func (d DType) Known() bool { _, ok := dtypeInfo[d]; return ok }

// IsFloat reports whether d is a floating-point type (any width).
func (d DType) IsFloat() bool {
	switch d {
	case Float32, Float16, Float64, BFloat16, Float8E4M3FN, Float8E4M3FNUZ, Float8E5M2, Float8E5M2FNUZ, Float4E2M1, Float8E8M0:
		return true
	}
	return false
}

// ByteSize is the number of bytes that n elements occupy; sub-byte types pack
// low bits first and round up to a whole byte, as ONNX stores them.
func (d DType) ByteSize(n int64) int64 {
	b := int64(d.Bits())
	return (n*b + 7) / 8
}

// NumElements multiplies the dimensions; an empty shape is a scalar (1 element).
// Negative (unknown) dimensions, and products beyond 2^53 (no real tensor; a corrupt
// file), give -1.
func NumElements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		if d < 0 {
			return -1
		}
		if d != 0 && n > (1<<53)/d {
			return -1
		}
		n *= d
	}
	return n
}

// UnmarshalText accepts a type's name ("int8", "uint8", …), so recipes can write element
// types as words.
func (d *DType) UnmarshalText(b []byte) error {
	v, err := ParseDType(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}
