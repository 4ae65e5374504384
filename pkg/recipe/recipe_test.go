package recipe

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/testassets"
	"github.com/optimctl/optimctl/pkg/trt"
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
		{"bad quantize mode", "model: m.onnx\nsteps:\n  - name: q\n    quantize:\n      mode: int3\n", `r.yaml:5: step "q" (quantize): unknown mode "int3"`},
		{"int4 gptq without calib", "model: m.onnx\nsteps:\n  - quantize:\n      mode: int4\n      algo: gptq\n", `r.yaml:4: step "quantize" (quantize): algo gptq needs calibration data`},
		{"int4 unknown key", "model: m.onnx\nsteps:\n  - quantize:\n      mode: int4\n      per_channel: true\n", `r.yaml:5: unknown key "per_channel" in step options`},
		{"int4 bad group", "model: m.onnx\nsteps:\n  - quantize: {mode: int4, group_size: 8}\n", `r.yaml:3: step "quantize" (quantize): group size 8`},
		{"calibrate format", "model: m.onnx\nsteps:\n  - calibrate: {calib: random:2, format: csv}\n", `r.yaml:3: step "calibrate" (calibrate): format "csv"`},
		{"calibrate no data", "model: m.onnx\nsteps:\n  - calibrate:\n      format: tensorrt\n", `r.yaml:4: step "calibrate" (calibrate): calib is required`},
		{"calibrate method", "model: m.onnx\nsteps:\n  - calibrate: {calib: random:2, method: mean}\n", `r.yaml:3: step "calibrate" (calibrate):`},
		{"build-trt unknown key", "model: m.onnx\nsteps:\n  - build-trt:\n      fp16: true\n      int4: true\n", `r.yaml:5: unknown key "int4" in step options`},
		{"build-trt calib needs int8", "model: m.onnx\nsteps:\n  - name: e\n    build-trt:\n      calib_cache: c.cache\n", `r.yaml:5: step "e" (build-trt): --calib and --calib-cache give INT8 scales: add --int8`},
		{"build-trt shape", "model: m.onnx\nsteps:\n  - build-trt: {shapes: {x: 1x3/1x3}}\n", `r.yaml:3: step "build-trt" (build-trt): shapes.x:`},
		{"build-trt profile", "model: m.onnx\nsteps:\n  - build-trt:\n      shapes: {x: 1x3x8x8}\n      profiles: [{x: 1x3x8x8/2x3x8x8}]\n", `r.yaml:4: step "build-trt" (build-trt): profiles[0].x:`},
		{"build-trt workspace", "model: m.onnx\nsteps:\n  - build-trt: {workspace: 4GB}\n", `r.yaml:3: step "build-trt" (build-trt): workspace:`},
		{"build-trt bool", "model: m.onnx\nsteps:\n  - build-trt:\n      fp16: maybe\n", `r.yaml: step options: line 4: cannot unmarshal`},
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

// TestInt4Decode checks that mode: int4 decodes pkg/int4's options (and that the cache key
// sees the runtime options, which int4.Options keeps out of its JSON).
func TestInt4Decode(t *testing.T) {
	r, err := ParseBytes([]byte("model: m.onnx\nsteps:\n  - quantize: {mode: int4, algo: gptq, calib: c.npz, group_size: 32, runtime: {threads: 2}}\n"), "r.yaml")
	if err != nil {
		t.Fatal(err)
	}
	o, _ := kinds["quantize"].decode(&r.Steps[0].opts, "r.yaml")
	q, ok := o.(*int4Step)
	if !ok || q.Algo != "gptq" || q.GroupSize != 32 || q.Calib != "c.npz" || q.Runtime.IntraOpThreads != 2 {
		t.Fatalf("decoded %T %+v", o, o)
	}
	b, _ := json.Marshal(o)
	if !strings.Contains(string(b), `"threads":2`) && !strings.Contains(string(b), `"IntraOpThreads":2`) {
		t.Fatalf("cache key JSON misses the runtime: %s", b)
	}
	if ext, model := kinds["quantize"].output(o); ext != ".onnx" || !model {
		t.Fatalf("int4 onnx output %q %v", ext, model)
	}
	q.Format = "gptq"
	if ext, model := kinds["quantize"].output(o); ext != "" || model {
		t.Fatalf("int4 checkpoint output %q %v", ext, model)
	}
}

