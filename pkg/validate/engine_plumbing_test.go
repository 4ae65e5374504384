//go:build trtfake

package validate

// Plumbing tests of validate with a TensorRT engine as one of the models, against the fake
// shim (pkg/trt/fake_shim.c): its "engine" copies input k to output k and reports 0.5 ms of
// GPU time per run. The ONNX reference computes y = 2·x, so every figure of the report is
// known from the data alone: max/mean abs error = max/mean |x|, cosine 1, SNR 10·log10(4),
// top-1 agreement 1.

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/trt"
	"google.golang.org/protobuf/proto"
)

// doubleModel writes the ONNX model y = 2·x, x and y float32 [batch, 4].
func doubleModel(t *testing.T) string {
	t.Helper()
	vi := func(name string) *onnxpb.ValueInfoProto {
		shape := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
			{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
			{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 4}}}}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Float32)), Shape: shape}}}}
	}
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(8), OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("double"),
			Node:        []*onnxpb.NodeProto{{OpType: proto.String("Mul"), Name: proto.String("mul"), Input: []string{"x", "two"}, Output: []string{"y"}}},
			Input:       []*onnxpb.ValueInfoProto{vi("x")},
			Output:      []*onnxpb.ValueInfoProto{vi("y")},
			Initializer: []*onnxpb.TensorProto{onnx.FromTensor("two", tensor.FromFloat32([]int64{}, []float32{2}))}}}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "double.onnx")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fakePlan writes a fake engine and checks, when the test ends, that nothing of it leaked.
func fakePlan(t *testing.T, lines ...string) string {
	t.Helper()
	t.Cleanup(func() {
		if n := trt.FakeLive(); n != 0 {
			t.Errorf("%d engines/buffers/C allocations still held after the run", n)
		}
	})
	p := filepath.Join(t.TempDir(), "model.plan")
	if err := os.WriteFile(p, []byte(strings.Join(append([]string{"fake-plan 1"}, lines...), "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func needORT(t *testing.T) {
	t.Helper()
	if err := runtime.Init(""); err != nil {
		t.Skip(err)
	}
}

// expect computes the report's figures for y_ref = 2x, y_cand = x from the data itself.
func expect(t *testing.T, data string, shapes map[string][]int64) (maxAbs, meanAbs float64, n int) {
	t.Helper()
	src, err := calibration.Open(data, []tensor.Spec{{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 4}}}, calibration.Options{Shapes: shapes})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	var sum float64
	var count int
	for {
		s, err := src.Next()
		if err != nil {
			break
		}
		for _, v := range s["x"].Float32s() {
			a := math.Abs(float64(v)) // |2x − x|
			maxAbs = math.Max(maxAbs, a)
			sum += a
			count++
		}
		n++
	}
	return maxAbs, sum / float64(count), n
}

func TestPlumbingValidateEngineCandidate(t *testing.T) {
	needORT(t)
	ref := doubleModel(t)
	plan := fakePlan(t, "io x in 1 -1x4", "io y out 1 -1x4")
	shapes := map[string][]int64{"x": {3, 4}}
	for _, c := range []struct{ ref, cand, engineRole string }{{ref, plan, "candidate"}, {plan, ref, "reference"}} {
		r, err := Run(context.Background(), Options{Reference: c.ref, Candidate: c.cand, Data: "random:5", Shapes: shapes, Warmup: 1})
		if err != nil {
			t.Fatal(err)
		}
		maxAbs, meanAbs, n := expect(t, "random:5", shapes)
		if r.Samples != n || n != 5 || len(r.Outputs) != 1 {
			t.Fatalf("samples %d (data %d), outputs %d", r.Samples, n, len(r.Outputs))
		}
		o := r.Outputs[0]
		// With the engine as reference the signal is x and the error x as well: SNR 0 dB.
		snr := 10 * math.Log10(4)
		if c.engineRole == "reference" {
			snr = 0
		}
		t.Logf("engine as %s: max abs %.6f (want %.6f), mean abs %.6f (want %.6f), cosine min %.9f, SNR %.4f dB, top-1 %v, GPU p50 %.3f ms",
			c.engineRole, o.MaxAbsErr, maxAbs, o.MeanAbsErr, meanAbs, o.CosineMin, o.SNRdB, *r.Top1Agreement, r.GPUMs[c.engineRole].P50)
		if o.Name != "y" || math.Abs(o.MaxAbsErr-maxAbs) > 1e-6 || math.Abs(o.MeanAbsErr-meanAbs) > 1e-6 ||
			math.Abs(o.CosineMin-1) > 1e-6 || math.Abs(o.SNRdB-snr) > 1e-4 {
			t.Fatalf("output %+v", o)
		}
		if r.Top1Agreement == nil || *r.Top1Agreement != 1 {
			t.Fatalf("top-1 agreement %v", r.Top1Agreement)
		}
		if r.Runtimes[c.engineRole] != RuntimeTensorRT || len(r.Runtimes) != 2 {
			t.Fatalf("runtimes %v", r.Runtimes)
		}
		if g, ok := r.GPUMs[c.engineRole]; !ok || len(r.GPUMs) != 1 || g.P50 != 0.5 || g.P99 != 0.5 {
			t.Fatalf("gpu ms %v", r.GPUMs)
		}
		if lat := r.LatencyMs[c.engineRole]; !(lat.P50 > 0) {
			t.Fatalf("latency %v", r.LatencyMs)
		}
		if st, _ := os.Stat(plan); r.SizeCandidate != st.Size() && r.SizeReference != st.Size() {
			t.Fatalf("sizes %d/%d, plan %d", r.SizeReference, r.SizeCandidate, st.Size())
		}
		if md := Markdown(r); !strings.Contains(md, c.engineRole+": TensorRT engine") || !strings.Contains(md, "| "+c.engineRole+" (GPU time) | 0.500 |") {
			t.Fatalf("markdown:\n%s", md)
		}
	}
}

func TestPlumbingValidateEngineErrors(t *testing.T) {
	needORT(t)
	ref := doubleModel(t)
	opts := func(cand string) Options {
		return Options{Reference: ref, Candidate: cand, Data: "random:2", Shapes: map[string][]int64{"x": {1, 4}}, Warmup: 1}
	}
	for _, c := range []struct {
		plan []string
		want string
	}{
		{[]string{"io z in 1 -1x4", "io y out 1 -1x4"}, `has no input "x"`},
		{[]string{"io x in 10 -1x4", "io y out 10 -1x4"}, `input "x" is float16, reference takes float32`},
		{[]string{"io x in 1 -1x4", "io out out 1 -1x4"}, `has no output "y"`},
		{[]string{"io x in 1 -1x5", "io y out 1 -1x5"}, "outside the engine's optimization profile"},
	} {
		_, err := Run(context.Background(), opts(fakePlan(t, c.plan...)))
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Fatalf("%v: %v, want %q", c.plan, err, c.want)
		}
	}
	garbage := filepath.Join(t.TempDir(), "garbage.plan")
	os.WriteFile(garbage, []byte("not a plan"), 0o644)
	if _, err := Run(context.Background(), opts(garbage)); err == nil || !strings.Contains(err.Error(), "candidate: "+garbage+": loading the engine: not an engine") {
		t.Fatalf("garbage plan: %v", err)
	}
	plan := fakePlan(t, "io x in 1 -1x4", "io y out 1 -1x4")
	o := opts(plan)
	o.Reference = plan
	if _, err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "both TensorRT engines") {
		t.Fatalf("two engines: %v", err)
	}
}
