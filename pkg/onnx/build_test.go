package onnx

import (
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
	"google.golang.org/protobuf/proto"
)

// Small graph builders shared by the tests of this package.

func vinfo(name string, dt tensor.DType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: shape}}}}
}

func node(op string, ins, outs []string) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String(op), Input: ins, Output: outs, Name: proto.String(op + "_" + outs[0])}
}

func model(g *onnxpb.GraphProto) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}}}
}

func floatInit(name string, dims []int64, v []float32) *onnxpb.TensorProto {
	return FromTensor(name, tensor.FromFloat32(dims, v))
}

// addModel is y = x + w with a 4-element float initializer w.
func addModel() *onnxpb.ModelProto {
	return model(&onnxpb.GraphProto{
		Name:        proto.String("add"),
		Node:        []*onnxpb.NodeProto{node("Add", []string{"x", "w"}, []string{"y"})},
		Input:       []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, 4)},
		Output:      []*onnxpb.ValueInfoProto{vinfo("y", tensor.Float32, 4)},
		Initializer: []*onnxpb.TensorProto{floatInit("w", []int64{4}, []float32{1, 2, 3, 4})},
	})
}
