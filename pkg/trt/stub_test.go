//go:build !tensorrt && !trtfake

package trt

import (
	"context"
	"errors"
	"testing"
)

func TestStubSaysHowToRebuild(t *testing.T) {
	if Available {
		t.Fatal("the default build claims TensorRT")
	}
	_, err := Build(context.Background(), Options{Model: "m.onnx", Output: "m.plan"})
	if !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("Build: %v", err)
	}
	want := "this optimctl was built without TensorRT support; rebuild with `make build TAGS=tensorrt TENSORRT_ROOT=/path/to/TensorRT`"
	if err.Error() != want {
		t.Fatalf("message %q", err)
	}
	if _, err := LibraryVersion(); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("LibraryVersion: %v", err)
	}
	if _, err := LoadEngine("m.plan", EngineOptions{}); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("LoadEngine: %v", err)
	}
}
