package passes

import (
	"math"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// A per-channel affine map y = x*s + b (BatchNormalization in inference, or Mul/Add/Sub/Div
// by a constant that varies only along the channel axis) can be absorbed by the layer that
// produces x when that layer is linear in its weights: Conv, ConvTranspose, Gemm, MatMul
// with a constant 2-D weight, or another BatchNormalization.

// affineTarget describes how a producer's output channels map to its parameters.
type affineTarget struct {
	n       *onnxpb.NodeProto
	rank    int   // rank of the producer's output
	axis    int   // channel axis of the output
	ch      int64 // number of channels
	canBias bool  // whether an additive term can be absorbed
}

// targetOf returns the affine target of the node producing name, if it can absorb one.
func targetOf(g *graph, name string) (affineTarget, bool) {
	p := g.produced(name)
	if p == nil || len(p.Output) == 0 || p.Output[0] != name || g.single(name) == nil {
		return affineTarget{}, false
	}
	t := affineTarget{n: p, canBias: true}
	switch {
	case is(p, "Conv") && len(p.Output) == 1:
		w := g.constant(inputAt(p, 1))
		if w == nil || !isFloat(w.DType) || len(w.Shape) < 3 || (inputAt(p, 2) != "" && g.constant(p.Input[2]) == nil) {
			return t, false
		}
		t.rank, t.axis, t.ch = len(w.Shape), 1, w.Shape[0]
	case is(p, "ConvTranspose") && len(p.Output) == 1:
		w := g.constant(inputAt(p, 1))
		if w == nil || !isFloat(w.DType) || len(w.Shape) < 3 || (inputAt(p, 2) != "" && g.constant(p.Input[2]) == nil) {
			return t, false
		}
		t.rank, t.axis, t.ch = len(w.Shape), 1, w.Shape[1]*shape.AttrInt(p, "group", 1)
	case is(p, "Gemm") && g.c.Opset >= 7: // C broadcasts from opset 7
		b := g.constant(inputAt(p, 1))
		if b == nil || !isFloat(b.DType) || len(b.Shape) != 2 || (inputAt(p, 2) != "" && g.constant(p.Input[2]) == nil) {
			return t, false
		}
		t.rank, t.axis, t.ch = 2, 1, b.Shape[1]
		if shape.AttrInt(p, "transB", 0) != 0 {
			t.ch = b.Shape[0]
		}
	case is(p, "MatMul"):
		b := g.constant(inputAt(p, 1))
		r := g.c.info(name).Rank()
		if b == nil || !isFloat(b.DType) || len(b.Shape) != 2 || r < 2 || g.isConst(p.Input[0]) {
			return t, false
		}
		t.rank, t.axis, t.ch = r, r-1, b.Shape[1]
		// An additive term turns it into a Gemm (2-D only; C broadcasts from opset 7).
		t.canBias = g.c.info(p.Input[0]).Rank() == 2 && g.c.Opset >= 7
	case is(p, "BatchNormalization") && bnInference(g, p):
		s := g.constant(inputAt(p, 1))
		r := g.c.info(name).Rank()
		if s == nil || len(s.Shape) != 1 || r < 2 || g.constant(inputAt(p, 2)) == nil {
			return t, false
		}
		t.rank, t.axis, t.ch = r, 1, s.Shape[0]
	default:
		return t, false
	}
	return t, true
}

// bnInference reports whether a BatchNormalization computes the inference formula with
// constant statistics and only its first output in use.
func bnInference(g *graph, n *onnxpb.NodeProto) bool {
	if len(n.Input) != 5 || shape.AttrInt(n, "training_mode", 0) != 0 || shape.AttrInt(n, "spatial", 1) != 1 {
		return false
	}
	for _, o := range n.Output[1:] {
		if o != "" && g.used(o) {
			return false
		}
	}
	for _, in := range n.Input[1:] {
		if g.constant(in) == nil || !isFloat(g.constant(in).DType) {
			return false
		}
	}
	return true
}

// bnAffine returns BatchNormalization's per-channel scale and shift:
// s = scale/sqrt(var+eps), b = bias - mean*s.
func bnAffine(g *graph, n *onnxpb.NodeProto) (s, b []float64, ok bool) {
	scale, bias := g.constFloats(n.Input[1]), g.constFloats(n.Input[2])
	mean, variance := g.constFloats(n.Input[3]), g.constFloats(n.Input[4])
	c := len(scale)
	if c == 0 || len(bias) != c || len(mean) != c || len(variance) != c {
		return nil, nil, false
	}
	eps := float64(shape.AttrFloat(n, "epsilon", 1e-5))
	s, b = make([]float64, c), make([]float64, c)
	for i := range s {
		s[i] = scale[i] / math.Sqrt(variance[i]+eps)
		b[i] = bias[i] - mean[i]*s[i]
	}
	return s, b, true
}

// absorb rewrites the target so that its output becomes out*s + b (s or b may be nil).
func absorb(g *graph, t affineTarget, s, b []float64) bool {
	p := t.n
	switch p.GetOpType() {
	case "Conv", "ConvTranspose":
		w := g.constant(p.Input[1])
		var bias []float64
		if inputAt(p, 2) != "" {
			bias = g.constFloats(p.Input[2])
		}
		m := int(t.ch)
		if s != nil {
			var nw *tensor.Tensor
			if p.GetOpType() == "Conv" {
				per := int(w.Len()) / m
				nw = scaleBlocks(w, per, func(blk int) float64 { return s[blk] })
			} else {
				// W is [C, M/group, k...]: output channel of W[ic, j] is (ic/(C/group))*(M/group) + j.
				grp := int(shape.AttrInt(p, "group", 1))
				cin, mg := int(w.Shape[0]), int(w.Shape[1])
				per := int(w.Len()) / (cin * mg)
				nw = scaleBlocks(w, per, func(blk int) float64 {
					ic, j := blk/mg, blk%mg
					return s[(ic/(cin/grp))*mg+j]
				})
			}
			g.setConst(p, 1, p.Input[1], nw)
		}
		nb := newBias(bias, s, b, m)
		if nb != nil {
			g.setConst(p, 2, p.Input[1]+"_bias", makeFloats(w.DType, []int64{int64(m)}, nb))
		}
	case "BatchNormalization":
		scale, bias := g.constFloats(p.Input[1]), g.constFloats(p.Input[2])
		dt := g.constant(p.Input[1]).DType
		if s != nil {
			for c := range scale {
				scale[c] *= s[c]
			}
			g.setConst(p, 1, p.Input[1], makeFloats(dt, []int64{t.ch}, scale))
		}
		g.setConst(p, 2, p.Input[2], makeFloats(dt, []int64{t.ch}, newBias(bias, s, b, int(t.ch))))
	case "Gemm", "MatMul":
		w := g.constant(p.Input[1])
		transB := p.GetOpType() == "Gemm" && shape.AttrInt(p, "transB", 0) != 0
		needBias := b != nil || (p.GetOpType() == "Gemm" && inputAt(p, 2) != "")
		if _, _, _, ok := gemmBiasValues(g, p, int(t.ch), s, b); needBias && !ok {
			return false // checked before any weight changes
		}
		if s != nil {
			wv := floats(w)
			r, c := int(w.Shape[0]), int(w.Shape[1])
			for i := 0; i < r; i++ {
				for j := 0; j < c; j++ {
					if transB {
						wv[i*c+j] *= s[i]
					} else {
						wv[i*c+j] *= s[j]
					}
				}
			}
			g.setConst(p, 1, p.Input[1], makeFloats(w.DType, w.Shape, wv))
		}
		if b == nil && (p.GetOpType() == "MatMul" || inputAt(p, 2) == "") {
			break
		}
		if p.GetOpType() == "MatMul" {
			p.OpType = strPtr("Gemm")
		}
		return gemmBias(g, p, w.DType, int(t.ch), s, b)
	default:
		return false
	}
	return true
}

// newBias is bias*s + b per channel (bias or s nil meaning 0 and 1); nil when both are absent.
func newBias(bias, s, b []float64, m int) []float64 {
	if bias == nil && b == nil {
		return nil
	}
	out := make([]float64, m)
	for c := range out {
		if bias != nil {
			out[c] = bias[c]
			if s != nil {
				out[c] *= s[c]
			}
		}
		if b != nil {
			out[c] += b[c]
		}
	}
	return out
}

// gemmBias updates Gemm's C so that beta*C' = beta*C*s + b, keeping C's broadcast shape
// ([N], [1,N] or [M,N]; a scalar or missing C becomes [N]). It changes nothing and
// reports false when C is not per-column (e.g. [M,1]).
func gemmBias(g *graph, p *onnxpb.NodeProto, dt tensor.DType, n int, s, b []float64) bool {
	cv, cshape, beta, ok := gemmBiasValues(g, p, n, s, b)
	if !ok {
		return false
	}
	if beta != float64(shape.AttrFloat(p, "beta", 1)) {
		setAttr(p, attrFloat("beta", float32(beta)))
	}
	g.setConst(p, 2, p.Input[1]+"_bias", makeFloats(dt, cshape, cv))
	return true
}

// gemmBiasValues computes gemmBias's new C (and beta) without changing the graph.
func gemmBiasValues(g *graph, p *onnxpb.NodeProto, n int, s, b []float64) (cv []float64, cshape []int64, beta float64, ok bool) {
	beta = float64(shape.AttrFloat(p, "beta", 1))
	cshape = []int64{int64(n)}
	if name := inputAt(p, 2); name != "" && beta != 0 {
		ct := g.constant(name)
		if ct == nil {
			return nil, nil, 0, false
		}
		cv = floats(ct)
		switch {
		case len(ct.Shape) == 2 && ct.Shape[1] == int64(n):
			cshape = append([]int64(nil), ct.Shape...)
		case len(cv) == 1:
			one := cv[0]
			cv = make([]float64, n)
			for j := range cv {
				cv[j] = one
			}
		case len(ct.Shape) == 1 && ct.Shape[0] == int64(n):
		default:
			return nil, nil, 0, false // e.g. [M,1]: per-row, not per-channel
		}
	} else {
		cv, beta = make([]float64, n), 1
	}
	for i := range cv {
		j := i % n
		if s != nil {
			cv[i] *= s[j]
		}
		if b != nil {
			cv[i] += b[j] / beta
		}
	}
	return cv, cshape, beta, true
}

// FuseBatchNorm folds an inference BatchNormalization into the Conv, ConvTranspose, Gemm,
// MatMul or BatchNormalization before it, when that layer's weights are constant and its
// output feeds nothing else.
var FuseBatchNorm = &Pass{
	Name:    "fuse-batchnorm",
	Doc:     "fold BatchNormalization into the preceding Conv/ConvTranspose/Gemm/MatMul",
	Default: true,
	Applies: ir4,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			count := 0
			for _, bn := range g.g.Node {
				if g.removed[bn] || !is(bn, "BatchNormalization") || !bnInference(g, bn) {
					continue
				}
				t, ok := targetOf(g, bn.Input[0])
				if !ok || t.axis != 1 || is(t.n, "BatchNormalization") {
					continue
				}
				s, b, ok := bnAffine(g, bn)
				if !ok || int64(len(s)) != t.ch || !canBypass(g, bn, t.n) {
					continue
				}
				if absorb(g, t, s, b) && g.bypass(bn, bn.Input[0], bn.Output[0]) {
					count++
				}
			}
			return count, nil
		})
	},
}

