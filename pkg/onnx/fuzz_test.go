package onnx

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
)

// FuzzLoad feeds arbitrary bytes to the model decoder and checker: errors are fine,
// panics and hangs are not.
func FuzzLoad(f *testing.F) {
	good, _ := addModel().MarshalVT()
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte{0x3a, 0x05, 0x0a, 0x03, 0x12, 0x01, 0x79})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := LoadBytes(b, t.TempDir())
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		if _, err := m.MarshalInline(); err != nil {
			return
		}
		TopoOrder(m.Graph())
		NewIndex(m.Graph())
		m.InputSpecs()
		WalkTensors(m.Proto, func(tp *onnxpb.TensorProto) bool { m.TensorData(tp); return true })
	})
}

// FuzzExternalPath checks that no location string resolves outside the model's folder.
func FuzzExternalPath(f *testing.F) {
	for _, s := range []string{"w.bin", "../w.bin", "/etc/passwd", "a/../../b", "a/./b", `..\x`, "sub/w.bin", "", "C:/x", "a/b/../c"} {
		f.Add(s)
	}
	dir := f.TempDir()
	root := filepath.Join(dir, "model")
	os.Mkdir(root, 0o755)
	os.Mkdir(filepath.Join(root, "sub"), 0o755)
	f.Fuzz(func(t *testing.T, loc string) {
		p, err := ResolveExternalPath(root, loc)
		if err != nil {
			return
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || !filepath.IsLocal(rel) {
			t.Fatalf("location %q resolved to %q, outside %q", loc, p, root)
		}
	})
}
