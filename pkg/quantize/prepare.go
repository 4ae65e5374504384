package quantize

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// constantsToInitializers turns Constant nodes into initializers. Exporters such as
// paddle2onnx store every weight in a Constant node; the quantizer recognises weights as
// initializers, and ONNX Runtime does the same conversion when it loads a model, so the
// float semantics do not change. Constants that are graph outputs stay nodes (an
// initializer cannot be produced by the graph). It returns the number converted.
func constantsToInitializers(e *editor) (int, error) {
	outs := graphOutputs(e.g)
	keep := e.g.Node[:0]
	n := 0
	for _, nd := range e.g.Node {
		if nd.GetOpType() != "Constant" || !isDefaultDomain(nd) || len(nd.Output) != 1 || outs[nd.Output[0]] {
			keep = append(keep, nd)
			continue
		}
		t, ok, err := constantValue(nd)
		if err != nil {
			return 0, err
		}
		if !ok {
			keep = append(keep, nd)
			continue
		}
		t.Name = proto.String(nd.Output[0])
		e.g.Initializer = append(e.g.Initializer, t)
		e.inits[nd.Output[0]] = t
		n++
	}
	e.g.Node = keep
	return n, nil
}

// constantValue returns the tensor a Constant node produces; ok is false for the forms
// left alone (sparse and string values).
func constantValue(nd *onnxpb.NodeProto) (*onnxpb.TensorProto, bool, error) {
	if len(nd.Attribute) != 1 {
		return nil, false, fmt.Errorf("%s: a Constant needs exactly one value attribute", nodeLabel(nd))
	}
	a := nd.Attribute[0]
	switch a.GetName() {
	case "value":
		if a.T == nil {
			return nil, false, fmt.Errorf("%s: value attribute holds no tensor", nodeLabel(nd))
		}
		// A shallow copy: the data slices are shared, never written.
		t := &onnxpb.TensorProto{}
		*t = onnxpb.TensorProto{Dims: a.T.Dims, DataType: a.T.DataType, Segment: a.T.Segment,
			FloatData: a.T.FloatData, Int32Data: a.T.Int32Data, StringData: a.T.StringData, Int64Data: a.T.Int64Data,
			RawData: a.T.RawData, ExternalData: a.T.ExternalData, DataLocation: a.T.DataLocation,
			DoubleData: a.T.DoubleData, Uint64Data: a.T.Uint64Data}
		if t.GetDataType() == int32(tensor.String) {
			return nil, false, nil
		}
		return t, true, nil
	case "value_float":
		return rawTensor(tensor.FromFloat32(nil, []float32{a.GetF()})), true, nil
	case "value_floats":
		return rawTensor(tensor.FromFloat32([]int64{int64(len(a.Floats))}, a.Floats)), true, nil
	case "value_int":
		return rawTensor(tensor.FromInt64(nil, []int64{a.GetI()})), true, nil
	case "value_ints":
		return rawTensor(tensor.FromInt64([]int64{int64(len(a.Ints))}, a.Ints)), true, nil
	}
	return nil, false, nil
}

func rawTensor(v *tensor.Tensor) *onnxpb.TensorProto {
	dt := int32(v.DType)
	return &onnxpb.TensorProto{Dims: append([]int64{}, v.Shape...), DataType: &dt, RawData: v.Data}
}

func nodeLabel(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return fmt.Sprintf("node %q (%s)", n.GetName(), n.GetOpType())
	}
	if len(n.Output) > 0 {
		return fmt.Sprintf("%s node producing %q", n.GetOpType(), n.Output[0])
	}
	return n.GetOpType() + " node"
}