// canBypass reports whether node n (reading target's output) can be removed: either its
// output is internal, or the target's output can take its name.
func canBypass(g *graph, n, target *onnxpb.NodeProto) bool {
	if !g.pinned[n.Output[0]] {
		return true
	}
	for _, o := range n.Output[1:] {
		if o != "" && g.used(o) {
			return false
		}
	}
	return !hasSubgraph(target) && !g.pinned[target.Output[0]]
}

// FuseAffine folds Mul/Add/Sub/Div by a per-channel constant into the layer before it
// (Conv, ConvTranspose, Gemm, MatMul, BatchNormalization), and a per-channel Mul, or an
// Add when the convolution has no padding, into the Conv after it.
var FuseAffine = &Pass{
	Name:    "fuse-affine",
	Doc:     "fold per-channel Mul/Add/Sub/Div by constants into neighbouring Conv/ConvTranspose/Gemm/MatMul/BatchNormalization weights",
	Default: true,
	Applies: ir4,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			count := 0
			for _, n := range g.g.Node {
				if g.removed[n] || !is(n, "Mul", "Add", "Sub", "Div") || len(n.Output) != 1 {
					continue
				}
				if absorbAfter(g, n) || absorbBefore(g, n) {
					count++
				}
			}
			return count, nil
		})
	},
}

