package quant

import (
	"errors"
	"fmt"
)

// DefaultPercentile is ORT's PercentileCalibrater default.
const DefaultPercentile = 99.999

// Percentile returns the range that keeps the given percentage of the collected values
// (ORT's HistogramCollector.compute_percentile; percentile ≤ 0 means 99.999):
//   - absolute histogram (symmetric): a = the left edge of the first bin at which the
//     cumulative fraction reaches percentile/100, the range is [−a, a];
//   - signed histogram: (100 − percentile)/2 percent is cut from each tail, each bound being
//     the left edge of the first bin whose cumulative fraction reaches the cut.
//
// Like ORT, both bounds are then clamped to the observed [min, max].
func Percentile(h *Histogram, percentile float64) (lo, hi float32, err error) {
	if percentile <= 0 {
		percentile = DefaultPercentile
	}
	if percentile > 100 {
		return 0, 0, fmt.Errorf("percentile calibration: percentile %v is above 100", percentile)
	}
	if h.Total() == 0 {
		return 0, 0, errors.New("percentile calibration: empty histogram")
	}
	counts := h.Counts()
	var total uint64
	for _, c := range counts {
		total += c
	}
	cdf := make([]float64, len(counts))
	var acc float64
	for i, c := range counts {
		acc += float64(c) / float64(total) // numpy.cumsum(hist / total): the same rounding
		cdf[i] = acc
	}
	if h.Abs() {
		a := float32(h.Edge(searchSorted(cdf, percentile/100)))
		lo, hi = -a, a
	} else {
		cut := (100 - percentile) / 200
		lo = float32(h.Edge(searchSorted(cdf, cut)))
		hi = float32(h.Edge(searchSorted(cdf, 1-cut)))
	}
	omin, omax := h.Observed()
	return max(lo, omin), min(hi, omax), nil
}

// searchSorted is numpy.searchsorted(a, v, side="left"): the first i with a[i] ≥ v, or len(a).
func searchSorted(a []float64, v float64) int {
	lo, hi := 0, len(a)
	for lo < hi {
		m := (lo + hi) / 2
		if a[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}
