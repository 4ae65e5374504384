package prune

import (
	"fmt"
	"slices"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// N:M semi-structured sparsity: in every run of M consecutive weights along the reduction
// axis at most N are non-zero. 2:4 is the pattern NVIDIA sparse tensor cores (Ampere and
// later) execute at twice the dense rate; TensorRT requires it along the input channels of
// Conv weights (axis 1 of [M, C, kh, kw], for each output channel and kernel position) and
// along K of a GEMM, which is what reductionAxis returns.
const (
	nmKeep  = 2
	nmGroup = 4
)

// nmGroups calls fn with the element indices of every run of m consecutive entries along
// axis; it reports false when the axis length is not a multiple of m.
func nmGroups(dims []int64, axis, m int, fn func(idx []int)) bool {
	if axis < 0 || axis >= len(dims) || dims[axis]%int64(m) != 0 {
		return false
	}
	outer := int(tensor.NumElements(dims[:axis]))
	d := int(dims[axis])
	inner := int(tensor.NumElements(dims[axis+1:]))
	idx := make([]int, m)
	for o := 0; o < outer; o++ {
		for g := 0; g < d; g += m {
			for i := 0; i < inner; i++ {
				for j := 0; j < m; j++ {
					idx[j] = (o*d+g+j)*inner + i
				}
				fn(idx)
			}
		}
	}
	return true
}

// ConformsNM reports whether values (row-major with dims) have at most n non-zeros in every
// run of m consecutive entries along axis. An axis whose length is not a multiple of m does
// not conform: sparse kernels cannot use it.
func ConformsNM(values []float32, dims []int64, axis, n, m int) bool {
	return conformsNM(values, dims, axis, n, m)
}

func conformsNM(values []float32, dims []int64, axis, n, m int) bool {
	if tensor.NumElements(dims) != int64(len(values)) {
		return false
	}
	ok := true
	whole := nmGroups(dims, axis, m, func(idx []int) {
		nz := 0
		for _, i := range idx {
			if values[i] != 0 {
				nz++
			}
		}
		if nz > n {
			ok = false
		}
	})
	return whole && ok
}

// nmMask marks, in each run of m along axis, the m-n smallest magnitudes (ties: the later
// index is pruned, so the earlier one is kept).
func nmMask(values []float32, dims []int64, axis, n, m int) ([]bool, bool) {
	mask := make([]bool, len(values))
	ord := make([]int, m)
	ok := nmGroups(dims, axis, m, func(idx []int) {
		copy(ord, idx)
		// Insertion sort by magnitude, largest first; stable, so ties keep index order.
		for a := 1; a < m; a++ {
			for b := a; b > 0 && absBits(values[ord[b]]) > absBits(values[ord[b-1]]); b-- {
				ord[b], ord[b-1] = ord[b-1], ord[b]
			}
		}
		for _, i := range ord[n:] {
			mask[i] = true
		}
	})
	return mask, ok
}

// pruneTwoFour applies 2:4 to every candidate with a known reduction axis whose length is a
// multiple of 4; the others are skipped with the reason.
func pruneTwoFour(gr *graph, sel matcher, r *Report) error {
	all, skips := candidates(gr, sel)
	r.Skipped = append(r.Skipped, skips...)
	var cands []candidate
	var vals [][]float32
	var masks [][]bool
	for _, c := range all {
		if c.axis < 0 {
			r.Skipped = append(r.Skipped, Skip{Name: c.name, Reason: fmt.Sprintf("%s input has no known reduction axis for 2:4", c.node.GetOpType())})
			continue
		}
		if d := c.t.Dims[c.axis]; d%nmGroup != 0 {
			r.Skipped = append(r.Skipped, Skip{Name: c.name, Reason: fmt.Sprintf("reduction axis %d has length %d, not a multiple of %d (depthwise or too narrow)", c.axis, d, nmGroup)})
			continue
		}
		v, err := gr.floats(c.t)
		if err != nil {
			return err
		}
		mask, _ := nmMask(v, c.t.Dims, c.axis, nmKeep, nmGroup)
		cands, vals, masks = append(cands, c), append(vals, v), append(masks, mask)
	}
	return writeMasks(gr, cands, vals, masks, r)
}

// NMCheck is one weight tensor's 2:4 verdict.
type NMCheck struct {
	Name     string  `json:"name"`
	Axis     int     `json:"axis"`
	Conforms bool    `json:"conforms"`
	Sparsity float64 `json:"sparsity"`
}

// Check24 checks every default weight tensor (Conv, ConvTranspose, Gemm, MatMul weights with
// a known reduction axis) of m for the 2:4 pattern; inspect and tests use it to verify a
// model that claims to be 2:4 sparse. Weights in Constant nodes are checked too; m is not
// changed.
func Check24(m *onnx.Model) ([]NMCheck, error) {
	g := m.Proto.Graph
	view := &onnxpb.GraphProto{Node: slices.Clone(g.Node), Initializer: slices.Clone(g.Initializer),
		Input: slices.Clone(g.Input), Output: g.Output}
	gr := newGraphOn(m, view)
	if _, err := gr.materializeConstants(); err != nil {
		return nil, err
	}
	all, _ := candidates(gr, matcher{})
	var out []NMCheck
	for _, c := range all {
		if c.axis < 0 {
			continue
		}
		v, err := gr.floats(c.t)
		if err != nil {
			return nil, err
		}
		out = append(out, NMCheck{Name: c.name, Axis: c.axis, Conforms: conformsNM(v, c.t.Dims, c.axis, nmKeep, nmGroup),
			Sparsity: frac(countZeros(v), int64(len(v)))})
	}
	return out, nil
}