// affineOf reads n = x ∘ k as x*s + b along a target's channel axis.
func affineOf(g *graph, n *onnxpb.NodeProto, rank, axis int, ch int64) (x string, s, b []float64, ok bool) {
	op := n.GetOpType()
	x, k, ok := constOperand(g, n, op == "Mul" || op == "Add")
	if !ok {
		return "", nil, nil, false
	}
	v, ok := channelVector(k, rank, axis, ch)
	if !ok {
		return "", nil, nil, false
	}
	switch op {
	case "Mul":
		s = v
	case "Div":
		for _, d := range v {
			if d == 0 {
				return "", nil, nil, false
			}
		}
		s = make([]float64, len(v))
		for i, d := range v {
			s[i] = 1 / d
		}
	case "Add":
		b = v
	case "Sub":
		b = make([]float64, len(v))
		for i, d := range v {
			b[i] = -d
		}
	}
	return x, s, b, true
}

// absorbAfter folds n into the layer producing its non-constant input.
func absorbAfter(g *graph, n *onnxpb.NodeProto) bool {
	op := n.GetOpType()
	x, _, ok := constOperand(g, n, op == "Mul" || op == "Add")
	if !ok {
		return false
	}
	t, ok := targetOf(g, x)
	if !ok {
		return false
	}
	_, s, b, ok := affineOf(g, n, t.rank, t.axis, t.ch)
	if !ok || (b != nil && !t.canBias) || !sameDType(g, n, t.n) || !canBypass(g, n, t.n) {
		return false
	}
	return absorb(g, t, s, b) && g.bypass(n, x, n.Output[0])
}

