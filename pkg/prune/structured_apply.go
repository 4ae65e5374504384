package prune

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// pruneStructured analyses the channel groups, chooses the channels to delete and rewrites
// every tensor, attribute and target shape that follows them.
func pruneStructured(gr *graph, sel matcher, o Options, r *Report) error {
	a, err := plan(gr, sel, o, r)
	if err != nil {
		return err
	}
	return a.apply(r)
}

// plan finds the channel groups and chooses the channels to remove, reporting the groups
// and those skipped; the graph is not changed yet.
func plan(gr *graph, sel matcher, o Options, r *Report) (*analysis, error) {
	a := newAnalysis(gr, sel)
	if err := a.walk(); err != nil {
		return nil, err
	}
	scores := map[int][]use{}
	for _, u := range a.uses {
		root := a.find(u.comp)
		if u.score {
			scores[root] = append(scores[root], u)
		}
	}
	var prunable []int
	for i, c := range a.comps {
		if a.find(i) != i || c.kind != kindSource || len(scores[i]) == 0 {
			continue
		}
		if c.fixed != "" {
			if c.c > 1 {
				r.Skipped = append(r.Skipped, Skip{Name: strings.Join(c.producers, " + "), Reason: c.fixed})
			}
			continue
		}
		if c.c > 1 {
			prunable = append(prunable, i)
		}
	}
	imp := map[int][]float64{}
	for _, root := range prunable {
		v, err := a.importance(root, scores[root], o.Norm)
		if err != nil {
			return nil, err
		}
		imp[root] = v
	}
	if o.Global {
		chooseGlobal(a, prunable, imp, o.Sparsity)
	} else {
		for _, root := range prunable {
			c := a.comps[root].c
			k := c - alignedKeep(c, c-removeCount(o.Sparsity, c), o.ChannelMultiple)
			a.comps[root].removed = lowest(imp[root], k)
		}
	}
	for _, root := range prunable {
		c := a.comps[root]
		r.Groups = append(r.Groups, GroupReport{Producers: c.producers, Channels: c.c, Kept: c.c - len(c.removed), Removed: c.removed})
		r.ChannelsBefore += c.c
		r.ChannelsAfter += c.c - len(c.removed)
	}
	return a, nil
}

// alignedKeep is how many of c channels to keep when keep is asked for: at least one, and
// with multiple > 1 a multiple of it (the nearest, at least one multiple) when c is one
// too. Optimized kernels block channels by 8 or 16 (ONNX Runtime's NCHWc layout on AVX2 and
// AVX-512, tensor cores): a layer that was aligned and no longer is can get slower despite
// having fewer channels.
func alignedKeep(c, keep, multiple int) int {
	if multiple > 1 && c%multiple == 0 {
		keep = max(multiple, (keep+multiple/2)/multiple*multiple)
	}
	return min(max(keep, 1), c)
}

// importance ranks a group's channels: the sum, over every layer producing them, of the Lₙ
// norm of the weights that make the channel, scaled by the BatchNorm that follows the layer
// (see bnScale). Summing lets a residual group keep a channel any of its producers relies on.
func (a *analysis) importance(root int, us []use, norm int) ([]float64, error) {
	out := make([]float64, a.comps[root].c)
	for _, u := range us {
		t := a.gr.constant(input(u.node, u.input))
		v, err := a.gr.floats(t)
		if err != nil {
			return nil, err
		}
		dims := t.Dims
		outer := int(tensor.NumElements(dims[:u.axis]))
		d := int(dims[u.axis])
		inner := int(tensor.NumElements(dims[u.axis+1:]))
		acc := make([]float64, d)
		for o := 0; o < outer; o++ {
			for k := 0; k < d; k++ {
				for _, x := range v[(o*d+k)*inner : (o*d+k+1)*inner] {
					if norm == 1 {
						acc[k] += math.Abs(float64(x))
					} else {
						acc[k] += float64(x) * float64(x)
					}
				}
			}
		}
		scale := a.bnScale[u.node]
		for k := range acc {
			if norm == 2 {
				acc[k] = math.Sqrt(acc[k])
			}
			if len(scale) == d && u.axis == outputAxis(u.node) {
				acc[k] *= scale[k]
			}
			out[k] += acc[k]
		}
	}
	return out, nil
}

