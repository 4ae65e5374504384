package quant

import (
	"fmt"
	"math"
	"testing"
)

// addCases are batch sequences for comparing Add with addRef: smooth and heavy-tailed
// data, values exactly on bin edges, zeros first, non-finite values, widening by large and
// small factors, a one-sided (ReLU-like) tensor.
func addCases() map[string][][]float32 {
	r := &testRNG{s: 99}
	edges := make([]float32, 0, 4*2048)
	for i := -2048; i <= 2048; i++ { // every edge of [-1, 1] in 2048 bins, and its neighbours
		x := float32(float64(i) / 1024)
		edges = append(edges, x, math.Nextafter32(x, -2), math.Nextafter32(x, 2))
	}
	edges = append(edges, 1, -1)
	relu := r.normals(30000, 0, 1)
	for i, v := range relu {
		relu[i] = max(v, 0)
	}
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	return map[string][][]float32{
		"normal, widening twice": entropyBatches(),
		"heavy tails":            {heavyBatch()},
		"edges":                  {edges},
		"zeros first":            {make([]float32, 100), {0, 0}, r.normals(5000, 0, 1), make([]float32, 7)},
		"non-finite":             {{nan, 1, -inf, 0.5, inf}, {nan}, r.normals(3000, 0, 2), {inf, 3.5, nan}},
		"wide then narrow":       {r.normals(2000, 0, 1), r.normals(2000, 0, 300), r.normals(2000, 0, 0.01)},
		"relu":                   {relu, relu[:100]},
		"one value":              {{0.75}, {0.75, 0.75}},
	}
}

func TestHistogramAddMatchesReference(t *testing.T) {
	for name, batches := range addCases() {
		for _, abs := range []bool{false, true} {
			for _, bins := range []int{8, 2048} {
				fast, _ := NewHistogram(bins, abs)
				ref, _ := NewHistogram(bins, abs)
				for _, b := range batches {
					fast.Add(b)
					ref.addRef(b)
				}
				what := fmt.Sprintf("%s, abs=%v, %d bins", name, abs, bins)
				if !equalU64(fast.Counts(), ref.Counts()) {
					t.Errorf("%s: counts differ from the reference", what)
				}
				flo, fhi := fast.Observed()
				rlo, rhi := ref.Observed()
				if fast.Total() != ref.Total() || fast.Skipped() != ref.Skipped() || flo != rlo || fhi != rhi || fast.t != ref.t {
					t.Errorf("%s: total %d/%d skipped %d/%d observed [%v, %v]/[%v, %v] T %v/%v", what,
						fast.Total(), ref.Total(), fast.Skipped(), ref.Skipped(), flo, fhi, rlo, rhi, fast.t, ref.t)
				}
			}
		}
	}
}

// BenchmarkHistogramAdd folds a batch into a 2048-bin histogram whose range is already
// set (the steady state of calibration); ns/value is the figure to compare. 64 Ki values
// stay in the CPU cache, 8 Mi values (32 MiB, a large activation) come from memory.
func BenchmarkHistogramAdd(b *testing.B) {
	r := &testRNG{s: 5}
	normal := r.normals(1<<23, 0, 1)
	relu := make([]float32, len(normal))
	for i, v := range normal {
		relu[i] = max(v, 0)
	}
	for _, c := range []struct {
		name string
		data []float32
	}{{"normal", normal}, {"relu", relu}} {
		for _, n := range []int{1 << 16, 1 << 23} {
			for _, abs := range []bool{false, true} {
				for _, impl := range []string{"fast", "reference"} {
					b.Run(fmt.Sprintf("%s/n=%d/abs=%v/%s", c.name, n, abs, impl), func(b *testing.B) {
						data := c.data[:n]
						h, _ := NewHistogram(0, abs)
						h.Add([]float32{-6, 6})
						add := h.Add
						if impl == "reference" {
							add = h.addRef
						}
						b.SetBytes(int64(4 * len(data)))
						for b.Loop() {
							add(data)
						}
						b.ReportMetric(b.Elapsed().Seconds()*1e9/float64(b.N*len(data)), "ns/value")
					})
				}
			}
		}
	}
}