// sameDType checks that the constant does not change the element type (it cannot in a
// valid model, but a malformed one must not be "fixed" silently).
func sameDType(g *graph, n, target *onnxpb.NodeProto) bool {
	a, b := g.c.info(n.Output[0]), g.c.info(target.Output[0])
	return a == nil || b == nil || a.DType == b.DType || a.DType == tensor.Undefined || b.DType == tensor.Undefined
}

// absorbBefore folds n into the layer that is the only reader of its output:
// Conv(x*s) scales the weights per input channel, and Conv(x+b) adds W·b to the bias when
// the convolution reads no padding (padding would see 0, not b); MatMul(x*s, W) scales
// W's rows and MatMul(x+b, W) + c becomes MatMul(x, W) + (c + b·W).
func absorbBefore(g *graph, n *onnxpb.NodeProto) bool {
	next := g.single(n.Output[0])
	if next == nil || len(next.Input) < 2 || next.Input[0] != n.Output[0] || countIn(next, n.Output[0]) != 1 {
		return false
	}
	switch {
	case is(next, "Conv"):
		return absorbBeforeConv(g, n, next)
	case is(next, "MatMul", "Gemm"):
		return absorbBeforeMatMul(g, n, next)
	}
	return false
}

func absorbBeforeConv(g *graph, n, conv *onnxpb.NodeProto) bool {
	w := g.constant(conv.Input[1])
	if w == nil || !isFloat(w.DType) || len(w.Shape) < 3 || (inputAt(conv, 2) != "" && g.constant(conv.Input[2]) == nil) {
		return false
	}
	grp := shape.AttrInt(conv, "group", 1)
	cin := w.Shape[1] * grp
	r := len(w.Shape)
	x, s, b, ok := affineOf(g, n, r, 1, cin)
	if !ok || !hasChannels(g, x, r, 1, cin) {
		return false
	}
	if b != nil && !noPadding(conv) {
		return reorderIntoConv(g, n, conv, x, b, w, cin)
	}
	m, cg := int(w.Shape[0]), int(w.Shape[1])
	per := int(w.Len()) / (m * cg)
	mg := m / int(grp)
	if s != nil {
		g.setConst(conv, 1, conv.Input[1], scaleConvInputs(w, s, m, cg, per, mg))
	} else {
		var bias []float64
		if inputAt(conv, 2) != "" {
			bias = g.constFloats(conv.Input[2])
		} else {
			bias = make([]float64, m)
		}
		wv := floats(w)
		for oc := 0; oc < m; oc++ {
			gi := oc / mg
			sum := 0.0
			for ci := 0; ci < cg; ci++ {
				base := (oc*cg + ci) * per
				for k := base; k < base+per; k++ {
					sum += wv[k] * b[gi*cg+ci]
				}
			}
			bias[oc] += sum
		}
		g.setConst(conv, 2, conv.Input[1]+"_bias", makeFloats(w.DType, []int64{int64(m)}, bias))
	}
	g.setInput(conv, 0, x)
	g.remove(n)
	return true
}

