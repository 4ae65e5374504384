// Package testassets finds the real models and data that `make setup` caches under .cache/,
// so tests in every package locate them the same way and skip with one clear reason when
// they are absent (e.g. `go test` run before `make setup`).
package testassets

import (
	"os"
	"path/filepath"
	"testing"
)

// CacheDir is $OPTIMCTL_CACHE, else the .cache folder at the module root above the working directory.
func CacheDir() string {
	if d := os.Getenv("OPTIMCTL_CACHE"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, ".cache")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// Path returns .cache/rel, skipping the test when it does not exist.
func Path(tb testing.TB, rel string) string {
	tb.Helper()
	p := filepath.Join(CacheDir(), rel)
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("OPTIMCTL_REQUIRE_ASSETS") != "" {
			tb.Fatalf("test asset %s missing (run `make setup`)", p)
		}
		tb.Skipf("test asset %s missing (run `make setup`)", p)
	}
	return p
}

// Well-known assets (see docs/models.md).
const (
	OCRClassifier = "models/ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"
	OCRDetector   = "models/ocr/ch_PP-OCRv4_det_infer.onnx"
	OCRRecognizer = "models/ocr/ch_PP-OCRv4_rec_infer.onnx"
	Images        = "images"
	ONNXNodeTests = "onnx-wheel/onnx/backend/test/data/node"
	ONNXLight     = "onnx-wheel/onnx/backend/test/data/light"
	ORTLibrary    = "ort/libonnxruntime.so.1"
)
