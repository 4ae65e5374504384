package calibration

import (
	"fmt"
	"io"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// next reads one sample, starting over at the end, for benchmarks.
func benchNext(b *testing.B, src Source) {
	b.Helper()
	for b.Loop() {
		_, err := src.Next()
		if err == io.EOF {
			src.Reset()
			_, err = src.Next()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNPZNext reads ImageNet-sized samples ([3,224,224] float32, 588 KiB) from
// stored and deflated members.
func BenchmarkNPZNext(b *testing.B) {
	x := new([16][3][224][224]float32)
	for i := range x {
		for c := range x[i] {
			for y := range x[i][c] {
				for w := range x[i][c][y] {
					x[i][c][y][w] = float32((i+c+y*w)%255) / 255
				}
			}
		}
	}
	for _, deflate := range []bool{false, true} {
		b.Run(fmt.Sprintf("deflate=%v", deflate), func(b *testing.B) {
			path := writeNPZ(b, tmp(b, "b.npz"), array{key: "x", val: x, deflate: deflate})
			src := open(b, path, []tensor.Spec{spec("x", tensor.Float32, -1, 3, 224, 224)}, Options{})
			b.SetBytes(3 * 224 * 224 * 4)
			benchNext(b, src)
		})
	}
}

// BenchmarkImageNext decodes, resizes (shorter side 224, centre crop) and normalises real
// photos (512×512 to 600×400 PNG).
func BenchmarkImageNext(b *testing.B) {
	dir := photos(b, "astronaut.png", "chelsea.png", "coffee.png", "motorcycle_left.png")
	for _, interp := range []string{"bilinear", "catmullrom", "approxbilinear"} {
		b.Run(interp, func(b *testing.B) {
			src := open(b, dir, []tensor.Spec{spec("x", tensor.Float32, -1, 3, 224, 224)},
				Options{Preprocess: "size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,interp=" + interp})
			benchNext(b, src)
		})
	}
}
