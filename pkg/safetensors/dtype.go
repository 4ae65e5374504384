// Package safetensors reads and writes Hugging Face safetensors files and sharded
// checkpoints (a folder of shards plus model.safetensors.index.json).
//
// The layout is: an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data
// buffer. The JSON maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
// (offsets into the data buffer) and may hold a "__metadata__" object of strings.
//
// Reading maps the file and parses only the header, so opening a 100 GB checkpoint costs the
// header and nothing more; tensor bytes are paged in when a caller reads them. Validation is as
// strict as the Rust reference (huggingface/safetensors): the tensors must tile the buffer
// exactly, with no overlap, no hole and nothing left over. Writing follows the reference's
// layout byte for byte, so a file written by the Python library and rewritten here is identical.
package safetensors

import (
	"fmt"
	"math"
	"math/bits"
	"strings"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// dtypeInfo describes one safetensors element type.
//   - bits: storage width of one element; sub-byte types pack elements low bits first and a
//     tensor must fill whole bytes (the reference refuses anything else).
//   - rank: position in the reference's Dtype enum, which is ordered by alignment; writers
//     sort tensors by rank descending, then by name, so every tensor starts aligned.
//   - onnx: the matching ONNX element type, Undefined when ONNX has none (the F6 types).
type dtypeInfo struct {
	bits int64
	rank int
	onnx tensor.DType
}

// dtypes is the reference enum, in its declaration order (rank = index).
var dtypes = map[string]dtypeInfo{
	"BOOL":        {8, 0, tensor.Bool},
	"F4":          {4, 1, tensor.Float4E2M1}, // torch float4_e2m1fn_x2: element 0 in the low nibble, as ONNX packs
	"F6_E2M3":     {6, 2, tensor.Undefined},
	"F6_E3M2":     {6, 3, tensor.Undefined},
	"U8":          {8, 4, tensor.Uint8},
	"I8":          {8, 5, tensor.Int8},
	"F8_E5M2":     {8, 6, tensor.Float8E5M2},
	"F8_E4M3":     {8, 7, tensor.Float8E4M3FN},
	"F8_E8M0":     {8, 8, tensor.Float8E8M0},
	"F8_E4M3FNUZ": {8, 9, tensor.Float8E4M3FNUZ},
	"F8_E5M2FNUZ": {8, 10, tensor.Float8E5M2FNUZ},
	"I16":         {16, 11, tensor.Int16},
	"U16":         {16, 12, tensor.Uint16},
	"F16":         {16, 13, tensor.Float16},
	"BF16":        {16, 14, tensor.BFloat16},
	"I32":         {32, 15, tensor.Int32},
	"U32":         {32, 16, tensor.Uint32},
	"F32":         {32, 17, tensor.Float32},
	"C64":         {64, 18, tensor.Complex64},
	"F64":         {64, 19, tensor.Float64},
	"I64":         {64, 20, tensor.Int64},
	"U64":         {64, 21, tensor.Uint64},
}

// DTypes lists the dtype strings this package accepts, in the reference's alignment order.
func DTypes() []string {
	out := make([]string, len(dtypes))
	for name, info := range dtypes {
		out[info.rank] = name
	}
	return out
}

// ToTensorDType maps a safetensors dtype ("F8_E4M3") to the ONNX-numbered element type
// (tensor.Float8E4M3FN). It reports false for unknown dtypes and for F6_E2M3/F6_E3M2,
// which ONNX cannot represent.
func ToTensorDType(dtype string) (tensor.DType, bool) {
	info, ok := dtypes[dtype]
	if !ok || info.onnx == tensor.Undefined {
		return tensor.Undefined, false
	}
	return info.onnx, true
}

// FromTensorDType is the inverse of ToTensorDType; it reports false for element types that
// safetensors cannot store (string, complex128, int4, uint4, int2, uint2).
func FromTensorDType(d tensor.DType) (string, bool) {
	for name, info := range dtypes {
		if info.onnx == d && d != tensor.Undefined {
			return name, true
		}
	}
	return "", false
}

// ByteSize is the number of data bytes a tensor of this dtype and shape occupies. It fails
// for an unknown dtype, a negative dimension, a size that overflows int64, and a sub-byte
// tensor that does not fill a whole number of bytes.
func ByteSize(dtype string, shape []int64) (int64, error) {
	info, ok := dtypes[dtype]
	if !ok {
		return 0, fmt.Errorf("unknown dtype %q (known: %s)", dtype, strings.Join(DTypes(), ", "))
	}
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("negative dimension in %s", formatShape(dtype, shape))
		}
		hi, lo := bits.Mul64(n, uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, fmt.Errorf("%s has too many elements", formatShape(dtype, shape))
		}
		n = lo
	}
	hi, nbits := bits.Mul64(n, uint64(info.bits))
	if hi != 0 {
		return 0, fmt.Errorf("%s is too large", formatShape(dtype, shape))
	}
	if nbits%8 != 0 {
		return 0, fmt.Errorf("%s is %d bits, not a whole number of bytes", formatShape(dtype, shape), nbits)
	}
	return int64(nbits / 8), nil
}

// formatShape renders "F32[4 6]" for error messages.
func formatShape(dtype string, shape []int64) string {
	return fmt.Sprintf("%s%v", dtype, shape)
}
