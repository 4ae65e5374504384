package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The library make setup installs (npm onnxruntime-node 1.30) is built with the CUDA and
// TensorRT providers but ships without their shared libraries: CheckProvider says so before
// any session is made, naming the missing files.
func TestCheckProviderWithoutProviderLibraries(t *testing.T) {
	if err := Init(""); err != nil {
		t.Skip(err)
	}
	have, err := AvailableProviders()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("ONNX Runtime %s: %v", Version(), have)
	if !slices.Contains(have, ortProviderCPU) {
		t.Fatalf("providers %v lack %s", have, ortProviderCPU)
	}
	if err := CheckProvider("cpu"); err != nil {
		t.Fatal(err)
	}
	if err := CheckProvider("rocm"); err == nil {
		t.Fatal("unknown provider accepted")
	}
	dir := filepath.Dir(LibraryPath())
	for _, ep := range []string{ProviderTensorRT, ProviderCUDA} {
		lib := map[string]string{ProviderTensorRT: "libonnxruntime_providers_tensorrt.so", ProviderCUDA: "libonnxruntime_providers_cuda.so"}[ep]
		if _, err := os.Stat(filepath.Join(dir, lib)); err == nil {
			t.Skipf("%s is installed", lib)
		}
		err := CheckProvider(ep)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "--ep "+ep+": ") {
			t.Fatalf("%s: %v", ep, err)
		}
		name := map[string]string{ProviderTensorRT: ortProviderTensorRT, ProviderCUDA: ortProviderCUDA}[ep]
		switch {
		case slices.Contains(have, name): // compiled in, libraries absent
			if !strings.Contains(err.Error(), lib+" are not in "+dir) && !strings.Contains(err.Error(), lib+" is not in "+dir) {
				t.Fatalf("%s: %v", ep, err)
			}
		case !slices.Contains(have, ortProviderCUDA): // a CPU-only build
			if !errors.Is(err, ErrCPUOnly) {
				t.Fatalf("%s: %v", ep, err)
			}
		}
	}
}
