package bench

import (
	"context"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/testassets"
)

func TestBenchClassifier(t *testing.T) {
	m := testassets.Path(t, testassets.OCRClassifier)
	r, err := Run(context.Background(), Options{Model: m, Batches: []int{1, 4}, Iterations: 20, Warmup: 2,
		Shapes: map[string][]int64{"x": {1, 3, 48, 192}}, Runtime: runtime.Options{IntraOpThreads: 1, GraphOptLevel: runtime.OptAll}})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Results) != 2 || r.Batch != 1 || r.EP != "cpu" || r.GraphOptLevel != "all" || r.Threads != 1 {
		t.Fatalf("%+v", r)
	}
	for _, x := range r.Results {
		l := x.LatencyMs
		if x.Iterations != 20 || l.N != 20 || !(l.Min <= l.P50 && l.P50 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max) || l.Min <= 0 {
			t.Fatalf("batch %d: %+v", x.Batch, x)
		}
		// Throughput counts samples: batch × runs / wall time, so it is at most batch / min latency.
		if x.ThroughputPerS <= 0 || x.ThroughputPerS > float64(x.Batch)*1000/l.Min*1.01 {
			t.Fatalf("batch %d: throughput %.1f/s with min latency %.3f ms", x.Batch, x.ThroughputPerS, l.Min)
		}
	}
	if r.PeakRSSBytes < 10<<20 {
		t.Fatalf("peak RSS %d", r.PeakRSSBytes)
	}
}

func TestBenchFixedBatch(t *testing.T) {
	m := testassets.Path(t, testassets.ONNXLight+"/light_squeezenet.onnx")
	_, err := Run(context.Background(), Options{Model: m, Batches: []int{2}, Iterations: 1})
	if err == nil || !strings.Contains(err.Error(), "fixed batch dimension") {
		t.Fatalf("err = %v", err)
	}
}
