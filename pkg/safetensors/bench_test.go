package safetensors

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// zeros is an endless reader of zero bytes, for writing large files without holding them.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// vmRSS is the process's resident set in KiB, from /proc/self/status; -1 where unavailable.
func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := bytes.CutPrefix(s.Bytes(), []byte("VmRSS:")); ok {
			n, err := strconv.ParseInt(string(bytes.Fields(rest)[0]), 10, 64)
			if err == nil {
				return n
			}
		}
	}
	return -1
}

// Opening maps the file but reads only the header: resident memory must not grow with the
// data. Touching every page afterwards must grow it, or the measurement proves nothing.
func TestOpenDoesNotTouchData(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 64 MB file")
	}
	if runtime.GOOS != "linux" || vmRSS() < 0 {
		t.Skip("needs /proc/self/status")
	}
	const mib = 1 << 20
	p := filepath.Join(t.TempDir(), "big.safetensors")
	w, _ := NewWriter(p, nil)
	for i := range 16 {
		if err := w.AddReader(fmt.Sprintf("w.%02d", i), "F32", []int64{1024, 1024}, zeros{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	before := vmRSS()
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	opened := vmRSS()
	var sum byte
	for _, n := range f.Names() {
		d := f.Data(n)
		for i := 0; i < len(d); i += 4096 {
			sum += d[i]
		}
	}
	touched := vmRSS()
	t.Logf("RSS: %d KiB before Open, +%d KiB after Open, +%d KiB after reading 64 MiB (sum %d)",
		before, opened-before, touched-before, sum)
	if opened-before > 4*mib/1024 {
		t.Errorf("Open grew RSS by %d KiB; it should read only the header", opened-before)
	}
	if touched-before < 48*mib/1024 {
		t.Errorf("reading the data grew RSS by only %d KiB; the measurement is not working", touched-before)
	}
}

// BenchmarkOpen measures header parsing, which is all Open does, at several tensor counts.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{10, 1000, 100000} {
		b.Run(fmt.Sprintf("tensors=%d", n), func(b *testing.B) {
			p := filepath.Join(b.TempDir(), "m.safetensors")
			w, _ := NewWriter(p, map[string]string{"format": "pt"})
			for i := range n {
				name := fmt.Sprintf("model.layers.%d.self_attn.q_proj.weight", i)
				if err := w.AddReader(name, "BF16", []int64{4, 8}, zeros{}); err != nil {
					b.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				f, err := Open(p)
				if err != nil {
					b.Fatal(err)
				}
				f.Close()
			}
		})
	}
}

// BenchmarkWrite measures streaming 64 MiB through the writer.
func BenchmarkWrite(b *testing.B) {
	dir := b.TempDir()
	b.SetBytes(64 << 20)
	for b.Loop() {
		w, _ := NewWriter(filepath.Join(dir, "w.safetensors"), nil)
		for i := range 16 {
			w.AddReader(fmt.Sprintf("w.%02d", i), "F32", []int64{1024, 1024}, zeros{})
		}
		if err := w.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
