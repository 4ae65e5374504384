package onnx

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

func dtypeName(dt int32) string { return tensor.DType(dt).String() }

// rawSize is the little-endian byte size the tensor's type and dims call for.
func rawSize(t *onnxpb.TensorProto) (int64, bool) {
	dt := tensor.DType(t.GetDataType())
	if dt == tensor.String || !dt.Known() {
		return 0, false
	}
	n := tensor.NumElements(t.Dims)
	if n < 0 {
		return 0, false
	}
	return dt.ByteSize(n), true
}

// TensorData returns the tensor's elements as little-endian bytes (the raw_data layout),
// whatever the storage: raw_data and external data are returned without copying (do not
// modify them: they alias the model's buffers), typed fields are converted into a new slice.
func (m *Model) TensorData(t *onnxpb.TensorProto) ([]byte, error) {
	if IsExternal(t) {
		if m == nil {
			return nil, fmt.Errorf("tensor %q: external data needs the model's folder", t.GetName())
		}
		return m.externalBytes(t)
	}
	return inlineData(t)
}

func inlineData(t *onnxpb.TensorProto) ([]byte, error) {
	dt := tensor.DType(t.GetDataType())
	name := t.GetName()
	want, ok := rawSize(t)
	if !ok {
		if dt == tensor.String {
			return nil, fmt.Errorf("tensor %q: string tensors have no byte data", name)
		}
		return nil, fmt.Errorf("tensor %q: unknown element type %d or negative dims %v", name, t.GetDataType(), t.Dims)
	}
	if t.RawData != nil {
		if int64(len(t.RawData)) != want {
			return nil, fmt.Errorf("tensor %q: raw_data has %d bytes, %s%v needs %d", name, len(t.RawData), dt, t.Dims, want)
		}
		return t.RawData, nil
	}
	n := tensor.NumElements(t.Dims)
	// Check the stored count before allocating: dims come from the file and may be absurd.
	if have := storedValues(t, dt); have != expectedValues(dt, n) {
		return nil, fmt.Errorf("tensor %q: %d stored values, %s%v needs %d", name, have, dt, t.Dims, expectedValues(dt, n))
	}
	out := make([]byte, want)
	le := binary.LittleEndian
	switch dt {
	case tensor.Float32:
		for i, v := range t.FloatData {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case tensor.Complex64:
		for i, v := range t.FloatData {
			le.PutUint32(out[4*i:], math.Float32bits(v))
		}
	case tensor.Float64, tensor.Complex128:
		for i, v := range t.DoubleData {
			le.PutUint64(out[8*i:], math.Float64bits(v))
		}
	case tensor.Int64:
		for i, v := range t.Int64Data {
			le.PutUint64(out[8*i:], uint64(v))
		}
	case tensor.Uint32, tensor.Uint64:
		for i, v := range t.Uint64Data {
			if dt == tensor.Uint32 {
				le.PutUint32(out[4*i:], uint32(v))
			} else {
				le.PutUint64(out[8*i:], v)
			}
		}
	case tensor.Int32:
		for i, v := range t.Int32Data {
			le.PutUint32(out[4*i:], uint32(v))
		}
	case tensor.Int16, tensor.Uint16, tensor.Float16, tensor.BFloat16:
		for i, v := range t.Int32Data {
			le.PutUint16(out[2*i:], uint16(v))
		}
	case tensor.Int8, tensor.Uint8, tensor.Bool, tensor.Float8E4M3FN, tensor.Float8E4M3FNUZ,
		tensor.Float8E5M2, tensor.Float8E5M2FNUZ, tensor.Float8E8M0:
		for i, v := range t.Int32Data {
			out[i] = byte(v)
		}
	case tensor.Int4, tensor.Uint4, tensor.Float4E2M1, tensor.Int2, tensor.Uint2:
		// Sub-byte types: each int32_data entry holds one packed byte.
		for i, v := range t.Int32Data {
			out[i] = byte(v)
		}
	default:
		return nil, fmt.Errorf("tensor %q: unsupported element type %s", name, dt)
	}
	return out, nil
}

// ToTensor converts a TensorProto to a Go tensor. For raw and external storage Data aliases
// the model's buffers (copy-on-write mappings): treat it as read-only, or Clone it.
func (m *Model) ToTensor(t *onnxpb.TensorProto) (*tensor.Tensor, error) {
	dt := tensor.DType(t.GetDataType())
	shape := append([]int64{}, t.Dims...)
	if dt == tensor.String {
		n := tensor.NumElements(shape)
		if int64(len(t.StringData)) != n {
			return nil, fmt.Errorf("tensor %q: %d strings, shape %v needs %d", t.GetName(), len(t.StringData), shape, n)
		}
		s := make([]string, n)
		for i, b := range t.StringData {
			s[i] = string(b)
		}
		return &tensor.Tensor{DType: dt, Shape: shape, Strings: s}, nil
	}
	b, err := m.TensorData(t)
	if err != nil {
		return nil, err
	}
	return &tensor.Tensor{DType: dt, Shape: shape, Data: b}, nil
}

// ToTensor converts an inline TensorProto (no external data).
func ToTensor(t *onnxpb.TensorProto) (*tensor.Tensor, error) { return (*Model)(nil).ToTensor(t) }

// FromTensor builds a TensorProto holding v in raw_data (strings in string_data).
func FromTensor(name string, v *tensor.Tensor) *onnxpb.TensorProto {
	t := &onnxpb.TensorProto{Name: &name, Dims: append([]int64{}, v.Shape...)}
	dt := int32(v.DType)
	t.DataType = &dt
	if v.DType == tensor.String {
		for _, s := range v.Strings {
			t.StringData = append(t.StringData, []byte(s))
		}
		return t
	}
	t.RawData = append([]byte{}, v.Data...)
	return t
}

// ReadTensorFile decodes a file holding one serialized TensorProto, such as the
// input_0.pb / output_0.pb files of ONNX test-data folders. It returns the tensor and the
// name stored in the file ("" when absent).
func ReadTensorFile(path string) (*tensor.Tensor, string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, "", err
	}
	tp := &onnxpb.TensorProto{}
	if err := tp.UnmarshalVT(b); err != nil {
		return nil, "", fmt.Errorf("%s: not a serialized TensorProto: %v", path, err)
	}
	if IsExternal(tp) {
		return nil, "", fmt.Errorf("%s: tensor %q has external data, which test-data files cannot use", path, tp.GetName())
	}
	v, err := ToTensor(tp)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	return v, tp.GetName(), nil
}

