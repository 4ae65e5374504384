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

	// The bin lookup of Add, rebuilt when t changes: edges (see ensureEdges), bin width w
	// and its inverse, and the low end of the range.
	edges        []float64
	edgesT       float64
	w, inv, base float64
	tally4       []uint32
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
//
// Two tight passes: the batch's finite extremes (and whether anything is not finite), then
// one bin per value from a multiply by the inverse bin width, corrected by one step
// against a table of the edges — the bins Edge gives, exactly, at a few nanoseconds per
// value. Once the range is set, a large batch is read in blocks of addBlock values, each
// binned right after its extremes are found, while it is still in the CPU cache: the
// data comes from memory once. The first block that is not finite or reaches beyond the
// range sends the rest of the batch through the two passes, which widen the range; the
// blocks already counted are then merged by the widening, as earlier batches are.
func (h *Histogram) Add(batch []float32) {
	if h.t != 0 && len(batch) >= 4*len(h.counts) {
		batch = batch[h.addInRange(batch):]
		if len(batch) == 0 {
			return
		}
	}
	lo, hi, n := finiteExtremes(batch)
	h.skipped += uint64(len(batch) - n)
	if n == 0 {
		return
	}
	h.observe(lo, hi, n)
	if h.admit(max(-float64(lo), float64(hi)), n) {
		h.fill(batch, n < len(batch))
	}
}

// admit makes room for n finite values of largest magnitude amax: the first non-zero
// batch sets the range, a larger one widens it. All-zero values are counted here and
// admit returns false; otherwise the caller bins the values.
func (h *Histogram) admit(amax float64, n int) bool {
	if amax == 0 {
		if h.t == 0 {
			h.zeros += uint64(n)
		} else {
			h.counts[h.zeroBin()] += uint64(n)
		}
		return false
	}
	if h.t == 0 {
		h.t = amax
		h.placeZeros()
	} else if amax > h.t {
		h.widen(amax)
	}
	return true
}

// addBlock is the piece of a batch addInRange reads at a time (32 KiB).
const addBlock = 8192

// addInRange counts the leading blocks of batch whose values are finite and inside the
// current range and returns how many values it took. Zeros are binned like any value, so
// it only runs when 0 is exactly an edge (always, for the power-of-two bin counts).
func (h *Histogram) addInRange(batch []float32) int {
	h.ensureEdges()
	b := len(h.counts)
	if !h.abs && h.edges[b/2] != 0 {
		return 0
	}
	t := h.tallies()
	done := 0
	for done < len(batch) && done < 1<<30 { // a tally cannot overflow
		block := batch[done:min(done+addBlock, len(batch))]
		lo, hi, n := finiteExtremes(block)
		if n < len(block) || max(-float64(lo), float64(hi)) > h.t {
			break
		}
		h.observe(lo, hi, n)
		h.tally(t, block)
		done += len(block)
	}
	h.flush(t)
	return done
}

// observe records n finite values with extremes lo and hi.
func (h *Histogram) observe(lo, hi float32, n int) {
	if !h.seen {
		h.lo, h.hi, h.seen = lo, hi, true
	} else {
		h.lo, h.hi = min(h.lo, lo), max(h.hi, hi)
	}
	h.total += uint64(n)
}

