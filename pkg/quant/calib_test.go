package quant

import (
	"math"
	"testing"

	"gonum.org/v1/gonum/floats/scalar"
)

// Reference values from onnxruntime.quantization 1.32.0's HistogramCollector (num_bins 2048,
// num_quantized_bins 128) run once on the float32 samples of entropyBatches and heavyBatch,
// and, for the TensorRT-style entropy, from pytorch-quantization's _compute_amax_entropy on
// numpy.histogram(|x|, 2048, range=(0, max|x|)).
const (
	ortEntropy1Lo, ortEntropy1Hi         = -3.987302541732788, 4.268364429473877 // first batch
	ortEntropy3Lo, ortEntropy3Hi         = -6.082870006561279, 6.087372779846191 // three batches (ORT: 2786 bins)
	ortEntropyHeavyLo, ortEntropyHeavyHi = -23.94864273071289, 24.01052474975586
	trtEntropyHeavy                      = 27.414079666137695 // bin edge 886

	ortPct999Sym1                    = 3.430903911590576 // symmetric, 99.9, first batch
	ortPct999Asym1Lo, ortPct999Asym1 = -3.0391836166381836, 3.5614733695983887
	ortPct999Sym3                    = 4.804152965545654
	ortPct999Asym3Lo, ortPct999Asym3 = -4.439459323883057, 5.033788681030273
	ortPct9999HeavySym               = 58.44830322265625
)

func mustHistogram(t *testing.T, abs bool, batches ...[]float32) *Histogram {
	t.Helper()
	h, err := NewHistogram(0, abs)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches {
		h.Add(b)
	}
	return h
}

func within(t *testing.T, what string, got float32, want, rel float64) {
	t.Helper()
	if !scalar.EqualWithinAbsOrRel(float64(got), want, 0, rel) {
		t.Errorf("%s: got %v, want %v (±%.2g%%; off by %.3g%%)", what, got, want, rel*100, 100*(float64(got)-want)/want)
	}
}

func TestEntropyMatchesORT(t *testing.T) {
	b := entropyBatches()
	// One batch: no widening, the same histogram as ORT's: the same threshold.
	lo, hi, err := Entropy(mustHistogram(t, false, b[0]), 0)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "entropy, 1 batch, lo", lo, ortEntropy1Lo, 1e-6)
	within(t, "entropy, 1 batch, hi", hi, ortEntropy1Hi, 1e-6)

	lo, hi, err = Entropy(mustHistogram(t, false, heavyBatch()), 128)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "entropy, heavy tails, lo", lo, ortEntropyHeavyLo, 1e-6)
	within(t, "entropy, heavy tails, hi", hi, ortEntropyHeavyHi, 1e-6)

	// Three batches: we widen by whole factors (fixed 2048 bins), ORT appends bins (2786):
	// different bins, so only close.
	lo, hi, err = Entropy(mustHistogram(t, false, b...), 128)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "entropy, 3 batches, lo", lo, ortEntropy3Lo, 0.03)
	within(t, "entropy, 3 batches, hi", hi, ortEntropy3Hi, 0.03)
	t.Logf("entropy threshold, 3 batches: [%v, %v] (ORT [%v, %v])", lo, hi, ortEntropy3Lo, ortEntropy3Hi)
}

func TestEntropyAbsMatchesTensorRT(t *testing.T) {
	lo, hi, err := Entropy(mustHistogram(t, true, heavyBatch()), 128)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "TensorRT entropy amax", hi, trtEntropyHeavy, 1e-6)
	if lo != -hi {
		t.Errorf("absolute-histogram entropy range [%v, %v] is not symmetric", lo, hi)
	}
}

func TestPercentileMatchesORT(t *testing.T) {
	b := entropyBatches()
	// Signed histograms are ORT's own: exact up to float32 edges.
	lo, hi, err := Percentile(mustHistogram(t, false, b[0]), 99.9)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "percentile 99.9 asym lo", lo, ortPct999Asym1Lo, 1e-6)
	within(t, "percentile 99.9 asym hi", hi, ortPct999Asym1, 1e-6)
	// ORT's absolute histogram starts at min|x|, ours at 0: edges differ by < 1e-4 here.
	lo, hi, err = Percentile(mustHistogram(t, true, b[0]), 99.9)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "percentile 99.9 sym", hi, ortPct999Sym1, 1e-3)
	if lo != -hi {
		t.Errorf("symmetric percentile range [%v, %v]", lo, hi)
	}
	_, hi, _ = Percentile(mustHistogram(t, true, heavyBatch()), 99.99)
	within(t, "percentile 99.99 sym, heavy tails", hi, ortPct9999HeavySym, 1e-3)
	// After widening the bins differ from ORT's: close, not equal.
	lo, hi, _ = Percentile(mustHistogram(t, false, b...), 99.9)
	within(t, "percentile 99.9 asym, 3 batches, lo", lo, ortPct999Asym3Lo, 0.02)
	within(t, "percentile 99.9 asym, 3 batches, hi", hi, ortPct999Asym3, 0.02)
	_, hi, _ = Percentile(mustHistogram(t, true, b...), 99.9)
	within(t, "percentile 99.9 sym, 3 batches", hi, ortPct999Sym3, 0.02)
	// The default 99.999 on 40000 samples keeps everything but the extreme bin: clamped to
	// the observed range.
	lo, hi, _ = Percentile(mustHistogram(t, false, b[0]), 0)
	omin, omax := float32(-3.9873025), float32(4.610554)
	if lo != omin || hi > omax || hi < 4.5 {
		t.Errorf("default percentile: [%v, %v], observed [%v, %v]", lo, hi, omin, omax)
	}
}

