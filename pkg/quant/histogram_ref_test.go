package quant

import "math"

// addRef is Histogram.Add as first written: one value at a time, each bin found by a
// division and corrected against the edges. The reference the fast Add must reproduce
// count for count; the range growth (admit) is shared, the binning is not.
func (h *Histogram) addRef(batch []float32) {
	var amax float64
	n := 0
	for _, v := range batch {
		if v-v != 0 {
			h.skipped++
			continue
		}
		if !h.seen {
			h.lo, h.hi, h.seen = v, v, true
		}
		h.lo = min(h.lo, v)
		h.hi = max(h.hi, v)
		amax = max(amax, math.Abs(float64(v)))
		n++
	}
	if n == 0 {
		return
	}
	h.total += uint64(n)
	if !h.admit(amax, n) {
		return
	}
	lo, hi := h.Range()
	for _, v := range batch {
		if v-v != 0 {
			continue
		}
		x := float64(v)
		if h.abs {
			x = math.Abs(x)
		}
		h.counts[h.bin(x, lo, hi)]++
	}
}
