// Package validate runs a reference and a candidate model on the same data and measures
// how far apart their answers are (errors, cosine, SNR, top-1 agreement, accuracy against
// labels) and how fast each is, then applies the gates CI decides on. Every statistic is
// accumulated sample by sample, so memory does not grow with the number of samples.
package validate

import (
	"math"
	"sort"
)

// OutputStats accumulates the agreement of one output across samples.
type OutputStats struct {
	Name       string  `json:"name"`
	MaxAbsErr  float64 `json:"max_abs_err"`
	MeanAbsErr float64 `json:"mean_abs_err"`
	CosineMin  float64 `json:"cosine_min"`
	CosineMean float64 `json:"cosine_mean"`
	SNRdB      float64 `json:"snr_db"`
	// RefAbsMax is the largest |reference| value seen, the scale against which errors read.
	RefAbsMax float64 `json:"ref_abs_max"`
	// Top1Agreement is the fraction of rows (vectors along the last axis) whose argmax
	// agrees, for class-score outputs; nil otherwise.
	Top1Agreement *float64 `json:"top1_agreement,omitempty"`

	n          int64
	sumAbs     float64
	samples    int64
	cosSum     float64
	sigPow     float64
	noisePow   float64
	rows, hits int64
	classScore bool
	classes    int
}

func newOutputStats(name string, classes int) *OutputStats {
	return &OutputStats{Name: name, CosineMin: 1, classScore: classes >= 2, classes: classes}
}

// add folds one sample's reference and candidate values into the statistics.
func (s *OutputStats) add(ref, cand []float64) { addSample(s, ref, cand) }

// addSample is add for any float element type: float32 outputs (the common case) are read in
// place instead of being widened into new slices for every sample.
func addSample[T float32 | float64](s *OutputStats, ref, cand []T) {
	var dot, nr, nc, sig, noise float64
	for i := range ref {
		r, c := float64(ref[i]), float64(cand[i])
		d := math.Abs(r - c)
		if math.IsNaN(d) {
			d = math.Inf(1)
			if math.IsNaN(r) && math.IsNaN(c) {
				d = 0
			}
		}
		if d > s.MaxAbsErr {
			s.MaxAbsErr = d
		}
		if a := math.Abs(r); a > s.RefAbsMax {
			s.RefAbsMax = a
		}
		s.sumAbs += d
		dot += r * c
		nr += r * r
		nc += c * c
		sig += r * r
		noise += (r - c) * (r - c)
	}
	s.n += int64(len(ref))
	cos := cosine(dot, nr, nc)
	s.samples++
	s.cosSum += cos
	if cos < s.CosineMin {
		s.CosineMin = cos
	}
	s.sigPow += sig
	s.noisePow += noise
	if s.classScore {
		k := s.classes
		for off := 0; off+k <= len(ref); off += k {
			s.rows++
			if argmaxOf(ref[off:off+k]) == argmaxOf(cand[off:off+k]) {
				s.hits++
			}
		}
	}
}

// cosine of two vectors from their dot product and squared norms; two zero vectors are
// identical (1), one zero vector against a non-zero one is orthogonal (0).
func cosine(dot, nr, nc float64) float64 {
	if nr == 0 && nc == 0 {
		return 1
	}
	if nr == 0 || nc == 0 {
		return 0
	}
	c := dot / math.Sqrt(nr*nc)
	return math.Max(-1, math.Min(1, c))
}

// SNR in dB of reference power over error power; +Inf when identical (reported as 999).
func snrDB(sig, noise float64) float64 {
	if noise == 0 {
		return 999
	}
	if sig == 0 {
		return -999
	}
	return 10 * math.Log10(sig/noise)
}

func (s *OutputStats) finish() {
	if s.n > 0 {
		s.MeanAbsErr = s.sumAbs / float64(s.n)
	}
	if s.samples > 0 {
		s.CosineMean = s.cosSum / float64(s.samples)
	} else {
		s.CosineMin = 0
	}
	s.SNRdB = snrDB(s.sigPow, s.noisePow)
	if s.classScore && s.rows > 0 {
		a := float64(s.hits) / float64(s.rows)
		s.Top1Agreement = &a
	}
}

func argmax(v []float64) int { return argmaxOf(v) }

func argmaxOf[T float32 | float64](v []T) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// Percentiles summarises latencies in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P95  float64 `json:"p95"`
	P99  float64 `json:"p99"`
	Mean float64 `json:"mean"`
	Min  float64 `json:"min"`
	Max  float64 `json:"max"`
	N    int     `json:"n"`
}

// Summarize computes nearest-rank percentiles (as most latency tools report them).
// It sorts a copy; latencies are 8 bytes a sample, the one per-sample record kept.
func Summarize(ms []float64) Percentiles {
	if len(ms) == 0 {
		return Percentiles{}
	}
	s := append([]float64(nil), ms...)
	sort.Float64s(s)
	rank := func(p float64) float64 {
		i := int(math.Ceil(p/100*float64(len(s)))) - 1
		if i < 0 {
			i = 0
		}
		return s[i]
	}
	var sum float64
	for _, v := range s {
		sum += v
	}
	return Percentiles{P50: rank(50), P95: rank(95), P99: rank(99), Mean: sum / float64(len(s)), Min: s[0], Max: s[len(s)-1], N: len(s)}
}
