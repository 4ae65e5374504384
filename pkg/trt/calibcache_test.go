package trt

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/calibration"
)

// goldenCache is a cache as TensorRT 10.16's entropy calibrator 2 writes it: amax 1 gives
// the scale 1/127, whose float32 bits are 0x3c010204; amax 2.5 gives 0x3ca14285.
const goldenCache = "TRT-101600-EntropyCalibration2\ninput: 3c010204\n(Unnamed Layer* 48) [Shuffle]_output: 3ca14285\n"

func TestCheckCalibrationCacheGolden(t *testing.T) {
	if math.Float32bits(1.0/127) != 0x3c010204 || math.Float32bits(2.5/127) != 0x3ca14285 {
		t.Fatal("hand-computed scale bits are wrong")
	}
	n, err := CheckCalibrationCache([]byte(goldenCache), 101600)
	if err != nil || n != 2 {
		t.Fatalf("golden cache: %d tensors, %v", n, err)
	}
	// The writer of package calibration produces what the reader here accepts.
	var buf bytes.Buffer
	tab := &calibration.Table{Symmetric: true, Ranges: []calibration.Range{{Name: "input", Min: -1, Max: 1}, {Name: "(Unnamed Layer* 48) [Shuffle]_output", Min: -2.5, Max: 2.5}}}
	if err := calibration.WriteTensorRTCache(&buf, tab, 101600, "EntropyCalibration2"); err != nil {
		t.Fatal(err)
	}
	if buf.String() != goldenCache {
		t.Fatalf("calibration.WriteTensorRTCache wrote\n%s\nwant\n%s", buf.String(), goldenCache)
	}
}

func TestCheckCalibrationCacheRejects(t *testing.T) {
	cases := map[string]string{
		"TRT-100900-EntropyCalibration2\nx: 3c010204\n": "written for TensorRT 10.9.0 (TRT-100900), this is TensorRT 10.16.0",
		"TRT-101600-MinMaxCalibration\nx: 3c010204\n":   "MinMaxCalibration calibrator",
		"TRT-101600-EntropyCalibration2\n":              "no tensor scales",
		"TRT-101600-EntropyCalibration2\nx: 3c0102\n":   "8 hex digits",
		"x: 3c010204\n": "TRT-<version>-<algorithm>",
		"":              "empty",
	}
	for in, want := range cases {
		_, err := CheckCalibrationCache([]byte(in), 101600)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("cache %q: error %v, want %q", in, err, want)
		}
	}
	if _, err := CheckCalibrationCache([]byte("TRT-100900-EntropyCalibration2\nx: 3c010204\n"), 101600); !strings.Contains(err.Error(), "--trt-version 101600") {
		t.Errorf("version mismatch error %v does not say how to regenerate", err)
	}
}

func TestReadWriteCalibrationCache(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.cache")
	if _, err := readCalibrationCache(path, 101600); err == nil || !strings.Contains(err.Error(), "--calib DATA") {
		t.Fatalf("missing cache: %v", err)
	}
	var warnings []string
	warn := func(s string) { warnings = append(warnings, s) }
	if err := writeCalibrationCache(path, []byte(goldenCache), 101600, warn); err != nil || len(warnings) != 0 {
		t.Fatalf("write: %v, warnings %v", err, warnings)
	}
	got, err := readCalibrationCache(path, 101600)
	if err != nil || string(got) != goldenCache {
		t.Fatalf("read back %q, %v", got, err)
	}
	if _, err := readCalibrationCache(path, 110000); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("read for another version: %v", err)
	}
	// A cache that does not read back is still TensorRT's own output: written, with a warning.
	if err := writeCalibrationCache(path, []byte("garbage"), 101600, warn); err != nil || len(warnings) != 1 {
		t.Fatalf("garbage: %v, warnings %v", err, warnings)
	}
	if b, _ := os.ReadFile(path); string(b) != "garbage" {
		t.Fatalf("file holds %q", b)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("temp files left: %v", entries)
	}
}
