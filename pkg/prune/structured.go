package prune

import (
	"fmt"
	"math"
	"slices"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Structured pruning deletes output channels. Deleting channel k of a Conv's output changes
// every tensor that value reaches: the next layer's input channels, BatchNormalization
// parameters, per-channel constants of Add/Mul, the other operand of a residual Add (whose
// producer must then drop the same channel), the channels a depthwise conv passes through,
// the position of the channel inside a Concat or a flattened vector.
//
// The analysis walks the graph once in topological order and tags each value that carries
// prunable channels with a channel group (a component of a union-find) and the axis holding
// them. Operators that keep channels aligned (elementwise ops, pooling, normalization,
// depthwise conv, Resize) join the groups of their inputs and output; operators that read
// channels (Conv, Gemm, MatMul) record which weight slice follows which group; operators it
// cannot adjust mark the group fixed, with the reason. Concat and Flatten/Reshape create
// derived groups whose channel indices are computed from their parts. Only after the whole
// graph is seen are channels chosen, so a group fixed late (it reaches a graph output) is
// never half pruned.

type compKind uint8

const (
	kindSource compKind = iota // channels made by prunable layers; channels are chosen here
	kindConcat                 // a Concat along the channel axis: its parts' channels in order
	kindExpand                 // a flattened [N, C·S] view: parent channel c became entries c·S … c·S+S-1
)

type component struct {
	parent    int
	kind      compKind
	c         int   // channels; 0 while unknown (an expand whose block size is not known yet)
	s         int   // kindExpand: entries per parent channel, 0 while unknown
	parts     []int // kindConcat: parts in order; kindExpand: the parent
	producers []string
	fixed     string // why the group cannot be pruned; "" when it can
	removed   []int  // chosen channels to delete (kindSource)
}

// use is one tensor slice that follows a group: input `input` of node, along axis.
type use struct {
	node  *onnxpb.NodeProto
	input int
	axis  int
	comp  int
	score bool // an output-channel slice of a layer: it ranks the group's channels
}

// chanRef says where a value's channels are: in group comp, on axis negAxis counted from the
// end (broadcasting aligns axes from the end), in a tensor of rank rank (0: unknown).
type chanRef struct {
	comp    int
	negAxis int
	rank    int
}

// targetEdit is a Reshape target entry to rewrite when the channel count changes: input
// `input` of node (the Reshape, or the Concat that builds its target) becomes vals with
// vals[pos] set to the new flattened size.
type targetEdit struct {
	node  *onnxpb.NodeProto
	input int
	vals  []int64
	pos   int
	dtype tensor.DType
	comp  int
}

type analysis struct {
	gr        *graph
	sel       matcher
	comps     []*component
	vals      map[string]*chanRef
	uses      []use
	groups    []use // depthwise convs whose group attribute is the channel count
	targets   []targetEdit
	producer  map[string]*onnxpb.NodeProto
	consumers map[string][]*onnxpb.NodeProto
	// bnScale is |γ|/√(σ²+ε) of the BatchNormalization right after a layer: the factor by
	// which it rescales each output channel, folded into the channel's norm (raw weight norms
	// say little when a BatchNorm renormalizes every channel anyway).
	bnScale map[*onnxpb.NodeProto][]float64
}

func newAnalysis(gr *graph, sel matcher) *analysis {
	a := &analysis{gr: gr, sel: sel, vals: map[string]*chanRef{}, bnScale: map[*onnxpb.NodeProto][]float64{},
		producer: map[string]*onnxpb.NodeProto{}, consumers: map[string][]*onnxpb.NodeProto{}}
	ix := onnx.NewIndex(gr.g)
	for v, i := range ix.Producer {
		a.producer[v] = gr.g.Node[i]
	}
	for v, is := range ix.Consumers {
		for _, i := range is {
			a.consumers[v] = append(a.consumers[v], gr.g.Node[i])
		}
	}
	return a
}

// ---- union-find over channel groups ----

func (a *analysis) newComp(kind compKind, c int, producer string) int {
	id := len(a.comps)
	cp := &component{parent: id, kind: kind, c: c}
	if producer != "" {
		cp.producers = []string{producer}
	}
	a.comps = append(a.comps, cp)
	return id
}

func (a *analysis) find(i int) int {
	for a.comps[i].parent != i {
		a.comps[i].parent = a.comps[a.comps[i].parent].parent
		i = a.comps[i].parent
	}
	return i
}

func (a *analysis) fix(i int, reason string) {
	if c := a.comps[a.find(i)]; c.fixed == "" {
		c.fixed = reason
	}
}

// union joins two groups whose channels must be pruned identically. Derived groups cannot
// join another group (their indices are computed, not chosen), and groups of different
// sizes cannot be the same channels: both are then fixed.
func (a *analysis) union(x, y int, where string) int {
	rx, ry := a.find(x), a.find(y)
	if rx == ry {
		return rx
	}
	cx, cy := a.comps[rx], a.comps[ry]
	if cx.kind != kindSource || cy.kind != kindSource {
		reason := where + " joins a concatenated or flattened channel group with another group"
		a.fix(rx, reason)
		a.fix(ry, reason)
		return rx
	}
	if cx.c != cy.c {
		reason := fmt.Sprintf("%s joins groups of %d and %d channels", where, cx.c, cy.c)
		a.fix(rx, reason)
		a.fix(ry, reason)
		return rx
	}
	cy.parent = rx
	cx.producers = append(cx.producers, cy.producers...)
	if cx.fixed == "" {
		cx.fixed = cy.fixed
	}
	return rx
}

// channels is a group's channel count, 0 when not known yet.
func (a *analysis) channels(root int) int {
	c := a.comps[root]
	if c.kind == kindExpand && c.c == 0 && c.s > 0 {
		if pc := a.channels(a.find(c.parts[0])); pc > 0 {
			c.c = pc * c.s
		}
	}
	return c.c
}

// matchSize checks that a tensor dimension of size n reads the group's channels; for a
// flattened group of unknown block size, it fixes the block size from n.
func (a *analysis) matchSize(root int, n int64) bool {
	if c := a.channels(root); c > 0 {
		return int64(c) == n
	}
	cp := a.comps[root]
	if cp.kind != kindExpand {
		return false
	}
	pc := int64(a.channels(a.find(cp.parts[0])))
	if pc <= 0 || n <= 0 || n%pc != 0 {
		return false
	}
	cp.s, cp.c = int(n/pc), int(n)
	return true
}

func (a *analysis) ref(v string) *chanRef {
	if v == "" {
		return nil
	}
	return a.vals[v]
}

// track records that value v carries group comp's channels on negAxis.
func (a *analysis) track(v string, comp, negAxis, rank int, where string) {
	if v == "" {
		return
	}
	if old := a.vals[v]; old != nil {
		if old.negAxis != negAxis {
			reason := where + " sees the channels on two different axes"
			a.fix(old.comp, reason)
			a.fix(comp, reason)
			return
		}
		a.union(old.comp, comp, where)
		return
	}
	a.vals[v] = &chanRef{comp: comp, negAxis: negAxis, rank: rank}
}

func (a *analysis) addUse(n *onnxpb.NodeProto, in, axis, comp int, score bool) {
	a.uses = append(a.uses, use{node: n, input: in, axis: axis, comp: comp, score: score})
}

// consume records that input `in` of n reads group comp along axis, checking the size.
func (a *analysis) consume(n *onnxpb.NodeProto, in, axis, comp int, size int64) {
	root := a.find(comp)
	if !a.matchSize(root, size) {
		a.fix(root, fmt.Sprintf("%s reads %d channels where the group has %d", onnx.NodeLabel(n), size, a.channels(root)))
		return
	}
	a.addUse(n, in, axis, root, false)
}

// axisOf is the non-negative channel axis, -1 when the rank is unknown.
func axisOf(r *chanRef) int {
	if r.rank <= 0 {
		return -1
	}
	return r.rank + r.negAxis
}

// opaque: n cannot follow pruned channels; every group it reads is fixed.
func (a *analysis) opaque(n *onnxpb.NodeProto, why string) {
	for _, in := range n.Input {
		if r := a.ref(in); r != nil {
			a.fix(r.comp, fmt.Sprintf("%s %s", onnx.NodeLabel(n), why))
		}
	}
}

// fixOthers fixes the groups of tracked inputs of n other than the data input 0 (shapes,
// scales, bounds that happen to be computed from pruned channels).
func (a *analysis) fixOthers(n *onnxpb.NodeProto) {
	for i, in := range n.Input {
		if r := a.ref(in); r != nil && i > 0 {
			a.fix(r.comp, fmt.Sprintf("%s uses the channels as input %d", onnx.NodeLabel(n), i))
		}
	}
}

func (a *analysis) used(v string) bool {
	return v != "" && (len(a.consumers[v]) > 0 || a.gr.outputs[v])
}

func (a *analysis) constOrEmpty(name string) bool { return name == "" || a.gr.constant(name) != nil }

// ---- the walk ----

var unaryOps = setOf("Relu", "LeakyRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "HardSwish",
	"Tanh", "Softplus", "Softsign", "Abs", "Neg", "Exp", "Log", "Sqrt", "Reciprocal", "Floor", "Ceil",
	"Round", "Erf", "Gelu", "Mish", "Identity", "Cast", "Clip", "Dropout", "Sin", "Cos", "Sign",
	"ThresholdedRelu", "Shrink")

var poolOps = setOf("MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool")

var binaryOps = setOf("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu")

func setOf(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return m
}

func hasSubgraph(n *onnxpb.NodeProto) bool {
	for _, at := range n.Attribute {
		if at.G != nil || len(at.Graphs) > 0 {
			return true
		}
	}
	return false
}

func (a *analysis) walk() error {
	order, err := onnx.TopoOrder(a.gr.g)
	if err != nil {
		return err
	}
	for _, i := range order {
		n := a.gr.g.Node[i]
		op := n.GetOpType()
		if d := n.GetDomain(); d != "" && d != "ai.onnx" {
			a.opaque(n, "is a custom operator and cannot follow pruned channels")
			continue
		}
		if hasSubgraph(n) {
			// Its body may read any value of this graph, not only its inputs.
			for v, cs := range a.consumers {
				if r := a.ref(v); r != nil && slices.Contains(cs, n) {
					a.fix(r.comp, onnx.NodeLabel(n)+" reads these channels in a subgraph that pruning does not follow")
				}
			}
			continue
		}
		switch {
		case op == "Conv":
			a.conv(n)
		case op == "ConvTranspose":
			a.convTranspose(n)
		case op == "Gemm":
			a.gemm(n)
		case op == "MatMul":
			a.matmul(n)
		case op == "BatchNormalization" || op == "InstanceNormalization":
			a.norm(n)
		case unaryOps[op]:
			a.unary(n, false)
		case poolOps[op]:
			a.unary(n, true)
		case op == "Resize" || op == "Upsample":
			a.resize(n)
		case op == "Pad":
			a.pad(n)
		case binaryOps[op]:
			a.elementwise(n, false)
		case op == "Concat":
			a.concat(n)
		case op == "Flatten":
			a.flatten(n)
		case op == "Reshape":
			a.reshape(n)
		case op == "Shape":
			a.shape(n)
		case op == "Squeeze" || op == "Unsqueeze":
			a.squeeze(n)
		case op == "Transpose":
			a.transpose(n)
		default:
			a.opaque(n, "cannot follow pruned channels")
		}
	}
	for _, o := range a.gr.g.Output {
		if r := a.ref(o.GetName()); r != nil {
			a.fix(r.comp, fmt.Sprintf("its channels reach graph output %q, whose shape must not change", o.GetName()))
		}
	}
	a.propagate()
	return nil
}

// propagate: a derived group that cannot change fixes the groups it is made of (their
// channels would otherwise move inside it); a flattened group nobody gave a block size to
// cannot be mapped.
func (a *analysis) propagate() {
	for changed := true; changed; {
		changed = false
		for i, c := range a.comps {
			if a.find(i) != i || c.kind == kindSource {
				continue
			}
			if c.kind == kindExpand && a.channels(i) == 0 && c.fixed == "" {
				c.fixed = "its flattened size is not known from any layer that reads it"
			}
			if c.fixed == "" {
				continue
			}
			for _, p := range c.parts {
				if pc := a.comps[a.find(p)]; pc.fixed == "" {
					pc.fixed = c.fixed
					changed = true
				}
			}
		}
	}
}

func (a *analysis) conv(n *onnxpb.NodeProto) {
	w := a.gr.constant(input(n, 1))
	if w == nil || len(w.Dims) < 3 || !a.constOrEmpty(input(n, 2)) {
		a.opaque(n, "has a weight or bias that is not a constant")
		return
	}
	rank := len(w.Dims)
	negAxis := 1 - rank
	group := attrInt(n, "group", 1)
	m, cg := w.Dims[0], w.Dims[1]
	if b := a.gr.constant(input(n, 2)); b != nil && !slices.Equal(b.Dims, []int64{m}) {
		a.opaque(n, fmt.Sprintf("has a bias of shape %v for %d outputs", b.Dims, m))
		return
	}
	x := a.ref(input(n, 0))
	if x != nil && x.negAxis != negAxis {
		a.fix(x.comp, onnx.NodeLabel(n)+" reads channels from another axis")
		x = nil
	}
	hasBias := input(n, 2) != ""
	switch {
	case group == 1:
		if x != nil {
			a.consume(n, 1, 1, x.comp, cg)
		}
		if !a.sel.allowed(n.GetName(), n.GetOpType(), input(n, 1)) {
			return
		}
		c := a.newComp(kindSource, int(m), nodeName(n))
		a.addUse(n, 1, 0, c, true)
		if hasBias {
			a.addUse(n, 2, 0, c, false)
		}
		a.track(n.Output[0], c, negAxis, rank, onnx.NodeLabel(n))
	case cg == 1 && group == m:
		// Depthwise: output channel k is input channel k filtered, so input and output are
		// one group and `group` follows the channel count.
		if x == nil {
			return
		}
		root := a.find(x.comp)
		if !a.matchSize(root, m) {
			a.fix(root, fmt.Sprintf("depthwise %s has %d channels where the group has %d", onnx.NodeLabel(n), m, a.channels(root)))
			return
		}
		if match(a.sel.exclude, n.GetName(), n.GetOpType(), input(n, 1)) {
			a.fix(root, fmt.Sprintf("depthwise %s is excluded and passes these channels through", onnx.NodeLabel(n)))
		}
		a.addUse(n, 1, 0, root, true)
		if hasBias {
			a.addUse(n, 2, 0, root, false)
		}
		a.groups = append(a.groups, use{node: n, comp: root})
		a.track(n.Output[0], root, negAxis, rank, onnx.NodeLabel(n))
	default:
		if x != nil {
			a.fix(x.comp, fmt.Sprintf("%s is a grouped convolution (group %d), whose groups would have to shrink evenly", onnx.NodeLabel(n), group))
		}
	}
}

func (a *analysis) convTranspose(n *onnxpb.NodeProto) {
	w := a.gr.constant(input(n, 1))
	if w == nil || len(w.Dims) < 3 || !a.constOrEmpty(input(n, 2)) || attrInt(n, "group", 1) != 1 {
		a.opaque(n, "has a non-constant weight or bias, or groups")
		return
	}
	rank := len(w.Dims)
	negAxis := 1 - rank
	if b := a.gr.constant(input(n, 2)); b != nil && !slices.Equal(b.Dims, w.Dims[1:2]) {
		a.opaque(n, fmt.Sprintf("has a bias of shape %v for %d outputs", b.Dims, w.Dims[1]))
		return
	}
	if x := a.ref(input(n, 0)); x != nil {
		if x.negAxis != negAxis {
			a.fix(x.comp, onnx.NodeLabel(n)+" reads channels from another axis")
		} else {
			a.consume(n, 1, 0, x.comp, w.Dims[0])
		}
	}
	if !a.sel.allowed(n.GetName(), n.GetOpType(), input(n, 1)) {
		return
	}
	c := a.newComp(kindSource, int(w.Dims[1]), nodeName(n))
	a.addUse(n, 1, 1, c, true)
	if input(n, 2) != "" {
		a.addUse(n, 2, 0, c, false)
	}
	a.track(n.Output[0], c, negAxis, rank, onnx.NodeLabel(n))
}

func (a *analysis) gemm(n *onnxpb.NodeProto) {
	w := a.gr.constant(input(n, 1))
	if w == nil || len(w.Dims) != 2 || !a.constOrEmpty(input(n, 2)) {
		a.opaque(n, "has a weight or bias that is not a constant")
		return
	}
	kAxis, nAxis := 0, 1
	if attrInt(n, "transB", 0) != 0 {
		kAxis, nAxis = 1, 0
	}
	if x := a.ref(input(n, 0)); x != nil {
		if attrInt(n, "transA", 0) != 0 || x.negAxis != -1 {
			a.fix(x.comp, onnx.NodeLabel(n)+" reads the channels transposed")
		} else {
			a.consume(n, 1, kAxis, x.comp, w.Dims[kAxis])
		}
	}
	if !a.sel.allowed(n.GetName(), n.GetOpType(), input(n, 1)) {
		return
	}
	outC := w.Dims[nAxis]
	c := a.newComp(kindSource, int(outC), nodeName(n))
	a.addUse(n, 1, nAxis, c, true)
	if b := a.gr.constant(input(n, 2)); b != nil && len(b.Dims) > 0 {
		last := len(b.Dims) - 1
		switch b.Dims[last] {
		case outC:
			a.addUse(n, 2, last, c, false)
		case 1:
		default:
			a.fix(c, fmt.Sprintf("%s has a bias of shape %v", onnx.NodeLabel(n), b.Dims))
		}
	}
	a.track(n.Output[0], c, -1, 2, onnx.NodeLabel(n))
}

func (a *analysis) matmul(n *onnxpb.NodeProto) {
	w := a.gr.constant(input(n, 1))
	if w == nil || len(w.Dims) != 2 {
		a.opaque(n, "has no constant 2-D weight")
		return
	}
	rank := 0
	if x := a.ref(input(n, 0)); x != nil {
		if x.negAxis != -1 {
			a.fix(x.comp, onnx.NodeLabel(n)+" reads channels from another axis")
		} else {
			a.consume(n, 1, 0, x.comp, w.Dims[0])
			rank = x.rank
		}
	}
	if !a.sel.allowed(n.GetName(), n.GetOpType(), input(n, 1)) {
		return
	}
	c := a.newComp(kindSource, int(w.Dims[1]), nodeName(n))
	a.addUse(n, 1, 1, c, true)
	a.track(n.Output[0], c, -1, rank, onnx.NodeLabel(n))
}

// norm: BatchNormalization and InstanceNormalization scale each channel on axis 1 by
// per-channel constants, which shrink with the group.
func (a *analysis) norm(n *onnxpb.NodeProto) {
	x := a.ref(input(n, 0))
	if x == nil {
		a.fixOthers(n)
		return
	}
	if axisOf(x) != 1 {
		a.fix(x.comp, onnx.NodeLabel(n)+" normalizes axis 1, which does not hold these channels (or the rank is unknown)")
		return
	}
	for i := 1; i < len(n.Input); i++ {
		p := a.gr.constant(input(n, i))
		if p == nil || len(p.Dims) != 1 {
			a.fix(x.comp, fmt.Sprintf("%s has a parameter %q that is not a constant vector", onnx.NodeLabel(n), input(n, i)))
			return
		}
		a.consume(n, i, 0, x.comp, p.Dims[0])
	}
	for _, o := range n.Output[1:] {
		if a.used(o) {
			a.fix(x.comp, onnx.NodeLabel(n)+" uses training-mode outputs")
			return
		}
	}
	if p := a.producer[input(n, 0)]; p != nil && n.GetOpType() == "BatchNormalization" && len(a.consumers[input(n, 0)]) == 1 {
		if sc := a.batchNormScale(n); sc != nil {
			a.bnScale[p] = sc
		}
	}
	a.track(n.Output[0], x.comp, x.negAxis, x.rank, onnx.NodeLabel(n))
}

// batchNormScale is |γ|/√(σ²+ε) per channel, nil when unreadable.
func (a *analysis) batchNormScale(n *onnxpb.NodeProto) []float64 {
	gamma, err1 := a.gr.floats(a.gr.constant(input(n, 1)))
	variance, err2 := a.gr.floats(a.gr.constant(input(n, 4)))
	if err1 != nil || err2 != nil || len(gamma) != len(variance) {
		return nil
	}
	eps := 1e-5
	if at := attr(n, "epsilon"); at != nil {
		eps = float64(at.GetF())
	}
	out := make([]float64, len(gamma))
	for i := range gamma {
		out[i] = math.Abs(float64(gamma[i])) / math.Sqrt(float64(variance[i])+eps)
	}
	return out
}

// unary: channel-wise operators. Pooling additionally needs the channels on axis 1.
func (a *analysis) unary(n *onnxpb.NodeProto, pool bool) {
	a.fixOthers(n)
	x := a.ref(input(n, 0))
	if x == nil {
		return
	}
	if pool && axisOf(x) != 1 {
		a.fix(x.comp, onnx.NodeLabel(n)+" pools a tensor whose channels are not on axis 1")
		return
	}
	for i, o := range n.Output {
		switch {
		case i == 0 || n.GetOpType() == "Dropout":
			a.track(o, x.comp, x.negAxis, x.rank, onnx.NodeLabel(n))
		case a.used(o):
			a.fix(x.comp, fmt.Sprintf("%s output %d (indices) encodes channel positions", onnx.NodeLabel(n), i))
		}
	}
}

func (a *analysis) resize(n *onnxpb.NodeProto) {
	a.fixOthers(n)
	x := a.ref(input(n, 0))
	if x == nil {
		return
	}
	ax := axisOf(x)
	label := onnx.NodeLabel(n)
	scales, sizes := input(n, 1), ""
	if n.GetOpType() == "Resize" && a.gr.opset >= 11 {
		scales, sizes = input(n, 2), input(n, 3)
	}
	if sizes != "" {
		if s, ok := a.gr.ints(sizes); !ok || len(s) > 0 {
			a.fix(x.comp, label+" resizes to explicit sizes, which include the channel count")
			return
		}
	}
	var sc []float32
	if scales != "" {
		t := a.gr.constant(scales)
		if t == nil {
			a.fix(x.comp, label+" has scales computed at run time")
			return
		}
		v, err := a.gr.floats(t)
		if err != nil {
			a.fix(x.comp, label+": "+err.Error())
			return
		}
		sc = v
	} else if at := attr(n, "scales"); at != nil {
		sc = at.Floats
	}
	if len(sc) > 0 && (ax < 0 || len(sc) != x.rank || sc[ax] != 1) {
		a.fix(x.comp, label+" scales the channel axis (or the rank is unknown)")
		return
	}
	a.track(n.Output[0], x.comp, x.negAxis, x.rank, label)
}

func (a *analysis) pad(n *onnxpb.NodeProto) {
	a.fixOthers(n)
	x := a.ref(input(n, 0))
	if x == nil {
		return
	}
	ax := axisOf(x)
	var pads []int64
	ok := false
	if a.gr.opset >= 11 {
		pads, ok = a.gr.ints(input(n, 1))
		if input(n, 3) != "" {
			ok = false
		}
	} else {
		pads, ok = attrInts(n, "pads")
	}
	if !ok || ax < 0 || len(pads) != 2*x.rank || pads[ax] != 0 || pads[ax+x.rank] != 0 {
		a.fix(x.comp, onnx.NodeLabel(n)+" pads the channel axis, or its pads are not constant")
		return
	}
	a.track(n.Output[0], x.comp, x.negAxis, x.rank, onnx.NodeLabel(n))
}

// elementwise: Add/Mul/... (strict=false) broadcast; every non-constant operand must carry
// the same channels (a residual Add or an SE Mul joins the groups), constants are sliced
// along the aligned axis unless they broadcast there (size 1 or too low a rank).
// Concat along another axis calls it with strict=true: no broadcasting.
func (a *analysis) elementwise(n *onnxpb.NodeProto, strict bool) {
	label := onnx.NodeLabel(n)
	var tracked []*chanRef
	var consts []int
	var dyn []string
	for i, name := range n.Input {
		switch {
		case name == "":
		case a.ref(name) != nil:
			tracked = append(tracked, a.ref(name))
		case a.gr.constant(name) != nil:
			consts = append(consts, i)
		default:
			dyn = append(dyn, name)
		}
	}
	if len(tracked) == 0 {
		return
	}
	maxC := 0
	for _, r := range tracked {
		maxC = max(maxC, a.channels(a.find(r.comp)))
	}
	var join []*chanRef
	for _, r := range tracked {
		if !strict && maxC > 1 && a.channels(a.find(r.comp)) == 1 {
			a.fix(r.comp, label+" broadcasts this one channel over another group")
			continue
		}
		join = append(join, r)
	}
	negAxis, rank := join[0].negAxis, join[0].rank
	root := a.find(join[0].comp)
	for _, r := range join[1:] {
		if r.negAxis != negAxis {
			reason := label + " combines channels on different axes"
			a.fix(root, reason)
			a.fix(r.comp, reason)
			return
		}
		root = a.union(root, r.comp, label)
		if r.rank == 0 || rank == 0 {
			rank = 0
		} else {
			rank = max(rank, r.rank)
		}
	}
	for _, d := range dyn {
		a.fix(root, fmt.Sprintf("%s combines the channels with %q, which no prunable layer produces", label, d))
	}
	for _, i := range consts {
		t := a.gr.constant(input(n, i))
		r := len(t.Dims)
		if rank > 0 {
			rank = max(rank, r)
		}
		ax := r + negAxis
		if !strict && (ax < 0 || t.Dims[ax] == 1) {
			continue // broadcasts over the channels
		}
		if ax < 0 || !a.matchSize(root, t.Dims[ax]) {
			a.fix(root, fmt.Sprintf("%s has a constant %q of shape %v that does not follow the channels", label, input(n, i), t.Dims))
			continue
		}
		a.addUse(n, i, ax, root, false)
	}
	a.track(n.Output[0], root, negAxis, rank, label)
}

func (a *analysis) concat(n *onnxpb.NodeProto) {
	label := onnx.NodeLabel(n)
	var tracked []*chanRef
	rank := 0
	others := false
	for _, name := range n.Input {
		if r := a.ref(name); r != nil {
			tracked = append(tracked, r)
			if r.rank > 0 {
				rank = r.rank
			}
		} else if name != "" {
			others = true
			if t := a.gr.constant(name); t != nil {
				rank = len(t.Dims)
			}
		}
	}
	if len(tracked) == 0 {
		return
	}
	axis := attrInt(n, "axis", 0)
	if a.gr.opset < 4 && attr(n, "axis") == nil {
		axis = 1
	}
	negK := axis
	if axis >= 0 {
		if rank == 0 {
			for _, r := range tracked {
				a.fix(r.comp, label+" concatenates tensors of unknown rank")
			}
			return
		}
		negK = axis - int64(rank)
	}
	ch := tracked[0].negAxis
	for _, r := range tracked[1:] {
		if r.negAxis != ch {
			for _, r := range tracked {
				a.fix(r.comp, label+" concatenates channels on different axes")
			}
			return
		}
	}
	if negK != int64(ch) {
		a.elementwise(n, true)
		return
	}
	if others {
		for _, r := range tracked {
			a.fix(r.comp, label+" concatenates these channels with channels no prunable layer produces")
		}
		return
	}
	d := a.newComp(kindConcat, 0, "")
	total := 0
	for _, name := range n.Input {
		p := a.find(a.ref(name).comp)
		a.comps[d].parts = append(a.comps[d].parts, p)
		c := a.channels(p)
		if c == 0 {
			for _, r := range tracked {
				a.fix(r.comp, label+" concatenates a group of unknown size")
			}
			return
		}
		total += c
	}
	a.comps[d].c = total
	a.track(n.Output[0], d, ch, rank, label)
}
