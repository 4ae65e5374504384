package optimize

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// realModel is a model the optimizer must shrink without changing its outputs.
type realModel struct {
	rel    string
	shapes map[string][]int64 // --shape; nil for models with static inputs
	// runShapes are the input shapes to compare at (defaults to shapes).
	runShapes []map[string][]int64
	heavy     bool // hundreds of MB once folded: skipped under -short
}

func light(name string, heavy bool) realModel {
	return realModel{rel: filepath.Join(testassets.ONNXLight, name), heavy: heavy}
}

var realModels = []realModel{
	{rel: testassets.OCRClassifier, shapes: map[string][]int64{"x": {1, 3, 48, 192}}},
	{rel: testassets.OCRDetector, shapes: map[string][]int64{"x": {1, 3, 640, 640}}},
	{rel: testassets.OCRRecognizer, shapes: map[string][]int64{"x": {1, 3, 48, 320}}},
	// Dynamic: no --shape; compared at two different input sizes.
	{rel: testassets.OCRClassifier, runShapes: []map[string][]int64{{"x": {1, 3, 48, 192}}, {"x": {3, 3, 48, 100}}}},
	{rel: testassets.OCRDetector, runShapes: []map[string][]int64{{"x": {1, 3, 320, 480}}}},
	{rel: testassets.OCRRecognizer, runShapes: []map[string][]int64{{"x": {1, 3, 48, 320}}, {"x": {2, 3, 48, 640}}}},
	light("light_squeezenet.onnx", false),
	light("light_shufflenet.onnx", false),
	light("light_inception_v1.onnx", false),
	light("light_inception_v2.onnx", false),
	light("light_densenet121.onnx", false),
	light("light_resnet50.onnx", true),
	light("light_bvlc_alexnet.onnx", true),
	light("light_zfnet512.onnx", true),
	light("light_vgg19.onnx", true),
}

func (r realModel) name() string {
	n := filepath.Base(r.rel)
	if r.shapes == nil && r.runShapes != nil {
		n += "/dynamic"
	}
	return n
}

func initORT(t *testing.T) {
	t.Helper()
	if err := runtime.Init(testassets.Path(t, testassets.ORTLibrary)); err != nil {
		t.Fatal(err)
	}
}

// TestRealModels optimizes every real model, checks that nodes go away, and compares
// the outputs of the original and the optimized model in ONNX Runtime on seeded random
// inputs: max abs error <= 1e-4 * max(1, max |reference|).
func TestRealModels(t *testing.T) {
	for _, rm := range realModels {
		t.Run(rm.name(), func(t *testing.T) {
			if rm.heavy && testing.Short() {
				t.Skip("heavy model skipped under -short")
			}
			path := testassets.Path(t, rm.rel)
			initORT(t)
			orig, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			m, err := onnx.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Run(m, Options{InputShapes: rm.shapes})
			if err != nil {
				t.Fatal(err)
			}
			if rep.NodesAfter >= rep.NodesBefore {
				t.Errorf("nodes %d -> %d: nothing removed", rep.NodesBefore, rep.NodesAfter)
			}
			opt, err := m.MarshalInline()
			if err != nil {
				t.Fatal(err)
			}
			m.Close()
			runs := rm.runShapes
			if runs == nil {
				runs = []map[string][]int64{rm.shapes}
			}
			for _, shapes := range runs {
				maxErr, maxRef := compare(t, orig, opt, shapes)
				t.Logf("nodes %d -> %d, %.3fs, inputs %v: max abs err %.3g (reference max %.3g)",
					rep.NodesBefore, rep.NodesAfter, rep.Seconds, shapes, maxErr, maxRef)
				if maxErr > 1e-4*math.Max(1, maxRef) {
					t.Errorf("max abs err %g > 1e-4 * max(1, %g)", maxErr, maxRef)
				}
			}
		})
	}
}

