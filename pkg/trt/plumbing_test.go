//go:build trtfake

// Plumbing tests: the Go side of the shim (cgo.go) against fake_shim.c, which keeps shim.h's
// contract and echoes what it receives. They check that options, profiles, calibration
// batches, caches, errors and logs cross the Go↔C boundary intact and that nothing leaks;
// they say nothing about TensorRT itself (no GPU, no libnvinfer here).
//
//	go test -race -tags trtfake ./pkg/trt        (make test-trtfake)
package trt

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// fakeModel writes a fake model (see fake_shim.c) and registers the leak check.
func fakeModel(t *testing.T, lines ...string) string {
	t.Helper()
	t.Cleanup(func() {
		if n := fakeLive(); n != 0 {
			t.Errorf("the fake shim holds %d networks/results/buffers after the build: a free is missing", n)
		}
		if n := cLive.Load(); n != 0 {
			t.Errorf("%d C allocations of the Go side not freed", n)
		}
	})
	p := filepath.Join(t.TempDir(), "model.onnx")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// logSink collects forwarded log lines.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) log(s Severity, m string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s.String()+": "+m)
}

func (l *logSink) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func engineText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "fake-engine 1\n") {
		t.Fatalf("engine file is not the fake's echo: %q", b)
	}
	return string(b)
}

func mustContain(t *testing.T, what, text string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(text, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, text)
		}
	}
}

func TestPlumbingOptionsArriveIntact(t *testing.T) {
	model := fakeModel(t, "input images 1 -1x3x8x8", "input scale 1 1x1")
	dir := filepath.Dir(model)
	o := Options{
		Model: model, Output: filepath.Join(dir, "m.plan"), FP16: true, SparseWeights: true, Refit: true, VersionCompatible: true,
		Shapes:      []ShapeSpec{spec("images:1x3x8x8/4x3x8x8/16x3x8x8")},
		Workspace:   3<<30 + 5,
		TimingCache: filepath.Join(dir, "timing.cache"),
	}
	rep, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	e := engineText(t, o.Output)
	mustContain(t, "engine echo", e,
		"version 101600\n", "strongly_typed 0\n",
		fmt.Sprintf("flags 0x%08x\n", flagFP16|flagSparseWeights|flagRefit|flagVersionCompatible),
		fmt.Sprintf("workspace %d\n", int64(3<<30+5)),
		"profile images 4 min=1x3x8x8 opt=4x3x8x8 max=16x3x8x8\n",
		"profile scale 2 min=1x1 opt=1x1 max=1x1\n", // static inputs default to their dims
	)
	if strings.Contains(e, "timing_cache_in") {
		t.Error("a timing cache was passed although none existed")
	}
	if rep.TensorRTVersion != "10.16.0" || rep.SizeBytes != int64(len(e)) || rep.TimingCache != o.TimingCache ||
		strings.Join(rep.Flags, ",") != "fp16,sparse_weights,refit,version_compatible" {
		t.Errorf("report %+v", rep)
	}
	if len(rep.Inputs) != 2 || rep.Inputs[0].Name != "images" || formatDims(rep.Inputs[0].Opt) != "4x3x8x8" || rep.Inputs[1].DType != "float32" {
		t.Errorf("report inputs %+v", rep.Inputs)
	}

	// The timing cache goes round: saved after the first build, loaded by the second.
	tc, err := os.ReadFile(o.TimingCache)
	if err != nil || string(tc) != "fake-timing-cache 1\n" {
		t.Fatalf("timing cache %q, %v", tc, err)
	}
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	h := fnv.New64a()
	h.Write(tc)
	mustContain(t, "second engine echo", engineText(t, o.Output), fmt.Sprintf("timing_cache_in %d %016x\n", len(tc), h.Sum64()))
	if tc, _ = os.ReadFile(o.TimingCache); string(tc) != "fake-timing-cache 2\n" {
		t.Fatalf("timing cache after the second build %q", tc)
	}
}

