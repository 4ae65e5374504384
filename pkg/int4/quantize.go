package int4

import (
	"fmt"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/optimctl/optimctl/pkg/quant"
)

// linear is one weight to quantize, wherever it lives (an ONNX MatMul B, a checkpoint
// Linear), in quant's [N, K] orientation.
type linear struct {
	name   string // for reports: node or checkpoint tensor name
	weight string // the weight tensor's name
	n, k   int
	load   func() ([]float32, error)
	// inputs are the activation tensors feeding the layer (ONNX names); empty without data.
	inputs []string

	q   *quant.GroupQuant
	rep *LayerReport
}

// LayerReport is one quantized weight.
type LayerReport struct {
	Name   string `json:"name"`
	Weight string `json:"weight"`
	N      int    `json:"n"`
	K      int    `json:"k"`
	Algo   string `json:"algo"`
	// With calibration data: the mean over calibration rows x of ‖(W − Ŵ)x‖², the squared
	// error the layer adds to its output, for plain round-to-nearest (RTNError) and for the
	// algorithm used (Error), and Error relative to the mean ‖Wx‖². GPTQ and RTN runs measure
	// it on every row through the Hessian; AWQ on its row sample, with Ŵ = Q(W·diag s)/s.
	RTNError float64 `json:"rtn_error,omitempty"`
	Error    float64 `json:"error,omitempty"`
	RelError float64 `json:"rel_error,omitempty"`
	// AWQ: the exponent chosen and where 1/s went (see awqGroup.foldedInto).
	AWQAlpha *float64 `json:"awq_alpha,omitempty"`
	AWQScale string   `json:"awq_scale,omitempty"`
}

// awqGroup is the layers that read one input tensor and so share one AWQ input scale s
// (AutoAWQ searches q, k and v together, and gate with up).
type awqGroup struct {
	input   string
	members []*linear
	scales  []float32 // s [K]; nil when the search kept s = 1
	alpha   float64
	// foldedInto says where 1/s went once applied.
	foldedInto string
}

func groupOptions(o *Options) quant.GroupOptions {
	return quant.GroupOptions{Bits: o.Bits, GroupSize: o.GroupSize, Symmetric: *o.Symmetric}
}

// quantizeGPTQorRTN quantizes one layer with RTN or GPTQ; h (nil without data) also yields
// the error report.
func quantizeGPTQorRTN(l *linear, h *quant.Hessian, o *Options) error {
	w, err := l.load()
	if err != nil {
		return err
	}
	l.rep = &LayerReport{Name: l.name, Weight: l.weight, N: l.n, K: l.k, Algo: string(o.Algo)}
	rtn, err := quant.QuantizeRTN(w, l.n, l.k, groupOptions(o))
	if err != nil {
		return fmt.Errorf("%s: %w", l.name, err)
	}
	l.q = rtn
	if o.Algo == GPTQ {
		if h == nil {
			return fmt.Errorf("%s: no calibration statistics", l.name)
		}
		res, err := quant.GPTQ(w, l.n, l.k, h, quant.GPTQOptions{GroupOptions: groupOptions(o), Damp: o.Damp,
			ActOrder: o.ActOrder, StaticGroups: o.StaticGroups})
		if err != nil {
			return fmt.Errorf("%s: %w", l.name, err)
		}
		l.q = res.GroupQuant
	} else {
		l.rep.Algo = string(RTN)
	}
	if h == nil || h.Samples() == 0 {
		return nil
	}
	deqs := [][]float32{rtn.Dequantize()}
	if l.q != rtn {
		deqs = append(deqs, l.q.Dequantize())
	}
	errs := hessianErrors(h, w, l.n, deqs...)
	l.rep.RTNError, l.rep.Error = errs[0], errs[len(errs)-2]
	if signal := errs[len(errs)-1]; signal > 0 {
		l.rep.RelError = l.rep.Error / signal
	}
	return nil
}