// entropyCases are histograms for comparing the fast entropy search with entropyRef: the
// add cases plus shapes that stress the search — a spike with a far outlier (windows
// almost all empty: the largest smoothing ε), uniform data, few distinct values, bimodal.
func entropyCases() map[string][][]float32 {
	c := addCases()
	r := &testRNG{s: 3}
	spike := r.normals(20000, 0, 0.01)
	spike = append(spike, 40, -3)
	uni := make([]float32, 50000)
	for i := range uni {
		uni[i] = float32(r.uniform()*2 - 0.5)
	}
	few := make([]float32, 10000)
	for i := range few {
		few[i] = float32(int(r.uniform()*7)) * 0.37
	}
	bi := append(r.normals(20000, -2, 0.3), r.normals(5000, 3, 0.5)...)
	c["spike and outlier"] = [][]float32{spike}
	c["uniform"] = [][]float32{uni}
	c["few values"] = [][]float32{few}
	c["bimodal"] = [][]float32{bi}
	c["small counts"] = [][]float32{r.normals(300, 0, 1)}
	return c
}

func TestEntropyMatchesReference(t *testing.T) {
	for name, batches := range entropyCases() {
		for _, abs := range []bool{false, true} {
			for _, nq := range []int{128, 16} {
				h, _ := NewHistogram(0, abs)
				for _, b := range batches {
					h.Add(b)
				}
				if h.Total() == 0 {
					continue
				}
				lo, hi, err := Entropy(h, nq)
				rlo, rhi, rerr := entropyRef(h, nq)
				if (err != nil) != (rerr != nil) || lo != rlo || hi != rhi {
					t.Errorf("%s, abs=%v, nq=%d: [%v, %v] (%v), reference [%v, %v] (%v)", name, abs, nq, lo, hi, err, rlo, rhi, rerr)
				}
			}
		}
	}
}

// TestEntropyFastDivergence checks the O(nq) divergence of every candidate against the
// bin-by-bin one (pickVerified relies on them being within 1e-9).
func TestEntropyFastDivergence(t *testing.T) {
	worst := 0.0
	for name, batches := range entropyCases() {
		for _, abs := range []bool{false, true} {
			h, _ := NewHistogram(0, abs)
			for _, b := range batches {
				h.Add(b)
			}
			hist := h.Counts()
			nb, nq := len(hist), 128
			check := func(what string, fast, exact float64) {
				if math.IsInf(exact, 1) != math.IsInf(fast, 1) {
					t.Fatalf("%s, %s: fast %v, exact %v", name, what, fast, exact)
				}
				if !math.IsInf(exact, 1) {
					d := math.Abs(fast-exact) / (1 + math.Abs(exact))
					worst = max(worst, d)
					if d > 1e-11 {
						t.Errorf("%s, %s: fast %v, exact %v", name, what, fast, exact)
					}
				}
			}
			if !abs {
				s, e := newSignedSearch(hist, nq), newSignedExact(hist, nq)
				for i := nq / 2; i <= nb/2; i++ {
					start, end := nb/2-i, min(nb/2+i+1, nb)
					check(fmt.Sprintf("window [%d, %d)", start, end), s.fastKL(start, end), e.kl(start, end))
				}
				continue
			}
			bins := make([]float64, nb)
			for i, c := range hist {
				bins[i] = float64(c)
			}
			bins[0] = bins[1]
			pc, pnz, pf := make([]float64, nb+1), make([]int, nb+1), make([]float64, nb+1)
			for j, c := range bins {
				pc[j+1], pnz[j+1], pf[j+1] = pc[j]+c, pnz[j], pf[j]+xlogx(c)
				if c != 0 {
					pnz[j+1]++
				}
			}
			e := newAbsExact(bins, nq)
			for i := nq; i <= nb; i++ {
				check(fmt.Sprintf("abs window [0, %d)", i), absFastKL(bins, pc, pnz, pf, pc[nb], i, nq), e.kl(i))
			}
		}
	}
	t.Logf("largest relative difference between fast and bin-by-bin divergence: %.2g", worst)
}

// BenchmarkEntropySearch is the whole threshold search on a 2048-bin histogram, fast and
// bin by bin, for a smooth and a spiky (outlier-dominated) tensor.
func BenchmarkEntropySearch(b *testing.B) {
	cases := entropyCases()
	for _, name := range []string{"normal, widening twice", "spike and outlier", "relu"} {
		for _, abs := range []bool{false, true} {
			h, _ := NewHistogram(0, abs)
			for _, batch := range cases[name] {
				h.Add(batch)
			}
			for _, impl := range []string{"fast", "reference"} {
				b.Run(fmt.Sprintf("%s/abs=%v/%s", name, abs, impl), func(b *testing.B) {
					f := Entropy
					if impl == "reference" {
						f = entropyRef
					}
					for b.Loop() {
						if _, _, err := f(h, 0); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		}
	}
}