// Several optimisation profiles: each arrives whole (static inputs at their dims), in
// order, numbered; calibration runs at profile 0's opt shapes; the report lists them all.
func TestPlumbingSeveralProfiles(t *testing.T) {
	model := fakeModel(t, "input images 1 -1x3x4x4", "input scale 1 1x1")
	o := Options{Model: model, Output: model + ".plan", INT8: true, Calib: "random:2",
		Shapes:   []ShapeSpec{spec("images:1x3x4x4/2x3x4x4/4x3x4x4")},
		Profiles: [][]ShapeSpec{{spec("images:8x3x4x4/16x3x4x4/32x3x4x4")}, {spec("images:64x3x4x4"), spec("scale:1x1")}}}
	rep, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	e := engineText(t, o.Output)
	mustContain(t, "engine echo", e,
		"profile images 4 min=1x3x4x4 opt=2x3x4x4 max=4x3x4x4\nprofile scale 2 min=1x1 opt=1x1 max=1x1\n"+
			"profile#1 images 4 min=8x3x4x4 opt=16x3x4x4 max=32x3x4x4\nprofile#1 scale 2 min=1x1 opt=1x1 max=1x1\n"+
			"profile#2 images 4 min=64x3x4x4 opt=64x3x4x4 max=64x3x4x4\nprofile#2 scale 2 min=1x1 opt=1x1 max=1x1\n")
	// The calibration batches have profile 0's opt shape: 2x3x4x4 float32 = 384 bytes.
	if m := batchLine.FindAllStringSubmatch(e, -1); len(m) == 0 || m[0][2] != "images" || m[0][3] != "384" {
		t.Fatalf("calibration batches %v", m)
	}
	want := [][]string{
		{"images:1x3x4x4/2x3x4x4/4x3x4x4", "scale:1x1/1x1/1x1"},
		{"images:8x3x4x4/16x3x4x4/32x3x4x4", "scale:1x1/1x1/1x1"},
		{"images:64x3x4x4/64x3x4x4/64x3x4x4", "scale:1x1/1x1/1x1"},
	}
	if fmt.Sprint(rep.Profiles) != fmt.Sprint(want) || formatDims(rep.Inputs[0].Max) != "4x3x4x4" {
		t.Fatalf("report profiles %v, inputs %+v", rep.Profiles, rep.Inputs)
	}

	// A dynamic input missing from a further profile is named with that profile.
	o.Profiles = [][]ShapeSpec{{spec("scale:1x1")}}
	if _, err := Build(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--profile 1: input \"images\" has dynamic dimensions") {
		t.Fatalf("incomplete profile: %v", err)
	}
	// A static network takes no profiles.
	static := fakeModel(t, "input x 1 1x4")
	if _, err := Build(context.Background(), Options{Model: static, Output: static + ".plan", Profiles: [][]ShapeSpec{{spec("x:1x4")}}}); err == nil ||
		!strings.Contains(err.Error(), "every input is static") {
		t.Fatalf("static network with --profile: %v", err)
	}
}