// TestLightModelsRandomWeights: the ONNX "light" models fill every weight with one value
// (ConstantOfShape of 0.02), so every channel computes the same thing and the softmax
// output is uniform whatever the arithmetic. Here the fills become seeded random weights
// first, so a wrong fold would show in the outputs.
func TestLightModelsRandomWeights(t *testing.T) {
	for _, rm := range realModels {
		if !strings.HasPrefix(filepath.Base(rm.rel), "light_") || (rm.heavy && (testing.Short() || !strings.Contains(rm.rel, "resnet50"))) {
			continue
		}
		t.Run(rm.name(), func(t *testing.T) {
			initORT(t)
			m, err := onnx.Load(testassets.Path(t, rm.rel))
			if err != nil {
				t.Fatal(err)
			}
			randomizeWeights(t, m)
			orig, err := m.MarshalInline()
			if err != nil {
				t.Fatal(err)
			}
			rep, err := Run(m, Options{})
			if err != nil {
				t.Fatal(err)
			}
			opt, err := m.MarshalInline()
			if err != nil {
				t.Fatal(err)
			}
			maxErr, maxRef := compare(t, orig, opt, nil)
			t.Logf("nodes %d -> %d: max abs err %.3g (reference max %.3g)", rep.NodesBefore, rep.NodesAfter, maxErr, maxRef)
			if maxErr > 1e-4*math.Max(1, maxRef) || maxRef < 1e-3 {
				t.Errorf("max abs err %g, reference max %g (a vanishing output proves nothing)", maxErr, maxRef)
			}
		})
	}
}

// randomizeWeights replaces ConstantOfShape weight nodes with seeded random initializers:
// He-scaled normals for weights, values in [0.5, 1.5) for BatchNormalization scales and
// variances and small normals for other vectors. The final Softmax becomes an Identity so
// that the logits are compared: random weights saturate a softmax into a one-hot vector.
func randomizeWeights(t *testing.T, m *onnx.Model) {
	t.Helper()
	g := m.Graph()
	inits := map[string]*tensor.Tensor{}
	for _, in := range g.Initializer {
		if v, err := m.ToTensor(in); err == nil {
			inits[in.GetName()] = v
		}
	}
	role := map[string]int{} // value -> input index of the BatchNormalization reading it
	for _, n := range g.Node {
		if n.GetOpType() == "BatchNormalization" {
			for i, in := range n.Input {
				role[in] = i
			}
		}
	}
	rng := rand.New(rand.NewPCG(3, 5))
	var nodes []*onnxpb.NodeProto
	for _, n := range g.Node {
		if n.GetOpType() == "Softmax" {
			op := "Identity"
			n.OpType, n.Attribute = &op, nil
		}
		shp, ok := inits[inputOf(n, 0)]
		if n.GetOpType() != "ConstantOfShape" || !ok {
			nodes = append(nodes, n)
			continue
		}
		dims := shp.Int64s()
		v := make([]float32, tensor.NumElements(dims))
		fanIn := 1.0
		for _, d := range dims[min(1, len(dims)):] {
			fanIn *= float64(d)
		}
		for i := range v {
			switch r := role[n.Output[0]]; {
			case len(dims) >= 2:
				v[i] = float32(rng.NormFloat64() * math.Sqrt(2/fanIn))
			case r == 1 || r == 4:
				v[i] = float32(0.5 + rng.Float64())
			default:
				v[i] = float32(0.1 * rng.NormFloat64())
			}
		}
		g.Initializer = append(g.Initializer, onnx.FromTensor(n.Output[0], tensor.FromFloat32(dims, v)))
	}
	g.Node = nodes
	// Every initializer becomes a constant (IR 4 semantics), as the optimizer also assumes.
	isInit := map[string]bool{}
	for _, in := range g.Initializer {
		isInit[in.GetName()] = true
	}
	var inputs []*onnxpb.ValueInfoProto
	for _, in := range g.Input {
		if !isInit[in.GetName()] {
			inputs = append(inputs, in)
		}
	}
	g.Input = inputs
	ir := int64(4)
	m.Proto.IrVersion = &ir
	if err := onnx.Check(g); err != nil {
		t.Fatal(err)
	}
}

