package quant

import (
	"math"
	"runtime"
	"testing"

	"gonum.org/v1/gonum/floats/scalar"
	"gonum.org/v1/gonum/mat"
)

// correlatedActivations returns X [rows, k] whose columns are correlated (X = Z·A with
// A = I + 0.4·G/√k) and unequally scaled (log-normal per-column scale, every 13th column
// ×6), like real layer inputs with salient channels. Deterministic for a seed.
func correlatedActivations(seed uint64, rows, k int) []float32 {
	r := &testRNG{s: seed}
	a := make([]float64, k*k)
	for i := range a {
		a[i] = 0.4 * r.normal() / math.Sqrt(float64(k))
	}
	for i := 0; i < k; i++ {
		a[i*k+i]++
	}
	colScale := make([]float64, k)
	for c := range colScale {
		colScale[c] = math.Exp(0.7 * r.normal())
		if c%13 == 0 {
			colScale[c] *= 6
		}
	}
	x := make([]float32, rows*k)
	z := make([]float64, k)
	for row := 0; row < rows; row++ {
		for i := range z {
			z[i] = r.normal()
		}
		for c := 0; c < k; c++ {
			var v float64
			for i := 0; i < k; i++ {
				v += z[i] * a[i*k+c]
			}
			x[row*k+c] = float32(v * colScale[c])
		}
	}
	return x
}

func naiveHessian(x []float32, rows, k int) []float64 {
	h := make([]float64, k*k)
	for r := 0; r < rows; r++ {
		xr := x[r*k : (r+1)*k]
		for i := 0; i < k; i++ {
			for j := 0; j < k; j++ {
				h[i*k+j] += float64(xr[i]) * float64(xr[j])
			}
		}
	}
	for i := range h {
		h[i] *= 2 / float64(rows)
	}
	return h
}

func TestHessianStreaming(t *testing.T) {
	const k = 300 // two tiles, the second ragged
	rows := []int{100, 1500, 37}
	total := 0
	for _, r := range rows {
		total += r
	}
	x := correlatedActivations(1, total, k)
	want := naiveHessian(x, total, k)

	h := NewHessian(k)
	off := 0
	for _, r := range rows {
		if err := h.Add(x[off*k:(off+r)*k], r); err != nil {
			t.Fatal(err)
		}
		off += r
	}
	if h.Samples() != int64(total) {
		t.Fatalf("samples %d, want %d", h.Samples(), total)
	}
	got := h.Matrix()
	for i := range want {
		// float32 products summed over ≤ 1024 rows, then float64.
		if !scalar.EqualWithinAbsOrRel(got[i], want[i], 1e-4*math.Sqrt(want[(i/k)*(k+1)]*want[(i%k)*(k+1)]), 1e-5) {
			t.Fatalf("H[%d,%d] = %v, want %v", i/k, i%k, got[i], want[i])
		}
	}

	// Merging two halves equals one accumulator; the CPU count does not change a bit.
	a, b := NewHessian(k), NewHessian(k)
	_ = a.Add(x[:100*k], 100)
	_ = b.Add(x[100*k:1600*k], 1500)
	_ = b.Add(x[1600*k:], 37)
	if err := a.Merge(b); err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(1)
	one := NewHessian(k)
	_ = one.Add(x[:100*k], 100)
	_ = one.Add(x[100*k:1600*k], 1500)
	_ = one.Add(x[1600*k:], 37)
	runtime.GOMAXPROCS(prev)
	am, om := a.Matrix(), one.Matrix()
	for i := range got {
		if am[i] != got[i] || om[i] != got[i] {
			t.Fatalf("H[%d]: merged %v, 1 CPU %v, streamed %v: want identical", i, am[i], om[i], got[i])
		}
	}

	if err := h.Add([]float32{float32(math.NaN())}, 1); err == nil {
		t.Error("K=300 with one value: want an error")
	}
	nan := make([]float32, k)
	nan[5] = float32(math.Inf(1))
	if err := h.Add(nan, 1); err == nil {
		t.Error("an infinite activation: want an error")
	}
}