// scaleConvInputs multiplies Conv weights [m, cg, k...] by s per input channel.
func scaleConvInputs(w *tensor.Tensor, s []float64, m, cg, per, mg int) *tensor.Tensor {
	return scaleBlocks(w, per, func(blk int) float64 {
		oc, ci := blk/cg, blk%cg
		return s[(oc/mg)*cg+ci]
	})
}

// scaleBlocks returns a copy of a float tensor whose consecutive blocks of n elements are
// multiplied by f(block index). Each product is computed in float64 and rounded once.
func scaleBlocks(w *tensor.Tensor, n int, f func(blk int) float64) *tensor.Tensor {
	if w.DType == tensor.Float32 {
		src := w.Float32s()
		out := tensor.New(tensor.Float32, w.Shape)
		dst := out.Float32s()
		for blk := 0; blk*n < len(src); blk++ {
			k := f(blk)
			for i := blk * n; i < (blk+1)*n; i++ {
				dst[i] = float32(float64(src[i]) * k)
			}
		}
		return out
	}
	v := floats(w)
	for i := range v {
		v[i] *= f(i / n)
	}
	return makeFloats(w.DType, w.Shape, v)
}

// hasChannels reports whether x already has ch channels on axis of a rank-r tensor, so a
// per-channel constant applied to it did not widen it.
func hasChannels(g *graph, x string, r, axis int, ch int64) bool {
	xi := g.c.info(x)
	return xi.Rank() == r && xi.Dims[axis].IsKnown() && xi.Dims[axis].Value == ch
}

