package quant

import (
	"fmt"
	"math"
)

// DefaultHistogramBins is the bin count of ORT's percentile calibrator and of TensorRT's
// histogram calibrator; the entropy search needs many more bins than its 128 quantized bins.
const DefaultHistogramBins = 2048

// Histogram is a streaming histogram of a tensor's values with a fixed number of bins, the
// input of the Entropy and Percentile calibrators. Memory is constant: neither the number of
// samples nor the spread of the values changes the bin count.
//
// Two kinds, as in ORT's HistogramCollector:
//   - signed (abs=false): bins cover [-T, T], symmetric about 0 so that bin B/2 starts at
//     0 (ORT's collect_value, used for entropy and for asymmetric percentile);
//   - absolute (abs=true): bins cover [0, T] and count |x| (ORT's collect_absolute_value
//     and TensorRT's calibrator, used for symmetric percentile and TensorRT-style entropy).
//     ORT starts this histogram at min|x|; we start it at 0, as TensorRT does, so that bin
//     edges do not depend on the first batch's smallest magnitude.
//
// T is set by the first batch with a nonzero finite value (its max |x|). When a later batch
// exceeds it, the range is widened by the smallest integer factor f with f·T ≥ max|x|, and
// the existing counts are merged exactly: every old bin lies inside exactly one new bin
// (old bin i goes to new bin (i + (f−1)·B/2)/f for signed, i/f for absolute, integer
// division), so no count is split or interpolated. ORT instead appends bins of the old
// width, which keeps resolution but lets one outlier grow the histogram without bound.
// The result depends only on the sequence of batches, never on timing or CPU count.
//
// Bin i covers [lo + i·w, lo + (i+1)·w) with w = (hi − lo)/B, the last bin also taking hi,
// as numpy.histogram does. Non-finite values are skipped and counted in Skipped.
type Histogram struct {
	abs     bool
	counts  []uint64
	t       float64 // half-width (signed) or upper bound (abs); 0 until a nonzero value is seen
	zeros   uint64  // values seen while t == 0: all exact zeros, binned once t is known
	lo, hi  float32 // observed finite extremes (signed values, even for abs histograms)
	seen    bool
	total   uint64
	skipped uint64
}

// NewHistogram returns an empty histogram with the given number of bins (0 means
// DefaultHistogramBins). A signed histogram needs an even bin count so that 0 is an edge.
func NewHistogram(bins int, abs bool) (*Histogram, error) {
	if bins == 0 {
		bins = DefaultHistogramBins
	}
	if bins < 2 || (!abs && bins%2 != 0) {
		return nil, fmt.Errorf("histogram: %d bins: need at least 2, and an even number for a signed histogram", bins)
	}
	return &Histogram{abs: abs, counts: make([]uint64, bins)}, nil
}

// Abs reports whether the histogram counts absolute values.
func (h *Histogram) Abs() bool { return h.abs }

// Bins is the (fixed) number of bins.
func (h *Histogram) Bins() int { return len(h.counts) }

// Counts returns the bin counts; the slice is the histogram's own, do not modify it.
func (h *Histogram) Counts() []uint64 {
	if h.t == 0 && h.zeros > 0 {
		h.placeZeros() // an all-zero tensor: report its zeros in the bin holding 0
	}
	return h.counts
}

// Total is the number of finite values added.
func (h *Histogram) Total() uint64 { return h.total }

// Skipped is the number of non-finite values ignored.
func (h *Histogram) Skipped() uint64 { return h.skipped }

// Observed returns the smallest and largest finite values added (signed).
func (h *Histogram) Observed() (lo, hi float32) { return h.lo, h.hi }

// Range returns the interval the bins cover: [-T, T] or [0, T]. Before any nonzero value T
// is taken as 1, so an all-zero tensor still has well-defined edges.
func (h *Histogram) Range() (lo, hi float64) {
	t := h.t
	if t == 0 {
		t = 1
	}
	if h.abs {
		return 0, t
	}
	return -t, t
}

// Edge returns the i-th bin edge, 0 ≤ i ≤ Bins().
func (h *Histogram) Edge(i int) float64 {
	lo, hi := h.Range()
	if i == len(h.counts) {
		return hi
	}
	return lo + float64(i)*(hi-lo)/float64(len(h.counts))
}

// Edges returns all Bins()+1 edges.
func (h *Histogram) Edges() []float64 {
	e := make([]float64, len(h.counts)+1)
	for i := range e {
		e[i] = h.Edge(i)
	}
	return e
}

// Add folds one batch of values into the histogram.
func (h *Histogram) Add(batch []float32) {
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

// bin locates x in [lo, hi]: the float estimate is corrected against the edges, so a value
// exactly on an edge always lands in the bin that edge starts.
func (h *Histogram) bin(x, lo, hi float64) int {
	b := len(h.counts)
	w := (hi - lo) / float64(b)
	i := int((x - lo) / w)
	i = min(max(i, 0), b-1)
	if i > 0 && x < lo+float64(i)*w {
		i--
	} else if i < b-1 && x >= lo+float64(i+1)*w {
		i++
	}
	return i
}

func (h *Histogram) zeroBin() int {
	if h.abs {
		return 0
	}
	return len(h.counts) / 2
}

func (h *Histogram) placeZeros() {
	h.counts[h.zeroBin()] += h.zeros
	h.zeros = 0
}

// widen grows the range to the smallest integer multiple of T that covers amax and merges
// the old counts into the coarser bins (see the type's comment).
func (h *Histogram) widen(amax float64) {
	f := int(math.Ceil(amax / h.t))
	for float64(f)*h.t < amax { // guard against the division rounding down
		f++
	}
	if f < 2 {
		f = 2
	}
	b := len(h.counts)
	merged := make([]uint64, b)
	off := 0
	if !h.abs {
		off = (f - 1) * b / 2
	}
	for i, c := range h.counts {
		merged[(i+off)/f] += c
	}
	h.counts = merged
	h.t *= float64(f)
}
