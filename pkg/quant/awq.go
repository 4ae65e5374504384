package quant

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
)

// AWQOptions configure AWQ; zero values mean AutoAWQ's defaults.
type AWQOptions struct {
	GroupOptions
	// Grid is the number of exponents tried: α ∈ {0, 1/Grid, …, (Grid−1)/Grid}; 0 means 20.
	Grid int
	// DuoScaling divides s_x^α by s_w^(1−α) + 1e-4, s_w being the mean over output rows of
	// |W| relative to its group's max (AutoAWQ's duo_scaling). Off by default: s = s_x^α as
	// in the AWQ paper.
	DuoScaling bool
	// NoClip skips the clipping search.
	NoClip bool
	// ClipGrid and MaxShrink define the clipping candidates: each group's max |w| is shrunk by
	// the ratios 1 − i/ClipGrid for i < int(MaxShrink·ClipGrid), i.e. 1.0, 0.95, …, 0.55 with the
	// defaults 20 and 0.5 (AutoAWQ's n_grid and max_shrink).
	ClipGrid  int
	MaxShrink float64
}

// AWQResult is an AWQ-quantized weight.
type AWQResult struct {
	// GroupQuant holds the quantized W·diag(s) (after clipping): it dequantizes to W·diag(s),
	// not to W.
	*GroupQuant
	// InputScales is s [K]. The layer computes X·Wᵀ = (X/s)·(W·diag(s))ᵀ, so the caller
	// divides the layer input by s, by folding 1/s into the operation that produces it
	// (a LayerNorm's gamma and beta, or the output rows of a preceding Linear).
	InputScales []float32
	// Alpha is the chosen exponent (0 also when plain RTN, s = 1, won).
	Alpha float64
	// Mean squared output errors over the calibration rows, per output element:
	// RTNError for plain round-to-nearest (α = 0, no clipping), ScaledError after the
	// scale search, Error after clipping (the returned weights).
	RTNError, ScaledError, Error float64
}

// AWQ quantizes W [N, K] with activation-aware weight quantization (Lin et al., 2023, "AWQ:
// Activation-aware Weight Quantization for LLM Compression and Acceleration") given
// calibration inputs X [rows, K]:
//
//  1. s_x = mean |X| per input column;
//  2. for each α on the grid, s = max(s_x^α, 1e-4) / sqrt(max s · min s) (AutoAWQ's
//     normalisation), W·diag(s) is quantized group-wise (RTN) and the output error
//     ‖X·(Q(W·diag(s))/s)ᵀ − X·Wᵀ‖² is measured; the smallest wins (the first on ties).
//     s = 1, plain RTN (also α = 0 without duo scaling), is always a candidate, so the
//     scale search never does worse than RTN on X;
//  3. per output row and group, the clipping ratio is chosen that minimises that group's
//     contribution to the output error, Σ_rows (x_g·δ_g)² = δ_gᵀ·X_gᵀX_g·δ_g, computed
//     exactly from the group's block of the Gram matrix (AutoAWQ evaluates it on a 512-token
//     subsample); the weights are clipped to ±ratio·max|w| and quantized.
//
// All searches are exhaustive over fixed grids, so the result is deterministic. Cost:
// Grid GEMMs of rows×K×N, plus ClipGrid·MaxShrink GEMMs of N×K×GroupSize for clipping.
func AWQ(w []float32, n, k int, x []float32, rows int, o AWQOptions) (*AWQResult, error) {
	if n <= 0 || k <= 0 || len(w) != n*k {
		return nil, fmt.Errorf("awq: weight has %d elements, want N·K = %d·%d", len(w), n, k)
	}
	if rows <= 0 || len(x) != rows*k {
		return nil, fmt.Errorf("awq: activations have %d values, want rows·K = %d·%d with rows > 0", len(x), rows, k)
	}
	for i, v := range x {
		if v-v != 0 {
			return nil, fmt.Errorf("awq: non-finite activation %v at row %d, column %d", v, i/k, i%k)
		}
	}
	var err error
	if o.GroupOptions, err = o.GroupOptions.normalized(k); err != nil {
		return nil, fmt.Errorf("awq: %w", err)
	}
	if o.Grid <= 0 {
		o.Grid = 20
	}
	if o.ClipGrid <= 0 {
		o.ClipGrid = 20
	}
	if o.MaxShrink <= 0 {
		o.MaxShrink = 0.5
	}
	if o.MaxShrink >= 1 {
		return nil, fmt.Errorf("awq: max shrink %v must be below 1", o.MaxShrink)
	}

	sx := make([]float64, k)
	for r := 0; r < rows; r++ {
		for c, v := range x[r*k : (r+1)*k] {
			sx[c] += math.Abs(float64(v))
		}
	}
	for c := range sx {
		sx[c] /= float64(rows)
	}
	var sw []float64
	if o.DuoScaling {
		sw = weightSaliency(w, n, k, o.GroupSize)
	}

	res := &AWQResult{}
	ws := make([]float32, n*k) // W·diag(s)
	dw := make([]float32, n*k) // Q(W·diag(s))/s − W
	s := make([]float32, k)
	best := make([]float32, k)
	for c := range best {
		best[c] = 1 // plain RTN is always a candidate
	}
	errFor := func(s []float32) (float64, error) {
		scaleCols(ws, w, s, n, k)
		q, err := QuantizeRTN(ws, n, k, o.GroupOptions)
		if err != nil {
			return 0, fmt.Errorf("awq: %w", err)
		}
		q.DequantizeTo(dw)
		descaleDiff(dw, w, s, n, k)
		return OutputSqErr(x, rows, k, dw, n) / float64(rows*n), nil
	}
	if res.RTNError, err = errFor(best); err != nil {
		return nil, err
	}
	bestErr := res.RTNError
	for i := 0; i < o.Grid; i++ {
		alpha := float64(i) / float64(o.Grid)
		if i == 0 && sw == nil {
			continue // s_x^0 = 1: the RTN candidate above
		}
		awqScales(s, sx, sw, alpha)
		e, err := errFor(s)
		if err != nil {
			return nil, err
		}
		if e < bestErr {
			bestErr, res.Alpha = e, alpha
			copy(best, s)
		}
	}
	res.ScaledError = bestErr
	res.InputScales = best
	scaleCols(ws, w, best, n, k)

	if !o.NoClip {
		clipWeights(ws, n, k, x, rows, best, o)
	}
	g, err := QuantizeRTN(ws, n, k, o.GroupOptions)
	if err != nil {
		return nil, fmt.Errorf("awq: %w", err)
	}
	res.GroupQuant = g
	g.DequantizeTo(dw)
	descaleDiff(dw, w, best, n, k)
	res.Error = OutputSqErr(x, rows, k, dw, n) / float64(rows*n)
	return res, nil
}