func TestPlumbingStronglyTypedAndStaticNetwork(t *testing.T) {
	model := fakeModel(t, "input x 10 1x16")
	o := Options{Model: model, Output: model + ".plan", StronglyTyped: true}
	if _, err := Build(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	e := engineText(t, o.Output)
	mustContain(t, "engine echo", e, "strongly_typed 1\n", fmt.Sprintf("flags 0x%08x\n", flagStronglyTyped), "workspace 0\n")
	if strings.Contains(e, "profile") {
		t.Error("a static network got an optimisation profile")
	}
}

// batchSums reads the fake's "batch I NAME SIZE FNV" lines in order.
var batchLine = regexp.MustCompile(`(?m)^batch (\d+) (\S+) (\d+) ([0-9a-f]{16})$`)

func TestPlumbingCalibrationBatchesInOrder(t *testing.T) {
	model := fakeModel(t, "input images 1 -1x3x4x4", "input mask 1 -1x1")
	dir := filepath.Dir(model)
	o := Options{
		Model: model, Output: filepath.Join(dir, "m.plan"), INT8: true, Calib: "random:7", CalibCache: filepath.Join(dir, "m.cache"),
		Shapes: []ShapeSpec{spec("images:1x3x4x4/2x3x4x4/8x3x4x4"), spec("mask:1x1/2x1/8x1")},
	}
	rep, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	// The expected batches: the same seeded data read directly at the opt shapes (random:7
	// is 7 runs of the opt shape, batch 2 included).
	src, err := calibration.Open("random:7", []tensor.Spec{
		{Name: "images", DType: tensor.Float32, Shape: []int64{2, 3, 4, 4}},
		{Name: "mask", DType: tensor.Float32, Shape: []int64{2, 1}},
	}, calibration.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var want []string
	for i := 0; ; i++ {
		s, err := src.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"images", "mask"} {
			h := fnv.New64a()
			h.Write(s[name].Data)
			want = append(want, fmt.Sprintf("batch %d %s %d %016x", i, name, len(s[name].Data), h.Sum64()))
		}
	}
	e := engineText(t, o.Output)
	got := batchLine.FindAllString(e, -1)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("batches the fake received:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(want) != 14 || rep.CalibrationBatches != 7 {
		t.Fatalf("%d batch lines, report says %d batches; want 14 lines, 7 batches", len(want), rep.CalibrationBatches)
	}
	mustContain(t, "engine echo", e, fmt.Sprintf("flags 0x%08x\n", flagINT8|flagCalibrate), "calib_batches 7\n")

	// The cache TensorRT (here the fake) wrote came back through Go and was written atomically.
	cache, err := os.ReadFile(o.CalibCache)
	if err != nil || string(cache) != "TRT-101600-EntropyCalibration2\nimages: 3c010204\nmask: 3c010204\n" {
		t.Fatalf("calibration cache %q, %v", cache, err)
	}
	if rep.CalibrationCache != o.CalibCache {
		t.Errorf("report cache %q", rep.CalibrationCache)
	}

	// Round trip: a build from the cache alone reads it through the callback and calibrates nothing.
	o.Calib = ""
	rep, err = Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	h := fnv.New64a()
	h.Write(cache)
	e = engineText(t, o.Output)
	mustContain(t, "engine echo from cache", e, fmt.Sprintf("calib_cache_in %d %016x TRT-101600-EntropyCalibration2\n", len(cache), h.Sum64()))
	if batchLine.MatchString(e) || rep.CalibrationBatches != 0 || rep.CalibrationCache != o.CalibCache {
		t.Fatalf("cache-only build calibrated: batches %d\n%s", rep.CalibrationBatches, e)
	}
}

func TestPlumbingCalibrationStopsWhenTensorRTStops(t *testing.T) {
	model := fakeModel(t, "input x 1 1x4", "calib_max 2")
	o := Options{Model: model, Output: model + ".plan", INT8: true, Calib: "random:10"}
	rep, err := Build(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if rep.CalibrationBatches != 2 || len(batchLine.FindAllString(engineText(t, o.Output), -1)) != 2 {
		t.Fatalf("batches %d", rep.CalibrationBatches)
	}
}

// failingSource yields good batches, then an error, as a data folder with a corrupt file does.
type failingSource struct {
	specs []tensor.Spec
	good  int
	n     int
}

func (f *failingSource) Next() (calibration.Sample, error) {
	if f.n == f.good {
		return nil, errors.New("part-0002.npz: zip: not a valid zip file")
	}
	f.n++
	s := calibration.Sample{}
	for _, sp := range f.specs {
		s[sp.Name] = tensor.New(sp.DType, sp.Shape)
	}
	return s, nil
}
func (f *failingSource) Len() int     { return -1 }
func (f *failingSource) Reset() error { f.n = 0; return nil }
func (f *failingSource) Close() error { return nil }

func TestPlumbingCalibrationDataErrorFailsTheBuild(t *testing.T) {
	model := fakeModel(t, "input x 1 1x4")
	out := model + ".plan"
	if err := os.WriteFile(out, []byte("previous engine"), 0o644); err != nil {
		t.Fatal(err)
	}
	saved := openCalibration
	t.Cleanup(func() { openCalibration = saved })
	openCalibration = func(spec string, ins []tensor.Spec, _ calibration.Options) (calibration.Source, error) {
		return &failingSource{specs: ins, good: 2}, nil
	}
	_, err := Build(context.Background(), Options{Model: model, Output: out, INT8: true, Calib: "data/"})
	if err == nil {
		t.Fatal("a calibration data error did not fail the build")
	}
	mustContain(t, "error", err.Error(), model, "calibration data data/", "part-0002.npz: zip: not a valid zip file")
	// The failed build leaves the previous engine and no temp files.
	if b, _ := os.ReadFile(out); string(b) != "previous engine" {
		t.Fatalf("output replaced by a failed build: %q", b)
	}
	entries, _ := os.ReadDir(filepath.Dir(out))
	if len(entries) != 2 {
		t.Fatalf("files left: %v", entries)
	}

	// A shape mismatch between data and the calibration shape is reported by input name.
	openCalibration = func(spec string, ins []tensor.Spec, _ calibration.Options) (calibration.Source, error) {
		wrong := []tensor.Spec{{Name: "x", DType: tensor.Float32, Shape: []int64{1, 5}}}
		return &failingSource{specs: wrong, good: 1}, nil
	}
	_, err = Build(context.Background(), Options{Model: model, Output: out, INT8: true, Calib: "data/"})
	if err == nil || !strings.Contains(err.Error(), `calibration input "x" has shape 1x5, TensorRT calibrates at 1x4`) {
		t.Fatalf("shape mismatch: %v", err)
	}
}

func TestPlumbingCalibrationCacheChecks(t *testing.T) {
	model := fakeModel(t, "input x 1 1x4")
	cache := filepath.Join(filepath.Dir(model), "old.cache")
	os.WriteFile(cache, []byte("TRT-100900-EntropyCalibration2\nx: 3c010204\n"), 0o644)
	_, err := Build(context.Background(), Options{Model: model, Output: model + ".plan", INT8: true, CalibCache: cache})
	if err == nil || !strings.Contains(err.Error(), "written for TensorRT 10.9.0") {
		t.Fatalf("stale cache: %v", err)
	}
	_, err = Build(context.Background(), Options{Model: model, Output: model + ".plan", INT8: true, CalibCache: cache + ".missing"})
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing cache: %v", err)
	}
}

func TestPlumbingParserErrorsNameTheNodes(t *testing.T) {
	model := fakeModel(t,
		"input x 1 1x3x8x8",
		"error 8 3 conv1 Conv No importer registered for op: FancyConv",
		"error 9 7 resize_2 Resize Unsupported attribute coordinate_transformation_mode=tf_crop_and_resize",
		"error 5 -1 - - Graph contains a cycle",
	)
	_, err := Build(context.Background(), Options{Model: model, Output: model + ".plan"})
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T), want *ParseError", err, err)
	}
	if len(pe.Errors) != 3 || pe.Errors[1] != (NodeError{Code: 9, Node: 7, Name: "resize_2", Op: "Resize", Desc: "Unsupported attribute coordinate_transformation_mode=tf_crop_and_resize"}) {
		t.Fatalf("parser errors %+v", pe.Errors)
	}
	mustContain(t, "error", err.Error(), model, "3 error(s)",
		`node 3 "conv1" (Conv): UNSUPPORTED_NODE: No importer registered for op: FancyConv`,
		`node 7 "resize_2" (Resize): UNSUPPORTED_NODE_ATTR`,
		"INVALID_GRAPH: Graph contains a cycle")
	if _, err := os.Stat(model + ".plan"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a failed parse wrote an engine")
	}
}