func TestHistogramWidensExactly(t *testing.T) {
	h, err := NewHistogram(8, false)
	if err != nil {
		t.Fatal(err)
	}
	h.Add([]float32{-1, -0.6, -0.1, 0, 0.1, 0.3, 0.8, 1}) // bins of 0.25 over [-1, 1]
	first := []uint64{1, 1, 0, 1, 2, 1, 0, 2}             // 0 opens bin 4; 1 closes the last bin
	if got := h.Counts(); !equalU64(got, first) {
		t.Fatalf("first batch: counts %v, want %v", got, first)
	}
	// max |x| 2.5 → factor 3: [-3, 3] in bins of 0.75; old bin i lies inside new bin
	// (i + (3−1)·8/2)/3 = (i + 8)/3: old bins 0 → 2, 1..3 → 3, 4..6 → 4, 7 → 5.
	h.Add([]float32{2.5, -2.9})
	want := []uint64{1, 0, 1, 2, 3, 2, 0, 1} // plus -2.9 in bin 0 and 2.5 in bin 7
	if got := h.Counts(); !equalU64(got, want) {
		t.Fatalf("after widening: counts %v, want %v", got, want)
	}
	if lo, hi := h.Range(); lo != -3 || hi != 3 {
		t.Errorf("range after widening [%v, %v], want [-3, 3]", lo, hi)
	}
	if h.bin(2.5, -3, 3) != 7 || h.bin(-2.9, -3, 3) != 0 || h.Total() != 10 {
		t.Errorf("bins of new values: %d %d, total %d", h.bin(2.5, -3, 3), h.bin(-2.9, -3, 3), h.Total())
	}

	a, _ := NewHistogram(4, true)
	a.Add([]float32{0, 0, 0}) // all zeros: no range yet
	a.Add([]float32{-1, 0.3})
	a.Add([]float32{1.7, float32(math.NaN()), float32(math.Inf(1))})             // factor 2: [0, 2]
	if got, want := a.Counts(), []uint64{3 + 1, 1, 0, 1}; !equalU64(got, want) { // [3 1 0 1] over [0, 1], then bins pairwise merged, then 1.7
		t.Errorf("absolute histogram counts %v, want %v", got, want)
	}
	if a.Skipped() != 2 || a.Total() != 6 {
		t.Errorf("skipped %d total %d, want 2 and 6", a.Skipped(), a.Total())
	}
	if lo, hi := a.Observed(); lo != -1 || hi != 1.7 {
		t.Errorf("observed [%v, %v]", lo, hi)
	}
}

func equalU64(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCalibratorsDegenerate(t *testing.T) {
	zeros := make([]float32, 100)
	for _, abs := range []bool{false, true} {
		h := mustHistogram(t, abs, zeros)
		lo, hi, err := Entropy(h, 0)
		if err != nil || lo != 0 || hi != 0 {
			t.Errorf("abs=%v entropy of zeros: [%v, %v] %v, want [0, 0]", abs, lo, hi, err)
		}
		lo, hi, err = Percentile(h, 0)
		if err != nil || lo != 0 || hi != 0 {
			t.Errorf("abs=%v percentile of zeros: [%v, %v] %v, want [0, 0]", abs, lo, hi, err)
		}
		h = mustHistogram(t, abs, []float32{0.75})
		lo, hi, err = Entropy(h, 0)
		if err != nil || hi != 0.75 || lo != min(0.75, lo) || lo != lo {
			t.Errorf("abs=%v entropy of one element: [%v, %v] %v", abs, lo, hi, err)
		}
		if _, _, err := Entropy(mustHistogram(t, abs), 0); err == nil {
			t.Errorf("abs=%v: entropy of an empty histogram: want an error", abs)
		}
	}
	if _, err := NewHistogram(7, false); err == nil {
		t.Error("odd bin count for a signed histogram: want an error")
	}
}

func TestMinMax(t *testing.T) {
	nan := float32(math.NaN())
	m := NewMinMax(false, false)
	m.Add([]float32{1, -2, nan, 3})
	m.Add([]float32{nan})
	m.Add([]float32{-5, 0.5})
	if lo, hi := m.Range(); lo != -5 || hi != 3 || m.Batches() != 2 {
		t.Errorf("global min/max: [%v, %v] over %d batches", lo, hi, m.Batches())
	}
	m.Symmetric = true
	if lo, hi := m.Range(); lo != -5 || hi != 5 {
		t.Errorf("symmetric: [%v, %v]", lo, hi)
	}
	// Moving average with c = 0.01: lo = -2 + 0.01·(-5 + 2) = -2.03, hi = 3 + 0.01·(0.5 − 3) = 2.975.
	ma := NewMinMax(false, true)
	ma.Add([]float32{1, -2, 3})
	ma.Add([]float32{-5, 0.5})
	lo, hi := ma.Range()
	if !scalar.EqualWithinAbsOrRel(float64(lo), -2.03, 1e-6, 0) || !scalar.EqualWithinAbsOrRel(float64(hi), 2.975, 1e-6, 0) {
		t.Errorf("moving average: [%v, %v], want [-2.03, 2.975]", lo, hi)
	}
	var empty MinMax
	if lo, hi := empty.Range(); lo != 0 || hi != 0 {
		t.Errorf("no data: [%v, %v]", lo, hi)
	}
}
