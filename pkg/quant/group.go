package quant

import (
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"
)

// DefaultGroupSize is the group size GPTQ and AWQ checkpoints most often use.
const DefaultGroupSize = 128

// GroupOptions choose the integer grid of weight-only group quantization.
type GroupOptions struct {
	// Bits per code, 2..8; 0 means 4.
	Bits int
	// GroupSize is the number of consecutive input columns (along K) sharing one scale and
	// zero point; 0 means 128, −1 (or ≥ K) one group per output row ("per channel").
	// K need not be a multiple: the last group is then shorter, and its scale and zero point
	// come from its real columns only. Because every group's range includes 0, padding a
	// short group with zeros (as MatMulNBits' whole blocks require) would not change them,
	// so a packer may pad with the zero point and get exact zeros.
	GroupSize int
	// Symmetric uses a range symmetric about 0 with the zero point fixed at 2^(bits−1)
	// (GPTQ's sym=True, and the zero point MatMulNBits assumes when none is stored);
	// otherwise the zero point is fitted per group.
	Symmetric bool
}

func (o GroupOptions) normalized(k int) (GroupOptions, error) {
	if o.Bits == 0 {
		o.Bits = 4
	}
	if o.Bits < 2 || o.Bits > 8 {
		return o, fmt.Errorf("bits %d: must be between 2 and 8", o.Bits)
	}
	switch {
	case o.GroupSize == 0:
		o.GroupSize = DefaultGroupSize
	case o.GroupSize == -1:
		o.GroupSize = k
	case o.GroupSize < -1:
		return o, fmt.Errorf("group size %d: must be positive, 0 (default) or -1 (per channel)", o.GroupSize)
	}
	o.GroupSize = min(o.GroupSize, max(k, 1))
	return o, nil
}

// GroupQuant is a group-quantized weight W [N, K] (N outputs × K inputs, row-major).
// Element (n, k) dequantizes as (Codes[n·K+k] − Zeros[n·G+g]) · Scales[n·G+g] with
// g = Group(k). The pack package turns it into the byte layouts of MatMulNBits, GPTQ and AWQ.
type GroupQuant struct {
	N, K      int
	Bits      int
	GroupSize int  // columns per group (K when per channel)
	Symmetric bool // every zero point is 2^(Bits−1)
	// Codes are unsigned, in [0, 2^Bits), [N, K] row-major in the original column order.
	Codes []uint8
	// Scales and Zeros are [N, G] row-major, G = NumGroups().
	Scales []float32
	Zeros  []uint8
	// GIdx maps each input column to its group, [K]; nil means k / GroupSize. GPTQ with
	// act-order (without static groups) makes a non-trivial one.
	GIdx []int32
}

// NumGroups is G, the number of groups per output row.
func (g *GroupQuant) NumGroups() int {
	if g.GIdx == nil {
		return (g.K + g.GroupSize - 1) / g.GroupSize
	}
	return len(g.Scales) / max(g.N, 1)
}

// Group returns the group of input column k.
func (g *GroupQuant) Group(k int) int {
	if g.GIdx != nil {
		return int(g.GIdx[k])
	}
	return k / g.GroupSize
}

// GroupIndex returns GIdx, materialising the trivial k / GroupSize mapping when it is nil
// (GPTQ checkpoints store it either way).
func (g *GroupQuant) GroupIndex() []int32 {
	if g.GIdx != nil {
		return g.GIdx
	}
	idx := make([]int32, g.K)
	for k := range idx {
		idx[k] = int32(k / g.GroupSize)
	}
	return idx
}

