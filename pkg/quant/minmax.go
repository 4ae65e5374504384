package quant

import "math"

// MinMax is the streaming min/max calibrator (ORT's MinMaxCalibrater for one tensor):
// feed it one batch of a tensor's values per Add; memory is constant in the number of
// batches. Non-finite values (NaN, ±Inf) are skipped, so one bad sample cannot make every
// scale infinite; a batch with no finite value is ignored.
type MinMax struct {
	// Symmetric makes Range return [-a, a], a = max(|min|, |max|).
	Symmetric bool
	// MovingAverage replaces the global extremes by an exponential moving average of the
	// per-batch extremes: m ← m + c·(batch − m), the first batch initialising m. This is the
	// update ORT applies with its averaging_constant c when merging ranges (ORT itself
	// first takes a plain mean of the batch extremes collected between two merges; here every
	// Add is a merge, which keeps memory constant).
	MovingAverage bool
	// AveragingConstant is c above, in [0, 1]; NewMinMax sets ORT's default 0.01.
	AveragingConstant float32

	lo, hi  float32
	batches int
}

// NewMinMax returns a calibrator with ORT's defaults (averaging constant 0.01).
func NewMinMax(symmetric, movingAverage bool) *MinMax {
	return &MinMax{Symmetric: symmetric, MovingAverage: movingAverage, AveragingConstant: 0.01}
}

// Add folds one batch into the running range.
func (m *MinMax) Add(batch []float32) {
	lo, hi, ok := finiteRange(batch)
	if !ok {
		return
	}
	switch {
	case m.batches == 0:
		m.lo, m.hi = lo, hi
	case m.MovingAverage:
		c := m.AveragingConstant
		m.lo += c * (lo - m.lo)
		m.hi += c * (hi - m.hi)
	default:
		m.lo = min(m.lo, lo)
		m.hi = max(m.hi, hi)
	}
	m.batches++
}

// Batches is the number of batches that contributed (batches with no finite value do not).
func (m *MinMax) Batches() int { return m.batches }

// Range returns the calibrated [min, max] ([0, 0] before any finite value was seen).
func (m *MinMax) Range() (lo, hi float32) {
	if m.Symmetric {
		a := max(abs32(m.lo), abs32(m.hi))
		return -a, a
	}
	return m.lo, m.hi
}

// finiteRange returns the extremes of the finite values of x; ok is false when there is none.
// NaN fails every comparison and ±Inf is excluded explicitly, so no per-value NaN test is
// needed.
func finiteRange(x []float32) (lo, hi float32, ok bool) {
	inf := float32(math.Inf(1))
	lo, hi = inf, -inf
	for _, v := range x {
		if v < lo && v > -inf {
			lo = v
		}
		if v > hi && v < inf {
			hi = v
		}
	}
	if lo > hi {
		return 0, 0, false
	}
	return lo, hi, true
}
