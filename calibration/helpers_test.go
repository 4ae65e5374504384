package calibration

import (
	"archive/zip"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/sbinet/npyio/npy"
)

// array is one .npy member for the test writers. Values are fixed-size Go arrays (npyio
// takes the shape from the array type); f16 marks uint16 bits to be stored as float16,
// which npyio cannot write, by patching '<u2' to '<f2' in the header it wrote.
type array struct {
	key     string
	val     any
	f16     bool
	deflate bool
}

func npyBytes(t testing.TB, a array) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := npy.Write(&buf, a.val); err != nil {
		t.Fatalf("npy.Write %s: %v", a.key, err)
	}
	b := buf.Bytes()
	if a.f16 {
		i := bytes.Index(b, []byte("'<u2'"))
		if i < 0 {
			t.Fatalf("%s: no <u2 in header", a.key)
		}
		copy(b[i:], "'<f2'")
	}
	return b
}

// writeNPZ writes an .npz the way numpy does: a zip of KEY.npy members, stored unless
// the member asks for deflate.
func writeNPZ(t testing.TB, path string, arrays ...array) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, a := range arrays {
		m := zip.Store
		if a.deflate {
			m = zip.Deflate
		}
		w, err := zw.CreateHeader(&zip.FileHeader{Name: a.key + ".npy", Method: m})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(npyBytes(t, a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func writeNPY(t testing.TB, path string, a array) string {
	t.Helper()
	if err := os.WriteFile(path, npyBytes(t, a), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func spec(name string, dt tensor.DType, shape ...int64) tensor.Spec {
	return tensor.Spec{Name: name, DType: dt, Shape: shape}
}

// drain reads every sample.
func drain(t testing.TB, s Source) []Sample {
	t.Helper()
	var out []Sample
	for {
		smp, err := s.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("Next after %d samples: %v", len(out), err)
		}
		out = append(out, smp)
	}
}

func open(t testing.TB, data string, ins []tensor.Spec, opts Options) Source {
	t.Helper()
	s, err := Open(data, ins, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", data, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func f32s(t testing.TB, x *tensor.Tensor) []float32 {
	t.Helper()
	v, err := x.AsFloat32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func equalF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func tmp(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }
