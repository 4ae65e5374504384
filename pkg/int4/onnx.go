package int4

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/x448/float16"
	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/quant/pack"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// runONNX quantizes the MatMul weights of an ONNX model into MatMulNBits nodes.
func runONNX(ctx context.Context, o *Options, r *Report) error {
	m, err := onnx.Load(o.Input)
	if err != nil {
		return err
	}
	defer m.Close()
	r.SizeBefore = pathSize(o.Input) + externalSize(m)
	if o.Format == FormatQDQ {
		if err := upgradeForQDQ(m, o, r); err != nil {
			return err
		}
	}
	g := m.Graph()
	r.NodesBefore = len(g.Node)
	layers, skips, err := findLayers(m, o)
	if err != nil {
		return fmt.Errorf("%s: %w", o.Input, err)
	}
	r.Skipped = append(r.Skipped, skips...)
	if len(layers) == 0 {
		return fmt.Errorf("%s: no MatMul with a constant 2-D float weight to quantize", o.Input)
	}

	lins := make([]*linear, len(layers))
	for i, l := range layers {
		lins[i] = &linear{name: l.name(g), weight: l.weight, n: l.n, k: l.k, load: l.w, inputs: l.inputs}
	}
	ns := newNames(g)
	var groups []*awqGroup
	var done []bool // layers already rewritten (sequential)
	if o.Sequential {
		if done, err = quantizeSequential(ctx, m, layers, lins, ns, o, r); err != nil {
			return err
		}
	} else {
		stats, err := captureFor(ctx, m, o.Input, lins, o, r)
		if err != nil {
			return err
		}
		if groups, err = quantizeLinears(lins, stats, o, func(*awqGroup) bool { return true }); err != nil {
			return err
		}
	}

	// AWQ: fold 1/s into the producer of each group's input where that is exact, else scale
	// the input with an explicit Mul in front of the group.
	nodeLayer := map[int]int{} // MatMul node → index in layers (single-node layers only)
	for i, l := range layers {
		if len(l.nodes) == 1 {
			nodeLayer[l.nodes[0]] = i
		}
	}
	var muls []pendingMul
	for _, grp := range groups {
		if grp.scales == nil {
			grp.foldedInto = "none (s = 1)"
			continue
		}
		f := &folder{m: m, ix: onnx.NewIndex(g), ns: ns, layers: layers, lins: lins, nodeLayer: nodeLayer}
		desc, err := f.fold(grp, layersOf(grp, layers, lins))
		if err != nil {
			return fmt.Errorf("%s: %w", o.Input, err)
		}
		if desc == "" {
			pm, err := explicitMul(m, ns, grp, layersOf(grp, layers, lins))
			if err != nil {
				return err
			}
			muls = append(muls, pm)
			desc = "Mul " + pm.node.GetName()
		}
		grp.foldedInto = desc
	}
	for _, grp := range groups {
		for _, l := range grp.members {
			l.rep.AWQScale = grp.foldedInto
		}
	}

	// Replace the MatMul nodes.
	for i, l := range layers {
		if err := ctx.Err(); err != nil {
			return err
		}
		if done != nil && done[i] {
			continue
		}
		rewrite := func() error { return rewriteLayer(m, ns, l, lins[i].q, o) }
		if o.Format == FormatQDQ {
			rewrite = func() error { return rewriteLayerQDQ(m, ns, l, lins[i].q) }
		}
		if err := rewrite(); err != nil {
			return fmt.Errorf("%s: %w", o.Input, err)
		}
	}
	insertMuls(g, muls)
	pruneUnused(g)
	if o.Format != FormatQDQ {
		ensureOpset(m, pack.MatMulNBitsDomain, 1)
	}
	if err := onnx.SortTopologically(g); err != nil {
		return fmt.Errorf("%s: %w", o.Input, err)
	}
	for _, l := range lins {
		r.Layers = append(r.Layers, *l.rep)
		r.QuantizedParams += int64(l.n) * int64(l.k)
	}
	r.NodesAfter = len(g.Node)
	return m.Save(o.Output, onnx.SaveOptions{ExternalData: o.ExternalData})
}

