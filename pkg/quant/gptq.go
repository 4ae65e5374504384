package quant

import (
	"errors"
	"fmt"
	"sort"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/floats"
	"gonum.org/v1/gonum/lapack/lapack64"
)

// GPTQOptions configure GPTQ; zero values mean the defaults of the reference implementation
// (and of AutoGPTQ's quantize_config).
type GPTQOptions struct {
	GroupOptions
	// Damp is the fraction of mean(diag H) added to the diagonal before inversion
	// (damp_percent); 0 means 0.01.
	Damp float64
	// BlockSize is the number of columns quantized between two lazy batch updates; 0 means
	// 128. It is lowered to a divisor of the group size (or a multiple of it) when needed
	// so that no group straddles two blocks (see GPTQ).
	BlockSize int
	// ActOrder processes columns by decreasing diag(H) (desc_act): salient inputs are
	// quantized first, while the most error can still be compensated.
	ActOrder bool
	// StaticGroups fits every group's scale and zero point on the original weight before
	// any update (static_groups): with ActOrder it keeps g_idx = k/GroupSize, which kernels
	// that cannot gather scales (exllama, MatMulNBits) need.
	StaticGroups bool
}

// GPTQResult is a GPTQ-quantized weight.
type GPTQResult struct {
	*GroupQuant
	// Perm is the processing order with ActOrder (column Perm[j] was quantized j-th), nil
	// without.
	Perm []int
	// Loss is GPTQ's own error estimate Σ (w − q)²/[U]ᵢᵢ² / 2 over all weights, U the upper
	// Cholesky factor of H⁻¹: what the reference prints as "error". Hessian.OutputError
	// gives the exact output error.
	Loss float64
}

// GPTQ quantizes W [N, K] (row-major, N outputs × K inputs) with GPTQ (Frantar et al., 2022,
// "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained Transformers"),
// given the Hessian of the layer's calibration inputs. It follows the reference
// implementation's fasterquant:
//
//  1. dead inputs (diag H = 0) get H[i,i] = 1 and a zero weight column;
//  2. with ActOrder, columns are permuted by decreasing diag H (a stable sort, so ties keep
//     input order and the result is deterministic);
//  3. H += Damp·mean(diag H)·I, and U is the upper Cholesky factor of H⁻¹ (computed as the
//     inverse of the "reversed" Cholesky factor of H, see upperCholOfInverse; the tests
//     check it against the reference's chol → cholesky_inverse → chol(upper) with
//     gonum/mat);
//  4. columns are quantized left to right in blocks; each quantization error, divided by
//     U[i,i], is propagated to the rest of the block at once and to later blocks by one
//     GEMM per block (the "lazy batch" update);
//  5. a group's scale and zero point are fitted when the group's first column is reached,
//     on the weights as updated so far (the reference reads a stale copy for groups that
//     start inside a block; we read the current values, which are the ones being
//     quantized), or up front with StaticGroups.
//
// The result's codes are in the original column order; with ActOrder and without
// StaticGroups, GIdx maps every input column to its group. W is not modified.
// Computation is in float64 except the codes, which come from float32 values and scales as
// in the reference.
func GPTQ(w []float32, n, k int, h *Hessian, o GPTQOptions) (*GPTQResult, error) {
	if n <= 0 || k <= 0 || len(w) != n*k {
		return nil, fmt.Errorf("gptq: weight has %d elements, want N·K = %d·%d", len(w), n, k)
	}
	if h == nil || h.K() != k {
		return nil, fmt.Errorf("gptq: hessian is for a different K than the weight's %d", k)
	}
	var err error
	if o.GroupOptions, err = o.GroupOptions.normalized(k); err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}
	if o.Damp == 0 {
		o.Damp = 0.01
	}
	if o.Damp < 0 {
		return nil, fmt.Errorf("gptq: negative damping %v", o.Damp)
	}
	gs := o.GroupSize
	bs := blockSizeFor(o.BlockSize, gs, k)

	H := h.Matrix()
	W := make([]float64, n*k)
	for i, v := range w {
		W[i] = float64(v)
	}
	for i := 0; i < k; i++ {
		if H[i*k+i] == 0 {
			H[i*k+i] = 1
			for r := 0; r < n; r++ {
				W[r*k+i] = 0
			}
		}
	}

	res := &GPTQResult{GroupQuant: newGroupQuant(n, k, o.GroupOptions)}
	g := res.GroupQuant
	ng := g.NumGroups()
	maxq := int32(1)<<o.Bits - 1

	// Static groups are fitted on the original column order, before any update.
	if o.StaticGroups {
		row := make([]float32, k)
		for r := 0; r < n; r++ {
			for c := range row {
				row[c] = float32(W[r*k+c])
			}
			for gi := 0; gi < ng; gi++ {
				s, z := rowGroupParams(row[gi*gs:min((gi+1)*gs, k)], o.Bits, o.Symmetric)
				g.Scales[r*ng+gi], g.Zeros[r*ng+gi] = s, z
			}
		}
	}

	// perm[j] is the original column processed j-th.
	perm := make([]int, k)
	for i := range perm {
		perm[i] = i
	}
	if o.ActOrder {
		diag := make([]float64, k)
		for i := range diag {
			diag[i] = H[i*k+i]
		}
		sort.SliceStable(perm, func(a, b int) bool { return diag[perm[a]] > diag[perm[b]] })
		H = permuteSym(H, perm, k)
		W = permuteCols(W, perm, n, k)
		res.Perm = perm
		if !o.StaticGroups {
			g.GIdx = make([]int32, k)
			for j, c := range perm {
				g.GIdx[c] = int32(j / gs)
			}
		}
	}

	var trace float64
	for i := 0; i < k; i++ {
		trace += H[i*k+i]
	}
	damp := o.Damp * trace / float64(k)
	for i := 0; i < k; i++ {
		H[i*k+i] += damp
	}
	U, err := upperCholOfInverse(H, k)
	if err != nil {
		return nil, fmt.Errorf("gptq: %w", err)
	}

	// groupAt is the group of the column processed j-th.
	groupAt := func(j int) int {
		if o.StaticGroups {
			return perm[j] / gs
		}
		return j / gs
	}

	errs := make([]float64, n*bs) // scaled errors of the current block, [N, bs]
	rowLoss := make([]float64, n)
	for i1 := 0; i1 < k; i1 += bs {
		i2 := min(i1+bs, k)
		cnt := i2 - i1
		parallelRows(n, func(r0, r1 int) {
			vals := make([]float32, gs)
			for r := r0; r < r1; r++ {
				wr := W[r*k+i1 : r*k+i2]
				er := errs[r*bs : r*bs+cnt]
				var loss float64
				for i := 0; i < cnt; i++ {
					j := i1 + i
					gi := groupAt(j)
					if !o.StaticGroups && j%gs == 0 {
						// The group lies inside this block (blockSizeFor guarantees it) or
						// starts it, so W holds its current values.
						e := min(j+gs, k)
						v := vals[:e-j]
						for c := range v {
							v[c] = float32(W[r*k+j+c])
						}
						g.Scales[r*ng+gi], g.Zeros[r*ng+gi] = rowGroupParams(v, o.Bits, o.Symmetric)
					}
					s, z := g.Scales[r*ng+gi], g.Zeros[r*ng+gi]
					x := wr[i]
					code := quantCode(float32(x), s, z, maxq)
					g.Codes[r*k+perm[j]] = code
					q := float64(float32(int32(code)-int32(z)) * s)
					d := U[j*k+j]
					e := (x - q) / d
					loss += (x - q) * (x - q) / (d * d)
					er[i] = e
					// W[r, j+1:i2] -= e · U[j, j+1:i2]
					if i+1 < cnt {
						floats.AddScaled(wr[i+1:], -e, U[j*k+j+1:j*k+i2])
					}
				}
				rowLoss[r] += loss
			}
		})
		if i2 < k {
			// W[:, i2:] -= Err · U[i1:i2, i2:]
			blas64.Gemm(blas.NoTrans, blas.NoTrans, -1,
				blas64.General{Rows: n, Cols: cnt, Stride: bs, Data: errs},
				blas64.General{Rows: cnt, Cols: k - i2, Stride: k, Data: U[i1*k+i2:]},
				1, blas64.General{Rows: n, Cols: k - i2, Stride: k, Data: W[i2:]})
		}
	}
	for _, l := range rowLoss {
		res.Loss += l
	}
	res.Loss /= 2
	return res, nil
}

