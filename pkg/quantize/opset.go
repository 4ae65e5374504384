package quantize

import (
	"fmt"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Opset versions the rewrites need: QuantizeLinear/DequantizeLinear and the integer ops
// appeared in opset 10, the axis attribute of per-channel Q/DQ in opset 13.
const (
	opsetQDQ        = 10
	opsetPerChannel = 13
	// minUpgradable is the oldest opset the upgrade below knows the changes from.
	minUpgradable = 7
)

// sameSemantics7to13 are default-domain operators whose inference behaviour and signature
// did not change in a breaking way between opsets 7 and 13 (later versions only added
// types or optional attributes with backward-compatible defaults). Checked against the
// ONNX operator changelog.
var sameSemantics7to13 = map[string]bool{
	"Abs": true, "Acos": true, "Acosh": true, "Add": true, "And": true, "ArgMax": true, "ArgMin": true,
	"Asin": true, "Asinh": true, "Atan": true, "Atanh": true, "AveragePool": true, "BatchNormalization": true,
	"Cast": true, "Ceil": true, "Concat": true, "Constant": true, "ConstantOfShape": true, "Conv": true,
	"ConvTranspose": true, "Cos": true, "Cosh": true, "DepthToSpace": true, "Div": true, "Elu": true,
	"Equal": true, "Erf": true, "Exp": true, "Expand": true, "EyeLike": true, "Flatten": true, "Floor": true,
	"GRU": true, "Gather": true, "Gemm": true, "GlobalAveragePool": true, "GlobalLpPool": true,
	"GlobalMaxPool": true, "Greater": true, "HardSigmoid": true, "Identity": true, "InstanceNormalization": true,
	"IsInf": true, "IsNaN": true, "LRN": true, "LSTM": true, "LeakyRelu": true, "Less": true, "Log": true,
	"LpNormalization": true, "LpPool": true, "MatMul": true, "Max": true, "MaxPool": true, "MaxRoiPool": true,
	"Mean": true, "Min": true, "Mul": true, "Neg": true, "NonZero": true, "Not": true, "OneHot": true, "Or": true,
	"PRelu": true, "Pow": true, "RNN": true, "Reciprocal": true, "ReduceL1": true, "ReduceL2": true,
	"ReduceLogSum": true, "ReduceLogSumExp": true, "ReduceMax": true, "ReduceMean": true, "ReduceMin": true,
	"ReduceProd": true, "ReduceSumSquare": true, "Relu": true, "Reshape": true, "Resize": true, "Selu": true,
	"Shape": true, "Shrink": true, "Sigmoid": true, "Sign": true, "Sin": true, "Sinh": true, "Size": true,
	"Softplus": true, "Softsign": true, "SpaceToDepth": true, "Sqrt": true, "Sub": true, "Sum": true, "Tan": true,
	"Tanh": true, "Tile": true, "Transpose": true, "Where": true, "Xor": true, "Mod": true, "Range": true,
	"Einsum": true, "GatherElements": true, "GatherND": true, "ScatterElements": true, "ScatterND": true,
	"CumSum": true, "Round": true, "BitShift": true, "MatMulInteger": true, "ConvInteger": true,
	"QuantizeLinear": true, "DequantizeLinear": true, "QLinearConv": true, "QLinearMatMul": true,
	"DynamicQuantizeLinear": true, "ThresholdedRelu": true, "Celu": true, "Det": true, "NonMaxSuppression": true,
	"RoiAlign": true, "ReverseSequence": true, "Compress": true,
}

// upgradeOpset rewrites the default-domain opset import to target (13), converting the
// operators whose inputs or semantics changed on the way: Clip (<11, min/max attributes
// become inputs), Slice (<10, starts/ends/axes become inputs), Pad (<11), Squeeze,
// Unsqueeze, ReduceSum, Split (<13, axes/split become inputs), TopK (<10, k becomes an
// input), Dropout (<12, ratio dropped: identity at inference) and Softmax, LogSoftmax and
// Hardmax (<13: they used to flatten to 2-D at axis; unchanged when axis is the last one,
// otherwise rewritten as Flatten → op(axis=1) → Reshape). ranks gives the rank of every
// value where known (from ONNX Runtime's inference).
//
// The model is modified only when every node can be carried over; otherwise the returned
// error names the first operator that blocks it and nothing was changed.
func upgradeOpset(e *editor, target int64, ranks map[string]int) (changed bool, err error) {
	cur := onnx.OpsetOf(e.m.Proto.OpsetImport, "")
	if cur >= target {
		return false, nil
	}
	if cur < minUpgradable {
		return false, fmt.Errorf("opset %d is older than %d, which optimctl can convert from", cur, minUpgradable)
	}
	// Check first, then convert: a refusal leaves the model untouched.
	for _, n := range e.g.Node {
		if !isDefaultDomain(n) {
			continue
		}
		if err := canUpgrade(n, cur, ranks); err != nil {
			return false, err
		}
	}
	var out []*onnxpb.NodeProto
	for _, n := range e.g.Node {
		if !isDefaultDomain(n) {
			out = append(out, n)
			continue
		}
		out = append(out, convertNode(e, n, cur, ranks)...)
	}
	e.g.Node = out
	for _, o := range e.m.Proto.OpsetImport {
		if d := o.GetDomain(); d == "" || d == "ai.onnx" {
			o.Version = proto.Int64(target)
		}
	}
	// IR version 7 is what opset 13 came with; older files must declare at least that.
	if e.m.Proto.GetIrVersion() < 7 {
		e.m.Proto.IrVersion = proto.Int64(7)
	}
	return true, nil
}

func canUpgrade(n *onnxpb.NodeProto, cur int64, ranks map[string]int) error {
	op := n.GetOpType()
	if len(n.Attribute) > 0 {
		for _, a := range n.Attribute {
			if a.G != nil || len(a.Graphs) > 0 {
				return fmt.Errorf("%s has a subgraph", nodeLabel(n))
			}
		}
	}
	switch op {
	case "Clip", "Slice", "Pad", "Squeeze", "Unsqueeze", "ReduceSum", "Split", "TopK", "Dropout":
		return nil
	case "Softmax", "LogSoftmax", "Hardmax":
		return nil
	case "Upsample":
		return fmt.Errorf("%s: Upsample was replaced by Resize in opset 10 and is not converted", nodeLabel(n))
	case "Resize":
		if cur < 11 {
			return fmt.Errorf("%s: Resize-10 coordinate semantics are not converted", nodeLabel(n))
		}
		return nil
	case "BatchNormalization":
		if cur < 9 && intAttr(n, "spatial", 1) != 1 {
			return fmt.Errorf("%s: non-spatial BatchNormalization is not converted", nodeLabel(n))
		}
		return nil
	}
	if !sameSemantics7to13[op] {
		return fmt.Errorf("%s: no conversion of %s to opset 13 is known", nodeLabel(n), op)
	}
	return nil
}

// convertNode returns the nodes that replace n at opset 13 (n itself when unchanged).
func convertNode(e *editor, n *onnxpb.NodeProto, cur int64, ranks map[string]int) []*onnxpb.NodeProto {
	op := n.GetOpType()
	attrToInput := func(attr string, pos int, dt tensor.DType) {
		a := getAttr(n, attr)
		for len(n.Input) < pos {
			n.Input = append(n.Input, "")
		}
		if a == nil {
			return
		}
		var v *tensor.Tensor
		switch dt {
		case tensor.Int64:
			v = tensor.FromInt64([]int64{int64(len(a.Ints))}, a.Ints)
			if a.GetType() == onnxpb.AttributeProto_INT {
				v = tensor.FromInt64([]int64{1}, []int64{a.GetI()})
			}
		default:
			v = tensor.FromFloat32(nil, []float32{a.GetF()})
		}
		name := e.addInit(nodeBase(n)+"_"+attr, v)
		if len(n.Input) == pos {
			n.Input = append(n.Input, name)
		} else {
			n.Input[pos] = name
		}
		dropAttr(n, attr)
	}
	switch op {
	case "Clip":
		if cur < 11 {
			lo, hi := getAttr(n, "min"), getAttr(n, "max")
			n.Input = n.Input[:1]
			loName, hiName := "", ""
			if lo != nil {
				loName = e.addInit(nodeBase(n)+"_min", tensor.FromFloat32(nil, []float32{lo.GetF()}))
			}
			if hi != nil {
				hiName = e.addInit(nodeBase(n)+"_max", tensor.FromFloat32(nil, []float32{hi.GetF()}))
			}
			switch {
			case hiName != "":
				n.Input = append(n.Input, loName, hiName)
			case loName != "":
				n.Input = append(n.Input, loName)
			}
			dropAttr(n, "min", "max")
		}
	case "Slice":
		if cur < 10 {
			starts, ends, axes := getAttr(n, "starts"), getAttr(n, "ends"), getAttr(n, "axes")
			n.Input = n.Input[:1]
			n.Input = append(n.Input,
				e.addInit(nodeBase(n)+"_starts", tensor.FromInt64([]int64{int64(len(starts.GetInts()))}, starts.GetInts())),
				e.addInit(nodeBase(n)+"_ends", tensor.FromInt64([]int64{int64(len(ends.GetInts()))}, ends.GetInts())))
			if axes != nil {
				n.Input = append(n.Input, e.addInit(nodeBase(n)+"_axes", tensor.FromInt64([]int64{int64(len(axes.Ints))}, axes.Ints)))
			}
			dropAttr(n, "starts", "ends", "axes")
		}
	case "Pad":
		if cur < 11 {
			pads := getAttr(n, "pads")
			value := floatAttr(n, "value", 0)
			n.Input = append(n.Input[:1],
				e.addInit(nodeBase(n)+"_pads", tensor.FromInt64([]int64{int64(len(pads.GetInts()))}, pads.GetInts())),
				e.addInit(nodeBase(n)+"_value", tensor.FromFloat32(nil, []float32{value})))
			dropAttr(n, "pads", "value")
		}
	case "Squeeze", "Unsqueeze", "ReduceSum":
		attrToInput("axes", 1, tensor.Int64)
		trimInputs(n)
	case "Split":
		attrToInput("split", 1, tensor.Int64)
		trimInputs(n)
	case "TopK":
		if cur < 10 {
			attrToInput("k", 1, tensor.Int64)
		}
	case "Dropout":
		dropAttr(n, "ratio", "is_test")
	case "BatchNormalization":
		dropAttr(n, "spatial", "is_test", "consumed_inputs")
	case "Softmax", "LogSoftmax", "Hardmax":
		axis := intAttr(n, "axis", 1)
		r, known := ranks[n.Input[0]]
		if !known {
			r, known = ranks[n.Output[0]] // same rank; graph outputs often declare it
		}
		if known && axis < 0 {
			axis += int64(r)
		}
		if known && axis == int64(r-1) {
			dropAttr(n, "axis")
			n.Attribute = append(n.Attribute, attrInt("axis", axis))
			return []*onnxpb.NodeProto{n}
		}
		// Old semantics: coerce to 2-D at axis, normalise each row, restore the shape.
		base := nodeBase(n)
		flat, soft, shp := e.fresh(base+"_flat"), e.fresh(base+"_2d"), e.fresh(base+"_shape")
		out := n.Output[0]
		f := newNode("Flatten", "", e.fresh(base+"_flatten"), []string{n.Input[0]}, []string{flat}, attrInt("axis", axis))
		dropAttr(n, "axis")
		n.Attribute = append(n.Attribute, attrInt("axis", 1))
		n.Input[0], n.Output[0] = flat, soft
		s := newNode("Shape", "", e.fresh(base+"_shapeof"), []string{f.Input[0]}, []string{shp})
		rs := newNode("Reshape", "", e.fresh(base+"_reshape"), []string{soft, shp}, []string{out})
		return []*onnxpb.NodeProto{f, n, s, rs}
	}
	return []*onnxpb.NodeProto{n}
}

// trimInputs drops trailing empty optional inputs.
func trimInputs(n *onnxpb.NodeProto) {
	for len(n.Input) > 0 && n.Input[len(n.Input)-1] == "" {
		n.Input = n.Input[:len(n.Input)-1]
	}
}

// nodeBase is a readable base for names derived from a node.
func nodeBase(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	if len(n.Output) > 0 {
		return n.Output[0]
	}
	return strings.ToLower(n.GetOpType())
}

// opsUsed lists the default-domain op types of a graph, sorted (for notes).
func opsUsed(g *onnxpb.GraphProto) []string {
	s := map[string]bool{}
	for _, n := range g.Node {
		if isDefaultDomain(n) {
			s[n.GetOpType()] = true
		}
	}
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
