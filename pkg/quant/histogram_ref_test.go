package quant

import "math"

// addRef is Histogram.Add as first written: one value at a time, each bin found by a
// division and corrected against the edges. The reference the fast Add must reproduce
// count for count.
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
	if amax == 0 {
		if h.t == 0 {
			h.zeros += uint64(n)
		} else {
			h.counts[h.zeroBin()] += uint64(n)
		}
		return
	}
	if h.t == 0 {
		h.t = amax
		h.placeZeros()
	} else if amax > h.t {
		h.widen(amax)
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
