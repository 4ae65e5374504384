package shape

import (
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Attribute accessors shared with the passes, which read the same attributes.

// Attr returns the named attribute of n, or nil.
func Attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

// AttrInt returns an INT attribute, or def when absent.
func AttrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := Attr(n, name); a != nil && a.I != nil {
		return a.GetI()
	}
	return def
}

// AttrFloat returns a FLOAT attribute, or def when absent.
func AttrFloat(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := Attr(n, name); a != nil && a.F != nil {
		return a.GetF()
	}
	return def
}

// AttrString returns a STRING attribute, or def when absent.
func AttrString(n *onnxpb.NodeProto, name string, def string) string {
	if a := Attr(n, name); a != nil && a.S != nil {
		return string(a.S)
	}
	return def
}

// AttrInts returns an INTS attribute and whether it is present.
func AttrInts(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	a := Attr(n, name)
	if a == nil {
		return nil, false
	}
	return a.Ints, true
}

// AttrFloats returns a FLOATS attribute and whether it is present.
func AttrFloats(n *onnxpb.NodeProto, name string) ([]float32, bool) {
	a := Attr(n, name)
	if a == nil {
		return nil, false
	}
	return a.Floats, true
}

// ConstantValue decodes the value of a Constant node (any of its attribute forms), or nil
// for forms it does not cover (sparse_value, strings).
func ConstantValue(n *onnxpb.NodeProto) *tensor.Tensor {
	for _, a := range n.Attribute {
		switch a.GetName() {
		case "value":
			if a.T == nil || onnx.IsExternal(a.T) {
				return nil
			}
			v, err := onnx.ToTensor(a.T)
			if err != nil || v.DType == tensor.String {
				return nil
			}
			return v
		case "value_float":
			return tensor.FromFloat32([]int64{}, []float32{a.GetF()})
		case "value_floats":
			return tensor.FromFloat32([]int64{int64(len(a.Floats))}, a.Floats)
		case "value_int":
			return tensor.FromInt64([]int64{}, []int64{a.GetI()})
		case "value_ints":
			return tensor.FromInt64([]int64{int64(len(a.Ints))}, a.Ints)
		}
	}
	return nil
}
