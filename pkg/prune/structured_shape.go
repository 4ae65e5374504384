package prune

import (
	"fmt"
	"math"
	"slices"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Operators that change a tensor's shape around its channels: Flatten and Reshape before a
// classifier (the channels become blocks of a vector), the Shape reads exporters use to build
// Reshape targets, and axis moves (Squeeze, Unsqueeze, Transpose).

func (a *analysis) flatten(n *onnxpb.NodeProto) {
	x := a.ref(input(n, 0))
	if x == nil {
		return
	}
	axis := int(attrInt(n, "axis", 1))
	if axis < 0 && x.rank > 0 {
		axis += x.rank
	}
	if ax := axisOf(x); ax < 0 || ax != axis {
		a.fix(x.comp, onnx.NodeLabel(n)+" flattens across the channel axis (or the rank is unknown)")
		return
	}
	e := a.newComp(kindExpand, 0, "")
	a.comps[e].parts = []int{a.find(x.comp)}
	a.track(n.Output[0], e, -1, 2, onnx.NodeLabel(n))
}

// dynamicDim marks a target-shape entry computed at run time.
const dynamicDim = math.MinInt64

// reshape follows the one Reshape a CNN head needs: [N, C, ...] → [N, C·S] (flatten before
// a classifier). The target's second entry is rewritten to C'·S; -1 needs no change.
func (a *analysis) reshape(n *onnxpb.NodeProto) {
	a.fixOthers(n)
	x := a.ref(input(n, 0))
	if x == nil {
		return
	}
	label := onnx.NodeLabel(n)
	if axisOf(x) != 1 {
		a.fix(x.comp, label+" reshapes a tensor whose channels are not on axis 1 (or of unknown rank)")
		return
	}
	tgt, full, ok := a.resolveTarget(n)
	if !ok {
		a.fix(x.comp, label+": its target shape is computed at run time and cannot be adjusted for pruned channels")
		return
	}
	root := a.find(x.comp)
	c := int64(a.channels(root))
	if len(full) != 2 {
		a.fix(root, fmt.Sprintf("%s reshapes to %s; only flattening [N, C, ...] to [N, C×S] can follow pruned channels", label, fmtTarget(full)))
		return
	}
	switch v0, v1 := full[0], full[1]; {
	case v1 == -1 && v0 != -1:
		// [N, -1]: the flattened size follows by itself; a reader tells the block size.
		e := a.newComp(kindExpand, 0, "")
		a.comps[e].parts = []int{root}
		a.track(n.Output[0], e, -1, 2, label)
	case v1 > 0 && c > 0 && v1%c == 0:
		if tgt.pos < 0 {
			a.fix(root, label+": the target entry to change is computed at run time")
			return
		}
		e := a.newComp(kindExpand, int(v1), "")
		a.comps[e].parts, a.comps[e].s = []int{root}, int(v1/c)
		tgt.comp = e
		a.targets = append(a.targets, tgt)
		a.track(n.Output[0], e, -1, 2, label)
	default:
		a.fix(root, fmt.Sprintf("%s reshapes to %s; only flattening [N, C, ...] to [N, C×S] can follow pruned channels", label, fmtTarget(full)))
	}
}

func fmtTarget(v []int64) string {
	s := "["
	for i, x := range v {
		if i > 0 {
			s += ", "
		}
		if x == dynamicDim {
			s += "?"
		} else {
			s += fmt.Sprint(x)
		}
	}
	return s + "]"
}

// resolveTarget reads a Reshape's target: a constant, or a Concat of constant pieces (through
// Casts) and run-time pieces of known length, as exporters build "[batch, 200]". It returns
// the edit that would rewrite entry 1 (pos -1 when that entry is computed at run time) and
// the whole target with run-time entries as dynamicDim.
func (a *analysis) resolveTarget(n *onnxpb.NodeProto) (targetEdit, []int64, bool) {
	name := input(n, 1)
	if v, ok := a.gr.ints(name); ok {
		dt := tensor.DType(a.gr.constant(name).GetDataType())
		return targetEdit{node: n, input: 1, vals: v, pos: 1, dtype: dt}, v, true
	}
	cat := a.producer[name]
	if cat == nil || cat.GetOpType() != "Concat" || len(a.consumers[name]) != 1 || a.gr.outputs[name] {
		return targetEdit{}, nil, false
	}
	var full []int64
	edit := targetEdit{pos: -1}
	for j, piece := range cat.Input {
		v, dt, ok := a.constThroughCast(piece)
		if !ok {
			l, ok := a.pieceLen(piece)
			if !ok {
				return targetEdit{}, nil, false
			}
			for k := 0; k < l; k++ {
				full = append(full, dynamicDim)
			}
			continue
		}
		if start := len(full); start <= 1 && 1 < start+len(v) {
			edit = targetEdit{node: cat, input: j, vals: v, pos: 1 - start, dtype: dt}
		}
		full = append(full, v...)
	}
	if len(full) < 2 {
		return targetEdit{}, nil, false
	}
	return edit, full, true
}

// constThroughCast reads a constant integer value, possibly behind Cast nodes; dt is the
// type the consumer sees.
func (a *analysis) constThroughCast(name string) ([]int64, tensor.DType, bool) {
	if v, ok := a.gr.ints(name); ok {
		return v, tensor.DType(a.gr.constant(name).GetDataType()), true
	}
	p := a.producer[name]
	if p == nil || p.GetOpType() != "Cast" {
		return nil, 0, false
	}
	v, _, ok := a.constThroughCast(input(p, 0))
	to := tensor.DType(attrInt(p, "to", 0))
	if !ok || (to != tensor.Int64 && to != tensor.Int32) {
		return nil, 0, false
	}
	return v, to, true
}

// pieceLen is the length of a run-time piece of a target shape, when its producers say it:
// a Slice of constant bounds, an Unsqueeze of a gathered scalar, behind Casts.
func (a *analysis) pieceLen(name string) (int, bool) {
	p := a.producer[name]
	if p == nil {
		return 0, false
	}
	switch p.GetOpType() {
	case "Cast":
		return a.pieceLen(input(p, 0))
	case "Slice":
		starts, ends, axes, ok := a.sliceBounds(p)
		if !ok || len(starts) != 1 || (len(axes) == 1 && axes[0] != 0) || starts[0] < 0 || ends[0] < starts[0] || ends[0] > 64 {
			return 0, false
		}
		return int(ends[0] - starts[0]), true
	case "Unsqueeze":
		g := a.producer[input(p, 0)]
		if g == nil || g.GetOpType() != "Gather" {
			return 0, false
		}
		if idx := a.gr.constant(input(g, 1)); idx == nil || len(idx.Dims) != 0 {
			return 0, false
		}
		return 1, true
	}
	return 0, false
}

// sliceBounds reads a Slice's starts, ends and axes from attributes (opset < 10) or
// constant inputs; steps other than 1 are refused.
func (a *analysis) sliceBounds(p *onnxpb.NodeProto) (starts, ends, axes []int64, ok bool) {
	if a.gr.opset < 10 {
		starts, ok1 := attrInts(p, "starts")
		ends, ok2 := attrInts(p, "ends")
		axes, _ := attrInts(p, "axes")
		return starts, ends, axes, ok1 && ok2
	}
	starts, ok1 := a.gr.ints(input(p, 1))
	ends, ok2 := a.gr.ints(input(p, 2))
	if input(p, 3) != "" {
		if axes, ok = a.gr.ints(input(p, 3)); !ok {
			return nil, nil, nil, false
		}
	}
	if input(p, 4) != "" {
		steps, ok := a.gr.ints(input(p, 4))
		if !ok || slices.ContainsFunc(steps, func(s int64) bool { return s != 1 }) {
			return nil, nil, nil, false
		}
	}
	return starts, ends, axes, ok1 && ok2
}

// shape: reading a tensor's shape is harmless when only the dimensions before the channel
// axis (the batch) are used, as exporters do to build "[batch, -1]" targets.
func (a *analysis) shape(n *onnxpb.NodeProto) {
	x := a.ref(input(n, 0))
	if x == nil {
		return
	}
	ax := axisOf(x)
	if ax < 0 || len(n.Attribute) > 0 || !a.shapeSafe(n.Output[0], int64(ax), 0) {
		a.fix(x.comp, onnx.NodeLabel(n)+" reads the channel count at run time")
	}
}

func (a *analysis) shapeSafe(v string, ax int64, depth int) bool {
	if a.gr.outputs[v] || depth > 8 {
		return false
	}
	for _, c := range a.consumers[v] {
		switch c.GetOpType() {
		case "Cast":
			if !a.shapeSafe(c.Output[0], ax, depth+1) {
				return false
			}
		case "Slice":
			if input(c, 0) != v {
				return false
			}
			starts, ends, axes, ok := a.sliceBounds(c)
			if !ok || len(starts) != 1 || (len(axes) == 1 && axes[0] != 0) || starts[0] < 0 || ends[0] > ax {
				return false
			}
		case "Gather":
			idx, ok := a.gr.ints(input(c, 1))
			if !ok || input(c, 0) != v || attrInt(c, "axis", 0) != 0 ||
				slices.ContainsFunc(idx, func(i int64) bool { return i < 0 || i >= ax }) {
				return false
			}
		default:
			return false
		}
	}
	return true
}

func (a *analysis) squeeze(n *onnxpb.NodeProto) {
	a.fixOthers(n)
	x := a.ref(input(n, 0))
	if x == nil {
		return
	}
	label := onnx.NodeLabel(n)
	var axes []int64
	ok := false
	if a.gr.opset >= 13 {
		axes, ok = a.gr.ints(input(n, 1))
	} else {
		axes, ok = attrInts(n, "axes")
	}
	ax := axisOf(x)
	if !ok || len(axes) == 0 || ax < 0 {
		a.fix(x.comp, label+" has axes that are not constant (or the rank is unknown)")
		return
	}
	rank := x.rank
	out := rank - len(axes)
	if n.GetOpType() == "Unsqueeze" {
		out = rank + len(axes)
	}
	norm := make([]int, len(axes))
	for i, v := range axes {
		if v < 0 {
			if n.GetOpType() == "Unsqueeze" {
				v += int64(out)
			} else {
				v += int64(rank)
			}
		}
		norm[i] = int(v)
	}
	slices.Sort(norm)
	newAx := ax
	if n.GetOpType() == "Squeeze" {
		for _, v := range norm {
			if v == ax {
				a.fix(x.comp, label+" squeezes the channel axis")
				return
			}
			if v < ax {
				newAx--
			}
		}
	} else {
		for _, v := range norm {
			if v <= newAx {
				newAx++
			}
		}
	}
	a.track(n.Output[0], x.comp, newAx-out, out, label)
}

func (a *analysis) transpose(n *onnxpb.NodeProto) {
	x := a.ref(input(n, 0))
	if x == nil {
		return
	}
	perm, ok := attrInts(n, "perm")
	ax := axisOf(x)
	if !ok || ax < 0 || len(perm) != x.rank {
		a.fix(x.comp, onnx.NodeLabel(n)+" transposes a tensor of unknown rank or permutation")
		return
	}
	i := slices.Index(perm, int64(ax))
	a.track(n.Output[0], x.comp, i-x.rank, x.rank, onnx.NodeLabel(n))
}
