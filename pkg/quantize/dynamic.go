package quantize

import (
	"fmt"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// opsetDynamic is where DynamicQuantizeLinear appeared.
const opsetDynamic = 11

// dynamic quantizes the weights of MatMul, Gemm and Conv to 8 bits and their activations
// at run time, in the form onnxruntime.quantization's quantize_dynamic emits and ONNX
// Runtime fuses (DynamicQuantizeLinear → MatMulInteger → Cast → Mul becomes
// DynamicQuantizeMatMul):
//
//	x_q, x_s, x_zp = DynamicQuantizeLinear(x)            (uint8, per tensor, per run)
//	y = Cast<float>(MatMulInteger(x_q, w_q, x_zp, w_zp)) · (x_s · w_s)   (+ bias)
//
// and likewise with ConvInteger. w_s is one scale per output channel when PerChannel.
func (j *job) dynamic() (*onnxpb.ModelProto, error) {
	if j.rep.OpsetAfter < opsetDynamic {
		return nil, fmt.Errorf("dynamic quantization needs opset %d (DynamicQuantizeLinear); the model has %d", opsetDynamic, j.rep.OpsetAfter)
	}
	_, e, err := j.loadPrepared()
	if err != nil {
		return nil, err
	}
	b := newBuilder(e, j.o, nil, nil, j.types)
	exclude := excludeSet(j.o.Exclude)
	allowed := map[string]bool{"MatMul": true, "Gemm": true, "Conv": true}
	if len(j.o.OpTypes) > 0 {
		allowed = map[string]bool{}
		for _, op := range j.o.OpTypes {
			allowed[op] = true
		}
	}
	j.rep.QuantizedOps = map[string]int{}
	var out []*onnxpb.NodeProto
	for _, n := range e.g.Node {
		if !isDefaultDomain(n) || !allowed[n.GetOpType()] || matchExclude(n, exclude) {
			out = append(out, n)
			continue
		}
		nodes, ok, err := b.dynamicNode(n)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", nodeLabel(n), err)
		}
		if !ok {
			out = append(out, n)
			continue
		}
		out = append(out, nodes...)
		j.rep.QuantizedNodes++
		j.rep.QuantizedOps[n.GetOpType()]++
	}
	if j.rep.QuantizedNodes == 0 {
		return nil, fmt.Errorf("nothing to quantize: no MatMul, Gemm or Conv with constant float32 weights")
	}
	e.g.Node = out
	e.removeUnusedInits()
	pruneValueInfo(e.g)
	j.rep.KeptFloat = keptFloat(e, exclude)
	return e.m.Proto, nil
}