// captureFor gathers the statistics the algorithm needs (for RTN with data: Hessians for the
// error report only).
func captureFor(ctx context.Context, m *onnx.Model, modelPath string, lins []*linear, o *Options, r *Report) (map[string]*inputStats, error) {
	if o.Calib == "" {
		return nil, nil
	}
	seen := map[string]bool{}
	var specs []captureSpec
	for _, l := range lins {
		for _, in := range l.inputs {
			if seen[in] {
				continue
			}
			seen[in] = true
			s := captureSpec{name: in, k: l.k, hessian: o.Algo != AWQ}
			if o.Algo == AWQ {
				s.sample = o.AWQMaxRows
			}
			specs = append(specs, s)
		}
	}
	res, err := capture(ctx, m, modelPath, specs, o)
	if err != nil {
		return nil, err
	}
	r.CalibSamples, r.CapturePasses, r.CaptureSeconds = res.samples, res.passes, res.seconds
	for _, s := range specs {
		st := res.stats[s.name]
		r.CalibRows = max(r.CalibRows, st.rows)
		r.PaddingRows = max(r.PaddingRows, st.dropped)
	}
	return res.stats, nil
}

// quantizeLinears runs the algorithm over every layer. For AWQ it returns the groups of
// layers sharing an input; search(g) says whether g's input scale may be searched (it can
// be applied somewhere).
func quantizeLinears(lins []*linear, stats map[string]*inputStats, o *Options, search func(*awqGroup) bool) ([]*awqGroup, error) {
	var groups []*awqGroup
	byInput := map[string]*awqGroup{}
	done := 0
	progress := func(n int) {
		done += n
		if o.Progress != nil {
			o.Progress("quantizing", done, len(lins))
		}
	}
	// uses counts the layers still to quantize per input: a Hessian is dropped once its
	// last layer is done (unless tests share the statistics), so memory falls as the run
	// goes on instead of holding every layer's K×K to the end.
	uses := map[string]int{}
	for _, l := range lins {
		for _, in := range l.inputs {
			uses[in]++
		}
	}
	release := func(l *linear) {
		for _, in := range l.inputs {
			if uses[in]--; uses[in] == 0 && o.cache == nil && stats != nil && stats[in] != nil {
				stats[in].h = nil
			}
		}
	}
	for _, l := range lins {
		if o.Algo == AWQ && len(l.inputs) == 1 {
			g := byInput[l.inputs[0]]
			if g == nil {
				g = &awqGroup{input: l.inputs[0]}
				byInput[l.inputs[0]] = g
				groups = append(groups, g)
			}
			g.members = append(g.members, l)
			continue
		}
		var h *quant.Hessian
		if stats != nil && len(l.inputs) > 0 {
			h = stats[l.inputs[0]].h
			if len(l.inputs) > 1 && h != nil {
				// Tied weight read by several MatMuls: one Hessian over all their inputs.
				h = quant.NewHessian(l.k)
				for _, in := range l.inputs {
					if err := h.Merge(stats[in].h); err != nil {
						return nil, err
					}
				}
			}
		}
		lo := *o
		if o.Algo == AWQ {
			lo.Algo = RTN // AWQ needs a single input to scale
		}
		if err := quantizeGPTQorRTN(l, h, &lo); err != nil {
			return nil, err
		}
		release(l)
		progress(1)
	}
	for _, g := range groups {
		st := stats[g.input]
		if err := quantizeAWQ(g, st.sample.rows, st.sample.n, search(g), o); err != nil {
			return nil, err
		}
		progress(len(g.members))
	}
	return groups, nil
}

func layersOf(g *awqGroup, layers []*matmulLayer, lins []*linear) []*matmulLayer {
	var out []*matmulLayer
	for _, m := range g.members {
		for i, l := range lins {
			if l == m {
				out = append(out, layers[i])
			}
		}
	}
	return out
}