// TestDryRunCalibrateBuildTRT plans a calibrate → build-trt chain without running: the
// calibration table is an artifact (the engine still reads the model), and the build-trt
// step's plan is the trtexec command with the cache resolved by step name.
func TestDryRunCalibrateBuildTRT(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m.onnx")
	os.WriteFile(model, []byte("not read by a dry run"), 0o644)
	text := `model: m.onnx
steps:
  - name: opt
    optimize: {}
  - name: cal
    calibrate: {format: tensorrt, calib: random:2}
  - name: engine
    build-trt: {int8: true, calib_cache: cal, workspace: 512MiB, timing_cache: t.cache, shapes: {x: 1x3x8x8/2x3x8x8/4x3x8x8}}
  - name: cmd
    input: opt
    build-trt: {fp16: true, print_trtexec: true}
`
	path := filepath.Join(dir, "r.yaml")
	os.WriteFile(path, []byte(text), 0o644)
	r, err := Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), RunOptions{DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(dir, "r.out")
	opt := filepath.Join(work, "opt.onnx")
	want := []struct{ input, output string }{
		{model, opt}, {opt, filepath.Join(work, "cal.cache")}, {opt, filepath.Join(work, "engine.plan")}, {opt, ""},
	}
	for i, w := range want {
		if s := rep.Steps[i]; s.Input != w.input || s.Output != w.output {
			t.Fatalf("step %s: %s → %s, want %s → %s", s.Name, s.Input, s.Output, w.input, w.output)
		}
	}
	tx := rep.Steps[2].Report.(*trtexecReport)
	wantCmd := "trtexec --onnx=" + opt + " --saveEngine=" + filepath.Join(work, "engine.plan") + " --skipInference" +
		" --minShapes=x:1x3x8x8 --optShapes=x:2x3x8x8 --maxShapes=x:4x3x8x8 --memPoolSize=workspace:512M" +
		" --timingCacheFile=" + filepath.Join(dir, "t.cache") + " --int8 --calib=" + filepath.Join(work, "cal.cache")
	if tx.TensorRTMajor != 10 || tx.Command != wantCmd {
		t.Fatalf("trtexec plan\n got %s\nwant %s", tx.Command, wantCmd)
	}
	if c := rep.Steps[3].Report.(*trtexecReport); !strings.Contains(c.Command, " --fp16") {
		t.Fatalf("print_trtexec plan %s", c.Command)
	}
	if _, err := os.Stat(work); !os.IsNotExist(err) {
		t.Fatalf("a dry run created %s", work)
	}
}

// TestCalibrateAndBuildTRTRun runs calibrate for real (a TensorRT cache an engine build would
// read) and, in a build without TensorRT, build-trt fails with the stub's error naming the
// step and its line; print_trtexec works in every build.
func TestCalibrateAndBuildTRTRun(t *testing.T) {
	model := testassets.Path(t, testassets.OCRClassifier)
	dir := t.TempDir()
	text := "model: " + model + `
steps:
  - name: cal
    calibrate: {format: tensorrt, calib: random:2, shapes: {x: [1, 3, 48, 192]}, method: minmax}
  - name: cmd
    build-trt: {int8: true, calib_cache: cal, print_trtexec: true}
  - name: engine
    build-trt: {int8: true, calib_cache: cal}
`
	path := filepath.Join(dir, "r.yaml")
	os.WriteFile(path, []byte(text), 0o644)
	r, err := Parse(path)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(context.Background(), RunOptions{})
	cache := filepath.Join(dir, "r.out", "cal.cache")
	b, rerr := os.ReadFile(cache)
	if rerr != nil || !strings.HasPrefix(string(b), "TRT-100900-EntropyCalibration2\n") {
		t.Fatalf("calibration cache: %v %.40q", rerr, b)
	}
	if trt.Available {
		t.Skip("built with TensorRT: the engine step is exercised by pkg/trt's tests")
	}
	if err == nil || !strings.Contains(err.Error(), `r.yaml:7: step "engine" (build-trt): this optimctl was built without TensorRT`) {
		t.Fatalf("build-trt without TensorRT: %v (report %+v)", err, rep)
	}
	// --only runs the trtexec step alone, reading the cache of the earlier run: unchanged,
	// so its stored report comes back.
	only, err := r.Run(context.Background(), RunOptions{Only: "cmd"})
	if err != nil || !only.Steps[0].Skipped {
		t.Fatalf("--only cmd: %v %+v", err, only)
	}
	if b, _ := json.Marshal(only.Steps[0].Report); !strings.Contains(string(b), "--calib="+cache) {
		t.Fatalf("--only cmd report %s", b)
	}
}

// TestExamplesParse checks every recipe in examples/ parses and plans (make examples runs
// them on the real models).
func TestExamplesParse(t *testing.T) {
	paths, _ := filepath.Glob("../../examples/*.yaml")
	if len(paths) < 4 {
		t.Fatalf("examples: %v", paths)
	}
	for _, p := range paths {
		r, err := Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(joinIfRel(r.Dir, r.Model)); err != nil {
			continue // assets not fetched: parsing is what this test checks
		}
		rep, err := r.Run(context.Background(), RunOptions{DryRun: true})
		if err != nil || len(rep.Steps) != len(r.Steps) {
			t.Fatalf("%s: dry run: %v", p, err)
		}
	}
}

// TestStageBars checks that an int4 step's staged progress (capture, then layers) opens one
// bar per stage and a new one when a count starts over, and that no bars means no callback.
func TestStageBars(t *testing.T) {
	if (&stepEnv{}).stageBars() != nil {
		t.Fatal("stageBars without a progress factory should be nil")
	}
	var opened []string
	var last []int
	e := &stepEnv{progress: func(what string) func(done, total int) {
		opened = append(opened, what)
		last = append(last, -1)
		i := len(last) - 1
		return func(done, total int) { last[i] = done }
	}}
	p := e.stageBars()
	for i := 1; i <= 3; i++ {
		p("capturing", i, 3)
	}
	for i := 1; i <= 5; i++ {
		p("quantizing", i, 5)
	}
	p("quantizing", 1, 2)
	if want := []string{"capturing", "quantizing", "quantizing"}; !slices.Equal(opened, want) {
		t.Fatalf("bars opened %q, want %q", opened, want)
	}
	if want := []int{3, 5, 1}; !slices.Equal(last, want) {
		t.Fatalf("last counts %v, want %v", last, want)
	}
}