// foldBatchNorm folds an inference BatchNormalization into the Conv that feeds it when the
// Conv's weights are constants and the BatchNormalization is the Conv output's only reader:
//
//	s = gamma / sqrt(var + eps);  W' = W · s[oc];  b' = (b − mean) · s + beta
//
// computed in float64. Quantizing the folded weights is what a deployed model runs (ONNX
// Runtime and TensorRT fold it anyway), and it lets Conv's output be quantized where the
// runtime fuses it: Q/DQ on a Conv followed by a float BatchNormalization fuses into nothing.
func foldBatchNorm(e *editor) (int, error) {
	prod := producers(e.g)
	cons := consumers(e.g)
	outs := graphOutputs(e.g)
	removed := map[*onnxpb.NodeProto]bool{}
	n := 0
	for _, bn := range e.g.Node {
		if bn.GetOpType() != "BatchNormalization" || !isDefaultDomain(bn) || len(bn.Input) != 5 || len(bn.Output) != 1 {
			continue
		}
		if intAttr(bn, "training_mode", 0) != 0 {
			continue
		}
		conv := prod[bn.Input[0]]
		if conv == nil || conv.GetOpType() != "Conv" || !isDefaultDomain(conv) || removed[conv] ||
			len(cons[bn.Input[0]]) != 1 || outs[bn.Input[0]] || len(conv.Input) < 2 || !e.isConst(conv.Input[1]) {
			continue
		}
		ok := true
		for _, p := range bn.Input[1:] {
			ok = ok && e.isConst(p)
		}
		if len(conv.Input) == 3 && conv.Input[2] != "" {
			ok = ok && e.isConst(conv.Input[2])
		}
		if !ok || tensor.DType(e.inits[conv.Input[1]].GetDataType()) != tensor.Float32 {
			continue
		}
		w, wdims, err := e.floats(conv.Input[1])
		if err != nil {
			return n, err
		}
		if len(wdims) < 3 {
			continue
		}
		oc := int(wdims[0])
		vals := make([][]float32, 4)
		for i, p := range bn.Input[1:] {
			v, _, err := e.floats(p)
			if err != nil {
				return n, err
			}
			if len(v) != oc {
				ok = false
			}
			vals[i] = v
		}
		if !ok {
			continue
		}
		bias := make([]float32, oc)
		if len(conv.Input) == 3 && conv.Input[2] != "" {
			b, _, err := e.floats(conv.Input[2])
			if err != nil {
				return n, err
			}
			if len(b) != oc {
				continue
			}
			copy(bias, b)
		}
		eps := float64(floatAttr(bn, "epsilon", 1e-5))
		gamma, beta, mean, variance := vals[0], vals[1], vals[2], vals[3]
		per := len(w) / oc
		nw := make([]float32, len(w))
		nb := make([]float32, oc)
		for c := 0; c < oc; c++ {
			s := float64(gamma[c]) / math.Sqrt(float64(variance[c])+eps)
			for i := c * per; i < (c+1)*per; i++ {
				nw[i] = float32(float64(w[i]) * s)
			}
			nb[c] = float32((float64(bias[c])-float64(mean[c]))*s + float64(beta[c]))
		}
		wName := e.addInit(conv.Input[1]+"_bnfold", tensor.FromFloat32(wdims, nw))
		bName := e.addInit(bn.Input[2]+"_bnfold", tensor.FromFloat32([]int64{int64(oc)}, nb))
		conv.Input = []string{conv.Input[0], wName, bName}
		conv.Output[0] = bn.Output[0]
		removed[bn] = true
		n++
	}
	if n > 0 {
		e.dropNodes(removed)
	}
	return n, nil
}

// fuseMatMulAdd turns MatMul(A, B) + Add(·, c) into Gemm(A, B, c) when A is 2-D, B a
// constant [K, N] and c a constant [N] (or [1, N]) bias, and nothing else reads the MatMul
// output: ONNX Runtime's basic optimisations (and so quant_pre_process) do the same. One
// integer Gemm with an int32 bias then replaces a quantized MatMul whose output is
// quantized again before a quantized Add: one rounding instead of two.
func fuseMatMulAdd(e *editor, types valueTypes) int {
	cons := consumers(e.g)
	outs := graphOutputs(e.g)
	removed := map[*onnxpb.NodeProto]bool{}
	n := 0
	for _, mm := range e.g.Node {
		if mm.GetOpType() != "MatMul" || !isDefaultDomain(mm) || len(mm.Input) != 2 || len(mm.Output) != 1 {
			continue
		}
		y := mm.Output[0]
		if outs[y] || len(cons[y]) != 1 || !isConstFloat(e, mm.Input[1]) || len(e.inits[mm.Input[1]].Dims) != 2 {
			continue
		}
		if s, ok := types[mm.Input[0]]; !ok || len(s.Shape) != 2 {
			continue
		}
		add := cons[y][0]
		if add.GetOpType() != "Add" || !isDefaultDomain(add) || len(add.Input) != 2 || removed[add] {
			continue
		}
		c := add.Input[1]
		if c == y {
			c = add.Input[0]
		}
		nOut := e.inits[mm.Input[1]].Dims[1]
		if c == y || !isConstFloat(e, c) {
			continue
		}
		cd := e.inits[c].Dims
		if !(len(cd) == 1 && cd[0] == nOut) && !(len(cd) == 2 && cd[0] == 1 && cd[1] == nOut) {
			continue
		}
		bias := c
		if len(cd) == 2 {
			v, _, err := e.floats(c)
			if err != nil {
				continue
			}
			bias = e.addInit(c+"_1d", tensor.FromFloat32([]int64{nOut}, v))
		}
		mm.OpType = proto.String("Gemm")
		mm.Input = []string{mm.Input[0], mm.Input[1], bias}
		mm.Output[0] = add.Output[0]
		removed[add] = true
		n++
	}
	if n > 0 {
		e.dropNodes(removed)
	}
	return n
}
