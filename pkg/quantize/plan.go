package quantize

import (
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// opClass is how the static quantizer treats an operator.
type opClass int

const (
	clsNone      opClass = iota
	clsWeighted          // Conv, ConvTranspose, MatMul, Gemm: weights (and bias) quantized too
	clsBinary            // Add, Mul: both operands quantized, constants as weights
	clsUnary             // one input, own output range
	clsConcat            // every input and the output, each with its own range
	clsDirect            // data movement: the output shares the input's scale (exact in 8 bits)
	clsRemovable         // Relu, Clip: absorbed into the producer's output range when possible
)

// ortClasses are the operators quantized for ONNX Runtime: those onnxruntime.quantization
// quantizes by default, whose QDQ patterns ONNX Runtime fuses into integer kernels.
var ortClasses = map[string]opClass{
	"Conv": clsWeighted, "ConvTranspose": clsWeighted, "MatMul": clsWeighted, "Gemm": clsWeighted,
	"Add": clsBinary, "Mul": clsBinary,
	"Sigmoid": clsUnary, "LeakyRelu": clsUnary, "GlobalAveragePool": clsUnary, "AveragePool": clsUnary, "Softmax": clsUnary,
	"Concat":  clsConcat,
	"MaxPool": clsDirect, "Reshape": clsDirect, "Flatten": clsDirect, "Transpose": clsDirect, "Squeeze": clsDirect,
	"Unsqueeze": clsDirect, "Resize": clsDirect, "Slice": clsDirect, "Split": clsDirect,
	"Relu": clsRemovable, "Clip": clsRemovable,
}

// plan is the set of nodes a static quantization touches and the activations it needs
// ranges for. It is computed on the prepared float graph, before any rewrite.
type plan struct {
	nodes   []*onnxpb.NodeProto // selected nodes, graph order
	sel     map[*onnxpb.NodeProto]bool
	class   map[*onnxpb.NodeProto]opClass
	absorb  map[*onnxpb.NodeProto]*onnxpb.NodeProto // Relu/Clip → the selected producer absorbing it
	acts    []string                                // activations that get Q/DQ, first appearance order
	actSet  map[string]bool
	shareOf map[string]string // output of a direct op → the input whose parameters it shares
	// residual marks TensorRT's residual adds (their identity input is quantized).
	residual map[*onnxpb.NodeProto]string
	// dqOf is filled by the QDQ build: each activation's DequantizeLinear output, the value
	// its quantized readers see.
	dqOf map[string]string
	// inputsOf keeps each selected node's quantized activation inputs by their original
	// names (the build rewires the node to their dequantized copies).
	inputsOf map[*onnxpb.NodeProto][]string
}

// activationInputs are the input positions of a node that carry activations to quantize
// (constants in those positions are quantized as weights).
func activationInputs(n *onnxpb.NodeProto, c opClass) []int {
	switch c {
	case clsWeighted:
		if n.GetOpType() == "MatMul" {
			return []int{0, 1}
		}
		return []int{0}
	case clsBinary:
		return []int{0, 1}
	case clsConcat:
		idx := make([]int, len(n.Input))
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	return []int{0}
}

// weightAxis is the output-channel axis of a weighted node's weight input, for
// per-channel quantization: Conv [OC, IC/g, k...] axis 0, ConvTranspose [IC, OC/g, k...]
// axis 1, MatMul [K, N] the last axis, Gemm axis 0 when transB else 1.
func weightAxis(n *onnxpb.NodeProto, rank int) int {
	switch n.GetOpType() {
	case "ConvTranspose":
		return 1
	case "MatMul":
		return rank - 1
	case "Gemm":
		if intAttr(n, "transB", 0) != 0 {
			return 0
		}
		return 1
	}
	return 0
}

// planStatic selects the nodes to quantize for ONNX Runtime (QDQ or QOperator).
func planStatic(e *editor, types valueTypes, o Options, exclude map[string]bool) *plan {
	p := &plan{sel: map[*onnxpb.NodeProto]bool{}, class: map[*onnxpb.NodeProto]opClass{},
		absorb: map[*onnxpb.NodeProto]*onnxpb.NodeProto{}, actSet: map[string]bool{}, shareOf: map[string]string{},
		residual: map[*onnxpb.NodeProto]string{}, dqOf: map[string]string{}, inputsOf: map[*onnxpb.NodeProto][]string{}}
	if o.Target == TargetTensorRT {
		planTensorRT(e, types, o, exclude, p)
		return p
	}
	allowed := allowedOps(o)
	prod := producers(e.g)
	cons := consumers(e.g)
	outs := graphOutputs(e.g)
	isAct := func(name string) bool { return name != "" && !e.isConst(name) && types.isFloat32(name) }
	addAct := func(name string) {
		if !p.actSet[name] {
			p.actSet[name] = true
			p.acts = append(p.acts, name)
		}
	}
	// Pass 1: compute operators (everything but data movement and absorbable activations).
	for _, n := range e.g.Node {
		c, ok := ortClasses[n.GetOpType()]
		if !ok || !isDefaultDomain(n) || !allowed[n.GetOpType()] || matchExclude(n, exclude) {
			continue
		}
		if c == clsDirect {
			continue
		}
		if c == clsRemovable {
			if prodN := prod[n.Input[0]]; prodN != nil && absorbable(e, n, prodN, p, cons, outs, o) {
				p.absorb[n] = prodN
				continue
			}
			if o.Format == QOperator {
				continue // no integer Relu/Clip kernel: stays float
			}
			c = clsUnary
		}
		if o.Format == QOperator && (!qopSupported(n, c) || (n.GetOpType() == "Gemm" && !biasQuantizable(n))) {
			continue
		}
		if !eligible(e, n, c, isAct, types) {
			continue
		}
		// A QOperator node must produce a quantized output; graph outputs stay float. An
		// activation-like node that writes a graph output gains nothing from quantized
		// inputs either (no integer kernel without a quantized output), only their error.
		if outs[n.Output[0]] && (o.Format == QOperator || c == clsUnary) {
			continue
		}
		p.sel[n], p.class[n] = true, c
	}
	// Absorbing needs the producer selected; drop absorptions whose producer was not.
	for act, prodN := range p.absorb {
		if !p.sel[prodN] {
			delete(p.absorb, act)
		}
	}
	// Pass 2: data movement follows quantized producers (as ORT does without
	// ForceQuantizeNoInputCheck): quantizing a MaxPool fed by float data only adds work.
	quantOut := map[string]bool{}
	for _, n := range e.g.Node {
		if p.sel[n] {
			for _, out := range n.Output {
				quantOut[out] = true
			}
		}
		if prodN, ok := p.absorb[n]; ok && p.sel[prodN] {
			quantOut[n.Output[0]] = true
		}
		c := ortClasses[n.GetOpType()]
		if c != clsDirect || !isDefaultDomain(n) || !allowed[n.GetOpType()] || matchExclude(n, exclude) {
			continue
		}
		if !quantOut[n.Input[0]] || !types.isFloat32(n.Input[0]) {
			continue
		}
		if o.Format == QOperator && (n.GetOpType() == "Split" || outs[n.Output[0]]) {
			continue
		}
		p.sel[n], p.class[n] = true, c
		for _, out := range n.Output {
			quantOut[out] = true
		}
	}
	// Activations: quantized inputs and outputs of the selected nodes, in graph order.
	for _, n := range e.g.Node {
		if !p.sel[n] {
			continue
		}
		p.nodes = append(p.nodes, n)
		c := p.class[n]
		for _, i := range activationInputs(n, c) {
			if i < len(n.Input) && isAct(n.Input[i]) {
				addAct(n.Input[i])
				p.inputsOf[n] = append(p.inputsOf[n], n.Input[i])
			}
		}
		for k, out := range n.Output {
			if out == "" || outs[out] || !types.isFloat32(out) {
				continue
			}
			if c == clsDirect {
				p.shareOf[out] = n.Input[0]
			}
			if k == 0 || c == clsDirect {
				addAct(finalOutput(p, n, out))
			}
		}
	}
	return p
}

// finalOutput is the name a selected node's output has after absorption: the absorbed
// Relu/Clip's output.
func finalOutput(p *plan, n *onnxpb.NodeProto, out string) string {
	for act, prodN := range p.absorb {
		if prodN == n && act.Input[0] == out {
			return act.Output[0]
		}
	}
	return out
}

// absorbable reports whether a Relu/Clip can be folded into its producer's quantized
// output: with asymmetric activations the output range [0, max] already clamps at zero
// (and at the calibrated maximum), exactly what the activation does.
func absorbable(e *editor, act, prodN *onnxpb.NodeProto, p *plan, cons map[string][]*onnxpb.NodeProto, outs map[string]bool, o Options) bool {
	if o.Symmetric || len(act.Output) != 1 || len(prodN.Output) != 1 || outs[act.Input[0]] || outs[act.Output[0]] {
		return false
	}
	if len(cons[act.Input[0]]) != 1 {
		return false
	}
	switch c := ortClasses[prodN.GetOpType()]; c {
	case clsWeighted, clsBinary, clsUnary, clsConcat:
	default:
		return false
	}
	if prodN.GetOpType() == "Softmax" {
		return false
	}
	if act.GetOpType() == "Clip" {
		lo, ok := clipMin(e, act)
		if !ok || lo != 0 {
			return false
		}
	}
	return true
}

// clipMin returns a Clip's constant lower bound (attribute before opset 11, input after).
func clipMin(e *editor, n *onnxpb.NodeProto) (float32, bool) {
	if a := getAttr(n, "min"); a != nil {
		return a.GetF(), true
	}
	if len(n.Input) < 2 || n.Input[1] == "" {
		return 0, false // no lower bound: not a ReLU6-like clamp
	}
	if !e.isConst(n.Input[1]) {
		return 0, false
	}
	v, _, err := e.floats(n.Input[1])
	if err != nil || len(v) != 1 {
		return 0, false
	}
	return v[0], true
}

// eligible checks a node's inputs: activations must be float32, weights constant float32.
func eligible(e *editor, n *onnxpb.NodeProto, c opClass, isAct func(string) bool, types valueTypes) bool {
	if len(n.Input) == 0 || len(n.Output) == 0 || !types.isFloat32(n.Output[0]) {
		return false
	}
	switch c {
	case clsWeighted:
		if len(n.Input) < 2 || !isAct(n.Input[0]) {
			return false
		}
		w := n.Input[1]
		switch n.GetOpType() {
		case "MatMul":
			return isAct(w) || isConstFloat(e, w)
		case "Gemm":
			if intAttr(n, "transA", 0) != 0 || !isConstFloat(e, w) || len(e.inits[w].Dims) != 2 {
				return false
			}
			return true
		default:
			return isConstFloat(e, w) && len(e.inits[w].Dims) >= 3
		}
	case clsBinary:
		if len(n.Input) != 2 {
			return false
		}
		acts := 0
		for _, in := range n.Input {
			switch {
			case isAct(in):
				acts++
			case isConstFloat(e, in):
			default:
				return false
			}
		}
		return acts > 0
	case clsConcat:
		for _, in := range n.Input {
			if !isAct(in) {
				return false
			}
		}
		return true
	}
	return isAct(n.Input[0])
}

func isConstFloat(e *editor, name string) bool {
	return e.isConst(name) && tensor.DType(e.inits[name].GetDataType()) == tensor.Float32
}

// allowedOps is the op-type filter (nil OpTypes: everything the target supports).
func allowedOps(o Options) map[string]bool {
	a := map[string]bool{}
	if len(o.OpTypes) == 0 {
		for op := range ortClasses {
			a[op] = true
		}
		return a
	}
	for _, op := range o.OpTypes {
		a[op] = true
	}
	return a
}

// planTensorRT selects TensorRT's explicit-quantization placement: Q/DQ on the
// activation inputs of Conv/ConvTranspose/Gemm/MatMul, and on the identity input of a
// residual Add whose other input a quantized layer produces, so that TensorRT fuses
// Conv+Add in INT8.
func planTensorRT(e *editor, types valueTypes, o Options, exclude map[string]bool, p *plan) {
	allowed := allowedOps(o)
	isAct := func(name string) bool { return name != "" && !e.isConst(name) && types.isFloat32(name) }
	addAct := func(name string) {
		if !p.actSet[name] {
			p.actSet[name] = true
			p.acts = append(p.acts, name)
		}
	}
	prod := producers(e.g)
	order := map[*onnxpb.NodeProto]int{}
	for i, n := range e.g.Node {
		order[n] = i
	}
	for _, n := range e.g.Node {
		if !isDefaultDomain(n) || matchExclude(n, exclude) || !allowed[n.GetOpType()] {
			continue
		}
		switch n.GetOpType() {
		case "Conv", "ConvTranspose", "MatMul", "Gemm":
			if !eligible(e, n, clsWeighted, isAct, types) {
				continue
			}
			p.sel[n], p.class[n] = true, clsWeighted
			p.nodes = append(p.nodes, n)
			for _, i := range activationInputs(n, clsWeighted) {
				if isAct(n.Input[i]) {
					addAct(n.Input[i])
					p.inputsOf[n] = append(p.inputsOf[n], n.Input[i])
				}
			}
		case "Add":
			if len(n.Input) != 2 || !isAct(n.Input[0]) || !isAct(n.Input[1]) {
				continue
			}
			a, b := prod[n.Input[0]], prod[n.Input[1]]
			fromLayer := func(x *onnxpb.NodeProto) bool { return x != nil && p.sel[x] }
			var identity string
			switch {
			case fromLayer(a) && !fromLayer(b):
				identity = n.Input[1]
			case fromLayer(b) && !fromLayer(a):
				identity = n.Input[0]
			case fromLayer(a) && fromLayer(b):
				// Both branches are layers: the earlier one is the skip connection.
				identity = n.Input[0]
				if order[b] < order[a] {
					identity = n.Input[1]
				}
			default:
				continue
			}
			p.sel[n], p.class[n] = true, clsBinary
			p.residual[n] = identity
			p.nodes = append(p.nodes, n)
			addAct(identity)
			p.inputsOf[n] = []string{identity}
		}
	}
}

// qopSupported reports whether QOperator has an integer kernel for the node.
func qopSupported(n *onnxpb.NodeProto, c opClass) bool {
	switch n.GetOpType() {
	case "ConvTranspose", "Softmax":
		return false
	case "MatMul", "Gemm", "Conv", "Add", "Mul", "Sigmoid", "LeakyRelu", "GlobalAveragePool", "AveragePool", "Concat":
		return true
	}
	return c == clsDirect
}
