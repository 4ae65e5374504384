package quantize

import (
	"path/filepath"
	"testing"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// Real models on real photos (the 30 scikit-image pictures). Thresholds sit below the
// measured figures (in parentheses, 2-core x86) with room for ONNX Runtime kernel
// differences, and at or above what onnxruntime.quantization reaches on the same data
// (bench/quantize/compare.py; docs/quantize.md):
//   - the direction classifier is a 2-class MobileNetV3 at 0.35 width fed photos that are
//     not text lines, so its scores sit near the decision boundary: 8-bit static drops
//     its worst-sample cosine to 0.86 (ORT: 0.86) and moves some top-1 decisions;
//   - the detector's output is a probability map that is almost all zeros on photos
//     without text, where a per-sample cosine means nothing: it is judged by the cosine
//     of all maps together and the agreement of the text masks at DB's threshold 0.3.

const (
	clsPre = "resize=48x192,mean=0.5/0.5/0.5,std=0.5/0.5/0.5"
	detPre = "resize=320x320,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"
)

var (
	clsShape = map[string][]int64{"x": {1, 3, 48, 192}}
	detShape = map[string][]int64{"x": {1, 3, 320, 320}}
)

// top1 is the fraction of samples whose argmax agrees.
func top1(outs [2][][]float32) float64 {
	hits := 0
	for i := range outs[0] {
		if argmax(outs[0][i]) == argmax(outs[1][i]) {
			hits++
		}
	}
	return float64(hits) / float64(len(outs[0]))
}

func argmax(v []float32) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}

// maskIoU is the intersection over union of the maps thresholded at 0.3, over all samples.
func maskIoU(outs [2][][]float32) float64 {
	var inter, union int
	for i := range outs[0] {
		for j, a := range outs[0][i] {
			x, y := a > 0.3, outs[1][i][j] > 0.3
			if x && y {
				inter++
			}
			if x || y {
				union++
			}
		}
	}
	if union == 0 {
		return 1
	}
	return float64(inter) / float64(union)
}

func TestRealClassifier(t *testing.T) {
	needORT(t)
	in := testassets.Path(t, testassets.OCRClassifier)
	imgs := testassets.Path(t, testassets.Images)
	dir := t.TempDir()
	cases := []struct {
		name          string
		o             Options
		worst, agreed float64
	}{
		// worst 0.856, top-1 25/30
		{"static-qdq", Options{Mode: Static, PerChannel: true}, 0.80, 0.75},
		// same numbers as QDQ (checked on the toy net), integer kernels
		{"static-qoperator", Options{Mode: Static, PerChannel: true, Format: QOperator}, 0.80, 0.75},
		// worst 0.949, top-1 27/30
		{"dynamic", Options{Mode: Dynamic, PerChannel: true}, 0.90, 0.8},
		// worst 1.0000 (float16 keeps 11 bits), top-1 30/30
		{"fp16", Options{Mode: FP16, KeepFloat32IO: true}, 0.999, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			if o.Mode == Static {
				o.Calib, o.Preprocess, o.Shapes = imgs, clsPre, clsShape
			}
			out := filepath.Join(dir, c.name+".onnx")
			rep := quantizeFile(t, in, out, o)
			if rep.OpsetAfter != 13 && o.Mode != FP16 {
				t.Errorf("opset %d, want the upgrade to 13", rep.OpsetAfter)
			}
			worst, global, outs := agreement(t, in, out, imgs, clsPre, clsShape, "softmax_0.tmp_0")
			agreed := top1(outs)
			t.Logf("%s: worst cosine %.4f, global %.5f, top-1 agreement %.3f, %d → %d bytes", c.name, worst, global, agreed, rep.SizeBefore, rep.SizeAfter)
			if worst < c.worst || agreed < c.agreed {
				t.Fatalf("%s: worst cosine %.4f (want ≥ %.3f), top-1 %.3f (want ≥ %.2f)", c.name, worst, c.worst, agreed, c.agreed)
			}
			if rep.SizeAfter >= rep.SizeBefore {
				t.Errorf("size %d → %d", rep.SizeBefore, rep.SizeAfter)
			}
		})
	}
}

func TestRealDetector(t *testing.T) {
	if testing.Short() {
		t.Skip("320×320 detector runs take seconds (-short)")
	}
	needORT(t)
	in := testassets.Path(t, testassets.OCRDetector)
	imgs := testassets.Path(t, testassets.Images)
	dir := t.TempDir()
	cases := []struct {
		name        string
		o           Options
		global, iou float64
	}{
		// global 0.742, IoU 0.560 (ORT quantize_static, same settings: IoU 0.557). PP-OCRv4
		// det loses most of its SNR in the first depthwise convolutions, whose inputs have
		// per-channel outliers that one per-tensor activation scale cannot serve (PaddleOCR
		// ships its INT8 detector from quantization-aware training).
		{"static-minmax", Options{Mode: Static, PerChannel: true, Method: calibration.MinMax}, 0.70, 0.5},
		// global 0.934, IoU 0.861: per-run activation ranges fit each image
		{"dynamic", Options{Mode: Dynamic, PerChannel: true}, 0.90, 0.8},
		// global 0.99992, IoU 0.997
		{"fp16", Options{Mode: FP16, KeepFloat32IO: true}, 0.9995, 0.99},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := c.o
			if o.Mode == Static {
				o.Calib, o.Preprocess, o.Shapes = imgs, detPre, detShape
			}
			out := filepath.Join(dir, c.name+".onnx")
			quantizeFile(t, in, out, o)
			_, global, outs := agreement(t, in, out, imgs, detPre, detShape, "sigmoid_0.tmp_0")
			iou := maskIoU(outs)
			t.Logf("%s: global cosine %.5f, text-mask IoU %.4f", c.name, global, iou)
			if global < c.global || iou < c.iou {
				t.Fatalf("%s: global cosine %.5f (want ≥ %.4f), IoU %.4f (want ≥ %.2f)", c.name, global, c.global, iou, c.iou)
			}
		})
	}
}
