package prune

import (
	"fmt"
	"slices"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// weightOps are the operators whose weights are pruned by default: the layers that hold
// nearly all parameters and whose kernels can exploit zeros. Biases, normalization
// parameters and embeddings are left alone unless --include names them.
var weightOps = map[string]bool{"Conv": true, "ConvTranspose": true, "Gemm": true, "MatMul": true}

// candidate is one weight tensor chosen for unstructured pruning.
type candidate struct {
	name string
	node *onnxpb.NodeProto
	t    *onnxpb.TensorProto
	// axis is the reduction (input) axis 2:4 groups run along; -1 when unknown.
	axis int
}

// reductionAxis is the axis a weight input is summed over, i.e. its input dimension:
// Conv [M, C/g, kh, kw] axis 1; ConvTranspose [C, M/g, kh, kw] axis 0; MatMul B [..., K, N]
// axis rank-2 and a constant A [..., M, K] axis rank-1; Gemm follows transA/transB.
func reductionAxis(n *onnxpb.NodeProto, in int, rank int) int {
	switch n.GetOpType() {
	case "Conv":
		if in == 1 {
			return 1
		}
	case "ConvTranspose":
		if in == 1 {
			return 0
		}
	case "Gemm":
		if in == 1 {
			if attrInt(n, "transB", 0) != 0 {
				return 1
			}
			return 0
		}
		if in == 0 {
			if attrInt(n, "transA", 0) != 0 {
				return 0
			}
			return 1
		}
	case "MatMul":
		if in == 1 && rank >= 2 {
			return rank - 2
		}
		if in == 0 && rank >= 2 {
			return rank - 1
		}
	}
	return -1
}

// isWeightInput says whether input in of a default op is its weight (not bias or data).
func isWeightInput(n *onnxpb.NodeProto, in int) bool {
	switch n.GetOpType() {
	case "Conv", "ConvTranspose":
		return in == 1
	case "Gemm", "MatMul":
		return in == 0 || in == 1
	}
	return false
}

// candidates lists the float weights to prune, each once (a tensor shared by several nodes
// is judged by its first user), and the chosen tensors that cannot be pruned, with why.
func candidates(gr *graph, sel matcher) ([]candidate, []Skip) {
	var out []candidate
	var skips []Skip
	seen := map[string]bool{}
	for _, n := range gr.g.Node {
		op := n.GetOpType()
		for i, name := range n.Input {
			t := gr.constant(name)
			if t == nil || seen[name] {
				continue
			}
			var chosen bool
			switch {
			case weightOps[op] && isWeightInput(n, i):
				chosen = sel.allowed(n.GetName(), op, name)
			case len(sel.include) > 0 && match(sel.include, name):
				// Named explicitly: prune it whatever it is.
				chosen = !match(sel.exclude, n.GetName(), op, name)
			case len(sel.include) > 0 && len(t.Dims) >= 2 && match(sel.include, n.GetName(), op):
				chosen = !match(sel.exclude, n.GetName(), op, name)
			}
			if !chosen {
				continue
			}
			seen[name] = true
			if dt := tensor.DType(t.GetDataType()); !dt.IsFloat() || elemSize(dt) == 0 {
				skips = append(skips, Skip{Name: name, Reason: fmt.Sprintf("%s tensor: only floating-point weights are pruned", dt)})
				continue
			}
			out = append(out, candidate{name: name, node: n, t: t, axis: reductionAxis(n, i, len(t.Dims))})
		}
	}
	return out, skips
}

// zeroed returns a copy of the tensor's bytes with the masked elements set to +0 (all bits
// clear is zero in every IEEE format). The source bytes may alias the model file: never
// written in place.
func zeroed(gr *graph, t *onnxpb.TensorProto, mask []bool) (*onnxpb.TensorProto, error) {
	b, err := gr.m.TensorData(t)
	if err != nil {
		return nil, err
	}
	dt := tensor.DType(t.GetDataType())
	es := elemSize(dt)
	out := append([]byte(nil), b...)
	for i, z := range mask {
		if z {
			clear(out[i*es : (i+1)*es])
		}
	}
	return newTensor(t.GetName(), dt, t.Dims, out), nil
}

func countZeros(v []float32) int64 {
	var z int64
	for _, x := range v {
		if x == 0 {
			z++
		}
	}
	return z
}

// smallest marks the k smallest magnitudes of keys (absBits values); ties at the threshold
// are broken by index, lowest first, so the count is exact and the result deterministic.
func smallest(keys []uint32, k int) []bool {
	mask := make([]bool, len(keys))
	if k <= 0 {
		return mask
	}
	if k >= len(keys) {
		for i := range mask {
			mask[i] = true
		}
		return mask
	}
	thr := kth(keys, k)
	n := 0
	for i, key := range keys {
		if key < thr {
			mask[i] = true
			n++
		}
	}
	for i, key := range keys {
		if n == k {
			break
		}
		if key == thr {
			mask[i] = true
			n++
		}
	}
	return mask
}

// kth returns the k-th smallest key (1-based).
func kth(keys []uint32, k int) uint32 {
	s := slices.Clone(keys)
	slices.Sort(s)
	return s[k-1]
}

func keysOf(v []float32) []uint32 {
	keys := make([]uint32, len(v))
	for i, x := range v {
		keys[i] = absBits(x)
	}
	return keys
}

// pruneMagnitude zeroes the smallest |w| of each candidate (or, with Global, below one
// threshold shared by all candidates).
func pruneMagnitude(gr *graph, sel matcher, o Options, r *Report) error {
	cands, skips := candidates(gr, sel)
	r.Skipped = append(r.Skipped, skips...)
	vals := make([][]float32, len(cands))
	for i, c := range cands {
		v, err := gr.floats(c.t)
		if err != nil {
			return err
		}
		vals[i] = v
	}
	masks := make([][]bool, len(cands))
	if o.Global {
		masks = globalMasks(vals, o.Sparsity)
	} else {
		for i, v := range vals {
			masks[i] = smallest(keysOf(v), removeCount(o.Sparsity, len(v)))
		}
	}
	return writeMasks(gr, cands, vals, masks, r)
}

// globalMasks applies one magnitude threshold to all tensors: exactly round(f·N) weights of
// the N in total are zeroed, ties at the threshold broken by tensor order, then index.
func globalMasks(vals [][]float32, f float64) [][]bool {
	total := 0
	for _, v := range vals {
		total += len(v)
	}
	k := removeCount(f, total)
	masks := make([][]bool, len(vals))
	all := make([]uint32, 0, total)
	for _, v := range vals {
		for _, x := range v {
			all = append(all, absBits(x))
		}
	}
	var thr uint32
	if k > 0 {
		slices.Sort(all)
		thr = all[k-1]
	}
	all = nil
	n := 0
	for i, v := range vals {
		masks[i] = make([]bool, len(v))
		if k == 0 {
			continue
		}
		for j, x := range v {
			if absBits(x) < thr {
				masks[i][j] = true
				n++
			}
		}
	}
	for i, v := range vals {
		for j, x := range v {
			if n >= k {
				return masks
			}
			if absBits(x) == thr && !masks[i][j] {
				masks[i][j] = true
				n++
			}
		}
	}
	return masks
}

// writeMasks stores the zeroed tensors and fills the per-tensor and overall report.
func writeMasks(gr *graph, cands []candidate, vals [][]float32, masks [][]bool, r *Report) error {
	var zeros, elems int64
	for i, c := range cands {
		nt, err := zeroed(gr, c.t, masks[i])
		if err != nil {
			return err
		}
		gr.setInitializer(nt)
		z := int64(0)
		for j, x := range vals[i] {
			if masks[i][j] || x == 0 {
				z++
			}
		}
		n := int64(len(vals[i]))
		zeros += z
		elems += n
		tr := TensorReport{Name: c.name, Node: nodeName(c.node), OpType: c.node.GetOpType(),
			Shape: c.t.Dims, Elements: n, Zeros: z, Sparsity: frac(z, n)}
		if c.axis >= 0 {
			ax := c.axis
			ok := conformsNM(maskedValues(vals[i], masks[i]), c.t.Dims, ax, 2, 4)
			tr.NMAxis, tr.Conforms24 = &ax, &ok
		}
		r.Tensors = append(r.Tensors, tr)
	}
	r.Sparsity = frac(zeros, elems)
	return nil
}

func maskedValues(v []float32, mask []bool) []float32 {
	out := slices.Clone(v)
	for i, z := range mask {
		if z {
			out[i] = 0
		}
	}
	return out
}

func frac(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// nodeName is a node's name, else its label.
func nodeName(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	return onnx.NodeLabel(n)
}
