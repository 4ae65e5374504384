package testassets

import (
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"strings"
)

// TextLineSet builds a labelled text-direction data set from a scan of printed text (Debian
// scikit-image's bw_text.png): the printed lines are found from the horizontal ink profile
// and cut into 4:1 crops, each written upright (label 0, "0°") and rotated by 180° (label 1,
// "180°") — the two classes of the PP-OCR direction classifier. It writes the PNGs into dir
// and the labels (one class per line, in file-name order) to the labels file, which must lie
// outside dir (an image folder holds only images), and returns the sample count.
func TextLineSet(src, dir, labels string) (n int, err error) {
	f, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", src, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, err
	}
	b := img.Bounds()
	ink := func(y int) int {
		c := 0
		for x := b.Min.X; x < b.Max.X; x++ {
			if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
				c++
			}
		}
		return c
	}
	var lines [][2]int
	for y := b.Min.Y; y < b.Max.Y; y++ {
		if ink(y) == 0 {
			continue
		}
		y0 := y
		for y < b.Max.Y && ink(y) > 0 {
			y++
		}
		if y-y0 >= 8 {
			lines = append(lines, [2]int{y0, y})
		}
	}
	if len(lines) == 0 {
		return 0, fmt.Errorf("%s: no printed lines found", src)
	}
	var lab strings.Builder
	for line, span := range lines {
		h := span[1] - span[0] + 6
		y := span[0] - 3
		w := 4 * h
		for x := 18; x+w <= b.Max.X-10; x += w {
			crop := image.NewRGBA(image.Rect(0, 0, w, h))
			flip := image.NewRGBA(image.Rect(0, 0, w, h))
			for dy := 0; dy < h; dy++ {
				for dx := 0; dx < w; dx++ {
					c := img.At(x+dx, y+dy)
					crop.Set(dx, dy, c)
					flip.Set(w-1-dx, h-1-dy, c)
				}
			}
			for k, im := range []*image.RGBA{crop, flip} {
				g, err := os.Create(filepath.Join(dir, fmt.Sprintf("line%02d_x%03d_%d.png", line, x, k)))
				if err != nil {
					return 0, err
				}
				err = png.Encode(g, im)
				if cerr := g.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					return 0, err
				}
				fmt.Fprintf(&lab, "%d\n", k)
				n++
			}
		}
	}
	return n, os.WriteFile(labels, []byte(lab.String()), 0o644)
}
