package runtime

import (
	"encoding/binary"
	"fmt"
	"math"
	goruntime "runtime"
	"unsafe"

	"github.com/x448/float16"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// ortType converts an element type to ONNX Runtime's enum, which numbers types as ONNX
// does. (onnxruntime_go v1.35's constants for float8e8m0, uint2 and int2 say 26, 24,
// 25; ONNX Runtime 1.30 reads 24, 25, 26 as ONNX does: measured by the conformance test,
// where the header's numbering made Cast to int2 fail with "Actual: UInt2x4".)
func ortType(dt tensor.DType) (ort.TensorElementDataType, bool) {
	if !dt.Known() {
		return 0, false
	}
	return ort.TensorElementDataType(dt), true
}

func fromORT(t ort.TensorElementDataType) (tensor.DType, bool) {
	dt := tensor.DType(t)
	return dt, dt.Known() && dt != tensor.Undefined
}

// scalarTypes are the element types onnxruntime_go has Go types for: the only ones it
// can make rank-0 tensors of, and the only ones its copy of an ONNX Runtime-allocated
// output gets right.
var scalarTypes = map[tensor.DType]bool{
	tensor.Float32: true, tensor.Float64: true, tensor.Uint8: true, tensor.Int8: true,
	tensor.Uint16: true, tensor.Int16: true, tensor.Int32: true, tensor.Int64: true,
	tensor.Uint32: true, tensor.Uint64: true, tensor.Bool: true,
}

// newInputValue wraps t for ONNX Runtime without copying where it can.
func newInputValue(t *tensor.Tensor, pinner *goruntime.Pinner) (ort.Value, error) {
	if t.DType == tensor.String {
		if len(t.Shape) == 0 {
			return nil, fmt.Errorf("scalar string inputs are not supported by onnxruntime_go")
		}
		st, err := ort.NewStringTensor(ort.NewShape(t.Shape...))
		if err != nil {
			return nil, err
		}
		if err := st.SetContents(t.Strings); err != nil {
			st.Destroy()
			return nil, err
		}
		return st, nil
	}
	if len(t.Shape) == 0 {
		if !scalarTypes[t.DType] {
			return nil, fmt.Errorf("scalar %s inputs are not supported by onnxruntime_go (it has no rank-0 form for that type)", t.DType)
		}
		return newScalar(t.DType, t.Data)
	}
	data := t.Data
	if align := elemAlign(t.DType); len(data) > 0 && uintptr(unsafe.Pointer(&data[0]))%align != 0 {
		// e.g. a slice into a protobuf buffer: kernels may assume natural alignment.
		aligned := alignedBytes(len(data))
		copy(aligned, data)
		data = aligned
	}
	return customTensor(t.Shape, data, t.DType, pinner)
}

// customTensor makes a tensor over data (pinned until the pinner is released).
func customTensor(shape []int64, data []byte, dt tensor.DType, pinner *goruntime.Pinner) (ort.Value, error) {
	ot, ok := ortType(dt)
	if !ok {
		return nil, fmt.Errorf("element type %s has no ONNX Runtime equivalent", dt)
	}
	if len(data) == 0 {
		// onnxruntime_go wants at least one byte even for an empty tensor.
		data = make([]byte, 1)
	}
	pinner.Pin(&data[0])
	v, err := ort.NewCustomDataTensor(ort.NewShape(shape...), data, ot)
	if err != nil {
		return nil, err
	}
	return v, nil
}

// newScalar makes a rank-0 tensor holding the element in b (zero when b is empty).
func newScalar(dt tensor.DType, b []byte) (ort.Value, error) {
	switch dt {
	case tensor.Float32:
		return scalarOf[float32](b)
	case tensor.Float64:
		return scalarOf[float64](b)
	case tensor.Uint8:
		return scalarOf[uint8](b)
	case tensor.Int8:
		return scalarOf[int8](b)
	case tensor.Uint16:
		return scalarOf[uint16](b)
	case tensor.Int16:
		return scalarOf[int16](b)
	case tensor.Int32:
		return scalarOf[int32](b)
	case tensor.Int64:
		return scalarOf[int64](b)
	case tensor.Uint32:
		return scalarOf[uint32](b)
	case tensor.Uint64:
		return scalarOf[uint64](b)
	case tensor.Bool:
		return scalarOf[bool](b)
	}
	return nil, fmt.Errorf("no scalar form for %s", dt)
}

func scalarOf[T ort.TensorData](b []byte) (ort.Value, error) {
	v := make([]T, 1)
	copy(bytesOf(v), b)
	sc, err := ort.NewScalar(v[0])
	if err != nil {
		return nil, err
	}
	return sc, nil
}

// collect turns a fetched value into a Go-owned tensor of the caller's element type.
func collect(v ort.Value, buf []byte, mode fetchMode, p *fetchPlan) (*tensor.Tensor, error) {
	var t *tensor.Tensor
	if mode == fetchPrealloc {
		t = &tensor.Tensor{DType: p.fetchType, Shape: append([]int64{}, p.spec.Shape...), Data: buf}
	} else {
		var err error
		if t, err = fromValue(v); err != nil {
			return nil, err
		}
	}
	if p.fetchType != p.spec.DType && p.spec.typed {
		return narrow(t, p.spec.DType)
	}
	return t, t.Validate()
}

// fromValue copies (or takes over the Go memory of) a value onnxruntime_go returned.
func fromValue(v ort.Value) (*tensor.Tensor, error) {
	if v == nil {
		return nil, fmt.Errorf("ONNX Runtime returned no value")
	}
	shape := append([]int64{}, v.GetShape()...)
	switch x := v.(type) {
	case *ort.Tensor[float32]:
		return &tensor.Tensor{DType: tensor.Float32, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[float64]:
		return &tensor.Tensor{DType: tensor.Float64, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[uint8]:
		return &tensor.Tensor{DType: tensor.Uint8, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[int8]:
		return &tensor.Tensor{DType: tensor.Int8, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[uint16]:
		return &tensor.Tensor{DType: tensor.Uint16, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[int16]:
		return &tensor.Tensor{DType: tensor.Int16, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[int32]:
		return &tensor.Tensor{DType: tensor.Int32, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[int64]:
		return &tensor.Tensor{DType: tensor.Int64, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[uint32]:
		return &tensor.Tensor{DType: tensor.Uint32, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[uint64]:
		return &tensor.Tensor{DType: tensor.Uint64, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Tensor[bool]:
		return &tensor.Tensor{DType: tensor.Bool, Shape: shape, Data: bytesOf(x.GetData())}, nil
	case *ort.Scalar[float32]:
		return scalarTensor(tensor.Float32, x.GetData()), nil
	case *ort.Scalar[float64]:
		return scalarTensor(tensor.Float64, x.GetData()), nil
	case *ort.Scalar[uint8]:
		return scalarTensor(tensor.Uint8, x.GetData()), nil
	case *ort.Scalar[int8]:
		return scalarTensor(tensor.Int8, x.GetData()), nil
	case *ort.Scalar[uint16]:
		return scalarTensor(tensor.Uint16, x.GetData()), nil
	case *ort.Scalar[int16]:
		return scalarTensor(tensor.Int16, x.GetData()), nil
	case *ort.Scalar[int32]:
		return scalarTensor(tensor.Int32, x.GetData()), nil
	case *ort.Scalar[int64]:
		return scalarTensor(tensor.Int64, x.GetData()), nil
	case *ort.Scalar[uint32]:
		return scalarTensor(tensor.Uint32, x.GetData()), nil
	case *ort.Scalar[uint64]:
		return scalarTensor(tensor.Uint64, x.GetData()), nil
	case *ort.Scalar[bool]:
		return scalarTensor(tensor.Bool, x.GetData()), nil
	case *ort.CustomDataTensor:
		dt, ok := fromORT(ort.TensorElementDataType(x.DataType()))
		if !ok {
			return nil, fmt.Errorf("unknown ONNX Runtime element type %d", x.DataType())
		}
		n := dt.ByteSize(tensor.NumElements(shape))
		data := x.GetData()
		if int64(len(data)) < n {
			return nil, fmt.Errorf("onnxruntime_go returned %d bytes for %s%v", len(data), dt, shape)
		}
		return &tensor.Tensor{DType: dt, Shape: shape, Data: data[:n:n]}, nil
	case *ort.StringTensor:
		if len(shape) == 0 {
			return nil, fmt.Errorf("scalar string outputs are not supported by onnxruntime_go")
		}
		s, err := x.GetContents()
		if err != nil {
			return nil, err
		}
		return &tensor.Tensor{DType: tensor.String, Shape: shape, Strings: s}, nil
	}
	return nil, fmt.Errorf("unsupported value kind %s", v.GetONNXType())
}

func scalarTensor[T any](dt tensor.DType, v T) *tensor.Tensor {
	return &tensor.Tensor{DType: dt, Shape: []int64{}, Data: bytesOf([]T{v})}
}

// narrow converts a widened fetch back to the output's own type. Widening (float16,
// bfloat16 -> float32, int4 -> int8) is exact, so this is too.
func narrow(t *tensor.Tensor, to tensor.DType) (*tensor.Tensor, error) {
	n := int(t.Len())
	out := tensor.New(to, t.Shape)
	le := binary.LittleEndian
	switch {
	case to == tensor.Float16 && t.DType == tensor.Float32:
		for i, f := range t.Float32s() {
			le.PutUint16(out.Data[2*i:], float16.Fromfloat32(f).Bits())
		}
	case to == tensor.BFloat16 && t.DType == tensor.Float32:
		for i, f := range t.Float32s() {
			// The value is exactly representable; only NaN payloads need the rounding helper.
			h := uint16(math.Float32bits(f) >> 16)
			if f != f {
				h = tensor.Float32ToBF16(f)
			}
			le.PutUint16(out.Data[2*i:], h)
		}
	case (to == tensor.Int4 && t.DType == tensor.Int8) || (to == tensor.Uint4 && t.DType == tensor.Uint8):
		for i := 0; i < n; i++ {
			out.Data[i/2] |= (t.Data[i] & 0x0f) << (4 * (i % 2))
		}
	default:
		return nil, fmt.Errorf("cannot narrow %s to %s", t.DType, to)
	}
	return out, nil
}

// bytesOf views a slice's memory as bytes (the machine is little-endian, as tensor
// storage is).
func bytesOf[T any](s []T) []byte {
	if len(s) == 0 {
		return []byte{}
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
}

// alignedBytes allocates n bytes aligned for any element type.
func alignedBytes(n int) []byte {
	if n == 0 {
		return []byte{}
	}
	return bytesOf(make([]uint64, (n+7)/8))[:n:n]
}

func elemAlign(dt tensor.DType) uintptr {
	switch b := dt.Bits(); {
	case b >= 64:
		return 8
	case b >= 8:
		return uintptr(b / 8)
	}
	return 1
}