// rewriteLayer replaces every MatMul reading l.weight with a MatMulNBits node.
func rewriteLayer(m *onnx.Model, ns *names, l *matmulLayer, q *quant.GroupQuant, o *Options) error {
	g := m.Graph()
	bLen, zpLen, err := pack.MatMulNBitsSizes(l.n, l.k, q.Bits, q.GroupSize)
	if err != nil {
		return fmt.Errorf("weight %q: %w", l.weight, err)
	}
	kBlocks := (l.k + q.GroupSize - 1) / q.GroupSize
	b := make([]byte, bLen)
	var zp []byte
	var zeros []uint8
	if !q.Symmetric {
		zp, zeros = make([]byte, zpLen), q.Zeros
	}
	if q.GIdx != nil {
		return fmt.Errorf("weight %q: act-order groups without static groups cannot be stored in MatMulNBits", l.weight)
	}
	if err := pack.PackMatMulNBits(b, zp, q.Codes, zeros, l.n, l.k, q.Bits, q.GroupSize); err != nil {
		return fmt.Errorf("weight %q: %w", l.weight, err)
	}
	base := safeName(l.weight)
	bName := ns.fresh(fmt.Sprintf("%s_Q%d", base, q.Bits))
	g.Initializer = append(g.Initializer, onnx.FromTensor(bName,
		&tensor.Tensor{DType: tensor.Uint8, Shape: []int64{int64(l.n), int64(kBlocks), int64(q.GroupSize * q.Bits / 8)}, Data: b}))
	sName := ns.fresh(base + "_scales")
	g.Initializer = append(g.Initializer, floatTensor(sName, l.dtype, []int64{int64(l.n), int64(kBlocks)}, q.Scales))
	ins := []string{"", bName, sName}
	if zp != nil {
		zName := ns.fresh(base + "_zero_points")
		g.Initializer = append(g.Initializer, onnx.FromTensor(zName,
			&tensor.Tensor{DType: tensor.Uint8, Shape: []int64{int64(l.n), int64(zpLen / l.n)}, Data: zp}))
		ins = append(ins, zName)
	}
	domain := pack.MatMulNBitsDomain
	for _, i := range l.nodes {
		old := g.Node[i]
		in := append([]string{old.Input[0]}, ins[1:]...)
		name := ns.fresh(old.GetName() + "_Q4")
		if old.GetName() == "" {
			name = ns.fresh(base + "_MatMulNBits")
		}
		attrs := []*onnxpb.AttributeProto{intAttr("K", int64(l.k)), intAttr("N", int64(l.n))}
		if o.AccuracyLevel != 0 {
			// Left out when 0 (unset), as ONNX Runtime's quantizer does: some execution
			// providers reject the attribute.
			attrs = append(attrs, intAttr("accuracy_level", int64(o.AccuracyLevel)))
		}
		attrs = append(attrs, intAttr("bits", int64(q.Bits)), intAttr("block_size", int64(q.GroupSize)))
		g.Node[i] = &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(pack.MatMulNBitsOp), Domain: &domain,
			Input: in, Output: old.Output, Attribute: attrs}
	}
	return nil
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

// floatTensor stores v as a float32 or float16 initializer.
func floatTensor(name string, dt tensor.DType, shape []int64, v []float32) *onnxpb.TensorProto {
	if dt == tensor.Float16 {
		t := tensor.New(tensor.Float16, shape)
		h := t.Uint16s()
		for i, x := range v {
			h[i] = float16.Fromfloat32(x).Bits()
		}
		return onnx.FromTensor(name, t)
	}
	return onnx.FromTensor(name, tensor.FromFloat32(shape, v))
}

// pendingMul is an explicit X·(1/s) in front of an AWQ group, inserted after the rewrite
// (node indices stay valid until then).
type pendingMul struct {
	node      *onnxpb.NodeProto
	consumers []int // MatMul nodes whose input 0 becomes the Mul's output
}

func explicitMul(m *onnx.Model, ns *names, grp *awqGroup, layers []*matmulLayer) (pendingMul, error) {
	inv := make([]float32, len(grp.scales))
	for i, s := range grp.scales {
		inv[i] = 1 / s
	}
	base := safeName(grp.input)
	cName := ns.fresh(base + "_awq_inv_scale")
	m.Graph().Initializer = append(m.Graph().Initializer, floatTensor(cName, layers[0].dtype, []int64{int64(len(inv))}, inv))
	out := ns.fresh(base + "_awq_scaled")
	node := &onnxpb.NodeProto{Name: proto.String(ns.fresh(base + "_awq_Mul")), OpType: proto.String("Mul"),
		Input: []string{grp.input, cName}, Output: []string{out}}
	var cons []int
	for _, l := range layers {
		cons = append(cons, l.nodes...)
	}
	sort.Ints(cons)
	return pendingMul{node: node, consumers: cons}, nil
}

