package calibration

import (
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// writeBigNPZ writes n samples of [3,48,48] float32 (27 KiB each). The fixture array is
// local, so it is garbage by the time the reader is measured.
func writeBigNPZ(t testing.TB, path string, deflate bool) string {
	x := new([1000][3][48][48]float32)
	for i := range x {
		for c := range x[i] {
			for y := range x[i][c] {
				for w := range x[i][c][y] {
					x[i][c][y][w] = float32((i*7+c*3+y*5+w)%251) / 251
				}
			}
		}
	}
	ids := new([1000][16]int64)
	return writeNPZ(t, path, array{key: "x", val: x, deflate: deflate}, array{key: "ids", val: ids, deflate: deflate})
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// TestNPZMemoryIsPerSample reads a 1000-sample (28 MB) .npz and checks that the heap does
// not grow with the number of samples read, for stored and deflated members.
func TestNPZMemoryIsPerSample(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 28 MB file")
	}
	ins := []tensor.Spec{spec("x", tensor.Float32, -1, 3, 48, 48), spec("ids", tensor.Int64, -1, 16)}
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("deflate=%v", deflate), func(t *testing.T) {
			path := writeBigNPZ(t, tmp(t, "big.npz"), deflate)
			base := heapInuse()
			src := open(t, path, ins, Options{})
			n := 0
			var after10 uint64
			var sum float64
			for {
				s, err := src.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				sum += float64(s["x"].Float32s()[0])
				n++
				if n == 10 {
					after10 = heapInuse()
				}
			}
			after1000 := heapInuse()
			t.Logf("heap in use: before Open %.1f MB, after 10 samples %.1f MB, after %d %.1f MB",
				mb(base), mb(after10), n, mb(after1000))
			if n != 1000 {
				t.Fatalf("%d samples", n)
			}
			if after1000 > 2*after10+8<<20 {
				t.Errorf("heap grew with samples: %.1f MB after 10, %.1f MB after 1000", mb(after10), mb(after1000))
			}
			// O(one sample): readers hold a 64 KiB buffer (plus a decompressor) per input.
			if after10 > base+4<<20 {
				t.Errorf("reader holds %.1f MB after 10 samples; the file is 28 MB", mb(after10-base))
			}
			_ = sum
		})
	}
}

func mb(b uint64) float64 { return float64(b) / (1 << 20) }
