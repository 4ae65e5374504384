package validate

import (
	"context"
	"math"
	"path/filepath"
	"testing"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/testassets"
)

const clsPreprocess = "resize=48x192,mean=0.5/0.5/0.5,std=0.5/0.5/0.5"

// textLineSet builds the labelled text-direction set from real scanned text (see
// testassets.TextLineSet) in a temporary folder; the labels file sits outside it.
func textLineSet(t *testing.T) (dir, labels string, n int) {
	t.Helper()
	dir = t.TempDir()
	labels = filepath.Join(t.TempDir(), "labels.txt")
	n, err := testassets.TextLineSet(filepath.Join(testassets.Path(t, testassets.Images), "bw_text.png"), dir, labels)
	if err != nil {
		t.Fatal(err)
	}
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