// Initializer returns the named initializer of the main graph, or nil.
func (m *Model) Initializer(name string) *onnxpb.TensorProto {
	for _, t := range m.Proto.Graph.Initializer {
		if t.GetName() == name {
			return t
		}
	}
	return nil
}

// Float32s returns an initializer's values as float32 (converting from any numeric type).
// The result is a new slice the caller owns.
func (m *Model) Float32s(t *onnxpb.TensorProto) ([]float32, error) {
	v, err := m.ToTensor(t)
	if err != nil {
		return nil, err
	}
	out, err := v.AsFloat32()
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	return out, nil
}

// storedValues counts the values held in the typed field a dtype uses.
func storedValues(t *onnxpb.TensorProto, dt tensor.DType) int64 {
	switch dt {
	case tensor.Float32, tensor.Complex64:
		return int64(len(t.FloatData))
	case tensor.Float64, tensor.Complex128:
		return int64(len(t.DoubleData))
	case tensor.Int64:
		return int64(len(t.Int64Data))
	case tensor.Uint32, tensor.Uint64:
		return int64(len(t.Uint64Data))
	}
	return int64(len(t.Int32Data))
}

// expectedValues is how many typed-field values n elements take: complex numbers take two,
// sub-byte types pack into one int32 entry per byte.
func expectedValues(dt tensor.DType, n int64) int64 {
	switch dt {
	case tensor.Complex64, tensor.Complex128:
		return 2 * n
	case tensor.Int4, tensor.Uint4, tensor.Float4E2M1, tensor.Int2, tensor.Uint2:
		return dt.ByteSize(n)
	}
	return n
}
