package passes

import (
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// setConst makes input i of n read a constant holding v. When the current input is an
// initializer only n reads, its TensorProto is replaced (a new message: the old raw bytes
// may alias the loaded file and are never written to); otherwise a new initializer is
// added. base names a new initializer; absent optional inputs are appended.
func (g *graph) setConst(n *onnxpb.NodeProto, i int, base string, v *tensor.Tensor) {
	for len(n.Input) <= i {
		n.Input = append(n.Input, "")
	}
	old := n.Input[i]
	if old != "" && g.isConst(old) && !g.pinned[old] && !g.inputs[old] && len(g.liveConsumers(old)) == 1 && countIn(n, old) == 1 {
		for k, t := range g.g.Initializer {
			if t.GetName() == old {
				g.g.Initializer[k] = ownedTensorProto(old, v)
				g.inits[old] = g.g.Initializer[k]
				g.consts[old] = v
				g.changed = true
				return
			}
		}
	}
	if old != "" {
		base = old
	}
	name := g.addInit(base, v)
	g.setInput(n, i, name)
}

// countIn counts how many inputs of n are name.
func countIn(n *onnxpb.NodeProto, name string) int {
	c := 0
	for _, in := range n.Input {
		if in == name {
			c++
		}
	}
	return c
}

// constOperand splits a binary node into its non-constant operand and constant operand.
// commutative allows the constant first.
func constOperand(g *graph, n *onnxpb.NodeProto, commutative bool) (x string, k *tensor.Tensor, ok bool) {
	if len(n.Input) != 2 {
		return "", nil, false
	}
	if t := g.constant(n.Input[1]); t != nil && !g.isConst(n.Input[0]) {
		return n.Input[0], t, true
	}
	if commutative {
		if t := g.constant(n.Input[0]); t != nil && !g.isConst(n.Input[1]) {
			return n.Input[1], t, true
		}
	}
	return "", nil, false
}

// channelVector reads constant k as one value per channel along axis of a rank-r tensor
// with ch channels: k must broadcast without adding dimensions (rank <= r) and be 1 on
// every other axis. A scalar-like k repeats its value.
func channelVector(k *tensor.Tensor, r, axis int, ch int64) ([]float64, bool) {
	if k == nil || !isFloat(k.DType) || len(k.Shape) > r || ch <= 0 {
		return nil, false
	}
	off := r - len(k.Shape)
	perChannel := false
	for j, d := range k.Shape {
		switch {
		case d == 1:
		case j+off == axis && d == ch:
			perChannel = true
		default:
			return nil, false
		}
	}
	v := floats(k)
	out := make([]float64, ch)
	for c := range out {
		if perChannel {
			out[c] = v[c]
		} else {
			out[c] = v[0]
		}
	}
	return out, true
}