// hessianErrors returns, for each dequantized weight Ŵ, the mean over the calibration rows
// of ‖(W − Ŵ)x‖² = tr(ΔW·H·ΔWᵀ)/2 (what Hessian.OutputError computes), and last the mean
// ‖Wx‖². All differences go through one float32 GEMM with H: these are report figures,
// and float32 keeps them to about 6 digits at a third of the float64 cost.
func hessianErrors(h *quant.Hessian, w []float32, n int, deqs ...[]float32) []float64 {
	k := h.K()
	hm := h.Matrix()
	h32 := make([]float32, len(hm))
	for i, v := range hm {
		h32[i] = float32(v)
	}
	m := len(deqs) + 1
	d := make([]float32, m*n*k)
	for j, dq := range deqs {
		blk := d[j*n*k : (j+1)*n*k]
		for i := range blk {
			blk[i] = w[i] - dq[i]
		}
	}
	copy(d[len(deqs)*n*k:], w)
	f := make([]float32, m*n*k)
	blas32.Gemm(blas.NoTrans, blas.NoTrans, 1,
		blas32.General{Rows: m * n, Cols: k, Stride: k, Data: d},
		blas32.General{Rows: k, Cols: k, Stride: k, Data: h32},
		0, blas32.General{Rows: m * n, Cols: k, Stride: k, Data: f})
	out := make([]float64, m)
	for j := range out {
		var s float64
		for i := j * n * k; i < (j+1)*n*k; i++ {
			s += float64(d[i]) * float64(f[i])
		}
		out[j] = s / 2
	}
	return out
}

// quantizeAWQ runs AWQ on a group of layers sharing an input, concatenated along N as
// AutoAWQ does, so that one s serves them all. search=false keeps s = 1 (only the clipping
// search runs): used when 1/s cannot be folded anywhere.
func quantizeAWQ(g *awqGroup, x []float32, rows int, search bool, o *Options) error {
	k := g.members[0].k
	var ws [][]float32
	total := 0
	for _, l := range g.members {
		w, err := l.load()
		if err != nil {
			return err
		}
		ws = append(ws, w)
		total += l.n
	}
	wcat := make([]float32, 0, total*k)
	for _, w := range ws {
		wcat = append(wcat, w...)
	}
	ao := quant.AWQOptions{GroupOptions: groupOptions(o), DuoScaling: o.AWQDuoScaling}
	if !search {
		ao.Grid = 1 // α ∈ {0}: s = 1
	}
	res, err := quant.AWQ(wcat, total, k, x, rows, ao)
	if err != nil {
		return fmt.Errorf("%s: %w", g.members[0].name, err)
	}
	g.alpha = res.Alpha
	trivial := true
	for _, s := range res.InputScales {
		if s != 1 {
			trivial = false
			break
		}
	}
	if !trivial {
		g.scales = res.InputScales
	}
	r0 := 0
	for i, l := range g.members {
		l.q = sliceRows(res.GroupQuant, r0, r0+l.n)
		r0 += l.n
		alpha := res.Alpha
		l.rep = &LayerReport{Name: l.name, Weight: l.weight, N: l.n, K: l.k, Algo: string(AWQ), AWQAlpha: &alpha}
		// Errors on the sample, for this layer alone.
		w := ws[i]
		rtn, err := quant.QuantizeRTN(w, l.n, k, groupOptions(o))
		if err != nil {
			return err
		}
		d := rtn.Dequantize()
		sub(d, w)
		l.rep.RTNError = quant.OutputSqErr(x, rows, k, d, l.n) / float64(rows)
		d = l.q.Dequantize()
		if g.scales != nil {
			for r := 0; r < l.n; r++ {
				for c := 0; c < k; c++ {
					d[r*k+c] /= g.scales[c]
				}
			}
		}
		sub(d, w)
		l.rep.Error = quant.OutputSqErr(x, rows, k, d, l.n) / float64(rows)
		if signal := quant.OutputSqErr(x, rows, k, w, l.n) / float64(rows); signal > 0 {
			l.rep.RelError = l.rep.Error / signal
		}
	}
	return nil
}

func sub(dst, w []float32) {
	for i := range dst {
		dst[i] -= w[i]
	}
}

// sliceRows returns rows [r0, r1) of a group-quantized weight (trivial GIdx).
func sliceRows(g *quant.GroupQuant, r0, r1 int) *quant.GroupQuant {
	ng := g.NumGroups()
	out := *g
	out.N = r1 - r0
	out.Codes = g.Codes[r0*g.K : r1*g.K]
	out.Scales = g.Scales[r0*ng : r1*ng]
	out.Zeros = g.Zeros[r0*ng : r1*ng]
	return &out
}

// scaleRows multiplies the scales of output row r by f[r]: a row scaled by a constant
// quantizes to the same codes with scaled scales, so 1/s folds into a quantized producer
// exactly.
func scaleRows(g *quant.GroupQuant, f []float32) {
	ng := g.NumGroups()
	for r := 0; r < g.N; r++ {
		for j := r * ng; j < (r+1)*ng; j++ {
			g.Scales[j] *= f[r]
		}
	}
}
