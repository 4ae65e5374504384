package recipe

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/testassets"
	"github.com/optimctl/optimctl/pkg/validate"
)

func TestParseErrors(t *testing.T) {
	t.Setenv("OPTIMCTL_TEST_LIMIT", "4")
	cases := []struct {
		name, text, want string
	}{
		{"unknown top key", "model: m.onnx\nsteps:\n  - validate: {data: random:1}\nfoo: 1\n", `r.yaml:4: unknown key "foo" in recipe`},
		{"unknown step key", "model: m.onnx\nsteps:\n  - name: a\n    valdate: {}\n", `r.yaml:4: unknown key "valdate" in a step`},
		{"unknown option", "model: m.onnx\nsteps:\n  - validate:\n      data: random:1\n      min_cosine: 0.9\n", `r.yaml:5: unknown key "min_cosine" in step options`},
		{"unknown nested option", "model: m.onnx\nsteps:\n  - validate:\n      gates: {min_cosin: 0.9}\n", `r.yaml:4: unknown key "min_cosin" in step options.gates`},
		{"bad value", "model: m.onnx\nsteps:\n  - validate:\n      limit: many\n", `r.yaml: step options: line 4: cannot unmarshal`},
		{"two kinds", "model: m.onnx\nsteps:\n  - validate: {}\n    bench: {}\n", `r.yaml:4: step has two kinds`},
		{"no kind", "model: m.onnx\nsteps:\n  - name: x\n", `r.yaml:3: step has no kind`},
		{"duplicate name", "model: m.onnx\nsteps:\n  - bench: {}\n  - bench: {}\n", `step name "bench" is used twice`},
		{"unknown input", "model: m.onnx\nsteps:\n  - name: a\n    input: nothere\n    bench: {}\n", `input "nothere" is not an earlier step`},
		{"missing env", "model: ${OPTIMCTL_NOT_SET_ANYWHERE}\nsteps:\n  - bench: {}\n", `r.yaml:1: environment variable OPTIMCTL_NOT_SET_ANYWHERE is not set`},
		{"no model", "steps:\n  - bench: {}\n", "`model:` is required"},
		{"not yaml", "model: [\n", "r.yaml: yaml:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseBytes([]byte(c.text), "r.yaml")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want it to contain %q", err, c.want)
			}
		})
	}
	// Environment values are expanded before decoding, numbers included.
	r, err := ParseBytes([]byte("model: m.onnx\nsteps:\n  - validate:\n      data: random:1\n      limit: ${OPTIMCTL_TEST_LIMIT}\n      preprocess: ${OPTIMCTL_UNSET:-size=4}\n"), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := kinds["validate"].decode(&r.Steps[0].opts, "r.yaml")
	if v := o.(*validate.Options); v.Limit != 4 || v.Preprocess != "size=4" {
		t.Fatalf("expanded options %+v", v)
	}
}

// TestRunChainsCachesAndGates runs a real pipeline twice: the second run skips every step;
// a gate that cannot hold makes the run fail with the gate named in the report.
func TestRunChainsCachesAndGates(t *testing.T) {
	model := testassets.Path(t, testassets.OCRClassifier)
	dir := t.TempDir()
	text := `model: ` + model + `
workdir: out
steps:
  - name: look
    inspect: {}
  - name: self
    validate:
      data: random:3
      shapes: {x: [1, 3, 48, 192]}
      gates: {min_cosine: 0.9999, max_abs_err: 0}
  - name: speed
    bench:
      iterations: 3
      shapes: {x: [1, 3, 48, 192]}
      max_p50_ms: 0.000001
`
	path := filepath.Join(dir, "pipeline.yaml")
	os.WriteFile(path, []byte(text), 0o644)
	r, err := Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Passed || len(rep.FailedGates) != 1 || !strings.HasPrefix(rep.FailedGates[0], "speed: max_p50_ms") {
		t.Fatalf("failed gates %q", rep.FailedGates)
	}
	if !rep.Steps[1].Passed || rep.Steps[1].Skipped || rep.Steps[1].Input != model {
		t.Fatalf("validate step %+v", rep.Steps[1])
	}
	for _, f := range []string{"report.json", "summary.md", "state.json"} {
		if _, err := os.Stat(filepath.Join(dir, "out", f)); err != nil {
			t.Fatalf("%s not written", f)
		}
	}
	again, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range again.Steps {
		if !s.Skipped {
			t.Fatalf("step %s ran again with unchanged inputs", s.Name)
		}
	}
	if again.Passed || again.FailedGates[0] != rep.FailedGates[0] {
		t.Fatalf("a skipped step must keep its gate result: %q", again.FailedGates)
	}
	only, err := r.Run(context.Background(), RunOptions{Only: "self", Force: true})
	if err != nil || len(only.Steps) != 1 || only.Steps[0].Skipped || !only.Passed {
		t.Fatalf("--only self --force: %v %+v", err, only)
	}
}

func TestOptimizeThenValidate(t *testing.T) {
	model := testassets.Path(t, testassets.OCRClassifier)
	dir := t.TempDir()
	text := "model: " + model + `
steps:
  - name: opt
    optimize: {}
  - name: check
    validate:
      data: random:4
      shapes: {x: [1, 3, 48, 192]}
      gates: {min_cosine: 0.99999}
`
	path := filepath.Join(dir, "r.yaml")
	os.WriteFile(path, []byte(text), 0o644)
	r, err := Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), RunOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opt := filepath.Join(dir, "r.out", "opt.onnx")
	if !rep.Passed || rep.Steps[0].Output != opt || rep.Steps[1].Input != opt {
		t.Fatalf("chain: %+v %+v", rep.Steps[0], rep.Steps[1])
	}
	v := rep.Steps[1].Report.(*validate.Report)
	if v.Reference != model || v.Candidate != opt || v.Outputs[0].CosineMin < 0.99999 {
		t.Fatalf("validate compared %s with %s: cosine %v", v.Reference, v.Candidate, v.Outputs[0].CosineMin)
	}
}
