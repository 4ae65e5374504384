package passes

import (
	"math"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// FuseMatMulAdd turns MatMul(A, B) + C into Gemm(A, B, C) when A and B are 2-D and C is a
// constant that Gemm can broadcast to [M, N] without widening the result.
var FuseMatMulAdd = &Pass{
	Name:    "fuse-matmul-add",
	Doc:     "MatMul + Add into Gemm (2-D operands, constant bias)",
	Default: true,
	Applies: func(c *Context) bool { return c.Opset >= 7 },
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			count := 0
			for _, add := range g.g.Node {
				if g.removed[add] || !is(add, "Add") || len(add.Input) != 2 {
					continue
				}
				x, k, ok := constOperand(g, add, true)
				mm := g.produced(x)
				if !ok || !is(mm, "MatMul") || g.single(x) != add || !canBypass(g, add, mm) {
					continue
				}
				ai, bi, yi := c.info(mm.Input[0]), c.info(mm.Input[1]), c.info(x)
				if ai.Rank() != 2 || bi.Rank() != 2 || yi.Rank() != 2 || !isFloat(k.DType) || yi.DType != k.DType {
					continue
				}
				if !gemmBroadcastable(k.Shape, yi.Dims) {
					continue
				}
				mm.OpType = strPtr("Gemm")
				mm.Input = append(mm.Input, add.Input[0])
				if g.constant(add.Input[0]) != k {
					mm.Input[2] = add.Input[1]
				}
				g.consumers[mm.Input[2]] = append(g.consumers[mm.Input[2]], mm)
				if g.bypass(add, x, add.Output[0]) {
					count++
				}
			}
			return count, nil
		})
	},
}

// gemmBroadcastable reports whether a bias of shape c broadcasts unidirectionally to the
// output dims [M, N] (each of c's dims 1 or equal to the output's).
func gemmBroadcastable(c []int64, out []shape.Dim) bool {
	if len(c) > 2 {
		return false
	}
	off := 2 - len(c)
	for j, d := range c {
		o := out[j+off]
		if d != 1 && (!o.IsKnown() || o.Value != d) {
			return false
		}
	}
	return true
}

// FuseHardSwish recognises the decomposed hard-swish x*clip(x+3, 0, 6)/6 that exporters emit
// (and hard-sigmoid clip(x+3, 0, 6)/6). It becomes HardSwish (opset 14+) or
// x*HardSigmoid(x; 1/6, 1/2), two nodes instead of four.
var FuseHardSwish = &Pass{
	Name:    "fuse-hardswish",
	Doc:     "x*clip(x+3,0,6)/6 into HardSwish (opset>=14) or Mul(x, HardSigmoid(x))",
	Default: true,
	Applies: func(c *Context) bool { return c.Opset >= 6 },
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			count := 0
			for _, n := range g.g.Node {
				if g.removed[n] {
					continue
				}
				if fuseHardSwish(g, n) {
					count++
				}
			}
			return count, nil
		})
	},
}

// scalarConst returns the value of a one-element float constant.
func scalarConst(g *graph, name string) (float64, bool) {
	t := g.constant(name)
	if t == nil || t.Len() != 1 || !isFloat(t.DType) {
		return 0, false
	}
	return floats(t)[0], true
}

// scaledBy returns x and f when n computes x*f or x/(1/f) with a scalar constant.
func scaledBy(g *graph, n *onnxpb.NodeProto) (string, float64, bool) {
	if is(n, "Div") {
		x, _, ok := constOperand(g, n, false)
		if v, vok := scalarConst(g, inputAt(n, 1)); ok && vok && v != 0 {
			return x, 1 / v, true
		}
	}
	if is(n, "Mul") {
		x, k, ok := constOperand(g, n, true)
		if ok && k.Len() == 1 && isFloat(k.DType) {
			return x, floats(k)[0], true
		}
	}
	return "", 0, false
}

// hardSigmoidOf matches clip(x+3, 0, 6) (n is the Clip) and returns x.
func hardSigmoidOf(g *graph, clip *onnxpb.NodeProto) (string, bool) {
	if !is(clip, "Clip") {
		return "", false
	}
	lo, hi := math.Inf(-1), math.Inf(1)
	if g.c.Opset < 11 {
		lo = float64(shape.AttrFloat(clip, "min", float32(math.Inf(-1))))
		hi = float64(shape.AttrFloat(clip, "max", float32(math.Inf(1))))
	} else {
		var ok bool
		if inputAt(clip, 1) != "" {
			if lo, ok = scalarConst(g, clip.Input[1]); !ok {
				return "", false
			}
		}
		if inputAt(clip, 2) != "" {
			if hi, ok = scalarConst(g, clip.Input[2]); !ok {
				return "", false
			}
		}
	}
	if lo != 0 || hi != 6 {
		return "", false
	}
	add := g.produced(clip.Input[0])
	if !is(add, "Add") || g.single(add.Output[0]) != clip {
		return "", false
	}
	x, k, ok := constOperand(g, add, true)
	if !ok || k.Len() != 1 || !isFloat(k.DType) || floats(k)[0] != 3 {
		return "", false
	}
	return x, true
}

