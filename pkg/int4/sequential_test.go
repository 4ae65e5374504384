package int4

import (
	"context"
	"slices"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// TestCaptureModel: the capture model keeps only what the captured tensors depend on, and
// declares them as typed outputs (no logits, no later weights, no type probing).
func TestCaptureModel(t *testing.T) {
	dir := t.TempDir()
	m, err := onnx.Load(save(t, pipelineModel(4, false), dir+"/m.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	nodes0 := len(m.Graph().Node)
	b, err := captureModel(m, []string{"h", "q"})
	if err != nil {
		t.Fatal(err)
	}
	cm := &onnxpb.ModelProto{}
	if err := cm.UnmarshalVT(b); err != nil {
		t.Fatal(err)
	}
	var ops, inits, outs []string
	for _, n := range cm.Graph.Node {
		ops = append(ops, n.GetOpType())
	}
	for _, i := range cm.Graph.Initializer {
		inits = append(inits, i.GetName())
	}
	for _, o := range cm.Graph.Output {
		outs = append(outs, o.GetName())
		if et := o.GetType().GetTensorType().GetElemType(); et != int32(tensor.Float32) {
			t.Errorf("output %s: element type %d, want float", o.GetName(), et)
		}
	}
	slices.Sort(inits)
	if !slices.Equal(ops, []string{"LayerNormalization", "MatMul"}) || !slices.Equal(inits, []string{"Wq", "ln.b", "ln.g"}) ||
		!slices.Equal(outs, []string{"h", "q"}) || len(cm.Graph.Input) != 1 {
		t.Errorf("capture model: nodes %v, initializers %v, outputs %v, %d inputs", ops, inits, outs, len(cm.Graph.Input))
	}
	if len(m.Graph().Node) != nodes0 || len(m.Graph().Output) != 2 {
		t.Error("captureModel modified the model")
	}
}

// TestGPTQSequential: levels by MatMul depth (no block names here: {q, k}, {up}, {down}),
// one capture per level through the already quantized levels; every layer still beats RTN
// on its own inputs, the first level equals the one-pass run (same inputs), and the output
// is deterministic.
func TestGPTQSequential(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := save(t, pipelineModel(4, false), dir+"/m.onnx")
	m, err := onnx.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	layers, _, err := findLayers(m, &Options{})
	if err != nil {
		t.Fatal(err)
	}
	lv := sequentialLevels(m, layers)
	want := map[string]int{"Wq": 0, "Wk": 0, "Wup": 1, "Wdown": 2}
	for i, l := range layers {
		if lv[i] != want[l.weight] {
			t.Errorf("level of %s: %d, want %d", l.weight, lv[i], want[l.weight])
		}
	}
	run := func(seq bool, out string) *Report {
		o := Options{Input: in, Output: out, Algo: GPTQ, Calib: "random:32:-2:2", GroupSize: 16, Sequential: seq,
			Shapes: map[string][]int64{"x": {1, 8, 64}}}
		rep, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	one := run(false, dir+"/one.onnx")
	seq := run(true, dir+"/seq.onnx")
	run(true, dir+"/seq2.onnx")
	if seq.CapturePasses != 3 || one.CapturePasses != 1 {
		t.Errorf("capture passes: sequential %d (want 3), one-pass %d", seq.CapturePasses, one.CapturePasses)
	}
	if fileSHA(t, dir+"/seq.onnx") != fileSHA(t, dir+"/seq2.onnx") {
		t.Error("sequential output differs between two runs")
	}
	for i, l := range seq.Layers {
		if !(l.Error <= l.RTNError) || l.Error <= 0 {
			t.Errorf("%s: GPTQ error %g, RTN %g", l.Name, l.Error, l.RTNError)
		}
		if (l.Weight == "Wq" || l.Weight == "Wk") && l.Error != one.Layers[i].Error {
			t.Errorf("%s: first level error %g, one-pass %g (same inputs, so same result)", l.Name, l.Error, one.Layers[i].Error)
		}
		if l.Weight == "Wdown" && l.RTNError == one.Layers[i].RTNError {
			t.Errorf("%s: the last level saw the float model's inputs", l.Name)
		}
	}
	x := map[string]*tensor.Tensor{"x": randInput(6, 2, 8, 64)}
	if c := cosine(runModel(t, dir+"/seq.onnx", x, "y"), runModel(t, in, x, "y")); c < 0.99 {
		t.Errorf("cosine %v", c)
	}
	if _, err := Run(context.Background(), Options{Input: in, Output: dir + "/r.onnx", Algo: RTN, Sequential: true}); err == nil {
		t.Error("sequential RTN accepted")
	}
}
