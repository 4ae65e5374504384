package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/testassets"
)

// TestRunCommand drives `optimctl run` end to end: a gate that cannot hold exits 3 and names
// the step and gate in the JSON report and on stderr, a second run skips the unchanged steps,
// --dry-run plans without running, and a bad recipe is a one-line error with file:line.
func TestRunCommand(t *testing.T) {
	m := testassets.Path(t, testassets.OCRClassifier)
	dir := t.TempDir()
	recipe := filepath.Join(dir, "r.yaml")
	os.WriteFile(recipe, []byte("model: "+m+`
steps:
  - name: opt
    optimize: {}
  - name: check
    validate:
      data: random:2
      shapes: {x: [1, 3, 48, 192]}
      gates: {min_cosine: 0.9999, max_size_ratio: 0.5}
`), 0o644)
	code, out, stderr := optimctl(t, "run", recipe, "--json")
	if code != 3 {
		t.Fatalf("exit %d, want 3 (stderr %q)", code, stderr)
	}
	var rep struct {
		Passed      bool     `json:"passed"`
		FailedGates []string `json:"failed_gates"`
		Steps       []struct {
			Name    string `json:"name"`
			Skipped bool   `json:"skipped"`
			Passed  bool   `json:"passed"`
		} `json:"steps"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("stdout is not one JSON report: %v\n%s", err, out)
	}
	if rep.Passed || len(rep.FailedGates) != 1 || !strings.HasPrefix(rep.FailedGates[0], "check: max-size-ratio") || len(rep.Steps) != 2 || !rep.Steps[0].Passed {
		t.Fatalf("report %+v", rep)
	}
	if !strings.Contains(stderr, "optimctl: recipe gate failed: check: max-size-ratio") {
		t.Fatalf("stderr %q", stderr)
	}
	md, err := os.ReadFile(filepath.Join(dir, "r.out", "summary.md"))
	if err != nil || !strings.Contains(string(md), "**gate failed**") {
		t.Fatalf("summary.md: %v\n%s", err, md)
	}

	code, out, _ = optimctl(t, "run", recipe, "--json")
	json.Unmarshal([]byte(out), &rep)
	if code != 3 || !rep.Steps[0].Skipped || !rep.Steps[1].Skipped {
		t.Fatalf("second run: exit %d, steps %+v", code, rep.Steps)
	}

	code, out, _ = optimctl(t, "run", recipe, "--dry-run", "--ort-lib", "/nonexistent")
	if code != 0 || !strings.Contains(out, "opt") || !strings.Contains(out, "planned") {
		t.Fatalf("dry run: exit %d\n%s", code, out)
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("model: m.onnx\nsteps:\n  - optimize:\n      pases: [fold]\n"), 0o644)
	code, _, stderr = optimctl(t, "run", bad)
	if code != 1 || !strings.HasPrefix(stderr, "optimctl: "+bad+`:4: unknown key "pases" in step options (known: `) {
		t.Fatalf("bad recipe: exit %d, stderr %q", code, stderr)
	}
	if strings.Count(stderr, "\n") != 1 {
		t.Fatalf("error is not one line: %q", stderr)
	}
	if code, _, _ := optimctl(t, "run"); code != 2 {
		t.Fatalf("run without a recipe: exit %d, want 2", code)
	}
}

func TestVersionAndCompletion(t *testing.T) {
	testassets.Path(t, testassets.OCRClassifier) // skips without make setup (and its ONNX Runtime)
	code, out, stderr := optimctl(t, "version", "--json")
	var v struct {
		Version    string `json:"version"`
		Go         string `json:"go"`
		ORTVersion string `json:"onnxruntime_version"`
		TensorRT   *bool  `json:"tensorrt_build"`
	}
	if err := json.Unmarshal([]byte(out), &v); code != 0 || err != nil {
		t.Fatalf("version: exit %d %v %s", code, err, stderr)
	}
	if !strings.HasPrefix(v.Go, "go1.") || !strings.HasPrefix(v.ORTVersion, "1.") || v.TensorRT == nil {
		t.Fatalf("version report %+v", v)
	}
	for shell, want := range map[string]string{"bash": "# bash completion V2 for optimctl", "zsh": "#compdef optimctl", "fish": "# fish completion for optimctl"} {
		code, out, _ := optimctl(t, "completion", shell)
		if code != 0 || !strings.HasPrefix(out, want) {
			t.Fatalf("completion %s: exit %d, %.60q", shell, code, out)
		}
	}
	// --only completes the recipe's step names.
	dir := t.TempDir()
	r := filepath.Join(dir, "r.yaml")
	os.WriteFile(r, []byte("model: m.onnx\nsteps:\n  - name: opt\n    optimize: {}\n  - name: q\n    quantize: {mode: dynamic}\n"), 0o644)
	_, out, _ = optimctl(t, "__complete", "run", r, "--only", "")
	if !strings.HasPrefix(out, "opt\toptimize\nq\tquantize\n:4\n") {
		t.Fatalf("--only completion %q", out)
	}
}