// fuseHardSwish tries the patterns ending at n:
//
//	y = (x * clip(x+3,0,6)) / 6      (n is the Div or Mul by 1/6)
//	y = x * (clip(x+3,0,6) / 6)      (n is the outer Mul)
//	y = clip(x+3,0,6) / 6            (hard-sigmoid only)
func fuseHardSwish(g *graph, n *onnxpb.NodeProto) bool {
	const sixth = 1.0 / 6
	near := func(f float64) bool { return math.Abs(f-sixth) < 1e-6 }
	// x * (clip/6) or clip/6
	if inner, f, ok := scaledBy(g, n); ok && near(f) {
		if clip := g.produced(inner); clip != nil && g.single(inner) == n {
			if x, ok := hardSigmoidOf(g, clip); ok {
				// n = clip/6: a hard-sigmoid. Is it the factor of x*hs?
				if mul := g.single(n.Output[0]); is(mul, "Mul") && len(mul.Input) == 2 && countIn(mul, n.Output[0]) == 1 && (mul.Input[0] == x || mul.Input[1] == x) {
					return replaceHardSwish(g, x, []*onnxpb.NodeProto{g.produced(clip.Input[0]), clip, n}, mul)
				}
				hs := newNode("HardSigmoid", n.GetName(), []string{x}, []string{n.Output[0]}, attrFloat("alpha", float32(sixth)), attrFloat("beta", 0.5))
				g.remove(g.produced(clip.Input[0]))
				g.remove(clip)
				g.remove(n)
				g.insertAfter(n, hs)
				return true
			}
			// (x*clip)/6
			if is(clip, "Mul") && len(clip.Input) == 2 {
				mul := clip
				for side := 0; side < 2; side++ {
					c := g.produced(mul.Input[side])
					if c == nil || g.single(mul.Input[side]) != mul {
						continue
					}
					if x, ok := hardSigmoidOf(g, c); ok && mul.Input[1-side] == x {
						return replaceHardSwish(g, x, []*onnxpb.NodeProto{g.produced(c.Input[0]), c, mul}, n)
					}
				}
			}
		}
	}
	// x * HardSigmoid(x; 1/6, 1/2) at opset 14: a HardSwish.
	if g.c.Opset >= 14 && is(n, "Mul") && len(n.Input) == 2 {
		for side := 0; side < 2; side++ {
			hs := g.produced(n.Input[side])
			if is(hs, "HardSigmoid") && g.single(hs.Output[0]) == n && hs.Input[0] == n.Input[1-side] &&
				near(float64(shape.AttrFloat(hs, "alpha", 0.2))) && shape.AttrFloat(hs, "beta", 0.5) == 0.5 {
				return replaceHardSwish(g, hs.Input[0], []*onnxpb.NodeProto{hs}, n)
			}
		}
	}
	return false
}

// replaceHardSwish removes the matched nodes (the last of which produces the result) and
// inserts the fused form producing the same output name.
func replaceHardSwish(g *graph, x string, inner []*onnxpb.NodeProto, last *onnxpb.NodeProto) bool {
	for _, m := range inner {
		if m == nil {
			return false
		}
	}
	out := last.Output[0]
	for _, m := range inner {
		g.remove(m)
	}
	g.remove(last)
	if g.c.Opset >= 14 {
		g.insertAfter(last, newNode("HardSwish", last.GetName(), []string{x}, []string{out}))
		return true
	}
	hsOut := g.unique(out + "_hardsigmoid")
	hs := newNode("HardSigmoid", last.GetName()+"_hardsigmoid", []string{x}, []string{hsOut},
		attrFloat("alpha", float32(1.0/6)), attrFloat("beta", 0.5))
	g.insertAfter(last, hs)
	g.insertAfter(last, newNode("Mul", last.GetName(), []string{x, hsOut}, []string{out}))
	return true
}

// FuseConstChains merges consecutive Mul/Div by constants into one Mul, and Add/Sub of
// constants into one Add: (x*a)*b = x*(a*b), (x+a)+b = x+(a+b).
var FuseConstChains = &Pass{
	Name:    "fuse-const-chains",
	Doc:     "merge chains of Mul/Div (or Add/Sub) by constants into one node",
	Default: true,
	Applies: ir4,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			count := 0
			for _, n := range g.g.Node {
				if g.removed[n] || !is(n, "Mul", "Div", "Add", "Sub") {
					continue
				}
				if mergeChain(g, n) {
					count++
				}
			}
			return count, nil
		})
	},
}

// linearOf reads n as x*k (mul) or x+k (add), with Div and Sub folded into k.
func linearOf(g *graph, n *onnxpb.NodeProto) (x string, k *tensor.Tensor, mul bool, ok bool) {
	op := n.GetOpType()
	x, k, ok = constOperand(g, n, op == "Mul" || op == "Add")
	if !ok || !isFloat(k.DType) {
		return "", nil, false, false
	}
	switch op {
	case "Div":
		v := floats(k)
		for i := range v {
			if v[i] == 0 {
				return "", nil, false, false
			}
			v[i] = 1 / v[i]
		}
		k = makeFloats(k.DType, k.Shape, v)
	case "Sub":
		v := floats(k)
		for i := range v {
			v[i] = -v[i]
		}
		k = makeFloats(k.DType, k.Shape, v)
	}
	return x, k, op == "Mul" || op == "Div", true
}

// mergeChain folds the constant of n's producer into n when both are the same kind.
func mergeChain(g *graph, n *onnxpb.NodeProto) bool {
	y, k2, mul2, ok := linearOf(g, n)
	if !ok {
		return false
	}
	p := g.produced(y)
	if p == nil || !is(p, "Mul", "Div", "Add", "Sub") || g.single(y) != n {
		return false
	}
	x, k1, mul1, ok := linearOf(g, p)
	if !ok || mul1 != mul2 || k1.DType != k2.DType {
		return false
	}
	op := "Add"
	if mul1 {
		op = "Mul"
	}
	r, err := Evaluate(newNode(op, "", nil, nil), g.c.Opset, []*tensor.Tensor{k1, k2})
	if err != nil {
		return false
	}
	name := g.addInit(n.Output[0]+"_const", r[0])
	n.OpType = strPtr(op)
	g.setInput(n, 0, x)
	g.setInput(n, 1, name)
	g.remove(p)
	return true
}
