//go:build !tensorrt && !trtfake

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// In the default build, build-trt and a .plan given to bench or validate fail with one line
// that says how to build optimctl with TensorRT; --print-trtexec works without it.
func TestTensorRTWithoutTheTag(t *testing.T) {
	dir := t.TempDir()
	plan := filepath.Join(dir, "m.plan")
	model := filepath.Join(dir, "m.onnx")
	os.WriteFile(plan, []byte("an engine"), 0o644)
	os.WriteFile(model, []byte("a model"), 0o644)
	const rebuild = "built without TensorRT support; rebuild with `make build TAGS=tensorrt TENSORRT_ROOT=/path/to/TensorRT`"
	for _, args := range [][]string{
		{"bench", plan, "--iterations", "1"},
		{"validate", model, plan, "--data", "random:1"},
		{"build-trt", model, "-o", filepath.Join(dir, "out.plan"), "--shapes", "x:1x4"},
	} {
		code, stdout, stderr := optimctl(t, args...)
		if code != 1 || stdout != "" || strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "optimctl: ") || !strings.Contains(stderr, rebuild) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, stdout, stderr)
		}
		if args[0] != "build-trt" && !strings.Contains(stderr, plan+": running a TensorRT engine: ") {
			t.Errorf("%v: %q does not name the engine", args, stderr)
		}
	}
	code, stdout, _ := optimctl(t, "build-trt", model, "-o", filepath.Join(dir, "out.plan"), "--shapes", "x:1x4", "--print-trtexec")
	if code != 0 || !strings.HasPrefix(stdout, "trtexec --onnx="+model) {
		t.Errorf("--print-trtexec: exit %d, %q", code, stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "out.plan")); !os.IsNotExist(err) {
		t.Errorf("an engine was written: %v", err)
	}
}

// bench of an engine takes no ONNX Runtime execution provider.
func TestBenchEngineRefusesEP(t *testing.T) {
	plan := filepath.Join(t.TempDir(), "m.plan")
	os.WriteFile(plan, []byte("an engine"), 0o644)
	code, _, stderr := optimctl(t, "bench", plan, "--ep", "cuda")
	if code != 2 || !strings.Contains(stderr, "a TensorRT engine runs in TensorRT; leave --ep out") {
		t.Fatalf("exit %d, %q", code, stderr)
	}
}