// TestUpperCholOfInverse checks the reversed-factor shortcut against the reference's
// cholesky → cholesky_inverse → cholesky(upper).
func TestUpperCholOfInverse(t *testing.T) {
	const k = 40
	x := correlatedActivations(2, 200, k)
	H := naiveHessian(x, 200, k)
	for i := 0; i < k; i++ {
		H[i*k+i] += 0.01
	}
	U, err := upperCholOfInverse(H, k)
	if err != nil {
		t.Fatal(err)
	}
	var c1, c2 mat.Cholesky
	if !c1.Factorize(mat.NewSymDense(k, H)) {
		t.Fatal("H not positive definite")
	}
	var inv mat.SymDense
	if err := c1.InverseTo(&inv); err != nil {
		t.Fatal(err)
	}
	if !c2.Factorize(&inv) {
		t.Fatal("H⁻¹ not positive definite")
	}
	var want mat.TriDense
	c2.UTo(&want)
	for i := 0; i < k; i++ {
		for j := 0; j < k; j++ {
			if !scalar.EqualWithinAbsOrRel(U[i*k+j], want.At(i, j), 1e-12, 1e-8) {
				t.Fatalf("U[%d,%d] = %v, want %v", i, j, U[i*k+j], want.At(i, j))
			}
		}
	}
}

func gptqCase(t *testing.T, seed uint64, n, k, rows int) ([]float32, *Hessian) {
	t.Helper()
	x := correlatedActivations(seed, rows, k)
	h := NewHessian(k)
	if err := h.Add(x, rows); err != nil {
		t.Fatal(err)
	}
	r := &testRNG{s: seed + 100}
	return r.normals(n*k, 0, 0.05), h
}

// TestGPTQBeatsRTN: on correlated activations GPTQ's output error must not exceed RTN's,
// for every configuration.
func TestGPTQBeatsRTN(t *testing.T) {
	shapes := []struct{ n, k, rows int }{{16, 64, 256}, {48, 256, 512}, {24, 200, 400}}
	for _, sh := range shapes {
		w, h := gptqCase(t, uint64(sh.k), sh.n, sh.k, sh.rows)
		for _, o := range []GPTQOptions{
			{GroupOptions: GroupOptions{GroupSize: 32}},
			{GroupOptions: GroupOptions{GroupSize: 64, Symmetric: true}},
			{GroupOptions: GroupOptions{GroupSize: -1}},
			{GroupOptions: GroupOptions{GroupSize: 32}, ActOrder: true},
			{GroupOptions: GroupOptions{GroupSize: 32, Symmetric: true}, ActOrder: true, StaticGroups: true},
			{GroupOptions: GroupOptions{GroupSize: 128, Bits: 3}, BlockSize: 48},
		} {
			rtn, err := QuantizeRTN(w, sh.n, sh.k, o.GroupOptions)
			if err != nil {
				t.Fatal(err)
			}
			res, err := GPTQ(w, sh.n, sh.k, h, o)
			if err != nil {
				t.Fatal(err)
			}
			eR, _ := h.OutputError(w, rtn.Dequantize(), sh.n)
			eG, _ := h.OutputError(w, res.Dequantize(), sh.n)
			t.Logf("N=%d K=%d gs=%d bits=%d sym=%v act=%v static=%v: output error GPTQ %.4g, RTN %.4g (%.1f%%), loss %.4g",
				sh.n, sh.k, o.GroupSize, o.Bits, o.Symmetric, o.ActOrder, o.StaticGroups, eG, eR, 100*eG/eR, res.Loss)
			if !(eG <= eR) {
				t.Errorf("N=%d K=%d %+v: GPTQ output error %v exceeds RTN's %v", sh.n, sh.k, o, eG, eR)
			}
		}
	}
}