func inputOf(n *onnxpb.NodeProto, i int) string {
	if i < len(n.Input) {
		return n.Input[i]
	}
	return ""
}

// compare runs both models on the same seeded inputs and returns the largest absolute
// difference over all outputs and the largest reference magnitude.
func compare(t *testing.T, ref, cand []byte, shapes map[string][]int64) (maxErr, maxRef float64) {
	t.Helper()
	opts := runtime.Options{GraphOptLevel: runtime.OptDisabled}
	a, err := runtime.NewSession(ref, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := runtime.NewSession(cand, opts)
	if err != nil {
		t.Fatalf("optimized model rejected by ONNX Runtime: %v", err)
	}
	defer b.Close()
	rng := rand.New(rand.NewPCG(42, 7))
	feeds := map[string]*tensor.Tensor{}
	for _, in := range a.Inputs() {
		shp := in.Shape
		if s, ok := shapes[in.Name]; ok {
			shp = s
		}
		v := make([]float32, tensor.NumElements(shp))
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		feeds[in.Name] = tensor.FromFloat32(shp, v)
	}
	ra, err := a.Run(feeds)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Run(feeds)
	if err != nil {
		t.Fatalf("optimized model: %v", err)
	}
	for name, x := range ra {
		y, ok := rb[name]
		if !ok {
			t.Fatalf("output %q missing from the optimized model", name)
		}
		xv, _ := x.AsFloat64()
		yv, _ := y.AsFloat64()
		if len(xv) != len(yv) {
			t.Fatalf("output %q: shape %v, want %v", name, y.Shape, x.Shape)
		}
		for i := range xv {
			maxRef = math.Max(maxRef, math.Abs(xv[i]))
			maxErr = math.Max(maxErr, math.Abs(xv[i]-yv[i]))
		}
	}
	return maxErr, maxRef
}

// TestDeterministic: optimizing the same model twice gives identical bytes.
func TestDeterministic(t *testing.T) {
	for _, rm := range realModels {
		if rm.heavy {
			continue
		}
		t.Run(rm.name(), func(t *testing.T) {
			path := testassets.Path(t, rm.rel)
			var outs [][]byte
			for range 2 {
				m, err := onnx.Load(path)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := Run(m, Options{InputShapes: rm.shapes}); err != nil {
					t.Fatal(err)
				}
				b, err := m.MarshalInline()
				if err != nil {
					t.Fatal(err)
				}
				outs = append(outs, b)
				m.Close()
			}
			if !bytes.Equal(outs[0], outs[1]) {
				t.Fatal("two optimizations of the same model differ")
			}
		})
	}
}

// TestNodeCorpus optimizes every model of the ONNX operator test corpus (one or a few
// operators each, every opset form): optimization must not fail or leave an invalid graph,
// and where it changed the graph, the optimized model must give the original's outputs on
// the corpus inputs.
func TestNodeCorpus(t *testing.T) {
	root := testassets.Path(t, testassets.ONNXNodeTests)
	dirs, err := filepath.Glob(filepath.Join(root, "test_*"))
	if err != nil {
		t.Fatal(err)
	}
	initORT(t)
	changed, compared := 0, 0
	for _, dir := range dirs {
		path := filepath.Join(dir, "model.onnx")
		m, err := onnx.Load(path)
		if err != nil {
			continue // the corpus has models our loader rightly refuses (e.g. external data)
		}
		orig, err := m.MarshalInline()
		if err != nil {
			continue
		}
		rep, err := Run(m, Options{})
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(dir), err)
			continue
		}
		if rep.NodesAfter == rep.NodesBefore && len(m.Graph().Initializer) == 0 {
			continue
		}
		changed++
		opt, err := m.MarshalInline()
		if err != nil {
			t.Fatal(err)
		}
		if compareOnCorpus(t, filepath.Base(dir), orig, opt, filepath.Join(dir, "test_data_set_0")) {
			compared++
		}
	}
	t.Logf("%d models, %d changed by optimization, %d of those compared in ONNX Runtime", len(dirs), changed, compared)
}

