package quantize

import (
	"fmt"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// qparam is an activation's scale and zero point.
type qparam struct {
	scale float32
	zp    int32
}

// builder rewrites one copy of the prepared float graph into a quantized one.
type builder struct {
	e       *editor
	o       Options
	p       *plan
	ranges  map[string]calibration.Range
	types   valueTypes
	weights map[string]*weightQ
	// per activation: its parameters and their initializers
	params    map[string]qparam
	paramInit map[string][2]string
	// pre holds nodes to emit just before a node (weight DequantizeLinear), post just after
	// (an activation's QuantizeLinear/DequantizeLinear), head before every node.
	pre, post map[*onnxpb.NodeProto][]*onnxpb.NodeProto
	head      []*onnxpb.NodeProto
	removed   map[*onnxpb.NodeProto]bool
	// constDQ is the dequantized copy of each constant operand of Add/Mul (QDQ).
	constDQ map[string]string
}

func newBuilder(e *editor, o Options, p *plan, ranges map[string]calibration.Range, types valueTypes) *builder {
	return &builder{e: e, o: o, p: p, ranges: ranges, types: types, weights: map[string]*weightQ{},
		params: map[string]qparam{}, paramInit: map[string][2]string{},
		pre: map[*onnxpb.NodeProto][]*onnxpb.NodeProto{}, post: map[*onnxpb.NodeProto][]*onnxpb.NodeProto{},
		removed: map[*onnxpb.NodeProto]bool{}, constDQ: map[string]string{}}
}

// actParam returns an activation's parameters: from its calibrated range, or from the
// input it shares them with (data-movement outputs).
func (b *builder) actParam(name string) (qparam, error) {
	if q, ok := b.params[name]; ok {
		return q, nil
	}
	if src, ok := b.p.shareOf[name]; ok {
		q, err := b.actParam(src)
		if err != nil {
			return q, err
		}
		b.params[name] = q
		return q, nil
	}
	r, ok := b.ranges[name]
	if !ok {
		return qparam{}, fmt.Errorf("tensor %q has no calibrated range", name)
	}
	if isFP8(b.o.ActivationType) {
		return b.fp8ActParam(name, r)
	}
	qmin, qmax := quant.QType(b.o.ActivationType).Range(false, b.o.Symmetric)
	s, z := quant.ComputeScaleZP(r.Min, r.Max, qmin, qmax, b.o.Symmetric, 0)
	q := qparam{scale: s, zp: z}
	b.params[name] = q
	return q, nil
}

// paramInits returns the scale and zero-point initializers of an activation. Tensors that
// share parameters share the initializers too, which is how ONNX Runtime recognises that
// a data-movement node between them can run on the integers.
func (b *builder) paramInits(name string) (string, string, error) {
	root := name
	for {
		src, ok := b.p.shareOf[root]
		if !ok {
			break
		}
		root = src
	}
	if v, ok := b.paramInit[root]; ok {
		return v[0], v[1], nil
	}
	q, err := b.actParam(root)
	if err != nil {
		return "", "", err
	}
	s := b.e.addInit(root+"_scale", tensor.FromFloat32([]int64{}, []float32{q.scale}))
	z := b.e.addInit(root+"_zero_point", zeroPoints(b.o.ActivationType, []int64{}, []int32{q.zp}))
	b.paramInit[root] = [2]string{s, z}
	return s, z, nil
}

// absorbActivations removes the Relu/Clip nodes the plan folds into their producer: the
// producer now writes the activation's output, whose calibrated range does the clamping.
func (b *builder) absorbActivations() {
	keep := b.e.g.Node[:0]
	for _, n := range b.e.g.Node {
		prodN, ok := b.p.absorb[n]
		if !ok {
			keep = append(keep, n)
			continue
		}
		for i, out := range prodN.Output {
			if out == n.Input[0] {
				prodN.Output[i] = n.Output[0]
			}
		}
		b.removed[n] = true
	}
	b.e.g.Node = keep
}

// dqWeight returns the name of the dequantized weight (QDQ form), making the quantized
// initializer and its DequantizeLinear before consumer on first use.
func (b *builder) dqWeight(consumer *onnxpb.NodeProto, name string, axis int, perChannel bool) (*weightQ, string, error) {
	w, err := b.quantizeWeight(name, axis, perChannel)
	if err != nil {
		return nil, "", err
	}
	if w.dq == "" {
		w.dq = b.e.fresh(name + "_dequantized")
		var attrs []*onnxpb.AttributeProto
		if w.perChannel {
			attrs = append(attrs, attrInt("axis", int64(w.axis)))
		}
		b.pre[consumer] = append(b.pre[consumer],
			newNode("DequantizeLinear", "", b.e.fresh(name+"_DequantizeLinear"), []string{w.q, w.scale, w.zp}, []string{w.dq}, attrs...))
	}
	return w, w.dq, nil
}

// buildQDQ rewrites the graph in QDQ form for the plan.
func (b *builder) buildQDQ() error {
	b.absorbActivations()
	perChannel := b.o.PerChannel
	trt := b.o.Target == TargetTensorRT
	// Weights, biases and constant operands.
	for _, n := range b.p.nodes {
		switch b.p.class[n] {
		case clsWeighted:
			if !b.e.isConst(n.Input[1]) {
				break // MatMul of two activations: both are quantized as activations
			}
			rank := len(b.e.inits[n.Input[1]].Dims)
			w, dq, err := b.dqWeight(n, n.Input[1], weightAxis(n, rank), perChannel)
			if err != nil {
				return fmt.Errorf("%s: %w", nodeLabel(n), err)
			}
			n.Input[1] = dq
			if trt || len(n.Input) < 3 || n.Input[2] == "" || !b.e.isConst(n.Input[2]) || !biasQuantizable(n) {
				break
			}
			xp, err := b.actParam(n.Input[0])
			if err != nil {
				return err
			}
			bq, bs, bz, _, err := b.quantizeBias(n.Input[2], xp.scale, w)
			if err != nil {
				return fmt.Errorf("%s: %w", nodeLabel(n), err)
			}
			out := b.e.fresh(n.Input[2] + "_dequantized")
			var attrs []*onnxpb.AttributeProto
			if w.perChannel {
				attrs = append(attrs, attrInt("axis", 0))
			}
			b.pre[n] = append(b.pre[n], newNode("DequantizeLinear", "", b.e.fresh(n.Input[2]+"_DequantizeLinear"), []string{bq, bs, bz}, []string{out}, attrs...))
			n.Input[2] = out
		case clsBinary:
			if trt {
				break
			}
			// Constant operands take the activation type, as onnxruntime.quantization
			// does: QLinearAdd/QLinearMul need both operands in one type, so an int8
			// weight-style constant beside uint8 activations would block the fusion.
			for i, in := range n.Input {
				if !b.e.isConst(in) {
					continue
				}
				if _, ok := b.constDQ[in]; !ok {
					q, err := b.constActivation(in)
					if err != nil {
						return fmt.Errorf("%s: %w", nodeLabel(n), err)
					}
					out := b.e.fresh(in + "_dequantized")
					b.pre[n] = append(b.pre[n], newNode("DequantizeLinear", "", b.e.fresh(in+"_DequantizeLinear"), q, []string{out}))
					b.constDQ[in] = out
				}
				n.Input[i] = b.constDQ[in]
			}
		}
	}
	// Activations: one QuantizeLinear/DequantizeLinear pair per tensor, right after the
	// tensor is produced.
	prod := producers(b.e.g)
	cons := consumers(b.e.g)
	for _, t := range b.p.acts {
		s, z, err := b.paramInits(t)
		if err != nil {
			return err
		}
		qOut, dqOut := b.e.fresh(t+"_quantized"), b.e.fresh(t+"_dequantized")
		b.p.dqOf[t] = dqOut
		q := newNode("QuantizeLinear", "", b.e.fresh(t+"_QuantizeLinear"), []string{t, s, z}, []string{qOut})
		dq := newNode("DequantizeLinear", "", b.e.fresh(t+"_DequantizeLinear"), []string{qOut, s, z}, []string{dqOut})
		if p := prod[t]; p != nil {
			b.post[p] = append(b.post[p], q, dq)
		} else {
			b.head = append(b.head, q, dq)
		}
		// A quantized producer's output is read quantized by everyone (the pattern ONNX
		// Runtime fuses needs its Q to be the only reader); a float producer's output is
		// read quantized only by quantized consumers, the others keep the exact value.
		allReaders := !trt && prod[t] != nil && b.p.sel[prod[t]]
		for _, c := range cons[t] {
			if b.removed[c] || !(allReaders || b.p.sel[c]) {
				continue
			}
			if trt && b.p.class[c] == clsBinary {
				// Residual add: only the identity input is quantized.
				if b.p.residual[c] == t {
					renameInput(c, t, dqOut)
				}
				continue
			}
			renameInput(c, t, dqOut)
		}
	}
	b.assemble()
	return nil
}

// biasQuantizable: Conv and Gemm (beta 1, 1-D C) biases become int32; ConvTranspose keeps
// a float bias (its weight channel axis does not match the bias with groups).
func biasQuantizable(n *onnxpb.NodeProto) bool {
	switch n.GetOpType() {
	case "Conv":
		return true
	case "Gemm":
		return floatAttr(n, "beta", 1) == 1
	}
	return false
}

// assemble writes the final node list: head nodes, then each node preceded by its
// weight DequantizeLinears and followed by its outputs' Q/DQ pairs.
func (b *builder) assemble() {
	out := append([]*onnxpb.NodeProto{}, b.head...)
	for _, n := range b.e.g.Node {
		if b.removed[n] {
			continue
		}
		out = append(out, b.pre[n]...)
		out = append(out, n)
		out = append(out, b.post[n]...)
	}
	b.e.g.Node = out
	b.e.removeUnusedInits()
	pruneValueInfo(b.e.g)
}

// pruneValueInfo drops value_info of values that no longer exist, so no stale type
// annotation contradicts the rewritten graph.
func pruneValueInfo(g *onnxpb.GraphProto) {
	live := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			live[o] = true
		}
	}
	keep := g.ValueInfo[:0]
	for _, v := range g.ValueInfo {
		if live[v.GetName()] {
			keep = append(keep, v)
		}
	}
	g.ValueInfo = keep
}