// outputAxis is the output-channel axis of a layer's weight.
func outputAxis(n *onnxpb.NodeProto) int {
	if n.GetOpType() == "ConvTranspose" {
		return 1
	}
	return 0
}

// lowest returns the indices of the k smallest values, ascending; ties go to the lower index.
func lowest(v []float64, k int) []int {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(x, y int) bool { return v[idx[x]] < v[idx[y]] })
	out := slices.Clone(idx[:max(k, 0)])
	slices.Sort(out)
	return out
}

// chooseGlobal ranks every prunable channel by its importance relative to its group's mean
// (raw norms are not comparable between a 3×3×512 and a 1×1×16 layer), removes the lowest
// fraction f of all channels, and always leaves each group one channel.
func chooseGlobal(a *analysis, prunable []int, imp map[int][]float64, f float64) {
	type ch struct {
		score float64
		root  int
		idx   int
	}
	var all []ch
	for _, root := range prunable {
		v := imp[root]
		mean := 0.0
		for _, x := range v {
			mean += x
		}
		mean /= float64(len(v))
		for i, x := range v {
			s := 0.0
			if mean > 0 {
				s = x / mean
			}
			all = append(all, ch{s, root, i})
		}
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].score < all[j].score })
	k := removeCount(f, len(all))
	for _, c := range all {
		if k == 0 {
			break
		}
		cp := a.comps[c.root]
		if len(cp.removed) >= cp.c-1 {
			continue
		}
		cp.removed = append(cp.removed, c.idx)
		k--
	}
	for _, root := range prunable {
		slices.Sort(a.comps[root].removed)
	}
}

// kept lists the surviving channel indices of a group, in order.
func (a *analysis) kept(root int, memo map[int][]int) []int {
	if k, ok := memo[root]; ok {
		return k
	}
	c := a.comps[root]
	var out []int
	switch c.kind {
	case kindSource:
		removed := map[int]bool{}
		for _, i := range c.removed {
			removed[i] = true
		}
		for i := 0; i < c.c; i++ {
			if !removed[i] {
				out = append(out, i)
			}
		}
	case kindConcat:
		off := 0
		for _, p := range c.parts {
			p = a.find(p)
			for _, k := range a.kept(p, memo) {
				out = append(out, off+k)
			}
			off += a.channels(p)
		}
	case kindExpand:
		for _, k := range a.kept(a.find(c.parts[0]), memo) {
			for j := 0; j < c.s; j++ {
				out = append(out, k*c.s+j)
			}
		}
	}
	memo[root] = out
	return out
}