// blockSizeFor returns the lazy-update block size: the requested one (default 128), lowered
// so that every group starting inside a block also ends inside it. Then the values a group
// is fitted on have received every update that precedes it.
func blockSizeFor(bs, gs, k int) int {
	if bs <= 0 {
		bs = 128
	}
	bs = min(bs, k)
	switch {
	case gs >= k: // one group, starting at column 0
	case gs <= bs:
		bs -= bs % gs
	default: // groups longer than a block: blocks must tile the group
		for gs%bs != 0 {
			bs--
		}
	}
	return bs
}

// upperCholOfInverse returns U, upper triangular with positive diagonal, such that
// H⁻¹ = Uᵀ·U (row-major k×k). With J the exchange matrix, the Cholesky factorisation
// J·H·J = Cᵀ·C (C upper) gives H = R·Rᵀ with R = J·Cᵀ·J upper triangular, so
// H⁻¹ = (R⁻¹)ᵀ·R⁻¹ and U = R⁻¹: one factorisation (DPOTRF) and one triangular inversion
// (DTRTRI) instead of the reference's factorisation, inversion and second factorisation.
func upperCholOfInverse(H []float64, k int) ([]float64, error) {
	a := make([]float64, k*k) // J·H·J, upper triangle
	for i := 0; i < k; i++ {
		for j := i; j < k; j++ {
			a[i*k+j] = H[(k-1-i)*k+(k-1-j)]
		}
	}
	c, ok := lapack64.Potrf(blas64.Symmetric{Uplo: blas.Upper, N: k, Stride: k, Data: a})
	if !ok {
		return nil, errors.New("hessian is not positive definite after damping (increase Damp)")
	}
	U := make([]float64, k*k)
	for i := 0; i < k; i++ {
		for j := i; j < k; j++ {
			U[i*k+j] = c.Data[(k-1-j)*k+(k-1-i)]
		}
	}
	// R has a positive diagonal (it is a Cholesky factor), so it is invertible.
	if !lapack64.Trtri(blas64.Triangular{Uplo: blas.Upper, Diag: blas.NonUnit, N: k, Stride: k, Data: U}) {
		return nil, errors.New("hessian's Cholesky factor is singular (increase Damp)")
	}
	return U, nil
}

// permuteSym returns H[perm][:, perm].
func permuteSym(H []float64, perm []int, k int) []float64 {
	out := make([]float64, k*k)
	for i, pi := range perm {
		for j, pj := range perm {
			out[i*k+j] = H[pi*k+pj]
		}
	}
	return out
}

// permuteCols returns W[:, perm] for W [n, k].
func permuteCols(W []float64, perm []int, n, k int) []float64 {
	out := make([]float64, n*k)
	for r := 0; r < n; r++ {
		src, dst := W[r*k:(r+1)*k], out[r*k:(r+1)*k]
		for j, c := range perm {
			dst[j] = src[c]
		}
	}
	return out
}