func TestPlumbingShimMessages(t *testing.T) {
	model := fakeModel(t, "input x 1 -1x4", "build_error Internal Error (could not find any implementation for node conv1)")
	var logs logSink
	o := Options{Model: model, Output: model + ".plan", Shapes: []ShapeSpec{spec("x:1x4/2x4/4x4")}, Log: logs.log, LogSeverity: SeverityWarning}
	_, err := Build(context.Background(), o)
	if err == nil {
		t.Fatal("build error not reported")
	}
	mustContain(t, "error", err.Error(), model, "building the engine with TensorRT 10.16.0", "could not build the engine")
	mustContain(t, "log", logs.text(), "error: Internal Error (could not find any implementation for node conv1)")

	// A dynamic input without --shapes is caught on the Go side, with a suggestion.
	o.Shapes = nil
	_, err = Build(context.Background(), o)
	mustContain(t, "error", fmt.Sprint(err), `input "x" has dynamic dimensions (-1x4)`, "--shapes x:MIN/OPT/MAX")

	// A missing model never reaches the shim; an unreadable one is the shim's IO error.
	_, err = Build(context.Background(), Options{Model: model + ".missing", Output: model + ".plan"})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing model: %v", err)
	}
}

func TestPlumbingLogForwarding(t *testing.T) {
	model := fakeModel(t, "input x 1 1x4", "log 2 parser warning: INT64 weights cast down to INT32", "log 3 parser info line", "log 4 parser verbose line")
	for _, c := range []struct {
		sev      Severity
		want, no []string
	}{
		{SeverityWarning, []string{"warning: parser warning: INT64 weights cast down to INT32"}, []string{"info:", "verbose:"}},
		{SeverityInfo, []string{"warning: parser warning", "info: parser info line", "info: fake build: 1 input(s)"}, []string{"verbose:"}},
		{SeverityVerbose, []string{"verbose: parser verbose line", "verbose: fake build: verbose detail"}, nil},
	} {
		var logs logSink
		var phases []string
		o := Options{Model: model, Output: model + ".plan", Log: logs.log, LogSeverity: c.sev,
			Progress: func(phase, parent string, steps int) { phases = append(phases, fmt.Sprintf("%s/%d", phase, steps)) }}
		if _, err := Build(context.Background(), o); err != nil {
			t.Fatal(err)
		}
		mustContain(t, "log at "+c.sev.String(), logs.text(), c.want...)
		for _, n := range c.no {
			if strings.Contains(logs.text(), n) {
				t.Errorf("log at %s has %q lines:\n%s", c.sev, n, logs.text())
			}
		}
		if strings.Join(phases, ",") != "Building engine/3" {
			t.Errorf("progress phases %v", phases)
		}
	}
}