// compareOnCorpus runs both models on a corpus test-data set. Models ONNX Runtime (or the
// Go binding) cannot run in their original form are skipped: there is nothing to compare.
func compareOnCorpus(t *testing.T, name string, ref, cand []byte, data string) bool {
	opts := runtime.Options{GraphOptLevel: runtime.OptDisabled, IntraOpThreads: 1}
	a, err := runtime.NewSession(ref, opts)
	if err != nil {
		return false
	}
	defer a.Close()
	feeds := map[string]*tensor.Tensor{}
	for i, in := range a.Inputs() {
		v, _, err := onnx.ReadTensorFile(filepath.Join(data, "input_"+strconv.Itoa(i)+".pb"))
		if err != nil {
			return false
		}
		feeds[in.Name] = v
	}
	ra, err := a.Run(feeds)
	if err != nil {
		return false
	}
	b, err := runtime.NewSession(cand, opts)
	if err != nil {
		t.Errorf("%s: optimized model rejected: %v", name, err)
		return false
	}
	defer b.Close()
	rb, err := b.Run(feeds)
	if err != nil {
		t.Errorf("%s: optimized model fails: %v", name, err)
		return false
	}
	for out, x := range ra {
		y := rb[out]
		if y == nil || x.DType != y.DType || !slices.Equal(x.Shape, y.Shape) {
			t.Errorf("%s: output %q changed type or shape", name, out)
			continue
		}
		xv, err1 := x.AsFloat64()
		yv, err2 := y.AsFloat64()
		if err1 != nil || err2 != nil {
			continue
		}
		tol := 1e-4
		if x.DType == tensor.Float16 || x.DType == tensor.BFloat16 {
			tol = 2e-3 // one rounding of a folded constant is already ~5e-4
		}
		for i := range xv {
			d := math.Abs(xv[i] - yv[i])
			if d > tol*math.Max(1, math.Abs(xv[i])) && !(math.IsNaN(xv[i]) && math.IsNaN(yv[i])) {
				t.Errorf("%s: output %q[%d] = %g, want %g", name, out, i, yv[i], xv[i])
				break
			}
		}
	}
	return true
}

func TestFileWritesAndReports(t *testing.T) {
	in := testassets.Path(t, testassets.OCRClassifier)
	out := filepath.Join(t.TempDir(), "cls.onnx")
	rep, err := File(in, out, Options{Passes: []string{"constant-to-initializer", "fuse-batchnorm", "dead-code"}})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if rep.SizeAfter != st.Size() || rep.Input != in || rep.Output != out || rep.Seconds <= 0 {
		t.Errorf("report %+v (file %d bytes)", rep, st.Size())
	}
	var names []string
	for _, p := range rep.Passes {
		names = append(names, p.Name)
	}
	if got := strings.Join(names, ","); got != "initializer-inputs,constant-to-initializer,fuse-batchnorm,dead-code" {
		t.Errorf("passes run = %s", got)
	}
	if rep.OpsAfter["BatchNormalization"] != 0 || rep.OpsAfter["Constant"] != 0 {
		t.Errorf("ops after: %v", rep.OpsAfter)
	}
	// The output is a valid model, and the input path is refused as output.
	if _, err := onnx.Load(out); err != nil {
		t.Fatal(err)
	}
	if _, err := File(in, in, Options{}); err == nil {
		t.Error("writing over the input was accepted")
	}
}

func TestOptionsErrors(t *testing.T) {
	in := testassets.Path(t, testassets.OCRClassifier)
	out := filepath.Join(t.TempDir(), "o.onnx")
	for _, o := range []Options{
		{Passes: []string{"no-such-pass"}},
		{InputShapes: map[string][]int64{"nope": {1}}},
		{InputShapes: map[string][]int64{"x": {1, 3}}},
		{InputShapes: map[string][]int64{"x": {1, 4, 48, 192}}}, // channel dim is fixed at 3
	} {
		if _, err := File(in, out, o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output written although optimization failed")
	}
}