// awqScales fills s with AutoAWQ's scales for exponent alpha.
func awqScales(s []float32, sx, sw []float64, alpha float64) {
	v := make([]float64, len(sx))
	lo, hi := math.Inf(1), math.Inf(-1)
	for c := range v {
		t := math.Pow(sx[c], alpha)
		if sw != nil {
			t /= math.Pow(sw[c], 1-alpha) + 1e-4
		}
		t = max(t, 1e-4)
		v[c] = t
		lo, hi = min(lo, t), max(hi, t)
	}
	norm := math.Sqrt(lo * hi)
	for c, t := range v {
		t /= norm
		if math.IsInf(t, 0) || math.IsNaN(t) {
			t = 1
		}
		s[c] = float32(t)
	}
}

// weightSaliency is AutoAWQ's get_weight_scale: |W| divided by its group's max |W|,
// averaged over output rows.
func weightSaliency(w []float32, n, k, gs int) []float64 {
	sw := make([]float64, k)
	for r := 0; r < n; r++ {
		row := w[r*k : (r+1)*k]
		for k0 := 0; k0 < k; k0 += gs {
			k1 := min(k0+gs, k)
			var amax float64
			for _, v := range row[k0:k1] {
				amax = max(amax, math.Abs(float64(v)))
			}
			if amax == 0 {
				continue
			}
			for c := k0; c < k1; c++ {
				sw[c] += math.Abs(float64(row[c])) / amax
			}
		}
	}
	for c := range sw {
		sw[c] /= float64(n)
	}
	return sw
}

func scaleCols(dst, w, s []float32, n, k int) {
	for r := 0; r < n; r++ {
		d, src := dst[r*k:(r+1)*k], w[r*k:(r+1)*k]
		for c, v := range src {
			d[c] = v * s[c]
		}
	}
}

// descaleDiff turns dq = dequantized W·diag(s) into dq/s − W, in place.
func descaleDiff(dq, w, s []float32, n, k int) {
	for r := 0; r < n; r++ {
		d, src := dq[r*k:(r+1)*k], w[r*k:(r+1)*k]
		for c := range d {
			d[c] = d[c]/s[c] - src[c]
		}
	}
}

