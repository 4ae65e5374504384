package validate

import (
	"context"
	"fmt"
	"image"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/testassets"
)

const clsPreprocess = "resize=48x192,mean=0.5/0.5/0.5,std=0.5/0.5/0.5"

// textLineSet builds a labelled text-direction set from real scanned text (scikit-image's
// bw_text.png, a printed paragraph): 4:1 crops along each printed line, upright (label 0,
// "0°") and rotated 180° (label 1, "180°"), the two classes of the PP-OCR direction classifier.
func textLineSet(t *testing.T) (dir, labels string, n int) {
	t.Helper()
	src := filepath.Join(testassets.Path(t, testassets.Images), "bw_text.png")
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if d := os.Getenv("KEEP_SET"); d != "" {
		dir = d
	}
	var lab strings.Builder
	// Find the printed lines from the horizontal ink profile, then cut 4:1 crops along each.
	b := img.Bounds()
	ink := func(y int) int {
		n := 0
		for x := b.Min.X; x < b.Max.X; x++ {
			if r, _, _, _ := img.At(x, y).RGBA(); r < 0x8000 {
				n++
			}
		}
		return n
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
	if len(lines) < 10 {
		t.Fatalf("found %d text lines in %s, expected 11", len(lines), src)
	}
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
				name := filepath.Join(dir, fmt.Sprintf("line%02d_x%03d_%d.png", line, x, k))
				g, err := os.Create(name)
				if err != nil {
					t.Fatal(err)
				}
				png.Encode(g, im)
				g.Close()
				fmt.Fprintf(&lab, "%d\n", k)
				n++
			}
		}
	}
	labels = filepath.Join(t.TempDir(), "labels.txt")
	os.WriteFile(labels, []byte(lab.String()), 0o644)
	return dir, labels, n
}

func TestAccuracyWithLabels(t *testing.T) {
	model := testassets.Path(t, testassets.OCRClassifier)
	data, labels, n := textLineSet(t)
	shapes := map[string][]int64{"x": {1, 3, 48, 192}}
	r, err := Run(context.Background(), Options{Reference: model, Candidate: model, Data: data, Labels: labels,
		Preprocess: clsPreprocess, Shapes: shapes, Warmup: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r.Samples != n || r.AccuracyReference == nil {
		t.Fatalf("samples %d (want %d), accuracy %v", r.Samples, n, r.AccuracyReference)
	}
	// Independent count: run the model directly and compare argmax with the labels.
	want, err := calibration.ReadLabels(labels)
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.NewSessionFromFile(model, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src, err := calibration.Open(data, s.Inputs(), calibration.Options{Preprocess: clsPreprocess, Shapes: shapes})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	hits := 0
	for i := 0; i < n; i++ {
		sample, err := src.Next()
		if err != nil {
			t.Fatal(err)
		}
		out, err := s.Run(sample)
		if err != nil {
			t.Fatal(err)
		}
		p := out["softmax_0.tmp_0"].Float32s()
		pred := 0
		if p[1] > p[0] {
			pred = 1
		}
		if pred == want[i] {
			hits++
		}
	}
	acc := float64(hits) / float64(n)
	t.Logf("text-direction set: %d crops, accuracy %.4f (reference), %.4f (candidate)", n, *r.AccuracyReference, *r.AccuracyCandidate)
	if math.Abs(*r.AccuracyReference-acc) > 1e-12 || *r.AccuracyCandidate != *r.AccuracyReference {
		t.Fatalf("accuracy %v/%v, independent count %v", *r.AccuracyReference, *r.AccuracyCandidate, acc)
	}
	// The published classifier reads printed English text well in both orientations.
	if acc < 0.9 {
		t.Fatalf("accuracy %.3f on the text-direction set; expected ≥ 0.9", acc)
	}
}

func TestDetectorAgainstItself(t *testing.T) {
	model := testassets.Path(t, testassets.OCRDetector)
	r, err := Run(context.Background(), Options{Reference: model, Candidate: model,
		Data: testassets.Path(t, testassets.Images), Limit: 6, Warmup: 1,
		Preprocess: "resize=320x320,mean=0.485/0.456/0.406,std=0.229/0.224/0.225",
		Shapes:     map[string][]int64{"x": {1, 3, 320, 320}}})
	if err != nil {
		t.Fatal(err)
	}
	o := r.Outputs[0]
	if r.Samples != 6 || o.Name != "sigmoid_0.tmp_0" || o.MaxAbsErr != 0 || o.CosineMin != 1 || o.SNRdB != 999 || !r.Passed {
		t.Fatalf("detector vs itself: %+v %+v", r, o)
	}
	if o.Top1Agreement != nil {
		t.Fatal("a probability map [N,1,H,W] is not a class-score output")
	}
	if r.LatencyMs["reference"].N != 6 || r.LatencyMs["reference"].P50 <= 0 {
		t.Fatalf("latency %+v", r.LatencyMs)
	}
}
