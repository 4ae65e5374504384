package quant

import (
	"errors"
	"math"
)

// The entropy search as first written: every candidate window rebuilt and its divergence
// summed bin by bin (O(bins²) per tensor). Kept as the reference the fast search in
// entropy.go must agree with, threshold for threshold. It uses entropy.go's smoothedKL and
// kl, the bin-by-bin primitives the fast search re-checks its best candidates with.

func entropyRef(h *Histogram, nq int) (lo, hi float32, err error) {
	if nq <= 0 {
		nq = DefaultQuantizedBins
	}
	if h.Total() == 0 {
		return 0, 0, errors.New("entropy calibration: empty histogram")
	}
	if h.Abs() {
		amax, err := entropyAbsRef(h.Counts(), h.Edges(), nq)
		if err != nil {
			return 0, 0, err
		}
		omin, omax := h.Observed()
		amax = min(amax, max(-omin, omax))
		return -amax, amax, nil
	}
	return entropySignedRef(h, nq)
}

func entropySignedRef(h *Histogram, nq int) (float32, float32, error) {
	hist := h.Counts()
	nb := len(hist)
	zero := nb / 2
	half := nq / 2
	if half > zero || nq < 2 {
		return 0, 0, errors.New("entropy calibration: histogram has fewer bins than quantized bins")
	}
	prefix := make([]uint64, nb+1)
	for i, c := range hist {
		prefix[i+1] = prefix[i] + c
	}
	p := make([]float64, nb)
	q := make([]float64, nb)
	nonzero := make([]bool, nb)
	best := math.Inf(1)
	bestStart, bestEnd := zero-half, min(zero+half+1, nb) // ORT's argmin picks the first when all are +Inf
	for i := half; i <= zero; i++ {
		start := zero - i
		end := min(zero+i+1, nb)
		m := end - start
		sliced := hist[start:end]
		for j, c := range sliced {
			p[j] = float64(c)
		}
		p[0] += float64(prefix[start])
		p[m-1] += float64(prefix[nb] - prefix[end])
		for j := 0; j < m; j++ {
			nonzero[j] = p[j] != 0
		}
		merged := m / nq
		for j := range q[:m] {
			q[j] = 0
		}
		for b := 0; b < nq; b++ {
			s, e := b*merged, (b+1)*merged
			var sum uint64
			for _, c := range sliced[s:e] {
				sum += c
			}
			if b == nq-1 {
				for _, c := range sliced[nq*merged:] {
					sum += c
				}
			}
			norm := uint64(0)
			for _, nz := range nonzero[s:e] {
				if nz {
					norm++
				}
			}
			if norm != 0 {
				v := float64(sum / norm) // ORT stores q as int64: the division truncates
				for j := s; j < e; j++ {
					q[j] = v
				}
			}
		}
		div := smoothedKL(p[:m], q[:m])
		if div < best {
			best, bestStart, bestEnd = div, start, end
		}
	}
	lo, hi := float32(h.Edge(bestStart)), float32(h.Edge(bestEnd))
	omin, omax := h.Observed()
	return max(lo, omin), min(hi, omax), nil
}

func entropyAbsRef(counts []uint64, edges []float64, nq int) (float32, error) {
	nb := len(counts)
	if nb < nq || nq < 1 {
		return 0, errors.New("entropy calibration: histogram has fewer bins than quantized bins")
	}
	bins := make([]float64, nb)
	for i, c := range counts {
		bins[i] = float64(c)
	}
	if nb > 1 {
		bins[0] = bins[1]
	}
	suffix := make([]float64, nb+1)
	for i := nb - 1; i >= 0; i-- {
		suffix[i] = suffix[i+1] + bins[i]
	}
	ref := make([]float64, nb)
	cand := make([]float64, nb)
	sums := make([]float64, nq)
	cnts := make([]int, nq)
	best := math.Inf(1)
	bestI := nq
	for i := nq; i <= nb; i++ {
		clear(sums)
		clear(cnts)
		// Position j of the window falls in quantized bin j·nq/i (numpy.digitize over
		// linspace(0, i, nq+1), computed exactly in integers).
		for j := 0; j < i; j++ {
			if bins[j] == 0 {
				continue
			}
			b := j * nq / i
			sums[b] += bins[j]
			cnts[b]++
		}
		for j := 0; j < i; j++ {
			cand[j] = 0
			if bins[j] != 0 {
				b := j * nq / i
				cand[j] = sums[b] / float64(cnts[b])
			}
		}
		copy(ref, bins[:i])
		ref[i-1] += suffix[i]
		d := kl(ref[:i], cand[:i])
		if d <= best { // the last minimum wins, as in pytorch-quantization
			best, bestI = d, i
		}
	}
	return float32(edges[bestI]), nil
}
