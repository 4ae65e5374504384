package validate

import (
	"math"
	"testing"
)

func TestOutputStats(t *testing.T) {
	cases := []struct {
		name       string
		ref, cand  [][]float64
		classes    int
		maxAbs     float64
		meanAbs    float64
		cosMin     float64
		snr        float64
		top1       float64
		tolerances float64
	}{
		{"identical", [][]float64{{1, 2, 3}}, [][]float64{{1, 2, 3}}, 3, 0, 0, 1, 999, 1, 0},
		{"scaled is cosine 1", [][]float64{{1, 2}}, [][]float64{{2, 4}}, 0, 2, 1.5, 1, 10 * math.Log10(5.0/5.0), -1, 1e-12},
		{"orthogonal", [][]float64{{1, 0}}, [][]float64{{0, 1}}, 2, 1, 1, 0, 10 * math.Log10(1.0/2.0), 0, 1e-12},
		{"two samples", [][]float64{{1, 0}, {0, 1}}, [][]float64{{1, 0}, {1, 0}}, 2, 1, 0.5, 0, 10 * math.Log10(2.0/2.0), 0.5, 1e-12},
		{"zeros agree", [][]float64{{0, 0}}, [][]float64{{0, 0}}, 0, 0, 0, 1, 999, -1, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newOutputStats("y", c.classes)
			for i := range c.ref {
				s.add(c.ref[i], c.cand[i])
			}
			s.finish()
			near := func(what string, got, want float64) {
				if math.Abs(got-want) > c.tolerances {
					t.Errorf("%s = %v, want %v", what, got, want)
				}
			}
			near("max_abs_err", s.MaxAbsErr, c.maxAbs)
			near("mean_abs_err", s.MeanAbsErr, c.meanAbs)
			near("cosine_min", s.CosineMin, c.cosMin)
			near("snr_db", s.SNRdB, c.snr)
			if c.top1 < 0 {
				if s.Top1Agreement != nil {
					t.Errorf("top1 reported for a non-class output")
				}
			} else {
				near("top1", *s.Top1Agreement, c.top1)
			}
		})
	}
}

func TestNaNCountsAsError(t *testing.T) {
	s := newOutputStats("y", 0)
	s.add([]float64{1}, []float64{math.NaN()})
	s.finish()
	if !math.IsInf(s.MaxAbsErr, 1) {
		t.Fatalf("NaN candidate gave max_abs_err %v, want +Inf", s.MaxAbsErr)
	}
}

func TestSummarize(t *testing.T) {
	var ms []float64
	for i := 1; i <= 100; i++ {
		ms = append(ms, float64(i))
	}
	p := Summarize(ms)
	if p.P50 != 50 || p.P95 != 95 || p.P99 != 99 || p.Mean != 50.5 || p.Min != 1 || p.Max != 100 {
		t.Fatalf("%+v", p)
	}
	if one := Summarize([]float64{3}); one.P50 != 3 || one.P99 != 3 {
		t.Fatalf("%+v", one)
	}
	if Summarize(nil).N != 0 {
		t.Fatal("empty")
	}
}