// OutputSqErr returns ‖X·dWᵀ‖² (X [rows, K], dW [N, K]) in float64, rows taken in chunks so
// that memory stays at 1024×N floats.
func OutputSqErr(x []float32, rows, k int, dw []float32, n int) float64 {
	const chunk = 1024
	out := make([]float32, min(rows, chunk)*n)
	var sum float64
	for r0 := 0; r0 < rows; r0 += chunk {
		r := min(chunk, rows-r0)
		blas32.Gemm(blas.NoTrans, blas.Trans, 1,
			blas32.General{Rows: r, Cols: k, Stride: k, Data: x[r0*k : (r0+r)*k]},
			blas32.General{Rows: n, Cols: k, Stride: k, Data: dw},
			0, blas32.General{Rows: r, Cols: n, Stride: n, Data: out[:r*n]})
		for _, v := range out[:r*n] {
			sum += float64(v) * float64(v)
		}
	}
	return sum
}

// clipWeights clamps every group of ws (= W·diag(s)) to ±ratio·max|w|, ratio chosen per row
// and group to minimise that group's output error on the scaled inputs X/s.
func clipWeights(ws []float32, n, k int, x []float32, rows int, s []float32, o AWQOptions) {
	gs := o.GroupSize
	steps := max(int(o.MaxShrink*float64(o.ClipGrid)), 1)
	xt := make([]float64, gs*rows)
	gram := make([]float64, gs*gs)
	delta := make([]float64, n*gs)
	prod := make([]float64, n*gs)
	bestErr := make([]float64, n)
	bestMax := make([]float32, n)
	amax := make([]float32, n)
	for k0 := 0; k0 < k; k0 += gs {
		k1 := min(k0+gs, k)
		m := k1 - k0
		// Gram block of the scaled inputs: (X_g/s)ᵀ(X_g/s), via the transposed block so
		// that the GEMM runs over contiguous rows.
		for r := 0; r < rows; r++ {
			for j := 0; j < m; j++ {
				xt[j*rows+r] = float64(x[r*k+k0+j]) / float64(s[k0+j])
			}
		}
		xg := blas64.General{Rows: m, Cols: rows, Stride: rows, Data: xt[:m*rows]}
		blas64.Gemm(blas.NoTrans, blas.Trans, 1, xg, xg, 0, blas64.General{Rows: m, Cols: m, Stride: m, Data: gram[:m*m]})

		for r := 0; r < n; r++ {
			var a float32
			for _, v := range ws[r*k+k0 : r*k+k1] {
				a = max(a, abs32(v))
			}
			amax[r] = a
			bestErr[r] = math.Inf(1)
			bestMax[r] = a
		}
		for i := 0; i < steps; i++ {
			ratio := 1 - float64(i)/float64(o.ClipGrid)
			parallelRows(n, func(r0, r1 int) {
				cur := make([]float32, m)
				for r := r0; r < r1; r++ {
					fakeQuantClipped(cur, ws[r*k+k0:r*k+k1], float32(ratio)*amax[r], o.Bits, o.Symmetric)
					d := delta[r*m : (r+1)*m]
					for j, v := range cur {
						d[j] = float64(v) - float64(ws[r*k+k0+j])
					}
				}
			})
			blas64.Gemm(blas.NoTrans, blas.NoTrans, 1,
				blas64.General{Rows: n, Cols: m, Stride: m, Data: delta[:n*m]},
				blas64.General{Rows: m, Cols: m, Stride: m, Data: gram[:m*m]},
				0, blas64.General{Rows: n, Cols: m, Stride: m, Data: prod[:n*m]})
			for r := 0; r < n; r++ {
				var e float64
				for j := r * m; j < (r+1)*m; j++ {
					e += delta[j] * prod[j]
				}
				if e < bestErr[r] {
					bestErr[r] = e
					bestMax[r] = float32(ratio) * amax[r]
				}
			}
		}
		for r := 0; r < n; r++ {
			mv := bestMax[r]
			for j := r*k + k0; j < r*k+k1; j++ {
				ws[j] = min(max(ws[j], -mv), mv)
			}
		}
	}
}

// fakeQuantClipped writes into dst the RTN round trip of src clamped to [−maxVal, maxVal]
// (one group: AutoAWQ's pseudo_quantize_tensor of the clamped weights).
func fakeQuantClipped(dst, src []float32, maxVal float32, bits int, symmetric bool) {
	for j, v := range src {
		dst[j] = min(max(v, -maxVal), maxVal)
	}
	s, z := rowGroupParams(dst, bits, symmetric)
	maxq := int32(1)<<bits - 1
	for j, v := range dst {
		dst[j] = float32(int32(quantCode(v, s, z, maxq))-int32(z)) * s
	}
}