// apply rewrites the graph: weight and constant slices, depthwise group counts, Reshape
// targets; then drops stale value_info and what the rewrite left unused.
func (a *analysis) apply(r *Report) error {
	memo := map[int][]int{}
	changed := func(comp int) bool {
		root := a.find(comp)
		return a.comps[root].fixed == "" && len(a.kept(root, memo)) != a.channels(root)
	}
	type slot struct {
		node  *onnxpb.NodeProto
		input int
	}
	edits := map[slot]map[int][]int{}
	var order []slot
	for _, u := range a.uses {
		if !changed(u.comp) {
			continue
		}
		s := slot{u.node, u.input}
		if edits[s] == nil {
			edits[s] = map[int][]int{}
			order = append(order, s)
		}
		k := a.kept(a.find(u.comp), memo)
		if prev, ok := edits[s][u.axis]; ok && !slices.Equal(prev, k) {
			return fmt.Errorf("%s input %d axis %d follows two channel groups (a bug, please report)", onnx.NodeLabel(u.node), u.input, u.axis)
		}
		edits[s][u.axis] = k
	}
	refs := a.references()
	stale := map[string]bool{}
	var removedElems, beforeElems int64
	for _, s := range order {
		name := s.node.Input[s.input]
		t := a.gr.constant(name)
		data, err := a.gr.m.TensorData(t)
		if err != nil {
			return err
		}
		dt := tensor.DType(t.GetDataType())
		es := elemSize(dt)
		if es == 0 {
			return fmt.Errorf("tensor %q: %s elements cannot be sliced", name, dt)
		}
		dims := t.Dims
		axes := make([]int, 0, len(edits[s]))
		for ax := range edits[s] {
			axes = append(axes, ax)
		}
		slices.Sort(axes)
		for _, ax := range axes {
			data, dims = sliceAxis(data, dims, es, ax, edits[s][ax])
		}
		newName := name
		if refs[name] > 1 {
			// Shared with a node that reads other channels (or none): give this one a copy.
			newName = a.gr.fresh(name + "_pruned")
			s.node.Input[s.input] = newName
			refs[name]--
			stale[name] = true
			a.gr.addInitializer(newTensor(newName, dt, dims, data))
		} else {
			a.gr.setInitializer(newTensor(name, dt, dims, data))
		}
		before, after := tensor.NumElements(t.Dims), tensor.NumElements(dims)
		beforeElems += before
		removedElems += before - after
		r.Tensors = append(r.Tensors, TensorReport{Name: newName, Node: nodeName(s.node), OpType: s.node.GetOpType(),
			Shape: t.Dims, Elements: before, ShapeAfter: dims, ElementsAfter: after})
	}
	for _, g := range a.groups {
		if changed(g.comp) {
			setAttrInt(g.node, "group", int64(len(a.kept(a.find(g.comp), memo))))
		}
	}
	for _, t := range a.targets {
		if !changed(t.comp) {
			continue
		}
		vals := slices.Clone(t.vals)
		vals[t.pos] = int64(len(a.kept(a.find(t.comp), memo)))
		old := t.node.Input[t.input]
		name := a.gr.fresh(old + "_pruned")
		a.gr.addInitializer(intTensor(name, t.dtype, vals))
		t.node.Input[t.input] = name
		stale[old] = true
	}
	// Shapes recorded for values whose channel count changed are now wrong.
	var vi []*onnxpb.ValueInfoProto
	for _, v := range a.gr.g.ValueInfo {
		if ref := a.vals[v.GetName()]; ref != nil && changed(ref.comp) {
			continue
		}
		vi = append(vi, v)
	}
	a.gr.g.ValueInfo = vi
	a.removeDead(stale)
	a.gr.removeUnused(stale)
	r.Sparsity = frac(removedElems, beforeElems)
	return nil
}

// references counts how many node inputs (and graph outputs, and subgraph captures) read
// each name, to know whether a tensor can be replaced in place.
func (a *analysis) references() map[string]int {
	refs := map[string]int{}
	for _, n := range a.gr.g.Node {
		for _, in := range n.Input {
			refs[in]++
		}
	}
	for v, cs := range a.consumers {
		for _, c := range cs {
			if !slices.Contains(c.Input, v) {
				refs[v]++ // read by a subgraph
			}
		}
	}
	for name := range a.gr.outputs {
		refs[name]++
	}
	return refs
}

// removeDead drops nodes that only fed the rewired inputs (the Cast of a Reshape target
// piece), following their inputs upwards; the names they read join stale.
func (a *analysis) removeDead(stale map[string]bool) {
	for again := true; again; {
		again = false
		ix := onnx.NewIndex(a.gr.g)
		var keep []*onnxpb.NodeProto
		for _, n := range a.gr.g.Node {
			dead := len(n.Output) > 0
			related := false
			for _, o := range n.Output {
				if len(ix.Consumers[o]) > 0 || a.gr.outputs[o] {
					dead = false
				}
				related = related || stale[o]
			}
			if dead && related {
				for _, in := range n.Input {
					stale[in] = true
				}
				again = true
				continue
			}
			keep = append(keep, n)
		}
		a.gr.g.Node = keep
	}
}

// intTensor builds an int64 or int32 initializer.
func intTensor(name string, dt tensor.DType, v []int64) *onnxpb.TensorProto {
	if dt == tensor.Int32 {
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], uint32(int32(x)))
		}
		return newTensor(name, tensor.Int32, []int64{int64(len(v))}, b)
	}
	b := make([]byte, 8*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint64(b[8*i:], uint64(x))
	}
	return newTensor(name, tensor.Int64, []int64{int64(len(v))}, b)
}
