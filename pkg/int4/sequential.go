package int4

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/quant/pack"
)

// blockIndex finds the transformer block in a node or weight name: "layers.3", "layer.3",
// "h.3", "blocks.3", with / . or _ around (exporters write /model/layers.3/mlp/… or
// model_layers_3_…).
var blockIndex = regexp.MustCompile(`(?:^|[/._])(?:layers?|h|blocks?)[._](\d+)(?:[/._]|$)`)

// sequentialLevels assigns every layer a level: layers of one level are quantized together
// after every earlier level has been quantized, and their inputs are captured through the
// model with those earlier levels already quantized. The level is the transformer block
// when every layer's MatMul names one (as GPTQModel and AutoGPTQ go block by block), else
// the layer's depth: the number of quantized MatMuls on the longest path from the graph's
// inputs to its input (q/k/v 0, o 1, gate/up 2, down 3, then the next block …).
func sequentialLevels(m *onnx.Model, layers []*matmulLayer) []int {
	g := m.Graph()
	lv := make([]int, len(layers))
	named := true
	for i, l := range layers {
		lv[i] = -1
		for _, ni := range l.nodes {
			sm := blockIndex.FindStringSubmatch(g.Node[ni].GetName())
			if sm == nil {
				sm = blockIndex.FindStringSubmatch(l.weight)
			}
			if sm == nil {
				named = false
				break
			}
			b, _ := strconv.Atoi(sm[1])
			lv[i] = max(lv[i], b)
		}
	}
	if named {
		return lv
	}
	// Depth: nodes are topologically sorted; a quantized MatMul adds one to its output.
	layerOf := map[int]int{}
	for i, l := range layers {
		for _, ni := range l.nodes {
			layerOf[ni] = i
		}
	}
	depth := map[string]int{}
	for ni, n := range g.Node {
		d := 0
		for _, in := range n.Input {
			d = max(d, depth[in])
		}
		if li, ok := layerOf[ni]; ok {
			lv[li] = max(lv[li], d)
			d++
		}
		for _, out := range n.Output {
			depth[out] = d
		}
	}
	return lv
}

// quantizeSequential quantizes the layers level by level (GPTQ's true_sequential, across
// the whole model): each level's inputs are captured through the model whose earlier
// levels are already rewritten (MatMulNBits, or DequantizeLinear for qdq) — the numerics
// the quantized model will run with —
// and its layers are quantized, rewritten and their Hessians dropped before the next level.
// Memory is one level's Hessians; time is one capture pass per level over the part of the
// model in front of it (captureModel), about levels/2 passes over the whole model.
// done[i] reports the layers already rewritten.
func quantizeSequential(ctx context.Context, m *onnx.Model, layers []*matmulLayer, lins []*linear, ns *names,
	o *Options, r *Report) (done []bool, err error) {
	lv := sequentialLevels(m, layers)
	levels := slices.Compact(slices.Sorted(slices.Values(lv)))
	rewrite := func(i int) error { return rewriteLayer(m, ns, layers[i], lins[i].q, o) }
	if o.Format == FormatQDQ {
		rewrite = func(i int) error { return rewriteLayerQDQ(m, ns, layers[i], lins[i].q) }
	} else {
		ensureOpset(m, pack.MatMulNBitsDomain, 1)
	}
	so := *o
	so.cache = nil // the model changes between captures
	done = make([]bool, len(layers))
	quantized := 0
	for li, level := range levels {
		var idx []int
		for i := range layers {
			if lv[i] == level {
				idx = append(idx, i)
			}
		}
		seen := map[string]bool{}
		var specs []captureSpec
		for _, i := range idx {
			for _, in := range lins[i].inputs {
				if !seen[in] {
					seen[in] = true
					specs = append(specs, captureSpec{name: in, k: lins[i].k, hessian: true})
				}
			}
		}
		res, err := capture(ctx, m, o.Input, specs, &so)
		if err != nil {
			return nil, fmt.Errorf("level %d: %w", level, err)
		}
		r.CalibSamples = res.samples
		r.CapturePasses += res.passes
		r.CaptureSeconds += res.seconds
		for _, s := range specs {
			st := res.stats[s.name]
			r.CalibRows = max(r.CalibRows, st.rows)
			r.PaddingRows = max(r.PaddingRows, st.dropped)
		}
		for _, i := range idx {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			l := lins[i]
			h := res.stats[l.inputs[0]].h
			if len(l.inputs) > 1 {
				h = quant.NewHessian(l.k)
				for _, in := range l.inputs {
					if err := h.Merge(res.stats[in].h); err != nil {
						return nil, err
					}
				}
			}
			if err := quantizeGPTQorRTN(l, h, o); err != nil {
				return nil, err
			}
			if err := rewrite(i); err != nil {
				return nil, fmt.Errorf("%s: %w", o.Input, err)
			}
			done[i] = true
			quantized++
			if o.Progress != nil {
				o.Progress("quantizing", quantized, len(lins))
			}
		}
		if o.Log != nil {
			o.Log.Info("quantized level", "level", level, "of", len(levels), "step", li+1, "layers", len(idx))
		}
	}
	return done, nil
}
