//go:build trtfake

package bench

// Plumbing test of bench with a TensorRT engine, against the fake shim
// (pkg/trt/fake_shim.c): its "engine" copies inputs to outputs and reports 0.5 ms of GPU
// time per run; no ONNX Runtime is involved.

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/trt"
	"github.com/optimctl/optimctl/pkg/validate"
)

func TestPlumbingBenchEngine(t *testing.T) {
	t.Cleanup(func() {
		if n := trt.FakeLive(); n != 0 {
			t.Errorf("%d engines/buffers/C allocations still held after the run", n)
		}
	})
	plan := filepath.Join(t.TempDir(), "m.plan")
	os.WriteFile(plan, []byte("fake-plan 1\nio images in 1 -1x3x4x4\nio scores out 1 -1x3x4x4\n"), 0o644)
	r, err := Run(context.Background(), Options{Model: plan, Data: "random:1", Shapes: map[string][]int64{"images": {1, 3, 4, 4}},
		Batches: []int{1, 4, 2}, Iterations: 7, Warmup: 2})
	if err != nil {
		t.Fatal(err)
	}
	if r.Runtime != validate.RuntimeTensorRT || r.EP != "tensorrt" || r.GraphOptLevel != "" || r.Threads != 0 || len(r.Results) != 3 {
		t.Fatalf("report %+v", r)
	}
	for i, b := range []int{1, 4, 2} {
		x := r.Results[i]
		if x.Batch != b || x.Iterations != 7 || x.GPUMs == nil || x.GPUMs.P50 != 0.5 || x.GPUMs.P99 != 0.5 || x.GPUMs.Mean != 0.5 ||
			!(x.LatencyMs.P50 > 0) || !(x.ThroughputPerS > 0) {
			t.Fatalf("batch %d: %+v (gpu %+v)", b, x, x.GPUMs)
		}
	}
	if r.Batch != 1 || r.LatencyMs != r.Results[0].LatencyMs {
		t.Fatalf("top-level figures %+v", r)
	}
	var text bytes.Buffer
	WriteText(&text, r)
	if !strings.Contains(text.String(), "TensorRT engine") || !strings.Contains(text.String(), "GPU P50 ms") {
		t.Fatalf("text:\n%s", text.String())
	}

	// The engine's own checks come back as one-line errors naming the file.
	dyn := filepath.Join(t.TempDir(), "nms.plan")
	os.WriteFile(dyn, []byte("fake-plan 1\nio images in 1 -1x3x4x4\nio boxes out 7 -2x4\n"), 0o644)
	_, err = Run(context.Background(), Options{Model: dyn, Data: "random:1", Shapes: map[string][]int64{"images": {1, 3, 4, 4}}, Iterations: 1})
	if err == nil || !strings.Contains(err.Error(), dyn) || !strings.Contains(err.Error(), "its shape depends on input values") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("data-dependent output: %v", err)
	}
}
