package passes

import (
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// FuseTranspose merges a Transpose that feeds only another Transpose into one (and drops
// both when the permutations cancel).
var FuseTranspose = &Pass{
	Name:    "fuse-transpose",
	Doc:     "merge consecutive Transposes; drop pairs that cancel",
	Default: true,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			count := 0
			for _, t2 := range g.g.Node {
				if g.removed[t2] || !is(t2, "Transpose") || len(t2.Input) != 1 {
					continue
				}
				t1 := g.produced(t2.Input[0])
				if !is(t1, "Transpose") || g.single(t1.Output[0]) != t2 {
					continue
				}
				p, ok1 := permOf(g, t1)
				q, ok2 := permOf(g, t2)
				if !ok1 || !ok2 || len(p) != len(q) {
					continue
				}
				// out2[i] = out1[q[i]] = in[p[q[i]]]
				r := make([]int64, len(q))
				identity := true
				for i := range q {
					r[i] = p[q[i]]
					identity = identity && r[i] == int64(i)
				}
				x := t1.Input[0]
				if identity {
					if g.bypass(t2, x, t2.Output[0]) {
						g.remove(t1)
						count++
					}
					continue
				}
				setAttr(t2, attrInts("perm", r))
				g.setInput(t2, 0, x)
				g.remove(t1)
				count++
			}
			return count, nil
		})
	},
}

// permOf returns a Transpose's permutation (the default reverses the axes, which needs the rank).
func permOf(g *graph, n *onnxpb.NodeProto) ([]int64, bool) {
	if p, ok := shape.AttrInts(n, "perm"); ok {
		r := int64(len(p))
		out := make([]int64, len(p))
		for i, v := range p {
			if v < 0 {
				v += r
			}
			out[i] = v
		}
		return out, true
	}
	r := g.c.info(n.Input[0]).Rank()
	if r < 0 {
		return nil, false
	}
	out := make([]int64, r)
	for i := range out {
		out[i] = int64(r - 1 - i)
	}
	return out, true
}

// CollapseReshape replaces chains of Reshape/Flatten/Squeeze/Unsqueeze by a single Reshape
// (nothing at all when the chain ends where it started), and Slice of one element followed
// by Squeeze of that axis by one Gather.
var CollapseReshape = &Pass{
	Name:    "collapse-reshape",
	Doc:     "collapse Reshape/Flatten/Squeeze/Unsqueeze chains; Slice+Squeeze of one element into Gather",
	Default: true,
	// The merged Reshape takes its target as an input (opset 5+) held in a new initializer.
	Applies: func(c *Context) bool { return ir4(c) && c.Opset >= 5 },
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			count := 0
			for _, n := range g.g.Node {
				if g.removed[n] || len(n.Output) != 1 {
					continue
				}
				if is(n, "Squeeze") && sliceSqueezeToGather(g, n) {
					count++
					continue
				}
				if !isReshapeLike(n) {
					continue
				}
				first := g.produced(n.Input[0])
				if !isReshapeLike(first) || g.single(first.Output[0]) != n {
					continue
				}
				x := first.Input[0]
				xi, yi := c.info(x), c.info(n.Output[0])
				if sameShape(xi, yi) {
					if g.bypass(n, x, n.Output[0]) {
						g.remove(first)
						count++
					}
					continue
				}
				target, ok := reshapeTarget(g, n, yi)
				if !ok {
					continue
				}
				// n becomes Reshape(x, target); first goes away.
				name := g.addInit(n.Output[0]+"_shape", tensor.FromInt64([]int64{int64(len(target))}, target))
				n.OpType = strPtr("Reshape")
				n.Attribute = nil
				g.setInput(n, 0, x)
				if len(n.Input) > 1 {
					g.setInput(n, 1, name)
					n.Input = n.Input[:2]
				} else {
					n.Input = append(n.Input, name)
					g.consumers[name] = append(g.consumers[name], n)
				}
				g.remove(first)
				count++
			}
			return count, nil
		})
	},
}