func insertMuls(g *onnxpb.GraphProto, muls []pendingMul) {
	if len(muls) == 0 {
		return
	}
	before := map[int][]*onnxpb.NodeProto{}
	rewire := map[int]string{}
	for _, pm := range muls {
		before[pm.consumers[0]] = append(before[pm.consumers[0]], pm.node)
		for _, c := range pm.consumers {
			rewire[c] = pm.node.Output[0]
		}
	}
	out := make([]*onnxpb.NodeProto, 0, len(g.Node)+len(muls))
	for i, n := range g.Node {
		out = append(out, before[i]...)
		if x, ok := rewire[i]; ok {
			n.Input[0] = x
		}
		out = append(out, n)
	}
	g.Node = out
}

// folder applies an AWQ group's 1/s to the operation producing its input, when that is
// exact: the input feeds the group's MatMuls and nothing else, and its producer is
//
//   - a LayerNormalization, SimplifiedLayerNormalization or RMSNormalization with constant
//     scale (and bias): both are divided by s;
//   - a MatMul with a constant B, optionally followed by an Add of a constant bias [K]: B's
//     output columns and the bias are divided by s. When that MatMul is itself being
//     quantized, its quantized rows' scales are divided instead (exact: see scaleRows).
//
// Anything else (a residual branch reading the same tensor, GELU, Reshape/Transpose between
// v and o in BERT's attention) gets an explicit Mul.
type folder struct {
	m         *onnx.Model
	ix        *onnx.Index
	ns        *names
	layers    []*matmulLayer
	lins      []*linear
	nodeLayer map[int]int
}

var normOps = map[string]bool{"LayerNormalization": true, "SimplifiedLayerNormalization": true, "RMSNormalization": true}

func (f *folder) fold(grp *awqGroup, layers []*matmulLayer) (string, error) {
	g := f.m.Graph()
	x := grp.input
	if f.ix.GraphOutputs[x] || f.ix.GraphInputs[x] {
		return "", nil
	}
	own := map[int]bool{}
	for _, l := range layers {
		for _, n := range l.nodes {
			own[n] = true
		}
	}
	for _, c := range f.ix.Consumers[x] {
		n := g.Node[c]
		if !own[c] || n.Input[1] == x {
			return "", nil
		}
	}
	pi, ok := f.ix.Producer[x]
	if !ok {
		return "", nil
	}
	p := g.Node[pi]
	inv := make([]float32, len(grp.scales))
	for i, s := range grp.scales {
		inv[i] = 1 / s
	}
	k := len(inv)
	switch {
	case normOps[p.GetOpType()] && (p.GetDomain() == "" || p.GetDomain() == "com.microsoft") && p.Output[0] == x:
		for _, o := range p.Output[1:] {
			if o != "" && (len(f.ix.Consumers[o]) > 0 || f.ix.GraphOutputs[o]) {
				return "", nil
			}
		}
		if len(p.Input) < 2 || !f.constOfSize(p.Input[1], k) || (len(p.Input) > 2 && p.Input[2] != "" && !f.constOfSize(p.Input[2], k)) {
			return "", nil
		}
		for i := 1; i < len(p.Input) && i <= 2; i++ {
			if p.Input[i] == "" {
				continue
			}
			if err := f.scaleConst(pi, i, inv, nil); err != nil {
				return "", err
			}
		}
		return fmt.Sprintf("%s %s", p.GetOpType(), p.GetName()), nil
	case p.GetOpType() == "Add" && p.GetDomain() == "" && len(p.Input) == 2:
		bi := -1
		for i := 0; i < 2; i++ {
			if f.constOfSize(p.Input[i], k) && !f.isConst(p.Input[1-i]) {
				bi = i
			}
		}
		if bi < 0 {
			return "", nil
		}
		y := p.Input[1-bi]
		qi, ok := f.ix.Producer[y]
		if !ok || len(f.ix.Consumers[y]) != 1 || f.ix.GraphOutputs[y] || !f.foldableMatMul(qi, k) {
			return "", nil
		}
		if err := f.scaleConst(pi, bi, inv, nil); err != nil {
			return "", err
		}
		return f.foldMatMul(qi, inv)
	case p.GetOpType() == "MatMul" && p.GetDomain() == "":
		if !f.foldableMatMul(pi, k) {
			return "", nil
		}
		return f.foldMatMul(pi, inv)
	}
	return "", nil
}

