package passes

import (
	"math"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// RemoveIdentity drops Identity nodes and Dropout in inference mode (its output equals its
// input; the mask output must be unused).
var RemoveIdentity = &Pass{
	Name:    "remove-identity",
	Doc:     "remove Identity and inference-mode Dropout",
	Default: true,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			n := 0
			for _, node := range g.g.Node {
				if g.removed[node] || len(node.Input) == 0 || len(node.Output) == 0 {
					continue
				}
				switch {
				case is(node, "Identity"):
				case is(node, "Dropout"):
					if len(node.Output) > 1 && node.Output[1] != "" && g.used(node.Output[1]) {
						continue
					}
					if c.Opset >= 12 && len(node.Input) > 2 && node.Input[2] != "" {
						// training_mode must be a constant false.
						t := g.constant(node.Input[2])
						if t == nil || t.Len() != 1 || ints(t)[0] != 0 {
							continue
						}
					}
				default:
					continue
				}
				if g.bypass(node, node.Input[0], node.Output[0]) {
					n++
				}
			}
			return n, nil
		})
	},
}

// RemoveNoOps drops nodes that return their input unchanged: Cast to the same type,
// Reshape/Expand to the same shape, Transpose with the identity permutation, full-range
// Slice, zero Pad, Tile by ones, single-input Concat, Squeeze/Unsqueeze of no axes, and
// arithmetic with a neutral constant (x+0, x-0, x*1, x/1, x^1) that does not broadcast.
var RemoveNoOps = &Pass{
	Name:    "remove-noop",
	Doc:     "remove no-op Cast/Reshape/Expand/Transpose/Slice/Pad/Tile/Concat and x+0, x*1, x/1",
	Default: true,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			n := 0
			for _, node := range g.g.Node {
				if g.removed[node] || !isDefault(node) || len(node.Input) == 0 || len(node.Output) != 1 {
					continue
				}
				in, ok := noopInput(g, node)
				if ok && g.bypass(node, in, node.Output[0]) {
					n++
				}
			}
			return n, nil
		})
	},
}

// noopInput returns the input a no-op node passes through.
func noopInput(g *graph, n *onnxpb.NodeProto) (string, bool) {
	c := g.c
	x := n.Input[0]
	xi, yi := c.info(x), c.info(n.Output[0])
	switch n.GetOpType() {
	case "Cast":
		return x, xi != nil && xi.DType != tensor.Undefined && xi.DType == tensor.DType(shape.AttrInt(n, "to", 0)) && c.Opset >= 6
	case "Reshape", "Expand", "Squeeze", "Unsqueeze", "Flatten":
		return x, sameShape(xi, yi) && (n.GetOpType() != "Squeeze" && n.GetOpType() != "Unsqueeze" || xi.Rank() == yi.Rank())
	case "Transpose":
		perm, ok := shape.AttrInts(n, "perm")
		if !ok {
			return x, xi.Rank() == 1 || xi.Rank() == 0
		}
		for k, p := range perm {
			if p != int64(k) {
				return "", false
			}
		}
		return x, true
	case "Slice":
		return x, fullSlice(g, n, xi)
	case "Pad":
		pads, ok := padsOf(g, n)
		if !ok {
			return "", false
		}
		for _, p := range pads {
			if p != 0 {
				return "", false
			}
		}
		return x, true
	case "Tile":
		reps := g.constant(inputAt(n, 1))
		if reps == nil {
			return "", false
		}
		for _, r := range ints(reps) {
			if r != 1 {
				return "", false
			}
		}
		return x, true
	case "Concat", "Sum", "Max", "Min", "Mean":
		return x, len(n.Input) == 1
	case "Add", "Sub", "Mul", "Div", "Pow":
		return neutralOperand(g, n, xi, yi)
	}
	return "", false
}

// inputAt returns input i of n, or "".
func inputAt(n *onnxpb.NodeProto, i int) string {
	if i < len(n.Input) {
		return n.Input[i]
	}
	return ""
}

// sameShape reports whether two values certainly have the same shape and element type.
func sameShape(a, b *shape.Info) bool {
	if a == nil || b == nil || !a.Ranked || !b.Ranked || len(a.Dims) != len(b.Dims) || a.DType != b.DType {
		return false
	}
	for k := range a.Dims {
		if !a.Dims[k].Same(b.Dims[k]) {
			return false
		}
	}
	return true
}

// fullSlice reports whether a Slice keeps every element in order.
func fullSlice(g *graph, n *onnxpb.NodeProto, xi *shape.Info) bool {
	if xi == nil || !xi.Ranked {
		return false
	}
	var starts, ends, axes, steps []int64
	if g.c.Opset < 10 {
		starts, _ = shape.AttrInts(n, "starts")
		ends, _ = shape.AttrInts(n, "ends")
		axes, _ = shape.AttrInts(n, "axes")
	} else {
		for i, dst := range []*[]int64{&starts, &ends, &axes, &steps} {
			name := inputAt(n, i+1)
			if name == "" {
				continue
			}
			t := g.constant(name)
			if t == nil {
				return false
			}
			*dst = ints(t)
		}
	}
	r := len(xi.Dims)
	for k := range starts {
		if k >= len(ends) {
			return false
		}
		a := int64(k)
		if len(axes) > 0 {
			a = axes[k]
		}
		if a < 0 {
			a += int64(r)
		}
		if a < 0 || a >= int64(r) {
			return false
		}
		step := int64(1)
		if len(steps) > 0 {
			step = steps[k]
		}
		if step != 1 {
			return false
		}
		d := xi.Dims[a]
		if d.IsKnown() {
			s, cnt := shape.SliceRange(starts[k], ends[k], 1, d.Value)
			if s != 0 || cnt != d.Value {
				return false
			}
		} else if starts[k] != 0 || ends[k] < math.MaxInt32 {
			return false
		}
	}
	return true
}

// padsOf reads a Pad node's pads (attribute or constant input).
func padsOf(g *graph, n *onnxpb.NodeProto) ([]int64, bool) {
	if g.c.Opset < 11 {
		p, ok := shape.AttrInts(n, "pads")
		if !ok {
			p, ok = shape.AttrInts(n, "paddings")
		}
		return p, ok
	}
	t := g.constant(inputAt(n, 1))
	if t == nil {
		return nil, false
	}
	return ints(t), true
}

// neutralOperand recognises x+0, 0+x, x-0, x*1, 1*x, x/1 and x^1 whose result has x's
// shape and type.
func neutralOperand(g *graph, n *onnxpb.NodeProto, xi, yi *shape.Info) (string, bool) {
	if len(n.Input) != 2 {
		return "", false
	}
	op := n.GetOpType()
	neutral := 0.0
	if op == "Mul" || op == "Div" || op == "Pow" {
		neutral = 1
	}
	try := func(x, k string) (string, bool) {
		t := g.constant(k)
		if t == nil || !numeric(t.DType) {
			return "", false
		}
		for _, v := range floats(t) {
			if v != neutral {
				return "", false
			}
		}
		return x, sameShape(g.c.info(x), yi)
	}
	if x, ok := try(n.Input[0], n.Input[1]); ok {
		return x, true
	}
	if op == "Add" || op == "Mul" {
		return try(n.Input[1], n.Input[0])
	}
	return "", false
}