// reorderIntoConv handles Conv(x*a + b) for a padded Conv: the padding forbids folding b,
// but x*a + b = (x + b/a)*a, and the scale a still folds into the weights, leaving one
// Add(x, b/a) instead of Mul and Add. Needs a nonzero, well-conditioned a.
func reorderIntoConv(g *graph, add, conv *onnxpb.NodeProto, y string, b []float64, w *tensor.Tensor, cin int64) bool {
	mul := g.produced(y)
	if !is(mul, "Mul") || g.single(y) != add {
		return false
	}
	r := len(w.Shape)
	x, a, _, ok := affineOf(g, mul, r, 1, cin)
	if !ok || a == nil || !hasChannels(g, x, r, 1, cin) {
		return false
	}
	shift := make([]float64, len(a))
	for c := range a {
		if math.Abs(a[c]) < 1e-6 || math.Abs(b[c]/a[c]) > 1e6 {
			return false
		}
		shift[c] = b[c] / a[c]
	}
	m, cg := int(w.Shape[0]), int(w.Shape[1])
	nw := scaleConvInputs(w, a, m, cg, int(w.Len())/(m*cg), m/int(shape.AttrInt(conv, "group", 1)))
	g.setConst(conv, 1, conv.Input[1], nw)
	kshape := make([]int64, r)
	for k := range kshape {
		kshape[k] = 1
	}
	kshape[1] = cin
	name := g.addInit(add.Output[0]+"_shift", makeFloats(w.DType, kshape[1:], shift))
	add.OpType = strPtr("Add")
	g.setInput(add, 0, x)
	g.setInput(add, 1, name)
	g.remove(mul)
	return true
}

func absorbBeforeMatMul(g *graph, n, mm *onnxpb.NodeProto) bool {
	w := g.constant(mm.Input[1])
	if w == nil || !isFloat(w.DType) || len(w.Shape) != 2 {
		return false
	}
	gemm := is(mm, "Gemm")
	if gemm && g.c.Opset < 7 {
		return false // Gemm's C did not broadcast before opset 7
	}
	if gemm && (shape.AttrInt(mm, "transA", 0) != 0 || (inputAt(mm, 2) != "" && g.constant(mm.Input[2]) == nil)) {
		return false
	}
	transB := gemm && shape.AttrInt(mm, "transB", 0) != 0
	k, nOut := int(w.Shape[0]), int(w.Shape[1])
	if transB {
		k, nOut = nOut, k
	}
	r := g.c.info(n.Output[0]).Rank()
	if r < 2 || gemm && r != 2 {
		return false
	}
	x, s, b, ok := affineOf(g, n, r, r-1, int64(k))
	if !ok || !hasChannels(g, x, r, r-1, int64(k)) {
		return false
	}
	wv := floats(w)
	at := func(i, j int) int { // element (row i of K, column j of N)
		if transB {
			return j*k + i
		}
		return i*nOut + j
	}
	if s != nil {
		for i := 0; i < k; i++ {
			for j := 0; j < nOut; j++ {
				wv[at(i, j)] *= s[i]
			}
		}
		g.setConst(mm, 1, mm.Input[1], makeFloats(w.DType, w.Shape, wv))
	} else {
		// b·W is a constant row added to every output row.
		shift := make([]float64, nOut)
		for j := 0; j < nOut; j++ {
			for i := 0; i < k; i++ {
				shift[j] += b[i] * wv[at(i, j)]
			}
		}
		if gemm {
			if !gemmBias(g, mm, w.DType, nOut, nil, shift) {
				return false
			}
		} else {
			add := g.single(mm.Output[0])
			if !is(add, "Add") {
				return false
			}
			y, c, ok := constOperand(g, add, true)
			if !ok || y != mm.Output[0] {
				return false
			}
			cv, ok := channelVector(c, r, r-1, int64(nOut))
			if !ok || c.DType != w.DType {
				return false
			}
			for j := range cv {
				cv[j] += shift[j]
			}
			idx := 1
			if add.Input[0] != y {
				idx = 0
			}
			g.setConst(add, idx, add.Input[idx], makeFloats(c.DType, []int64{int64(nOut)}, cv))
		}
	}
	g.setInput(mm, 0, x)
	g.remove(n)
	return true
}

// noPadding reports whether a Conv reads only real input elements.
func noPadding(n *onnxpb.NodeProto) bool {
	switch shape.AttrString(n, "auto_pad", "NOTSET") {
	case "VALID":
		return true
	case "NOTSET", "":
	default:
		return false
	}
	pads, _ := shape.AttrInts(n, "pads")
	for _, p := range pads {
		if p != 0 {
			return false
		}
	}
	return true
}
