//go:build trtfake

package trt

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// fakePlan writes a fake engine (see fake_shim.c) and registers the leak check.
func fakePlan(t *testing.T, lines ...string) string {
	t.Helper()
	return fakeModel(t, append([]string{"fake-plan 1"}, lines...)...)
}

func TestPlumbingEngineRun(t *testing.T) {
	plan := fakePlan(t, "io images in 1 -1x3x2x2", "io mask in 9 1x4", "io scores out 1 -1x3x2x2", "io keep out 9 1x4")
	var logs logSink
	e, err := LoadEngine(plan, EngineOptions{Log: logs.log, LogSeverity: SeverityInfo})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	want := []IO{
		{Name: "images", Input: true, DType: tensor.Float32, Dims: []int64{-1, 3, 2, 2}},
		{Name: "mask", Input: true, DType: tensor.Bool, Dims: []int64{1, 4}},
		{Name: "scores", DType: tensor.Float32, Dims: []int64{-1, 3, 2, 2}},
		{Name: "keep", DType: tensor.Bool, Dims: []int64{1, 4}},
	}
	if !reflect.DeepEqual(e.IO(), want) {
		t.Fatalf("IO %+v, want %+v", e.IO(), want)
	}
	mustContain(t, "log", logs.text(), "info: fake engine: 4 io tensors")

	for _, batch := range []int64{2, 5, 1} { // growing and shrinking device buffers
		img := tensor.New(tensor.Float32, []int64{batch, 3, 2, 2})
		for i := range img.Data {
			img.Data[i] = byte(i*7 + int(batch))
		}
		mask := &tensor.Tensor{DType: tensor.Bool, Shape: []int64{1, 4}, Data: []byte{1, 0, 1, 1}}
		out, gpu, err := e.Run(map[string]*tensor.Tensor{"images": img, "mask": mask})
		if err != nil {
			t.Fatal(err)
		}
		// The fake copies input k into output k on its "device": the bytes made the round trip.
		if s := out["scores"]; !reflect.DeepEqual(s.Shape, img.Shape) || s.DType != tensor.Float32 || !bytes.Equal(s.Data, img.Data) {
			t.Fatalf("batch %d: scores %v %v, want the images back", batch, s.Shape, s.DType)
		}
		if k := out["keep"]; !bytes.Equal(k.Data, mask.Data) || k.DType != tensor.Bool {
			t.Fatalf("keep %+v", k)
		}
		if gpu != 500*time.Microsecond {
			t.Fatalf("gpu time %v", gpu)
		}
	}
	times, err := e.Time(3)
	if err != nil || len(times) != 3 || times[2] != 500*time.Microsecond {
		t.Fatalf("Time: %v, %v", times, err)
	}
}

func TestPlumbingEngineErrors(t *testing.T) {
	plan := fakePlan(t, "io x in 1 -1x4", "io y out 1 -1x4", "io n out 7 -2")
	e, err := LoadEngine(plan, EngineOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x := tensor.New(tensor.Float32, []int64{2, 4})
	if _, _, err := e.Run(map[string]*tensor.Tensor{}); err == nil || !strings.Contains(err.Error(), `no value for input "x"`) {
		t.Fatalf("missing input: %v", err)
	}
	if _, _, err := e.Run(map[string]*tensor.Tensor{"x": tensor.New(tensor.Float16, []int64{2, 4})}); err == nil || !strings.Contains(err.Error(), "element type differs") {
		t.Fatalf("wrong type: %v", err)
	}
	if _, _, err := e.Run(map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, []int64{2, 5})}); err == nil || !strings.Contains(err.Error(), "outside the engine's optimization profile") {
		t.Fatalf("wrong shape: %v", err)
	}
	if _, _, err := e.Run(map[string]*tensor.Tensor{"x": x}); err == nil || !strings.Contains(err.Error(), "output n: its shape depends on input values") {
		t.Fatalf("data-dependent output: %v", err)
	}
	if _, err := e.Time(1); err == nil {
		t.Fatal("Time before a successful Run")
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	if _, _, err := e.Run(map[string]*tensor.Tensor{"x": x}); err == nil {
		t.Fatal("Run after Close")
	}

	bad := filepath.Join(t.TempDir(), "bad.plan")
	os.WriteFile(bad, []byte("not a plan"), 0o644)
	if _, err := LoadEngine(bad, EngineOptions{}); err == nil || !strings.Contains(err.Error(), "not an engine TensorRT 101600 can load") {
		t.Fatalf("garbage plan: %v", err)
	}
	if _, err := LoadEngine(bad+".missing", EngineOptions{}); !os.IsNotExist(err) {
		t.Fatalf("missing plan: %v", err)
	}
}

// An engine built by Build (the fake's echo is not a plan) is refused by LoadEngine with
// the message, not a crash: the two halves share the C memory rules.
func TestPlumbingEngineAfterBuild(t *testing.T) {
	model := fakeModel(t, "input x 1 1x4")
	out := model + ".plan"
	if _, err := Build(t.Context(), Options{Model: model, Output: out}); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadEngine(out, EngineOptions{}); err == nil {
		t.Fatal("the fake's build echo loaded as an engine")
	}
}
