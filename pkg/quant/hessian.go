package quant

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
)

// Hessian accumulates GPTQ's layer Hessian H = 2/n · Σ x xᵀ over the n calibration samples x
// (rows of the layer input) seen so far, batch by batch: memory is K×K float64 whatever n.
//
// Each batch's XᵀX is computed in float32 by gonum's SGEMM/SSYRK on the transposed batch
// (dot products over contiguous memory), tiled over the upper triangle and spread over the
// CPUs — about 32 GFLOP/s of useful work on 2 cores, against 15 for one SSYRK call and 12
// for SSYRK on the untransposed batch — and added into a float64 sum, so precision does not
// degrade with the number of batches. Tiles are disjoint, so the result does not depend on
// scheduling. Built with the openblas tag, one threaded OpenBLAS SSYRK covers the whole
// triangle instead (blasThreaded).
type Hessian struct {
	k   int
	n   int64
	sum []float64 // Σ x xᵀ, K×K row-major; only the upper triangle is maintained
	xt  []float32 // scratch: one chunk of X transposed, K × hessianChunk
}

const (
	hessianChunk = 1024 // rows per SYRK call: bounds scratch memory, amortises the tiles
	hessianTile  = 256  // tile edge of the upper-triangle split
)

// NewHessian returns an empty accumulator for a layer with K inputs.
func NewHessian(k int) *Hessian {
	if k <= 0 {
		panic(fmt.Sprintf("quant: NewHessian(%d): K must be positive", k))
	}
	return &Hessian{k: k, sum: make([]float64, k*k)}
}

// K is the number of layer inputs.
func (h *Hessian) K() int { return h.k }

// Samples is n, the number of rows added.
func (h *Hessian) Samples() int64 { return h.n }

// Add accumulates a batch X [rows, K] (row-major). Non-finite values are rejected: one NaN
// would make every GPTQ update NaN.
func (h *Hessian) Add(x []float32, rows int) error {
	if rows < 0 || len(x) != rows*h.k {
		return fmt.Errorf("hessian: batch has %d values, want rows·K = %d·%d", len(x), rows, h.k)
	}
	for i, v := range x {
		if v-v != 0 {
			return fmt.Errorf("hessian: non-finite activation %v at row %d, column %d", v, i/h.k, i%h.k)
		}
	}
	if h.xt == nil && rows > 0 {
		h.xt = make([]float32, h.k*min(rows, hessianChunk))
	}
	for r0 := 0; r0 < rows; r0 += hessianChunk {
		r := min(hessianChunk, rows-r0)
		if len(h.xt) < h.k*r {
			h.xt = make([]float32, h.k*r)
		}
		xt := h.xt[:h.k*r]
		TransposeF32(xt, x[r0*h.k:(r0+r)*h.k], r, h.k)
		syrkAccumulate(h.sum, xt, h.k, r)
	}
	h.n += int64(rows)
	return nil
}

// Merge adds the samples of another accumulator of the same K (for collecting in parallel).
func (h *Hessian) Merge(o *Hessian) error {
	if o.k != h.k {
		return fmt.Errorf("hessian: merging K=%d into K=%d", o.k, h.k)
	}
	for i := range h.sum {
		h.sum[i] += o.sum[i]
	}
	h.n += o.n
	return nil
}

// Matrix returns H = 2/n · Σ x xᵀ as a full symmetric K×K row-major matrix (all zeros
// before any sample).
func (h *Hessian) Matrix() []float64 {
	k := h.k
	m := make([]float64, k*k)
	if h.n == 0 {
		return m
	}
	f := 2 / float64(h.n)
	for i := 0; i < k; i++ {
		for j := i; j < k; j++ {
			v := f * h.sum[i*k+j]
			m[i*k+j] = v
			m[j*k+i] = v
		}
	}
	return m
}

// OutputError returns the mean, over the calibration samples, of ‖(W − Ŵ)x‖², the squared
// error a quantized weight Ŵ adds to the layer output: tr(ΔW H ΔWᵀ)/2 with ΔW = W − Ŵ, both
// [N, K]. It is the quantity GPTQ minimises; it costs 2·N·K² flops.
func (h *Hessian) OutputError(w, wq []float32, n int) (float64, error) {
	k := h.k
	if len(w) != n*k || len(wq) != n*k {
		return 0, fmt.Errorf("output error: weights have %d and %d values, want N·K = %d·%d", len(w), len(wq), n, k)
	}
	if h.n == 0 {
		return 0, nil
	}
	d := make([]float64, n*k)
	for i := range d {
		d[i] = float64(w[i]) - float64(wq[i])
	}
	hm := h.Matrix()
	f := make([]float64, n*k)
	blas64.Gemm(blas.NoTrans, blas.NoTrans, 1,
		blas64.General{Rows: n, Cols: k, Stride: k, Data: d},
		blas64.General{Rows: k, Cols: k, Stride: k, Data: hm},
		0, blas64.General{Rows: n, Cols: k, Stride: k, Data: f})
	var tr float64
	for i := range d {
		tr += d[i] * f[i]
	}
	return tr / 2, nil
}

// syrkAccumulate adds the upper triangle of A·Aᵀ into acc (k×k float64), where A = xt is
// k × r float32 (one transposed chunk of X, so that every dot product runs over contiguous
// memory, which gonum's kernels prefer). Upper-triangle tiles are handed out to one worker
// per CPU; each tile is computed by one worker into its own scratch and added into a
// disjoint part of acc.
func syrkAccumulate(acc []float64, xt []float32, k, r int) {
	edge := hessianTile
	if blasThreaded {
		edge = k // one call; the library spreads it over the cores
	}
	type tile struct{ i, j int }
	var tiles []tile
	for i := 0; i < k; i += edge {
		for j := i; j < k; j += edge {
			tiles = append(tiles, tile{i, j})
		}
	}
	var next atomic.Int64
	work := func() {
		scratch := make([]float32, edge*edge)
		for {
			t := int(next.Add(1)) - 1
			if t >= len(tiles) {
				return
			}
			i0, j0 := tiles[t].i, tiles[t].j
			mi, mj := min(edge, k-i0), min(edge, k-j0)
			a := blas32.General{Rows: mi, Cols: r, Stride: r, Data: xt[i0*r : (i0+mi)*r]}
			if i0 == j0 {
				c := blas32.Symmetric{Uplo: blas.Upper, N: mi, Stride: mj, Data: scratch[:mi*mj]}
				blas32.Syrk(blas.NoTrans, 1, a, 0, c)
				for i := 0; i < mi; i++ {
					row := acc[(i0+i)*k+j0 : (i0+i)*k+j0+mj]
					for j := i; j < mj; j++ {
						row[j] += float64(scratch[i*mj+j])
					}
				}
				continue
			}
			b := blas32.General{Rows: mj, Cols: r, Stride: r, Data: xt[j0*r : (j0+mj)*r]}
			c := blas32.General{Rows: mi, Cols: mj, Stride: mj, Data: scratch[:mi*mj]}
			blas32.Gemm(blas.NoTrans, blas.Trans, 1, a, b, 0, c)
			for i := 0; i < mi; i++ {
				row := acc[(i0+i)*k+j0 : (i0+i)*k+j0+mj]
				for j, v := range scratch[i*mj : (i+1)*mj] {
					row[j] += float64(v)
				}
			}
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(tiles))
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Add(1)
		go func() { defer wg.Done(); work() }()
	}
	work()
	wg.Wait()
}
