package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/testassets"
)

func TestQuantizeJSONReport(t *testing.T) {
	m := testassets.Path(t, testassets.OCRClassifier)
	imgs := testassets.Path(t, testassets.Images)
	out := filepath.Join(t.TempDir(), "cls.int8.onnx")
	code, stdout, stderr := optimctl(t, "quantize", m, "-o", out, "--mode", "static", "--calib", imgs, "--preprocess", clsPreprocess,
		"--shape", "x=1,3,48,192", "--per-channel", "--limit", "8", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout)
	}
	for _, k := range []string{"input", "output", "nodes_before", "nodes_after", "size_before", "size_after", "seconds",
		"mode", "format", "target", "per_channel", "calibration", "quantized_nodes", "notes"} {
		if _, ok := r[k]; !ok {
			t.Errorf("report lacks key %q", k)
		}
	}
	if r["nodes_before"].(float64) != 471 || r["calibration"].(map[string]any)["samples"].(float64) != 8 {
		t.Errorf("nodes_before %v, calibration %v", r["nodes_before"], r["calibration"])
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatal(err)
	}
}

func TestQuantizeUsageErrors(t *testing.T) {
	m := testassets.Path(t, testassets.OCRClassifier)
	out := filepath.Join(t.TempDir(), "o.onnx")
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"quantize", m, "-o", out}, 2, "--mode is required"},
		{[]string{"quantize", m, "-o", out, "--mode", "static"}, 2, "needs --calib"},
		{[]string{"quantize", m, "-o", out, "--mode", "dynamic", "--calib", "random:2"}, 2, "--calib applies to --mode static"},
		{[]string{"quantize", m, "-o", out, "--mode", "static", "--calib", "random:2", "--target", "tensorrt", "--format", "qoperator"}, 2, "Q/DQ only"},
		{[]string{"quantize", m, "-o", out, "--mode", "static", "--calib", "random:2", "--activation-type", "int4"}, 2, "want int8, uint8 or float8e4m3fn"},
		{[]string{"quantize", m, "-o", out, "--mode", "static", "--calib", "random:2", "--auto-fallback"}, 2, "needs --max-top1-drop"},
		{[]string{"quantize", m, "-o", m, "--mode", "dynamic"}, 1, ""},
		{[]string{"calibrate", m, "--calib", "random:2", "-o", out, "--format", "csv"}, 2, "json or tensorrt"},
	}
	for _, c := range cases {
		code, _, stderr := optimctl(t, c.args...)
		if code != c.code || !strings.HasPrefix(stderr, "optimctl: ") || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", c.args[3:], code, stderr, c.code, c.want)
		}
	}
}

// TestQuantizeGateExit3: a gate no variant can meet (cosine above 1) exits 3 and still
// writes the model.
func TestQuantizeGateExit3(t *testing.T) {
	if testing.Short() {
		t.Skip("the fallback search builds and validates ~8 variants (-short)")
	}
	m := testassets.Path(t, testassets.OCRClassifier)
	dir := t.TempDir()
	out, report := filepath.Join(dir, "o.onnx"), filepath.Join(dir, "sens.md")
	code, _, stderr := optimctl(t, "quantize", m, "-o", out, "--mode", "static", "--calib", "random:4", "--shape", "x=1,3,48,192",
		"--auto-fallback", "--min-cosine", "1.5", "--report", report)
	if code != 3 || !strings.Contains(stderr, "gate not met") {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, p := range []string{out, report} {
		if _, err := os.Stat(p); err != nil {
			t.Fatal(err)
		}
	}
	b, _ := os.ReadFile(report)
	if !strings.Contains(string(b), "| 1 | ") {
		t.Fatalf("report has no ranked layers:\n%s", b)
	}
}

func TestCalibrateCommand(t *testing.T) {
	m := testassets.Path(t, testassets.OCRClassifier)
	dir := t.TempDir()
	cache := filepath.Join(dir, "cls.cache")
	code, _, stderr := optimctl(t, "calibrate", m, "--calib", "random:2", "--shape", "x=1,3,48,192", "-o", cache,
		"--format", "tensorrt", "--calib-method", "minmax", "--trt-version", "8601")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	b, _ := os.ReadFile(cache)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if lines[0] != "TRT-8601-EntropyCalibration2" || !strings.HasPrefix(lines[1], "x: ") || len(lines[1]) != len("x: ")+8 {
		t.Fatalf("cache starts %q", lines[:2])
	}
	js := filepath.Join(dir, "cls.json")
	code, stdout, stderr := optimctl(t, "calibrate", m, "--calib", "random:2", "--shape", "x=1,3,48,192", "-o", js, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r["tensors"].(float64) != float64(len(lines)-1) {
		t.Fatalf("report %v (%v), cache had %d tensors", r, err, len(lines)-1)
	}
}