func strPtr(s string) *string { return &s }

// isReshapeLike reports whether n only changes its input's shape.
func isReshapeLike(n *onnxpb.NodeProto) bool {
	return is(n, "Reshape", "Flatten", "Squeeze", "Unsqueeze") && len(n.Output) == 1 && len(n.Input) > 0
}

// reshapeTarget is a Reshape target producing n's output from any input with the same
// number of elements: the static output shape, or n's own target when n is a Reshape
// whose target copies nothing (no 0 entries) from its immediate input.
func reshapeTarget(g *graph, n *onnxpb.NodeProto, yi *shape.Info) ([]int64, bool) {
	if s, ok := yi.Static(); ok {
		return s, true
	}
	if !is(n, "Reshape") || len(n.Input) < 2 || shape.AttrInt(n, "allowzero", 0) != 0 {
		return nil, false
	}
	t := g.constant(n.Input[1])
	if t == nil {
		return nil, false
	}
	target := ints(t)
	// Symbolic dims may still be expressed by one -1; a 0 would copy from the wrong tensor.
	for _, v := range target {
		if v == 0 {
			return nil, false
		}
	}
	return target, true
}

// sliceSqueezeToGather rewrites Squeeze(Slice(x, i:i+1 on axis a), axes=[a]) into
// Gather(x, i, axis=a): one node instead of two, same elements.
func sliceSqueezeToGather(g *graph, sq *onnxpb.NodeProto) bool {
	var axes []int64
	if g.c.Opset >= 13 {
		t := g.constant(inputAt(sq, 1))
		if t == nil {
			return false
		}
		axes = ints(t)
	} else {
		axes, _ = shape.AttrInts(sq, "axes")
	}
	sl := g.produced(sq.Input[0])
	if len(axes) != 1 || !is(sl, "Slice") || g.single(sl.Output[0]) != sq {
		return false
	}
	xi := g.c.info(sl.Input[0])
	r := xi.Rank()
	if r < 1 {
		return false
	}
	var starts, ends, saxes, steps []int64
	if g.c.Opset < 10 {
		starts, _ = shape.AttrInts(sl, "starts")
		ends, _ = shape.AttrInts(sl, "ends")
		saxes, _ = shape.AttrInts(sl, "axes")
	} else {
		for i, dst := range []*[]int64{&starts, &ends, &saxes, &steps} {
			name := inputAt(sl, i+1)
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
	if len(starts) != 1 || len(ends) != 1 || len(saxes) > 1 || (len(steps) == 1 && steps[0] != 1) || len(steps) > 1 {
		return false
	}
	a := int64(0)
	if len(saxes) == 1 {
		a = saxes[0]
	}
	if a < 0 {
		a += int64(r)
	}
	sa := axes[0]
	if sa < 0 {
		sa += int64(r)
	}
	if a != sa || a < 0 || a >= int64(r) {
		return false
	}
	var idx int64
	if d := xi.Dims[a]; d.IsKnown() {
		s, cnt := shape.SliceRange(starts[0], ends[0], 1, d.Value)
		if cnt != 1 {
			return false
		}
		idx = s
	} else if starts[0] >= 0 && ends[0] == starts[0]+1 {
		idx = starts[0]
	} else {
		return false
	}
	name := g.addInit(sl.Output[0]+"_index", tensor.FromInt64([]int64{}, []int64{idx}))
	sq.OpType = strPtr("Gather")
	sq.Attribute = []*onnxpb.AttributeProto{attrInt("axis", a)}
	g.setInput(sq, 0, sl.Input[0])
	if len(sq.Input) > 1 {
		g.setInput(sq, 1, name)
	} else {
		sq.Input = append(sq.Input, name)
		g.consumers[name] = append(g.consumers[name], sq)
	}
	g.remove(sl)
	return true
}