// finiteExtremes returns the smallest and largest finite values of x and how many there
// are (lo > hi when none). NaN fails every comparison; the infinities are excluded by the
// bounds; the count is only taken when some value was not finite.
func finiteExtremes(x []float32) (lo, hi float32, n int) {
	inf := float32(math.Inf(1))
	lo, hi = inf, -inf
	bad := false
	for _, v := range x {
		if v-v != 0 {
			bad = true
			continue
		}
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	if !bad {
		return lo, hi, len(x)
	}
	for _, v := range x {
		if v-v == 0 {
			n++
		}
	}
	return lo, hi, n
}

// fill adds every finite value of batch to its bin; the range already covers them.
// Batches shorter than the tallies' flush (see tally) go straight to the counts.
func (h *Histogram) fill(batch []float32, checkFinite bool) {
	h.ensureEdges()
	b := len(h.counts)
	e, base, inv := h.edges, h.base, h.inv
	if checkFinite || len(batch) < 4*b {
		for _, v := range batch {
			if v-v != 0 {
				continue
			}
			x := float64(v)
			if h.abs {
				x = math.Abs(x)
			}
			h.counts[binOf(e, base, inv, x)]++
		}
		return
	}
	t := h.tallies()
	for len(batch) > 0 {
		n := min(len(batch), 1<<30) // a tally cannot overflow
		h.tally(t, batch[:n])
		h.flush(t)
		batch = batch[n:]
	}
}

// tallies returns the four 32-bit tallies (zero) that tally counts into.
func (h *Histogram) tallies() [4][]uint32 {
	b := len(h.counts)
	if cap(h.tally4) < 4*b {
		h.tally4 = make([]uint32, 4*b)
	}
	t := h.tally4[:4*b]
	return [4][]uint32{t[:b], t[b : 2*b], t[2*b : 3*b], t[3*b:]}
}

// tally bins finite values inside the range. Consecutive values go to four separate
// tallies, so runs of equal values (the zeros of a ReLU output) do not wait on each
// other's increments.
func (h *Histogram) tally(t [4][]uint32, x []float32) {
	e, base, inv := h.edges, h.base, h.inv
	t0, t1, t2, t3 := t[0], t[1], t[2], t[3]
	i := 0
	if h.abs {
		for ; i+4 <= len(x); i += 4 {
			t0[binOf(e, base, inv, math.Abs(float64(x[i])))]++
			t1[binOf(e, base, inv, math.Abs(float64(x[i+1])))]++
			t2[binOf(e, base, inv, math.Abs(float64(x[i+2])))]++
			t3[binOf(e, base, inv, math.Abs(float64(x[i+3])))]++
		}
		for _, v := range x[i:] {
			t0[binOf(e, base, inv, math.Abs(float64(v)))]++
		}
		return
	}
	for ; i+4 <= len(x); i += 4 {
		t0[binOf(e, base, inv, float64(x[i]))]++
		t1[binOf(e, base, inv, float64(x[i+1]))]++
		t2[binOf(e, base, inv, float64(x[i+2]))]++
		t3[binOf(e, base, inv, float64(x[i+3]))]++
	}
	for _, v := range x[i:] {
		t0[binOf(e, base, inv, float64(v))]++
	}
}

// flush moves the tallies into the counts and zeroes them.
func (h *Histogram) flush(t [4][]uint32) {
	for j := range h.counts {
		h.counts[j] += uint64(t[0][j]) + uint64(t[1][j]) + uint64(t[2][j]) + uint64(t[3][j])
	}
	for _, tk := range t {
		clear(tk)
	}
}

// binOf is the bin of x ≥ base inside the range: an estimate from the inverse width,
// corrected by one step against the edge table e (see ensureEdges).
func binOf(e []float64, base, inv, x float64) int {
	i := min(int((x-base)*inv), len(e)-2)
	if x < e[i] {
		i--
	} else if x >= e[i+1] {
		i++
	}
	return i
}

// ensureEdges rebuilds the edge table after the range changed: edges[i] is Edge(i) for
// 0 < i < Bins(), and edges[0] = −Inf, edges[Bins()] = +Inf stop the one-step correction
// from leaving the bins (the first bin starts at the lowest possible value and the last
// takes the highest, as numpy.histogram's does).
func (h *Histogram) ensureEdges() {
	b := len(h.counts)
	if h.edges != nil && h.edgesT == h.t {
		return
	}
	if h.edges == nil {
		h.edges = make([]float64, b+1)
	}
	lo, hi := h.Range()
	h.base = lo
	h.w = (hi - lo) / float64(b)
	h.inv = float64(b) / (hi - lo)
	h.edges[0], h.edges[b] = math.Inf(-1), math.Inf(1)
	for i := 1; i < b; i++ {
		h.edges[i] = lo + float64(i)*h.w
	}
	h.edgesT = h.t
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
