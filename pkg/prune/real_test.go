package prune

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"testing"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
	"github.com/optimctl/optimctl/pkg/validate"
)

// The preprocessing the PP-OCR models were trained with.
const (
	clsPreprocess = "resize=48x192,mean=0.5/0.5/0.5,std=0.5/0.5/0.5"
	detPreprocess = "resize=320x320,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"
)

func load(t testing.TB, rel string) *onnx.Model {
	t.Helper()
	m, err := onnx.Load(testassets.Path(t, rel))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// photo is one real image, preprocessed, as the input "x".
func photo(t testing.TB, name, preprocess string) map[string]*tensor.Tensor {
	t.Helper()
	dir := testassets.Path(t, testassets.Images)
	spec := []tensor.Spec{{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 3, -1, -1}}}
	src, err := calibration.Open(filepath.Join(dir, name), spec, calibration.Options{Preprocess: preprocess})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	s, err := src.Next()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestMagnitudeRealClassifier(t *testing.T) {
	for _, global := range []bool{false, true} {
		m := load(t, testassets.OCRClassifier)
		r, err := Apply(m, Options{Method: Magnitude, Sparsity: 0.4, Global: global})
		if err != nil {
			t.Fatal(err)
		}
		// Conv and MatMul weights only: 53 convs + 1 MatMul, biases and BatchNorm untouched.
		if len(r.Tensors) != 54 || r.ConstantsConverted != 250 || r.NodesAfter != r.NodesBefore-250 {
			t.Fatalf("global=%v: %d tensors, %d constants, nodes %d → %d", global, len(r.Tensors), r.ConstantsConverted, r.NodesBefore, r.NodesAfter)
		}
		var zeros, total int64
		for _, tr := range r.Tensors {
			got := countZeros(floatsOf(t, m, tr.Name))
			if got != tr.Zeros {
				t.Errorf("%s: report says %d zeros, tensor has %d", tr.Name, tr.Zeros, got)
			}
			if want := int64(math.Round(0.4 * float64(tr.Elements))); !global && got != want {
				t.Errorf("%s: %d zeros of %d, want %d", tr.Name, got, tr.Elements, want)
			}
			zeros, total = zeros+got, total+tr.Elements
		}
		if want := int64(math.Round(0.4 * float64(total))); global && zeros != want {
			t.Errorf("global: %d zeros over %d weights, want %d", zeros, total, want)
		}
		if math.Abs(r.Sparsity-float64(zeros)/float64(total)) > 1e-12 {
			t.Errorf("global=%v: report sparsity %v, counted %v", global, r.Sparsity, float64(zeros)/float64(total))
		}
		// The Constant-node original (inspect counts Constant values) and the pruned model
		// hold the same number of parameters.
		if r.ParametersBefore != 133665 || r.ParametersAfter != r.ParametersBefore {
			t.Errorf("parameters %d → %d", r.ParametersBefore, r.ParametersAfter)
		}
	}
}

func TestTwoFourRealClassifier(t *testing.T) {
	initORT(t)
	m := load(t, testassets.OCRClassifier)
	r, err := Apply(m, Options{Method: TwoFour})
	if err != nil {
		t.Fatal(err)
	}
	checks, err := Check24(m)
	if err != nil {
		t.Fatal(err)
	}
	conform := 0
	for _, c := range checks {
		if c.Conforms {
			conform++
			if c.Sparsity < 0.5 {
				t.Errorf("%s conforms with sparsity %v < 0.5", c.Name, c.Sparsity)
			}
		}
	}
	// 35 weights have a reduction axis that is a multiple of 4; the depthwise convs (1 input
	// channel), the 3-channel stem and the SE layers over 2, 10, 22, 26, 50 channels do not.
	if len(r.Tensors) != 35 || conform != 35 || len(r.Skipped) != 19 || r.Sparsity != 0.5 {
		t.Errorf("2:4: %d tensors pruned, %d conform, %d skipped, sparsity %v", len(r.Tensors), conform, len(r.Skipped), r.Sparsity)
	}
	out := runORT(t, marshal(t, m), photo(t, "chelsea.png", clsPreprocess))
	if y := out["softmax_0.tmp_0"]; !slices.Equal(y.Shape, []int64{1, 2}) {
		t.Errorf("output shape %v", y.Shape)
	}
}

func maxAbs(v *tensor.Tensor) float64 {
	m := 0.0
	for _, x := range v.Float32s() {
		m = max(m, math.Abs(float64(x)))
	}
	return m
}

// TestStructuredRealModels: the pruned PP-OCR classifier and detector compute exactly what
// the original computes with the removed channels' readers masked (see maskedEquivalent), on
// real photos; and that check is not vacuous: the original itself differs.
func TestStructuredRealModels(t *testing.T) {
	initORT(t)
	for _, tc := range []struct {
		rel, image, pre, out string
		probe                string // compared value: the logits before the final Softmax/Sigmoid, which saturates
		f                    float64
		shape                []int64
		paramsMax            float64 // parameters after / before at most
	}{
		{testassets.OCRClassifier, "coffee.png", clsPreprocess, "softmax_0.tmp_0", "p2o.Add.87", 0.1, []int64{1, 2}, 0.9},
		{testassets.OCRClassifier, "text.png", clsPreprocess, "softmax_0.tmp_0", "p2o.Add.87", 0.5, []int64{1, 2}, 0.35},
		{testassets.OCRDetector, "page.png", detPreprocess, "sigmoid_0.tmp_0", "p2o.Add.281", 0.3, []int64{1, 1, 320, 320}, 0.55},
	} {
		o := Options{Method: Structured, Sparsity: tc.f}
		in := photo(t, tc.image, tc.pre)
		orig := runORT(t, marshal(t, load(t, tc.rel)), in, tc.probe)[tc.probe]
		ref := runORT(t, maskedEquivalent(t, load(t, tc.rel), o), in, tc.probe)[tc.probe]
		m := load(t, tc.rel)
		r, err := Apply(m, o)
		if err != nil {
			t.Fatal(err)
		}
		checkShapes(t, m, map[string][]int64{"x": in["x"].Shape}, map[string][]int64{tc.out: tc.shape})
		outs := runORT(t, marshal(t, m), in, tc.probe)
		if y := outs[tc.out]; !slices.Equal(y.Shape, tc.shape) {
			t.Fatalf("%s: output shape %v, want %v", tc.rel, y.Shape, tc.shape)
		}
		got := outs[tc.probe]
		d, changed := maxAbsDiff(t, ref, got), maxAbsDiff(t, orig, got)
		t.Logf("%s at %.0f%%: parameters %d → %d, groups %d, skipped %d; |pruned − masked| %.2g, |pruned − original| %.2g",
			filepath.Base(tc.rel), 100*tc.f, r.ParametersBefore, r.ParametersAfter, len(r.Groups), len(r.Skipped), d, changed)
		if d > 1e-4*max(1, maxAbs(ref)) || changed < 100*d {
			t.Errorf("%s: pruned vs masked original differ by %g (original vs pruned: %g)", tc.rel, d, changed)
		}
		if ratio := float64(r.ParametersAfter) / float64(r.ParametersBefore); ratio > tc.paramsMax {
			t.Errorf("%s: parameters kept %.2f, want ≤ %.2f", tc.rel, ratio, tc.paramsMax)
		}
	}
}

// TestStructuredInceptionConcat: GoogLeNet's inception blocks concatenate four branches
// whose groups are pruned independently; the next blocks' 1×1 convs must read the
// concatenation at the right offsets. The "light" model's weights are constant fills, under
// which every channel of a layer is the same and a wrong offset would go unseen, so the
// weights are first replaced by random ones.
func TestStructuredInceptionConcat(t *testing.T) {
	initORT(t)
	m := load(t, testassets.ONNXLight+"/light_inception_v1.onnx")
	gr := newGraph(m)
	if _, err := gr.materializeConstants(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(12, 12))
	for i, init := range gr.g.Initializer {
		if init.GetDataType() == int32(tensor.Float32) && len(init.Dims) > 0 {
			r := randInit(rng, init.GetName(), init.Dims...)
			v, _ := onnx.ToTensor(r)
			f := v.Float32s()
			for j := range f {
				f[j] *= 0.1 // keep activations in range through 57 layers
			}
			gr.g.Initializer[i] = onnx.FromTensor(init.GetName(), v)
		}
	}
	model := marshal(t, m)
	fresh := func() *onnx.Model {
		m, err := onnx.LoadBytes(model, "")
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	o := Options{Method: Structured, Sparsity: 0.3, ChannelMultiple: 1}
	in := map[string]*tensor.Tensor{"data_0": randInput(3, 1, 3, 224, 224)}
	ref := runORT(t, maskedEquivalent(t, fresh(), o), in)
	orig := runORT(t, model, in)
	pm := fresh()
	r, err := Apply(pm, o)
	if err != nil {
		t.Fatal(err)
	}
	got := runORT(t, marshal(t, pm), in)
	for k, v := range ref {
		d, changed := maxAbsDiff(t, v, got[k]), maxAbsDiff(t, orig[k], got[k])
		t.Logf("%s: |pruned − masked| %.2g, |pruned − original| %.2g", k, d, changed)
		if d > 1e-5 || changed < 100*d {
			t.Errorf("%s: pruned differs from the masked original by %g (from the original by %g)", k, d, changed)
		}
	}
	if len(r.Groups) < 50 {
		t.Errorf("%d groups pruned, want the 57 convs' outputs minus those before LRN/Softmax", len(r.Groups))
	}
}

// TestStructuredClassifierValidate measures the 10% pruned classifier against the original
// on the real photos with pkg/validate, as `optimctl validate` would.
func TestStructuredClassifierValidate(t *testing.T) {
	initORT(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "cls_s10.onnx")
	in := testassets.Path(t, testassets.OCRClassifier)
	r, err := Run(context.Background(), Options{Input: in, Output: out, Method: Structured, Sparsity: 0.1})
	if err != nil {
		t.Fatal(err)
	}
	if r.SizeAfter >= r.SizeBefore || r.Seconds <= 0 {
		t.Errorf("size %d → %d, %v s", r.SizeBefore, r.SizeAfter, r.Seconds)
	}
	v, err := validate.Run(context.Background(), validate.Options{Reference: in, Candidate: out,
		Data: testassets.Path(t, testassets.Images), Preprocess: clsPreprocess, Runtime: runtime.Options{IntraOpThreads: 2}, Warmup: 1})
	if err != nil {
		t.Fatal(err)
	}
	o := v.Outputs[0]
	t.Logf("10%% structured, %d photos: cosine mean %.4f min %.4f, top-1 agreement %.3f, parameters %d → %d",
		v.Samples, o.CosineMean, o.CosineMin, *v.Top1Agreement, r.ParametersBefore, r.ParametersAfter)
	// Measured (ONNX Runtime 1.30, CPU; docs/prune.md): cosine mean 0.853, min 0.182, top-1
	// agreement 0.500. The thresholds sit just below, as a regression guard: they are not a
	// quality claim. This 134k-parameter classifier has no redundancy to spare; without
	// fine-tuning, removing channels moves its decisions on these (non-text) photos, whose
	// scores sit near 0.5, about as much as chance. Correctness of the pruning itself is
	// what TestStructuredRealModels checks exactly.
	if v.Samples != 30 || o.CosineMean < 0.80 || o.CosineMin < 0.10 || *v.Top1Agreement < 0.4 {
		t.Errorf("10%% structured: cosine mean %.4f (want ≥ 0.80), min %.4f (≥ 0.10), top-1 %.3f (≥ 0.4) on %d samples",
			o.CosineMean, o.CosineMin, *v.Top1Agreement, v.Samples)
	}
}

// TestStructuredResNet50 prunes the ONNX "light" ResNet-50 (IR version 3, weights in
// ConstantOfShape nodes): bottleneck residual stages must be pruned as groups of their
// producers, and the Reshape before the classifier must follow.
func TestStructuredResNet50(t *testing.T) {
	initORT(t)
	m := load(t, testassets.ONNXLight+"/light_resnet50.onnx")
	r, err := Apply(m, Options{Method: Structured, Sparsity: 0.3})
	if err != nil {
		t.Fatal(err)
	}
	// Four stages: 3, 4, 6, 3 blocks; each stage's residual stream is one group holding the
	// projection shortcut and every block's last conv.
	var residual []int
	for _, g := range r.Groups {
		if len(g.Producers) > 1 {
			residual = append(residual, len(g.Producers))
			if g.Kept != alignedKeep(g.Channels, g.Channels-removeCount(0.3, g.Channels), 8) {
				t.Errorf("group %v: %d → %d", g.Producers, g.Channels, g.Kept)
			}
		}
	}
	if !slices.Equal(residual, []int{4, 5, 7, 4}) {
		t.Errorf("residual groups have %v producers, want [4 5 7 4]", residual)
	}
	if r.ConstantsConverted != 239 || r.ParametersAfter > r.ParametersBefore*55/100 {
		t.Errorf("constants %d, parameters %d → %d", r.ConstantsConverted, r.ParametersBefore, r.ParametersAfter)
	}
	// IR 3 lists initializers as graph inputs: their declared shapes must follow.
	g := m.Proto.Graph
	for _, in := range g.Input {
		if t0 := m.Initializer(in.GetName()); t0 != nil && !slices.Equal(onnx.ValueSpec(in).Shape, t0.Dims) {
			t.Errorf("graph input %s declares %v, initializer is %v", in.GetName(), onnx.ValueSpec(in).Shape, t0.Dims)
		}
	}
	if d := dimsOf(m, "gpu_0/pred_w_0"); !slices.Equal(d, []int64{1000, 1432}) {
		t.Errorf("classifier weight %v, want [1000 1432] (2048 - 30%%, to a multiple of 8)", d)
	}
	checkShapes(t, m, nil, map[string][]int64{"gpu_0/softmax_1": {1, 1000}})
	out := runORT(t, marshal(t, m), map[string]*tensor.Tensor{"gpu_0/data_0": randInput(5, 1, 3, 224, 224)})
	if y := out["gpu_0/softmax_1"]; y == nil || !slices.Equal(y.Shape, []int64{1, 1000}) {
		t.Errorf("output %+v", y)
	}
}