// dynamicNode returns the nodes replacing n, or ok=false when n does not qualify.
func (b *builder) dynamicNode(n *onnxpb.NodeProto) ([]*onnxpb.NodeProto, bool, error) {
	op := n.GetOpType()
	if len(n.Input) < 2 || len(n.Output) != 1 || !b.types.isFloat32(n.Input[0]) || b.e.isConst(n.Input[0]) || !isConstFloat(b.e, n.Input[1]) {
		return nil, false, nil
	}
	wName := n.Input[1]
	wdims := b.e.inits[wName].Dims
	var bias string
	if len(n.Input) > 2 && n.Input[2] != "" {
		if !isConstFloat(b.e, n.Input[2]) {
			return nil, false, nil
		}
		bias = n.Input[2]
	}
	base := nodeBase(n)
	switch op {
	case "Gemm":
		// Only the plain Y = X·B (+ C) form becomes MatMulInteger (+ Add).
		if intAttr(n, "transA", 0) != 0 || floatAttr(n, "alpha", 1) != 1 || floatAttr(n, "beta", 1) != 1 || len(wdims) != 2 {
			return nil, false, nil
		}
		if intAttr(n, "transB", 0) != 0 {
			vals, _, err := b.e.floats(wName)
			if err != nil {
				return nil, false, err
			}
			k, nn := int(wdims[1]), int(wdims[0])
			t := make([]float32, len(vals))
			for r := 0; r < nn; r++ {
				for c := 0; c < k; c++ {
					t[c*nn+r] = vals[r*k+c]
				}
			}
			wName = b.e.addInit(wName+"_transposed", tensor.FromFloat32([]int64{int64(k), int64(nn)}, t))
			wdims = []int64{int64(k), int64(nn)}
		}
	case "MatMul":
		if len(wdims) < 2 {
			return nil, false, nil
		}
	case "Conv":
		if len(wdims) < 3 {
			return nil, false, nil
		}
	}
	isConv := op == "Conv"
	axis := len(wdims) - 1
	if isConv {
		axis = 0
	}
	perChannel := b.o.PerChannel && (isConv || len(wdims) == 2)
	if isConv && b.o.WeightType == tensor.Uint8 {
		// ONNX Runtime's ConvInteger takes one weight zero point; asymmetric uint8 weights
		// would need one per channel.
		perChannel = false
	}
	w, err := b.quantizeWeight(wName, axis, perChannel)
	if err != nil {
		return nil, false, err
	}
	// Symmetric int8 weights have zero points of 0: one scalar serves every channel (and is
	// all ConvInteger accepts); the per-channel scales go into the float rescale.
	wzp := w.zp
	if b.o.WeightType == tensor.Int8 && w.perChannel {
		wzp = b.e.addInit(wName+"_zero_point_scalar", tensor.New(tensor.Int8, []int64{}))
	}
	scale := w.scale
	if isConv && w.perChannel {
		// [OC] → [OC, 1, 1, ...] to broadcast against [N, OC, H, W].
		shape := make([]int64, len(wdims)-1)
		shape[0] = wdims[0]
		for i := 1; i < len(shape); i++ {
			shape[i] = 1
		}
		scale = b.e.addInit(wName+"_scale_reshaped", tensor.FromFloat32(shape, w.scales))
	}
	x := n.Input[0]
	xq, xs, xzp := b.e.fresh(x+"_quantized"), b.e.fresh(x+"_scale"), b.e.fresh(x+"_zero_point")
	yInt, yF, s, y := b.e.fresh(base+"_int32"), b.e.fresh(base+"_float"), b.e.fresh(base+"_scale"), n.Output[0]
	if bias != "" {
		y = b.e.fresh(base + "_nobias")
	}
	nodes := []*onnxpb.NodeProto{
		newNode("DynamicQuantizeLinear", "", b.e.fresh(base+"_DynamicQuantizeLinear"), []string{x}, []string{xq, xs, xzp}),
	}
	if isConv {
		nodes = append(nodes, b.like(n, "ConvInteger", "", b.e.fresh(base+"_ConvInteger"), []string{xq, w.q, xzp, wzp}, yInt,
			"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"))
	} else {
		nodes = append(nodes, newNode("MatMulInteger", "", b.e.fresh(base+"_MatMulInteger"), []string{xq, w.q, xzp, wzp}, []string{yInt}))
	}
	nodes = append(nodes,
		newNode("Cast", "", b.e.fresh(base+"_Cast"), []string{yInt}, []string{yF}, attrInt("to", int64(tensor.Float32))),
		newNode("Mul", "", b.e.fresh(base+"_scale_Mul"), []string{xs, scale}, []string{s}),
		newNode("Mul", "", b.e.fresh(base+"_Mul"), []string{yF, s}, []string{y}))
	if bias != "" {
		bname := bias
		if isConv {
			// [OC] → [OC, 1, 1, ...] for the same broadcast.
			vals, bd, err := b.e.floats(bias)
			if err != nil {
				return nil, false, err
			}
			shape := make([]int64, len(wdims)-1)
			shape[0] = bd[0]
			for i := 1; i < len(shape); i++ {
				shape[i] = 1
			}
			bname = b.e.addInit(bias+"_reshaped", tensor.FromFloat32(shape, vals))
		}
		nodes = append(nodes, newNode("Add", "", b.e.fresh(base+"_bias_Add"), []string{y, bname}, []string{n.Output[0]}))
	}
	return nodes, true, nil
}
