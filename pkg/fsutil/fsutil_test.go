package fsutil

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriteAtomicLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "out.onnx")
	os.WriteFile(p, []byte("old"), 0o644)
	boom := errors.New("boom")
	err := WriteAtomic(p, func(w io.Writer) error {
		w.Write([]byte("partial"))
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	b, _ := os.ReadFile(p)
	entries, _ := os.ReadDir(dir)
	if string(b) != "old" || len(entries) != 1 {
		t.Fatalf("existing output %q, %d entries: a failed write must leave things as they were", b, len(entries))
	}
	if err := WriteFileAtomic(p, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != "new" {
		t.Fatalf("got %q", b)
	}
}

func TestCheckNotSame(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "m.onnx")
	os.WriteFile(in, []byte("x"), 0o644)
	link := filepath.Join(dir, "link.onnx")
	os.Symlink(in, link)
	for _, out := range []string{in, filepath.Join(dir, ".", "m.onnx"), link} {
		if err := CheckNotSame(in, out); !errors.Is(err, ErrSameFile) {
			t.Errorf("CheckNotSame(%q) = %v", out, err)
		}
	}
	if err := CheckNotSame(in, filepath.Join(dir, "other.onnx")); err != nil {
		t.Errorf("distinct output refused: %v", err)
	}
}

func TestMapIsCopyOnWrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, []byte("abcd"), 0o644)
	m, err := Map(p)
	if err != nil {
		t.Fatal(err)
	}
	m.Data[0] = 'z'
	m.Close()
	if b, _ := os.ReadFile(p); string(b) != "abcd" {
		t.Fatalf("a write through the mapping reached the file: %q", b)
	}
}