// ReorderByGroup returns a copy whose input columns are sorted by group (stably), so that
// its groups are contiguous and GIdx is trivial, and perm, the original column of each new
// column. Formats without g_idx (MatMulNBits, AWQ) can store act-order GPTQ weights this
// way, provided the layer input is gathered with the same perm (X[:, perm]). It fails when
// a group does not hold GroupSize columns (the last one excepted), since the groups would
// then not line up with blocks.
func (g *GroupQuant) ReorderByGroup() (perm []int, reordered *GroupQuant, err error) {
	idx := g.GroupIndex()
	perm = make([]int, g.K)
	for i := range perm {
		perm[i] = i
	}
	sort.SliceStable(perm, func(a, b int) bool { return idx[perm[a]] < idx[perm[b]] })
	for j, c := range perm {
		if int(idx[c]) != j/g.GroupSize {
			return nil, nil, fmt.Errorf("reorder by group: column %d of group %d would land in block %d", c, idx[c], j/g.GroupSize)
		}
	}
	out := *g
	out.GIdx = nil
	out.Codes = make([]uint8, len(g.Codes))
	for n := 0; n < g.N; n++ {
		src, dst := g.Codes[n*g.K:(n+1)*g.K], out.Codes[n*g.K:(n+1)*g.K]
		for j, c := range perm {
			dst[j] = src[c]
		}
	}
	out.Scales = append([]float32(nil), g.Scales...)
	out.Zeros = append([]uint8(nil), g.Zeros...)
	return perm, &out, nil
}

// Dequantize returns the float weight [N, K] the codes stand for.
func (g *GroupQuant) Dequantize() []float32 {
	dst := make([]float32, g.N*g.K)
	g.DequantizeTo(dst)
	return dst
}

// DequantizeTo writes the float weight [N, K] into dst.
func (g *GroupQuant) DequantizeTo(dst []float32) {
	if len(dst) != g.N*g.K {
		panic(fmt.Sprintf("quant: DequantizeTo: dst has %d elements, want %d", len(dst), g.N*g.K))
	}
	ng := g.NumGroups()
	for n := 0; n < g.N; n++ {
		row := g.Codes[n*g.K : (n+1)*g.K]
		out := dst[n*g.K : (n+1)*g.K]
		sc := g.Scales[n*ng : (n+1)*ng]
		zs := g.Zeros[n*ng : (n+1)*ng]
		for k, q := range row {
			gi := g.Group(k)
			out[k] = float32(int32(q)-int32(zs[gi])) * sc[gi]
		}
	}
}

// groupParams returns the scale and zero point of one group from its value range, with
// GPTQ's quantizer (find_params), which ORT's MatMulNBits quantizer matches for the
// asymmetric case:
//
//	lo, hi ← min(lo, 0), max(hi, 0)                 (0 is always representable)
//	symmetric:  a = max(−lo, hi), scale = 2a/maxq, zero = 2^(bits−1)
//	asymmetric: scale = (hi − lo)/maxq, zero = round(−lo/scale)
//	lo = hi = 0: as if the range were [−1, 1]        (any scale works; all codes = zero)
//
// with maxq = 2^bits − 1, in float32 like the reference. The symmetric grid spans
// [−2^(bits−1), 2^(bits−1)−1]·scale, so +a itself clips to (2^(bits−1)−1)·scale, as in GPTQ
// and in ORT's compute_scale_zp for INT4. (GPTQ's quantizer leaves lo at 0 for a symmetric
// group with no negative value, which wastes half its grid; we always use [−a, a].)
func groupParams(lo, hi float32, bits int, symmetric bool) (scale float32, zero uint8) {
	maxq := float32(int(1)<<bits - 1)
	lo = min(finiteOrZero(lo), 0)
	hi = max(finiteOrZero(hi), 0)
	if symmetric {
		a := max(-lo, hi)
		lo = -a
		hi = a
	}
	if lo == 0 && hi == 0 {
		lo, hi = -1, 1
	}
	scale = (hi - lo) / maxq
	if symmetric {
		return scale, uint8(1 << (bits - 1))
	}
	z := math.RoundToEven(float64(-lo / scale))
	return scale, uint8(min(max(z, 0), float64(maxq)))
}

// quantCode is GPTQ's quantize(): clamp(round(x/scale) + zero, 0, maxq).
func quantCode(x, scale float32, zero uint8, maxq int32) uint8 {
	return uint8(Quantize(x, scale, int32(zero), 0, maxq))
}

// rowGroupParams fits the parameters of one group of one row.
func rowGroupParams(vals []float32, bits int, symmetric bool) (float32, uint8) {
	lo, hi, ok := finiteRange(vals)
	if !ok {
		lo, hi = 0, 0
	}
	return groupParams(lo, hi, bits, symmetric)
}

// QuantizeRTN quantizes W [N, K] group by group with round-to-nearest: the baseline that
// GPTQ and AWQ improve on. Asymmetric RTN is what ORT's default MatMulNBits quantizer
// computes, except on exact ties, which ORT rounds away from zero (after multiplying by
// 1/scale) and we round to even (after dividing), as torch does. ORT's symmetric 4-bit
// quantizer uses another grid (the signed value of largest magnitude maps to −8).
func QuantizeRTN(w []float32, n, k int, o GroupOptions) (*GroupQuant, error) {
	if n <= 0 || k <= 0 || len(w) != n*k {
		return nil, fmt.Errorf("rtn: weight has %d elements, want N·K = %d·%d", len(w), n, k)
	}
	o, err := o.normalized(k)
	if err != nil {
		return nil, fmt.Errorf("rtn: %w", err)
	}
	g := newGroupQuant(n, k, o)
	parallelRows(n, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			g.quantizeRow(r, w[r*k:(r+1)*k])
		}
	})
	return g, nil
}

func newGroupQuant(n, k int, o GroupOptions) *GroupQuant {
	ng := (k + o.GroupSize - 1) / o.GroupSize
	return &GroupQuant{
		N: n, K: k, Bits: o.Bits, GroupSize: o.GroupSize, Symmetric: o.Symmetric,
		Codes:  make([]uint8, n*k),
		Scales: make([]float32, n*ng),
		Zeros:  make([]uint8, n*ng),
	}
}

// quantizeRow fits and applies the parameters of every group of row r (trivial GIdx).
func (g *GroupQuant) quantizeRow(r int, row []float32) {
	ng := g.NumGroups()
	maxq := int32(1)<<g.Bits - 1
	for gi := 0; gi < ng; gi++ {
		k0, k1 := gi*g.GroupSize, min((gi+1)*g.GroupSize, g.K)
		s, z := rowGroupParams(row[k0:k1], g.Bits, g.Symmetric)
		g.Scales[r*ng+gi], g.Zeros[r*ng+gi] = s, z
		codes := g.Codes[r*g.K+k0 : r*g.K+k1]
		for j, x := range row[k0:k1] {
			codes[j] = quantCode(x, s, z, maxq)
		}
	}
}

// TransposeF32 writes the transpose of src [rows, cols] into dst [cols, rows], converting
// between the [K, N] orientation (ONNX MatMul initializers, GPTQ/AWQ checkpoints) and the
// [N, K] one this package uses.
func TransposeF32(dst, src []float32, rows, cols int) {
	if len(src) != rows*cols || len(dst) != rows*cols {
		panic(fmt.Sprintf("quant: TransposeF32: %d and %d elements for %d×%d", len(dst), len(src), rows, cols))
	}
	const tile = 32
	for i0 := 0; i0 < rows; i0 += tile {
		for j0 := 0; j0 < cols; j0 += tile {
			for i := i0; i < min(i0+tile, rows); i++ {
				for j := j0; j < min(j0+tile, cols); j++ {
					dst[j*rows+i] = src[i*cols+j]
				}
			}
		}
	}
}

// FromKN returns the [N, K] copy of a weight stored [K, N].
func FromKN(wKN []float32, k, n int) []float32 {
	dst := make([]float32, k*n)
	TransposeF32(dst, wKN, k, n)
	return dst
}

// ToKN returns the [K, N] copy of a weight stored [N, K].
func ToKN(wNK []float32, n, k int) []float32 {
	dst := make([]float32, k*n)
	TransposeF32(dst, wNK, n, k)
	return dst
}

// parallelRows runs fn over [0, n) split into contiguous row ranges, one per CPU. Rows are
// independent in every caller, so the split never changes results.
func parallelRows(n int, fn func(r0, r1 int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		fn(0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for r0 := 0; r0 < n; r0 += per {
		wg.Add(1)
		go func(r0, r1 int) {
			defer wg.Done()
			fn(r0, r1)
		}(r0, min(r0+per, n))
	}
	wg.Wait()
}
