// Package onnxtest builds small ONNX graphs for the tests of the packages above pkg/onnx:
// value infos, nodes, attributes and initializers, and a model loaded the way a file on disk
// would be. It is imported only from _test files.
package onnxtest

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// ValueInfo declares a tensor value. Each dim is a size (int or int64; a negative size is the
// symbolic batch "N") or a string (a symbolic dim).
func ValueInfo(name string, dt tensor.DType, dims ...any) *onnxpb.ValueInfoProto {
	shp := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		var size int64
		switch v := d.(type) {
		case string:
			shp.Dim = append(shp.Dim, symbolic(v))
			continue
		case int:
			size = int64(v)
		case int64:
			size = v
		default:
			panic("onnxtest.ValueInfo: a dim is an int, int64 or string")
		}
		if size < 0 {
			shp.Dim = append(shp.Dim, symbolic("N"))
			continue
		}
		shp.Dim = append(shp.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: size}})
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: shp}}}}
}

func symbolic(name string) *onnxpb.TensorShapeProto_Dimension {
	return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: name}}
}

// Untyped declares a float value of unknown shape, e.g. a graph output ONNX Runtime infers.
func Untyped(name string) *onnxpb.ValueInfoProto {
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Float32))}}}}
}

// Node builds a node of the default domain; an empty name is left unset.
func Node(op, name string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: proto.String(op), Input: ins, Output: outs, Attribute: attrs}
	if name != "" {
		n.Name = proto.String(name)
	}
	return n
}

// Int is an INT attribute.
func Int(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// Ints is an INTS attribute.
func Ints(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

// Float is a FLOAT attribute.
func Float(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// Float32s is a float initializer of the given shape and values.
func Float32s(name string, dims []int64, v ...float32) *onnxpb.TensorProto {
	return onnx.FromTensor(name, tensor.FromFloat32(dims, v))
}

// Int64s is a 1-D int64 initializer.
func Int64s(name string, v ...int64) *onnxpb.TensorProto {
	return onnx.FromTensor(name, tensor.FromInt64([]int64{int64(len(v))}, v))
}

// Load encodes g as a model importing the default opset and decodes it, as a file read from
// disk would be; the graph is cloned, so the caller may keep editing g.
func Load(t testing.TB, g *onnxpb.GraphProto, opset int64) *onnx.Model {
	t.Helper()
	mp := &onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: proto.Clone(g).(*onnxpb.GraphProto),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}}}
	b, err := mp.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnx.LoadBytes(b, "")
	if err != nil {
		t.Fatal(err)
	}
	return m
}