func TestGPTQActOrderGroupIndex(t *testing.T) {
	const n, k, gs = 8, 100, 32
	w, h := gptqCase(t, 9, n, k, 300)
	res, err := GPTQ(w, n, k, h, GPTQOptions{GroupOptions: GroupOptions{GroupSize: gs}, ActOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Perm) != k || len(res.GIdx) != k {
		t.Fatalf("perm %d, g_idx %d entries, want %d", len(res.Perm), len(res.GIdx), k)
	}
	seen := make([]bool, k)
	for _, c := range res.Perm {
		if c < 0 || c >= k || seen[c] {
			t.Fatalf("perm %v is not a permutation of 0..%d", res.Perm, k-1)
		}
		seen[c] = true
	}
	H := h.Matrix()
	counts := make([]int, res.NumGroups())
	for j, c := range res.Perm {
		if j > 0 && H[c*k+c] > H[res.Perm[j-1]*(k+1)] {
			t.Fatalf("perm is not by decreasing diag(H) at %d", j)
		}
		if int(res.GIdx[c]) != j/gs {
			t.Fatalf("g_idx[%d] = %d, want %d (processed %d-th)", c, res.GIdx[c], j/gs, j)
		}
		counts[res.GIdx[c]]++
	}
	for g, c := range counts {
		if want := min(gs, k-g*gs); c != want {
			t.Errorf("group %d has %d columns, want %d", g, c, want)
		}
	}
	if res.NumGroups() != 4 || len(res.Scales) != n*4 {
		t.Errorf("%d groups, %d scales", res.NumGroups(), len(res.Scales))
	}

	// With static groups the mapping stays k/gs.
	st, err := GPTQ(w, n, k, h, GPTQOptions{GroupOptions: GroupOptions{GroupSize: gs}, ActOrder: true, StaticGroups: true})
	if err != nil {
		t.Fatal(err)
	}
	if st.GIdx != nil {
		t.Error("static groups with act-order: want the trivial g_idx (nil)")
	}
	for i, v := range st.GroupIndex() {
		if int(v) != i/gs {
			t.Fatalf("static g_idx[%d] = %d", i, v)
		}
	}
}

func TestGPTQDeterministicAndDeadColumns(t *testing.T) {
	const n, k, rows = 12, 96, 200
	x := correlatedActivations(5, rows, k)
	for r := 0; r < rows; r++ {
		x[r*k+7] = 0 // input 7 never fires
	}
	h := NewHessian(k)
	if err := h.Add(x, rows); err != nil {
		t.Fatal(err)
	}
	w := (&testRNG{s: 6}).normals(n*k, 0, 1)
	o := GPTQOptions{GroupOptions: GroupOptions{GroupSize: 32}, ActOrder: true}
	a, err := GPTQ(w, n, k, h, o)
	if err != nil {
		t.Fatal(err)
	}
	prev := runtime.GOMAXPROCS(1)
	b, err := GPTQ(w, n, k, h, o)
	runtime.GOMAXPROCS(prev)
	if err != nil {
		t.Fatal(err)
	}
	if a.Loss != b.Loss {
		t.Errorf("loss %v vs %v on one CPU", a.Loss, b.Loss)
	}
	for i := range a.Codes {
		if a.Codes[i] != b.Codes[i] {
			t.Fatalf("code %d differs on one CPU", i)
		}
	}
	for i := range a.Scales {
		if a.Scales[i] != b.Scales[i] || a.Zeros[i] != b.Zeros[i] {
			t.Fatalf("group params %d differ on one CPU", i)
		}
	}
	deq := a.Dequantize()
	for r := 0; r < n; r++ {
		if deq[r*k+7] != 0 {
			t.Errorf("dead input 7, row %d: dequantized %v, want 0", r, deq[r*k+7])
		}
	}
	if w[7] == 0 {
		t.Fatal("test weight should be nonzero")
	}
}

func TestGPTQRejectsBadInput(t *testing.T) {
	h := NewHessian(8)
	if _, err := GPTQ(make([]float32, 16), 2, 8, h, GPTQOptions{}); err != nil {
		t.Errorf("no samples (all inputs dead): %v, want a zero weight and no error", err)
	}
	if _, err := GPTQ(make([]float32, 15), 2, 8, h, GPTQOptions{}); err == nil {
		t.Error("15 weights for 2×8: want an error")
	}
	if _, err := GPTQ(make([]float32, 18), 2, 9, h, GPTQOptions{}); err == nil {
		t.Error("Hessian of K=8 for K=9: want an error")
	}
}

func TestBlockSizeFor(t *testing.T) {
	for _, c := range []struct{ bs, gs, k, want int }{
		{0, 128, 4096, 128}, {128, 32, 4096, 128}, {128, 48, 4096, 96}, {128, 256, 4096, 128},
		{100, 256, 4096, 64}, {128, 4096, 4096, 128}, {128, 32, 40, 32}, {0, 128, 100, 100},
	} {
		if got := blockSizeFor(c.bs, c.gs, c.k); got != c.want {
			t.Errorf("blockSizeFor(%d, %d, %d) = %d, want %d", c.bs, c.gs, c.k, got, c.want)
		}
	}
}

// TestGPTQDiagonalHessianIsRTN: with uncorrelated inputs (H diagonal) no error can be
// compensated, and GPTQ must return exactly the RTN codes.
func TestGPTQDiagonalHessianIsRTN(t *testing.T) {
	const n, k = 6, 80
	x := make([]float32, k*k) // rows are scaled unit vectors: H = diag
	for i := 0; i < k; i++ {
		x[i*k+i] = float32(1 + i%5)
	}
	h := NewHessian(k)
	if err := h.Add(x, k); err != nil {
		t.Fatal(err)
	}
	w := (&testRNG{s: 8}).normals(n*k, 0, 1)
	o := GroupOptions{GroupSize: 32}
	rtn, _ := QuantizeRTN(w, n, k, o)
	res, err := GPTQ(w, n, k, h, GPTQOptions{GroupOptions: o})
	if err != nil {
		t.Fatal(err)
	}
	for i := range rtn.Codes {
		if rtn.Codes[i] != res.Codes[i] {
			t.Fatalf("code %d: GPTQ %d, RTN %d", i, res.Codes[i], rtn.Codes[i])
		}
	}
}

// TestGPTQLazyBatchEqualsEager: the block size only regroups the same updates.
func TestGPTQLazyBatchEqualsEager(t *testing.T) {
	const n, k = 10, 160
	w, h := gptqCase(t, 12, n, k, 400)
	var ref *GPTQResult
	for _, bs := range []int{1, 7, 64, 128, 1000} {
		res, err := GPTQ(w, n, k, h, GPTQOptions{GroupOptions: GroupOptions{GroupSize: -1}, BlockSize: bs})
		if err != nil {
			t.Fatal(err)
		}
		if ref == nil {
			ref = res
			continue
		}
		if !scalar.EqualWithinAbsOrRel(res.Loss, ref.Loss, 0, 1e-9) {
			t.Errorf("block %d: loss %v, eager %v", bs, res.Loss, ref.Loss)
		}
		for i := range ref.Codes {
			if res.Codes[i] != ref.Codes[i] {
				t.Errorf("block %d: code %d is %d, eager %d", bs, i, res.Codes[i], ref.Codes[i])
				break
			}
		}
	}
}

// TestOutputError checks tr(ΔW·H·ΔWᵀ)/2 against the mean of ‖ΔW·x‖² over the samples.
func TestOutputError(t *testing.T) {
	const n, k, rows = 5, 40, 1300
	x := correlatedActivations(21, rows, k)
	h := NewHessian(k)
	if err := h.Add(x, rows); err != nil {
		t.Fatal(err)
	}
	r := &testRNG{s: 22}
	w, wq := r.normals(n*k, 0, 1), r.normals(n*k, 0, 1)
	var want float64
	for s := 0; s < rows; s++ {
		for o := 0; o < n; o++ {
			var y float64
			for c := 0; c < k; c++ {
				y += (float64(w[o*k+c]) - float64(wq[o*k+c])) * float64(x[s*k+c])
			}
			want += y * y
		}
	}
	want /= rows
	got, err := h.OutputError(w, wq, n)
	if err != nil {
		t.Fatal(err)
	}
	if !scalar.EqualWithinAbsOrRel(got, want, 0, 1e-5) {
		t.Errorf("output error %v, direct %v", got, want)
	}
	dw := make([]float32, n*k)
	for i := range dw {
		dw[i] = w[i] - wq[i]
	}
	// The chunked float32 GEMM behind AWQ's error (rows > its 1024-row chunk).
	if e := OutputSqErr(x, rows, k, dw, n) / rows; !scalar.EqualWithinAbsOrRel(e, want, 0, 1e-5) {
		t.Errorf("chunked output error %v, direct %v", e, want)
	}
}

func TestReorderByGroup(t *testing.T) {
	const n, k, gs = 6, 100, 32
	w, h := gptqCase(t, 31, n, k, 300)
	res, err := GPTQ(w, n, k, h, GPTQOptions{GroupOptions: GroupOptions{GroupSize: gs}, ActOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	perm, re, err := res.ReorderByGroup()
	if err != nil {
		t.Fatal(err)
	}
	if re.GIdx != nil || re.NumGroups() != res.NumGroups() {
		t.Fatalf("reordered: g_idx %v, %d groups", re.GIdx != nil, re.NumGroups())
	}
	orig, moved := res.Dequantize(), re.Dequantize()
	for r := 0; r < n; r++ {
		for j, c := range perm {
			if moved[r*k+j] != orig[r*k+c] {
				t.Fatalf("row %d: reordered column %d = %v, original column %d = %v", r, j, moved[r*k+j], c, orig[r*k+c])
			}
		}
	}
}
