package runtime

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/x448/float16"
	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// initForTest loads the library `make setup` caches, skipping when it is absent.
func initForTest(t testing.TB) {
	t.Helper()
	if err := Init(testassets.Path(t, testassets.ORTLibrary)); err != nil {
		t.Fatal(err)
	}
}

// ---- library loading ----

func TestInitIdempotent(t *testing.T) {
	initForTest(t)
	lib := testassets.Path(t, testassets.ORTLibrary)
	for _, p := range []string{lib, "", lib} {
		if err := Init(p); err != nil {
			t.Fatalf("Init(%q) after Init: %v", p, err)
		}
	}
	if v := Version(); !strings.HasPrefix(v, "1.") || !versionSupported(v) {
		t.Errorf("Version() = %q", v)
	}
	if LibraryPath() != lib {
		t.Errorf("LibraryPath() = %q, want %q", LibraryPath(), lib)
	}
	other := filepath.Join(t.TempDir(), LibraryName)
	if err := os.WriteFile(other, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Init(other); err == nil || !strings.Contains(err.Error(), "already loaded") {
		t.Errorf("Init(other library) = %v, want an 'already loaded' error", err)
	}
}

func TestLibraryCandidates(t *testing.T) {
	root := t.TempDir()
	mod := filepath.Join(root, "repo")
	cwd := filepath.Join(mod, "pkg", "runtime")
	if err := os.MkdirAll(cwd, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(root, "bin", "optimctl")
	got := libraryCandidates(exe, cwd, "/home/u")
	want := []string{
		filepath.Join(root, "bin", LibraryName),
		filepath.Join(root, ".cache", "ort", LibraryName),
		filepath.Join(root, "lib", LibraryName),
		filepath.Join(cwd, ".cache", "ort", LibraryName),
		filepath.Join(mod, "pkg", ".cache", "ort", LibraryName),
		filepath.Join(mod, ".cache", "ort", LibraryName), // stops at the go.mod folder
		filepath.Join("/home/u", ".cache", "optimctl", "ort", LibraryName),
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("candidates:\n got %q\nwant %q", got, want)
	}
}

func TestResolveLibraryErrors(t *testing.T) {
	tmp := t.TempDir()
	missing := filepath.Join(tmp, "nope", LibraryName)
	tests := []struct {
		name, explicit, env string
		want                []string
	}{
		{"explicit path", missing, "", []string{missing, "--ort-lib", "make setup"}},
		{"env var", "", missing, []string{missing, "$" + EnvLibrary, "make setup"}},
		{"directory", tmp, "", []string{"is a directory"}},
		{"search", "", "", []string{"looked in", filepath.Join(tmp, ".cache", "ort", LibraryName), "run `make setup` or pass --ort-lib"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(EnvLibrary, tc.env)
			t.Setenv("HOME", tmp)
			t.Chdir(tmp)
			p, err := resolveLibrary(tc.explicit)
			if !errors.Is(err, ErrLibraryNotFound) {
				t.Fatalf("resolveLibrary = %q, %v; want ErrLibraryNotFound", p, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLibraryVersionCheck(t *testing.T) {
	for v, ok := range map[string]bool{"1.30.0": true, "1.29.0": true, "1.28.1": false, "1.9.0": false, "2.0.0": true, "dev": true} {
		if got := versionSupported(v); got != ok {
			t.Errorf("versionSupported(%q) = %v, want %v", v, got, ok)
		}
	}
	err := tooOld("/x/libonnxruntime.so.1", "1.20.1")
	if !errors.Is(err, ErrLibraryTooOld) || !strings.Contains(err.Error(), "1.20.1") || !strings.Contains(err.Error(), "1.29") {
		t.Errorf("tooOld: %v", err)
	}
	if _, err := libraryVersion(filepath.Join(t.TempDir(), "absent.so")); err == nil {
		t.Error("libraryVersion of a missing file succeeded")
	}
	lib := testassets.Path(t, testassets.ORTLibrary)
	if v, err := libraryVersion(lib); err != nil || !versionSupported(v) {
		t.Errorf("libraryVersion(%s) = %q, %v", lib, v, err)
	}
}

// ---- options ----

func TestOptLevel(t *testing.T) {
	for in, want := range map[string]OptLevel{"": OptBasic, "basic": OptBasic, "ALL": OptAll, "extended": OptExtended, "disabled": OptDisabled} {
		got, err := ParseOptLevel(in)
		if err != nil || got != want {
			t.Errorf("ParseOptLevel(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseOptLevel("max"); err == nil {
		t.Error("ParseOptLevel(max) succeeded")
	}
	initForTest(t)
	model := addModel(t)
	for _, tc := range []struct {
		opts Options
		want OptLevel
	}{{Options{}, OptBasic}, {Options{GraphOptLevel: OptAll}, OptAll}, {Options{GraphOptLevel: OptDisabled, DeterministicCompute: true, IntraOpThreads: 1, InterOpThreads: 1}, OptDisabled}} {
		s, err := NewSession(model, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		if s.OptLevel() != tc.want || s.ExecutionProvider() != ProviderCPU {
			t.Errorf("OptLevel() = %q, ExecutionProvider() = %q; want %q, cpu", s.OptLevel(), s.ExecutionProvider(), tc.want)
		}
		s.Close()
	}
	for _, bad := range []Options{{GraphOptLevel: "max"}, {ExecutionProvider: "tpu"}, {IntraOpThreads: -1}} {
		if s, err := NewSession(model, bad); err == nil {
			s.Close()
			t.Errorf("NewSession(%+v) succeeded", bad)
		}
	}
}

func TestGPUProviderOnCPULibrary(t *testing.T) {
	initForTest(t)
	for _, ep := range []string{ProviderCUDA, ProviderTensorRT} {
		s, err := NewSession(addModel(t), Options{ExecutionProvider: ep})
		if err == nil {
			// A GPU build of ONNX Runtime: nothing to check here.
			s.Close()
			t.Skipf("%s loaded: this ONNX Runtime library has GPU providers", ep)
		}
		if !errors.Is(err, ErrCPUOnly) {
			t.Fatalf("%s: %v; want ErrCPUOnly", ep, err)
		}
		for _, w := range []string{ep, "CPU-only", "GPU build", "--ort-lib", EnvLibrary, "libonnxruntime_providers_cuda.so"} {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%s error does not mention %q: %v", ep, w, err)
			}
		}
	}
}

// ---- the real OCR direction classifier ----

// ocrInput is a deterministic synthetic batch: image k is a sine pattern with phase k.
func ocrInput(batch int) *tensor.Tensor {
	const per = 3 * 48 * 192
	v := make([]float32, batch*per)
	for k := 0; k < batch; k++ {
		for i := 0; i < per; i++ {
			v[k*per+i] = float32(0.5 * math.Sin(0.37*float64(i)+float64(k)))
		}
	}
	return tensor.FromFloat32([]int64{int64(batch), 3, 48, 192}, v)
}

func ocrSession(t *testing.T, opts Options) *Session {
	t.Helper()
	initForTest(t)
	s, err := NewSessionFromFile(testassets.Path(t, testassets.OCRClassifier), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOCRClassifier(t *testing.T) {
	s := ocrSession(t, Options{IntraOpThreads: 1})
	in, out := s.Inputs(), s.Outputs()
	wantIn := tensor.Spec{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 3, -1, -1},
		DimNames: []string{"p2o.DynamicDimension.0", "", "p2o.DynamicDimension.1", "p2o.DynamicDimension.2"}}
	if len(in) != 1 || !reflect.DeepEqual(in[0], wantIn) {
		t.Errorf("Inputs() = %+v, want [%+v]", in, wantIn)
	}
	if len(out) != 1 || out[0].Name != "softmax_0.tmp_0" || out[0].DType != tensor.Float32 || !reflect.DeepEqual(out[0].Shape, []int64{-1, 2}) {
		t.Errorf("Outputs() = %+v", out)
	}

	// Pinned from this model and ONNX Runtime 1.30 at OptBasic; image 0 of every batch is
	// the same picture, so every batch must reproduce it.
	want0 := []float32{0.40823, 0.59177}
	var first []float32
	for _, batch := range []int{1, 4} {
		res, err := s.Run(map[string]*tensor.Tensor{"x": ocrInput(batch)})
		if err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		y := res["softmax_0.tmp_0"]
		if y == nil || !reflect.DeepEqual(y.Shape, []int64{int64(batch), 2}) {
			t.Fatalf("batch %d: output %+v", batch, y)
		}
		p := y.Float32s()
		for r := 0; r < batch; r++ {
			if sum := p[2*r] + p[2*r+1]; math.Abs(float64(sum)-1) > 1e-5 {
				t.Errorf("batch %d row %d: probabilities sum to %.7f", batch, r, sum)
			}
		}
		if math.Abs(float64(p[0]-want0[0])) > 1e-4 || math.Abs(float64(p[1]-want0[1])) > 1e-4 {
			t.Errorf("batch %d: image 0 = %v, want %v ±1e-4", batch, p[:2], want0)
		}
		if first == nil {
			first = append(first, p[:2]...)
		} else if math.Abs(float64(p[0]-first[0])) > 1e-5 || math.Abs(float64(p[1]-first[1])) > 1e-5 {
			t.Errorf("batch %d: image 0 = %v, alone it gave %v", batch, p[:2], first)
		}
		if batch == 4 && math.Abs(float64(p[0]-p[2])) < 1e-6 && math.Abs(float64(p[0]-p[4])) < 1e-6 {
			t.Errorf("batch 4: rows for different images are identical: %v", p)
		}
	}
}

// TestConcurrentRun: one session, several goroutines; every run gives the same bits.
func TestConcurrentRun(t *testing.T) {
	s := ocrSession(t, Options{IntraOpThreads: 1})
	in := map[string]*tensor.Tensor{"x": ocrInput(2)}
	ref, err := s.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func() {
			for i := 0; i < 3; i++ {
				res, err := s.Run(in)
				if err == nil && !bytes.Equal(res["softmax_0.tmp_0"].Data, ref["softmax_0.tmp_0"].Data) {
					err = errors.New("concurrent run gave different bits")
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for g := 0; g < 4; g++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestRunInputErrors(t *testing.T) {
	s := ocrSession(t, Options{IntraOpThreads: 1})
	good := ocrInput(1)
	tests := []struct {
		name   string
		inputs map[string]*tensor.Tensor
		outs   []string
		want   []string
	}{
		{"missing input", map[string]*tensor.Tensor{}, nil, []string{`input "x"`, "missing"}},
		{"unknown input", map[string]*tensor.Tensor{"x": good, "y": good}, nil, []string{`input "y"`, "no such input"}},
		{"wrong dtype", map[string]*tensor.Tensor{"x": tensor.New(tensor.Float64, []int64{1, 3, 48, 192})}, nil, []string{`input "x"`, "float64", "float32"}},
		{"wrong rank", map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, []int64{3, 48, 192})}, nil, []string{`input "x"`, "rank 3", "rank 4"}},
		{"wrong dim", map[string]*tensor.Tensor{"x": tensor.New(tensor.Float32, []int64{1, 4, 48, 192})}, nil, []string{`input "x"`, "dimension 1 is 4", "wants 3"}},
		{"short data", map[string]*tensor.Tensor{"x": {DType: tensor.Float32, Shape: []int64{1, 3, 48, 192}, Data: make([]byte, 8)}}, nil, []string{`input "x"`, "bytes"}},
		{"nil tensor", map[string]*tensor.Tensor{"x": nil}, nil, []string{`input "x"`, "nil"}},
		{"unknown output", map[string]*tensor.Tensor{"x": good}, []string{"logits"}, []string{`output "logits"`, "ExtraOutputs"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s.Run(tc.inputs, tc.outs...)
			if err == nil {
				t.Fatal("Run succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestExtraOutputs(t *testing.T) {
	// p2o.Add.87 is the classifier's logits (MatMul + bias), the Softmax input. The graph
	// has no value_info: ONNX Runtime types the untyped extra output itself.
	const logits = "p2o.Add.87"
	s := ocrSession(t, Options{IntraOpThreads: 1, ExtraOutputs: []string{logits, "softmax_0.tmp_0"}})
	outs := s.Outputs()
	if len(outs) != 2 || outs[1].Name != logits || outs[1].DType != tensor.Float32 || !reflect.DeepEqual(outs[1].Shape, []int64{-1, 2}) {
		t.Fatalf("Outputs() = %+v, want the softmax output and %s float32 [-1 2]", outs, logits)
	}
	res, err := s.Run(map[string]*tensor.Tensor{"x": ocrInput(4)})
	if err != nil {
		t.Fatal(err)
	}
	z, y := res[logits], res["softmax_0.tmp_0"]
	if z == nil || y == nil || !reflect.DeepEqual(z.Shape, []int64{4, 2}) {
		t.Fatalf("results %v", res)
	}
	zs, ys := z.Float32s(), y.Float32s()
	for r := 0; r < 4; r++ {
		e := math.Exp(float64(zs[2*r] - zs[2*r+1]))
		if p := e / (1 + e); math.Abs(p-float64(ys[2*r])) > 1e-6 {
			t.Errorf("row %d: softmax(logits %v) = %.7f, output %.7f", r, zs[2*r:2*r+2], p, ys[2*r])
		}
	}
	only, err := s.Run(map[string]*tensor.Tensor{"x": ocrInput(1)}, logits)
	if err != nil || len(only) != 1 || only[logits] == nil {
		t.Errorf("Run(%s only) = %v, %v", logits, only, err)
	}

	initForTest(t)
	if _, err := NewSessionFromFile(testassets.Path(t, testassets.OCRClassifier), Options{ExtraOutputs: []string{"no.such.tensor"}}); err == nil || !strings.Contains(err.Error(), `"no.such.tensor"`) {
		t.Errorf("unknown extra output: %v", err)
	}
}

// ---- tiny models built here ----

func vinfo(name string, dt tensor.DType, dims ...any) *onnxpb.ValueInfoProto {
	tt := &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt))}
	if dims != nil {
		tt.Shape = &onnxpb.TensorShapeProto{}
	}
	for _, d := range dims {
		dim := &onnxpb.TensorShapeProto_Dimension{}
		switch x := d.(type) {
		case int:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(x)}
		case string:
			dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: x}
		}
		tt.Shape.Dim = append(tt.Shape.Dim, dim)
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}}}
}

// scalarInfo declares a rank-0 tensor (a shape with no dimensions, unlike vinfo with
// no dims, which leaves the rank unknown).
func scalarInfo(name string, dt tensor.DType) *onnxpb.ValueInfoProto {
	v := vinfo(name, dt)
	v.Type.GetTensorType().Shape = &onnxpb.TensorShapeProto{}
	return v
}

func node(op string, in []string, out []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return &onnxpb.NodeProto{OpType: proto.String(op), Input: in, Output: out, Attribute: attrs}
}

func intAttr(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func buildModel(t testing.TB, g *onnxpb.GraphProto) []byte {
	t.Helper()
	g.Name = proto.String("test")
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(10), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(21)}}}
	b, err := m.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// addModel: c = a + b over float32 [2 3].
func addModel(t testing.TB) []byte {
	return buildModel(t, &onnxpb.GraphProto{
		Node:   []*onnxpb.NodeProto{node("Add", []string{"a", "b"}, []string{"c"})},
		Input:  []*onnxpb.ValueInfoProto{vinfo("a", tensor.Float32, 2, 3), vinfo("b", tensor.Float32, 2, 3)},
		Output: []*onnxpb.ValueInfoProto{vinfo("c", tensor.Float32, 2, 3)},
	})
}

func TestAddModel(t *testing.T) {
	initForTest(t)
	s, err := NewSession(addModel(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	a := tensor.FromFloat32([]int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	b := tensor.FromFloat32([]int64{2, 3}, []float32{0.5, -2, 1e30, float32(math.Inf(1)), -5, 0})
	res, err := s.Run(map[string]*tensor.Tensor{"a": a, "b": b})
	if err != nil {
		t.Fatal(err)
	}
	want := []float32{1.5, 0, 1e30, float32(math.Inf(1)), 0, 6}
	if got := res["c"]; !reflect.DeepEqual(got.Shape, []int64{2, 3}) || !reflect.DeepEqual(got.Float32s(), want) {
		t.Errorf("c = %v %v, want [2 3] %v", got.Shape, got.Float32s(), want)
	}
	if err := s.Close(); err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.Run(map[string]*tensor.Tensor{"a": a, "b": b}); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Run after Close: %v", err)
	}
}

func f16s(v ...float32) *tensor.Tensor {
	t := tensor.New(tensor.Float16, []int64{int64(len(v))})
	for i, f := range v {
		binary.LittleEndian.PutUint16(t.Data[2*i:], float16.Fromfloat32(f).Bits())
	}
	return t
}

func bf16s(v ...float32) *tensor.Tensor {
	t := tensor.New(tensor.BFloat16, []int64{int64(len(v))})
	for i, f := range v {
		binary.LittleEndian.PutUint16(t.Data[2*i:], tensor.Float32ToBF16(f))
	}
	return t
}

func bools(v ...bool) *tensor.Tensor {
	t := tensor.New(tensor.Bool, []int64{int64(len(v))})
	for i, b := range v {
		if b {
			t.Data[i] = 1
		}
	}
	return t
}

func scalarF32(v float32) *tensor.Tensor {
	t := tensor.New(tensor.Float32, []int64{})
	binary.LittleEndian.PutUint32(t.Data, math.Float32bits(v))
	return t
}

// TestMixedTypes runs every fetch path: static shapes (a Go buffer handed to ONNX
// Runtime), dynamic float16/bfloat16 (fetched through an added Cast to float32),
// scalars, an output of unknown rank that is a scalar (learned on the first run), and
// a declared static shape that is wrong (learned too).
func TestMixedTypes(t *testing.T) {
	initForTest(t)
	model := buildModel(t, &onnxpb.GraphProto{
		Node: []*onnxpb.NodeProto{
			node("Add", []string{"i", "i"}, []string{"i2"}),
			node("Not", []string{"b"}, []string{"nb"}),
			node("Add", []string{"h", "h"}, []string{"h2"}),
			node("Identity", []string{"g"}, []string{"g2"}),
			node("Neg", []string{"s"}, []string{"ns"}),
			node("ReduceSum", []string{"h"}, []string{"hsum"}, intAttr("keepdims", 0)),
			node("ReduceMax", []string{"i"}, []string{"imax"}, intAttr("keepdims", 0)),
			node("Identity", []string{"b"}, []string{"bwrong"}),
			node("Identity", []string{"u"}, []string{"u2"}),
		},
		Input: []*onnxpb.ValueInfoProto{
			vinfo("i", tensor.Int64, "n"), vinfo("b", tensor.Bool, 3), vinfo("h", tensor.Float16, "m"),
			vinfo("g", tensor.BFloat16, 2), scalarInfo("s", tensor.Float32), vinfo("u", tensor.Uint8, "k", 2),
		},
		Output: []*onnxpb.ValueInfoProto{
			vinfo("i2", tensor.Int64, "n"), vinfo("nb", tensor.Bool, 3), vinfo("h2", tensor.Float16, "m"),
			vinfo("g2", tensor.BFloat16, 2), scalarInfo("ns", tensor.Float32), scalarInfo("hsum", tensor.Float16),
			vinfo("imax", tensor.Int64),     // type only: rank unknown, a scalar at run time
			vinfo("bwrong", tensor.Bool, 4), // declared [4], computed [3]
			vinfo("u2", tensor.Uint8, "k", 2),
		},
	})
	s, err := NewSession(model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u := &tensor.Tensor{DType: tensor.Uint8, Shape: []int64{2, 2}, Data: []byte{1, 2, 250, 255}}
	inputs := map[string]*tensor.Tensor{
		"i": tensor.FromInt64([]int64{3}, []int64{-4, 1 << 40, 7}),
		"b": bools(true, false, true),
		"h": f16s(1.5, -0.25, 65504, 0.0001),
		"g": bf16s(3.140625, -2),
		"s": scalarF32(2.5),
		"u": u,
	}
	want := map[string]*tensor.Tensor{
		"i2":     tensor.FromInt64([]int64{3}, []int64{-8, 1 << 41, 14}),
		"nb":     bools(false, true, false),
		"h2":     f16s(3, -0.5, float32(math.Inf(1)), 0.0002), // 2*65504 overflows float16
		"g2":     bf16s(3.140625, -2),
		"ns":     scalarF32(-2.5),
		"hsum":   {DType: tensor.Float16, Shape: []int64{}, Data: f16s(float16.Fromfloat32(1.5-0.25+65504).Float32() + 0.0001).Data},
		"imax":   {DType: tensor.Int64, Shape: []int64{}, Data: tensor.FromInt64([]int64{1}, []int64{1 << 40}).Data},
		"bwrong": bools(true, false, true),
		"u2":     u,
	}
	for run := 0; run < 2; run++ { // the second run uses what the first one learned
		res, err := s.Run(inputs)
		if err != nil {
			t.Fatalf("run %d: %v", run, err)
		}
		for name, w := range want {
			g := res[name]
			if g == nil || g.DType != w.DType || !slices.Equal(g.Shape, w.Shape) || !bytes.Equal(g.Data, w.Data) {
				t.Errorf("run %d: %s = %+v, want %+v", run, name, g, w)
			}
		}
	}
	learned := map[string]string{}
	for _, p := range s.outputs {
		switch {
		case p.scalarSeen.Load():
			learned[p.spec.Name] = "scalar"
		case p.declaredWrong.Load():
			learned[p.spec.Name] = "declared shape wrong"
		case p.ortName != p.spec.Name:
			learned[p.spec.Name] = "widened to " + p.fetchType.String()
		}
	}
	wantLearned := map[string]string{"imax": "scalar", "bwrong": "declared shape wrong", "h2": "widened to float32", "hsum": "widened to float32"}
	if !reflect.DeepEqual(learned, wantLearned) {
		t.Errorf("fetch paths: %v, want %v", learned, wantLearned)
	}
	specs := map[string]tensor.Spec{}
	for _, o := range s.Outputs() {
		specs[o.Name] = o
	}
	if sp := specs["h2"]; sp.DType != tensor.Float16 || !reflect.DeepEqual(sp.Shape, []int64{-1}) || !reflect.DeepEqual(sp.DimNames, []string{"m"}) {
		t.Errorf("spec of h2 = %+v", sp)
	}
	if sp := specs["imax"]; sp.Shape != nil {
		t.Errorf("spec of imax = %+v, want an unknown rank (nil Shape)", sp)
	}
	if sp := specs["ns"]; sp.Shape == nil || len(sp.Shape) != 0 {
		t.Errorf("spec of ns = %+v, want a scalar (empty Shape)", sp)
	}
}

// TestInt4Output: a dynamically shaped int4 output comes back through an int8 Cast and
// is packed again, low nibble first.
func TestInt4Output(t *testing.T) {
	initForTest(t)
	model := buildModel(t, &onnxpb.GraphProto{
		Node:   []*onnxpb.NodeProto{node("Cast", []string{"x"}, []string{"q"}, intAttr("to", int64(tensor.Int4)))},
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", tensor.Int8, "n")},
		Output: []*onnxpb.ValueInfoProto{vinfo("q", tensor.Int4, "n")},
	})
	s, err := NewSession(model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	x := &tensor.Tensor{DType: tensor.Int8, Shape: []int64{3}, Data: []byte{1, 0xf9, 7}} // 1, -7, 7
	res, err := s.Run(map[string]*tensor.Tensor{"x": x})
	if err != nil {
		t.Fatal(err)
	}
	if q := res["q"]; q.DType != tensor.Int4 || !reflect.DeepEqual(q.Data, []byte{0x91, 0x07}) {
		t.Errorf("q = %+v, want int4 [1 -7 7] packed as 91 07", q)
	}
}

func TestStringModel(t *testing.T) {
	initForTest(t)
	model := buildModel(t, &onnxpb.GraphProto{
		Node:   []*onnxpb.NodeProto{node("Identity", []string{"s"}, []string{"t"})},
		Input:  []*onnxpb.ValueInfoProto{vinfo("s", tensor.String, "n")},
		Output: []*onnxpb.ValueInfoProto{vinfo("t", tensor.String, "n")},
	})
	s, err := NewSession(model, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := &tensor.Tensor{DType: tensor.String, Shape: []int64{3}, Strings: []string{"ä", "", "onnx"}}
	res, err := s.Run(map[string]*tensor.Tensor{"s": in})
	if err != nil {
		t.Fatal(err)
	}
	if got := res["t"]; !reflect.DeepEqual(got.Strings, in.Strings) || !reflect.DeepEqual(got.Shape, in.Shape) {
		t.Errorf("t = %+v", got)
	}
}

// TestExternalData: an initializer stored in weights.bin beside the model, loaded from
// bytes (ExternalDataDir) and from the file. The extra output "yh" is an untyped,
// dynamically shaped float16 intermediate: typing it needs ONNX Runtime (a probe session
// that must find weights.bin too), fetching it needs the float32 Cast.
func TestExternalData(t *testing.T) {
	initForTest(t)
	dir := t.TempDir()
	w := []float32{10, 20, 30, 40}
	raw := make([]byte, 4*len(w)+8)
	for i, f := range w { // 8 bytes of padding first, to exercise offset
		binary.LittleEndian.PutUint32(raw[8+4*i:], math.Float32bits(f))
	}
	if err := os.WriteFile(filepath.Join(dir, "weights.bin"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	kv := func(k, v string) *onnxpb.StringStringEntryProto {
		return &onnxpb.StringStringEntryProto{Key: proto.String(k), Value: proto.String(v)}
	}
	model := buildModel(t, &onnxpb.GraphProto{
		Node: []*onnxpb.NodeProto{
			node("Add", []string{"x", "w"}, []string{"y"}),
			node("Cast", []string{"y"}, []string{"yh"}, intAttr("to", int64(tensor.Float16))),
			node("Cast", []string{"yh"}, []string{"z"}, intAttr("to", int64(tensor.Float32))),
		},
		Initializer: []*onnxpb.TensorProto{{
			Name: proto.String("w"), DataType: proto.Int32(int32(tensor.Float32)), Dims: []int64{4},
			DataLocation: onnxpb.TensorProto_EXTERNAL.Enum(),
			ExternalData: []*onnxpb.StringStringEntryProto{kv("location", "weights.bin"), kv("offset", "8"), kv("length", "16")},
		}},
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, "n", 4)},
		Output: []*onnxpb.ValueInfoProto{vinfo("z", tensor.Float32, "n", 4)},
	})
	path := filepath.Join(dir, "model.onnx")
	if err := os.WriteFile(path, model, 0o644); err != nil {
		t.Fatal(err)
	}
	x := tensor.FromFloat32([]int64{1, 4}, []float32{1, 2, 3, 4})
	want := []float32{11, 22, 33, 44}
	extra := Options{ExternalDataDir: dir, ExtraOutputs: []string{"yh"}}
	tests := []struct {
		name string
		open func() (*Session, error)
	}{
		{"bytes", func() (*Session, error) { return NewSession(model, Options{ExternalDataDir: dir}) }},
		{"file", func() (*Session, error) { return NewSessionFromFile(path, Options{}) }},
		{"bytes, extra output", func() (*Session, error) { return NewSession(model, extra) }},
		{"file, extra output", func() (*Session, error) { return NewSessionFromFile(path, Options{ExtraOutputs: extra.ExtraOutputs}) }},
	}
	for _, tc := range tests {
		s, err := tc.open()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		res, err := s.Run(map[string]*tensor.Tensor{"x": x})
		outs := s.Outputs()
		s.Close()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := res["z"].Float32s(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: z = %v, want %v", tc.name, got, want)
		}
		if yh, ok := res["yh"]; ok {
			if !bytes.Equal(yh.Data, f16s(want...).Data) || !reflect.DeepEqual(yh.Shape, []int64{1, 4}) {
				t.Errorf("%s: yh = %+v, want float16 %v", tc.name, yh, want)
			}
			if o := outs[1]; o.DType != tensor.Float16 || !reflect.DeepEqual(o.Shape, []int64{-1, 4}) {
				t.Errorf("%s: spec of yh = %+v, want float16 [-1 4] (inferred by ONNX Runtime)", tc.name, o)
			}
		} else if len(outs) > 1 {
			t.Errorf("%s: yh not returned", tc.name)
		}
	}
	t.Chdir(t.TempDir()) // without ExternalDataDir, nothing says where weights.bin is
	if s, err := NewSession(model, Options{}); err == nil {
		s.Close()
		t.Error("bytes without ExternalDataDir: session created")
	}
}

func BenchmarkOCRClassifier(b *testing.B) {
	initForTest(b)
	for _, batch := range []int{1, 8} {
		b.Run(map[int]string{1: "batch1", 8: "batch8"}[batch], func(b *testing.B) {
			s, err := NewSessionFromFile(testassets.Path(b, testassets.OCRClassifier), Options{GraphOptLevel: OptAll})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			in := map[string]*tensor.Tensor{"x": ocrInput(batch)}
			b.ResetTimer()
			for b.Loop() {
				if _, err := s.Run(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