func (f *folder) isConst(name string) bool {
	if f.ix.IsConstant(name) {
		return true
	}
	p, ok := f.ix.Producer[name]
	return ok && f.m.Graph().Node[p].GetOpType() == "Constant"
}

// constOfSize: an initializer of k elements whose last dimension is k (broadcasts along
// the channel axis).
func (f *folder) constOfSize(name string, k int) bool {
	t, ok := f.ix.Initializers[name]
	if !ok || !f.ix.IsConstant(name) {
		return false
	}
	n := int64(1)
	for _, d := range t.Dims {
		n *= d
	}
	dt := tensor.DType(t.GetDataType())
	return n == int64(k) && len(t.Dims) > 0 && t.Dims[len(t.Dims)-1] == int64(k) && (dt == tensor.Float32 || dt == tensor.Float16)
}

// foldableMatMul: node i is a MatMul whose B is a constant [K', k] used by it alone.
func (f *folder) foldableMatMul(i, k int) bool {
	n := f.m.Graph().Node[i]
	if n.GetOpType() != "MatMul" || n.GetDomain() != "" || len(n.Input) != 2 {
		return false
	}
	if li, ok := f.nodeLayer[i]; ok {
		return f.layers[li].n == k
	}
	b := n.Input[1]
	t, ok := f.ix.Initializers[b]
	if !ok || !f.ix.IsConstant(b) || len(f.ix.Consumers[b]) != 1 || len(t.Dims) != 2 || t.Dims[1] != int64(k) {
		return false
	}
	dt := tensor.DType(t.GetDataType())
	return dt == tensor.Float32 || dt == tensor.Float16
}

func (f *folder) foldMatMul(i int, inv []float32) (string, error) {
	n := f.m.Graph().Node[i]
	if li, ok := f.nodeLayer[i]; ok {
		scaleRows(f.lins[li].q, inv)
		return "rows of " + n.GetName(), nil
	}
	k := len(inv)
	if err := f.scaleConst(i, 1, nil, func(v []float32) {
		for r := 0; r < len(v)/k; r++ {
			for c := 0; c < k; c++ {
				v[r*k+c] *= inv[c]
			}
		}
	}); err != nil {
		return "", err
	}
	return "columns of " + n.GetName(), nil
}

// scaleConst replaces input i of node ni (a float initializer) by a scaled copy: elementwise
// by inv, or through fn. The original is replaced when only this node reads it, otherwise a
// new initializer is added for this node alone. The old message is never modified: its
// bytes may alias the loaded file.
func (f *folder) scaleConst(ni, i int, inv []float32, fn func([]float32)) error {
	g := f.m.Graph()
	n := g.Node[ni]
	name := n.Input[i]
	t := f.ix.Initializers[name]
	if t == nil {
		return errors.New("internal: folding into a non-initializer")
	}
	v, err := f.m.Float32s(t)
	if err != nil {
		return err
	}
	if fn != nil {
		fn(v)
	} else {
		for j := range v {
			v[j] *= inv[j%len(inv)]
		}
	}
	nt := floatTensor(name, tensor.DType(t.GetDataType()), t.Dims, v)
	if len(f.ix.Consumers[name]) == 1 && !f.ix.GraphOutputs[name] {
		for j, it := range g.Initializer {
			if it == t {
				g.Initializer[j] = nt
				f.ix.Initializers[name] = nt
				return nil
			}
		}
	}
	nn := f.ns.fresh(safeName(name) + "_awq")
	nt.Name = proto.String(nn)
	g.Initializer = append(g.Initializer, nt)
	f.ix.Initializers[nn] = nt
	n.Input[i] = nn
	return nil
}