func TestPlumbingCancel(t *testing.T) {
	model := fakeModel(t, "input x 1 1x4")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Build(ctx, Options{Model: model, Output: model + ".plan"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled build: %v", err)
	}
	if _, err := os.Stat(model + ".plan"); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("a canceled build wrote an engine")
	}
}

func TestPlumbingTensorRT11(t *testing.T) {
	t.Setenv("OTRT_FAKE_VERSION", "110100")
	model := fakeModel(t, "input x 1 1x4")
	_, err := Build(context.Background(), Options{Model: model, Output: model + ".plan", INT8: true, Calib: "random:2"})
	if err == nil || !strings.Contains(err.Error(), "optimctl quantize") {
		t.Fatalf("11.x --int8: %v", err)
	}
	rep, err := Build(context.Background(), Options{Model: model, Output: model + ".plan", SparseWeights: true})
	if err != nil || rep.TensorRTVersion != "11.1.0" {
		t.Fatalf("11.x build: %+v, %v", rep, err)
	}
	if v, err := LibraryVersion(); v != 110100 || err != nil {
		t.Fatalf("LibraryVersion = %d, %v", v, err)
	}
}

func TestPlumbingConcurrentBuilds(t *testing.T) {
	model := fakeModel(t, "input x 1 -1x4", "log 2 a warning from every build")
	var wg sync.WaitGroup
	errs := make([]error, 6)
	logs := make([]logSink, 6)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := Options{Model: model, Output: fmt.Sprintf("%s.%d.plan", model, i), INT8: true, Calib: "random:3",
				Shapes: []ShapeSpec{spec("x:1x4/1x4/2x4")}, Log: logs[i].log, LogSeverity: SeverityWarning}
			_, errs[i] = Build(context.Background(), o)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("build %d: %v", i, err)
		}
		// Each build's log reaches its own Options.Log, not another build's.
		if got := strings.Count(logs[i].text(), "a warning from every build"); got != 1 {
			t.Errorf("build %d got %d copies of its warning", i, got)
		}
	}
}
