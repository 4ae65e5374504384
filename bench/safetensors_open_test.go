package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"

	"github.com/optimctl/optimctl/pkg/safetensors"
)

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// vmRSS is the resident set in KiB from /proc/self/status; -1 where unavailable.
func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := bytes.CutPrefix(s.Bytes(), []byte("VmRSS:")); ok {
			if n, err := strconv.ParseInt(string(bytes.Fields(rest)[0]), 10, 64); err == nil {
				return n
			}
		}
	}
	return -1
}

// write256MB writes a 256 MiB checkpoint-like file: 64 BF16 matrices of 4 MiB.
func write256MB(b *testing.B) string {
	b.Helper()
	p := filepath.Join(b.TempDir(), "model.safetensors")
	w, err := safetensors.NewWriter(p, map[string]string{"format": "pt"})
	if err != nil {
		b.Fatal(err)
	}
	for i := range 64 {
		if err := w.AddReader(fmt.Sprintf("model.layers.%02d.mlp.weight", i), "BF16", []int64{2048, 1024}, zeros{}); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkSafetensorsOpen256MB reports how long Open takes on a 256 MiB file and how much
// resident memory it adds (rss-KiB/op): Open maps the file and parses only the header, so the
// growth should be a few pages. The touch variant reads one byte per page of every tensor and
// shows the growth a full read causes, which is what Open avoids.
func BenchmarkSafetensorsOpen256MB(b *testing.B) {
	if runtime.GOOS != "linux" || vmRSS() < 0 {
		b.Skip("needs /proc/self/status")
	}
	p := write256MB(b)
	for _, touch := range []bool{false, true} {
		name := "open"
		if touch {
			name = "open+touch"
		}
		b.Run(name, func(b *testing.B) {
			var grew int64
			var sum byte
			runtime.GC()
			for b.Loop() {
				before := vmRSS()
				f, err := safetensors.Open(p)
				if err != nil {
					b.Fatal(err)
				}
				if touch {
					for _, n := range f.Names() {
						d := f.Data(n)
						for i := 0; i < len(d); i += 4096 {
							sum += d[i]
						}
					}
				}
				grew += vmRSS() - before
				f.Close()
			}
			b.ReportMetric(float64(grew)/float64(b.N), "rss-KiB/op")
			_ = sum
		})
	}
}
