package quantize

import (
	"bytes"
	"context"
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// producerOf returns the node writing a value (nil for inputs and initializers).
func producerOf(g *onnxpb.GraphProto, name string) *onnxpb.NodeProto {
	for _, n := range g.Node {
		for _, o := range n.Output {
			if o == name {
				return n
			}
		}
	}
	return nil
}

// dqSource follows a node input back through its DequantizeLinear to the quantized
// initializer (nil when the input is not a dequantized initializer).
func dqSource(g *onnxpb.GraphProto, input string) (*onnxpb.NodeProto, *onnxpb.TensorProto) {
	dq := producerOf(g, input)
	if dq == nil || dq.GetOpType() != "DequantizeLinear" {
		return nil, nil
	}
	return dq, initByName(g, dq.Input[0])
}

func TestStaticQDQPlacement(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	out := filepath.Join(dir, "net.int8.onnx")
	rep := quantizeFile(t, in, out, Options{Mode: Static, PerChannel: true, Calib: "random:16"})
	g := loadOut(t, out).Graph

	// Weights: int8 initializers behind a per-channel DequantizeLinear on the output axis.
	conv1 := nodeByName(t, g, "conv1")
	dq, w := dqSource(g, conv1.Input[1])
	if w == nil || tensor.DType(w.GetDataType()) != tensor.Int8 || intAttr(dq, "axis", -1) != 0 || len(initByName(g, dq.Input[1]).Dims) != 1 {
		t.Fatalf("conv1 weight is not a per-channel int8 DequantizeLinear (axis 0): %v", conv1.Input)
	}
	// Bias: int32, scale = input scale × weight scale (checked numerically below).
	if _, b := dqSource(g, conv1.Input[2]); b == nil || tensor.DType(b.GetDataType()) != tensor.Int32 {
		t.Fatalf("conv1 bias is not an int32 DequantizeLinear")
	}
	fc := nodeByName(t, g, "fc")
	if dq, w := dqSource(g, fc.Input[1]); w == nil || intAttr(dq, "axis", -1) != 1 {
		t.Fatalf("MatMul weight [4,2] is not per-channel on axis 1")
	}
	// Activations: x is read through Q/DQ; the Relu was absorbed by conv1 (uint8, zero
	// point at 0 clamps exactly as Relu does) and conv1 now writes r.
	if q, _ := dqSource(g, conv1.Input[0]); q == nil {
		t.Fatalf("conv1 does not read x through a DequantizeLinear")
	}
	if opCount(g, "Relu") != 0 || conv1.Output[0] != "r" {
		t.Fatalf("Relu not absorbed: %d Relu, conv1 writes %q", opCount(g, "Relu"), conv1.Output[0])
	}
	// Both Add operands are quantized; graph outputs stay float from their producer.
	add := nodeByName(t, g, "add1")
	for _, in := range add.Input {
		if p := producerOf(g, in); p == nil || p.GetOpType() != "DequantizeLinear" {
			t.Fatalf("Add operand %q is not dequantized", in)
		}
	}
	if p := producerOf(g, "y"); p != fc {
		t.Fatalf("graph output y is written by %v, want the MatMul", p)
	}
	for _, n := range g.Node {
		if n.GetOpType() == "QuantizeLinear" {
			if zp := initByName(g, n.Input[2]); tensor.DType(zp.GetDataType()) != tensor.Uint8 {
				t.Fatalf("activation zero point %s is %s, want uint8", zp.GetName(), tensor.DType(zp.GetDataType()))
			}
		}
	}
	if rep.QuantizedOps["Conv"] != 2 || rep.QuantizedOps["MatMul"] != 1 || rep.Calibration.Samples != 16 {
		t.Fatalf("report: %+v, calibration %+v", rep.QuantizedOps, rep.Calibration)
	}
	worst, _, _ := agreement(t, in, out, "random:16", "", nil, "y")
	// 8-bit activations and weights on a 4-channel toy net: SNR ~35 dB, cosine ≥ 0.99.
	if worst < 0.99 {
		t.Fatalf("worst-sample cosine %.4f < 0.99", worst)
	}
}

func TestQOperatorPlacement(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	qdq, qop := filepath.Join(dir, "qdq.onnx"), filepath.Join(dir, "qop.onnx")
	quantizeFile(t, in, qdq, Options{Mode: Static, PerChannel: true, Calib: "random:16"})
	quantizeFile(t, in, qop, Options{Mode: Static, PerChannel: true, Calib: "random:16", Format: QOperator})
	m := loadOut(t, qop)
	g := m.Graph
	want := map[string]int{"QLinearConv": 2, "QLinearAdd": 1, "QLinearGlobalAveragePool": 1, "Conv": 0, "Add": 0, "Relu": 0}
	for op, n := range want {
		if got := opCount(g, op); got != n {
			t.Errorf("%s: %d nodes, want %d", op, got, n)
		}
	}
	// The MatMul writes the graph output, which stays float: it is not converted.
	if opCount(g, "MatMul") != 1 || onnx.OpsetOf(m.OpsetImport, msDomain) != 1 {
		t.Errorf("MatMul %d, com.microsoft opset %d", opCount(g, "MatMul"), onnx.OpsetOf(m.OpsetImport, msDomain))
	}
	for _, n := range g.Node {
		if n.GetOpType() == "QLinearConv" && tensor.DType(initByName(g, n.Input[3]).GetDataType()) != tensor.Int8 {
			t.Errorf("%s weight is not int8", n.GetName())
		}
	}
	// Same arithmetic as the QDQ form, in integers: the outputs agree closely.
	if worst, _, _ := agreement(t, qdq, qop, "random:16", "", nil, "y"); worst < 0.999 {
		t.Fatalf("QOperator vs QDQ worst cosine %.5f", worst)
	}
}

func TestTensorRTPlacement(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	out := filepath.Join(dir, "trt.onnx")
	quantizeFile(t, in, out, Options{Mode: Static, Target: TargetTensorRT, Calib: "random:16"})
	g := loadOut(t, out).Graph
	for _, n := range g.Node {
		if n.GetOpType() != "QuantizeLinear" && n.GetOpType() != "DequantizeLinear" {
			continue
		}
		zp := initByName(g, n.Input[2])
		v, _ := onnx.ToTensor(zp)
		if dt := tensor.DType(zp.GetDataType()); dt != tensor.Int8 {
			t.Fatalf("%s: zero point type %s, want int8", n.GetName(), dt)
		}
		for _, b := range v.Data {
			if b != 0 {
				t.Fatalf("%s: nonzero zero point", n.GetName())
			}
		}
	}
	for _, name := range []string{"conv1", "conv2"} {
		c := nodeByName(t, g, name)
		if dq, w := dqSource(g, c.Input[1]); w == nil || intAttr(dq, "axis", -1) != 0 {
			t.Fatalf("%s: weight not per-channel on axis 0", name)
		}
		if q, _ := dqSource(g, c.Input[0]); q == nil {
			t.Fatalf("%s: input not quantized", name)
		}
	}
	if b := initByName(g, nodeByName(t, g, "conv1").Input[2]); b == nil || tensor.DType(b.GetDataType()) != tensor.Float32 {
		t.Fatalf("conv1 bias must stay a float initializer")
	}
	// Residual add: the identity branch r is quantized, the layer branch c2 is not.
	add := nodeByName(t, g, "add1")
	if add.Input[0] != "c2" || producerOf(g, add.Input[1]).GetOpType() != "DequantizeLinear" || producerOf(g, add.Input[1]).Input[0] != "r_quantized" {
		t.Fatalf("residual add inputs %v", add.Input)
	}
	// Nothing quantizes a layer output (TensorRT fuses the output side itself).
	for _, n := range g.Node {
		if n.GetOpType() == "QuantizeLinear" && (n.Input[0] == "c1" || n.Input[0] == "c2" || n.Input[0] == "y") {
			t.Fatalf("layer output %s is quantized", n.Input[0])
		}
	}
	if opCount(g, "Relu") != 1 {
		t.Fatalf("Relu must stay with symmetric activations")
	}
	if worst, _, _ := agreement(t, in, out, "random:16", "", nil, "y"); worst < 0.98 {
		t.Fatalf("worst cosine %.4f", worst)
	}
}

func TestDynamicStructure(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	out := filepath.Join(dir, "dyn.onnx")
	rep := quantizeFile(t, in, out, Options{Mode: Dynamic, PerChannel: true})
	g := loadOut(t, out).Graph
	for op, n := range map[string]int{"DynamicQuantizeLinear": 3, "ConvInteger": 2, "MatMulInteger": 1, "Conv": 0, "MatMul": 0} {
		if got := opCount(g, op); got != n {
			t.Errorf("%s: %d, want %d", op, got, n)
		}
	}
	if rep.QuantizedNodes != 3 {
		t.Errorf("quantized %d nodes", rep.QuantizedNodes)
	}
	if worst, _, _ := agreement(t, in, out, "random:16", "", nil, "y"); worst < 0.99 {
		t.Fatalf("worst cosine %.4f", worst)
	}
}

func TestFP16Structure(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	out := filepath.Join(dir, "fp16.onnx")
	quantizeFile(t, in, out, Options{Mode: FP16, KeepFloat32IO: true})
	g := loadOut(t, out).Graph
	for _, name := range []string{"w1", "w2", "w3", "b1"} {
		if w := initByName(g, name); w == nil || tensor.DType(w.GetDataType()) != tensor.Float16 {
			t.Fatalf("initializer %s is not float16", name)
		}
	}
	if tt := g.Input[0].GetType().GetTensorType(); tensor.DType(tt.GetElemType()) != tensor.Float32 {
		t.Fatalf("graph input type changed")
	}
	if p := producerOf(g, "y"); p.GetOpType() != "Cast" || intAttr(p, "to", 0) != int64(tensor.Float32) {
		t.Fatalf("graph output y is not cast back to float32")
	}
	if p := producerOf(g, nodeByName(t, g, "conv1").Input[0]); p == nil || p.GetOpType() != "Cast" {
		t.Fatalf("conv1 does not read a float16 cast of x")
	}
	// float16 keeps 11 significant bits: a toy net agrees to 1e-4.
	if worst, _, _ := agreement(t, in, out, "random:8", "", nil, "y"); worst < 0.9999 {
		t.Fatalf("worst cosine %.6f", worst)
	}
}

// TestScaleArithmetic pins the stored integers and scales against hand-computed values.
func TestScaleArithmetic(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	// y = x·W, W = [[-1, 3], [0.25, -4]] ([K=2, N=2]); one calibration sample x = [-1, 3].
	g := &onnxpb.GraphProto{Name: ptr("mm"),
		Input:       []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, 1, 2)},
		Output:      []*onnxpb.ValueInfoProto{vinfo("y", tensor.Float32, 1, 2)},
		Initializer: []*onnxpb.TensorProto{finit("w", []int64{2, 2}, []float32{-1, 3, 0.25, -4})},
		Node:        []*onnxpb.NodeProto{newNode("MatMul", "", "mm", []string{"x", "w"}, []string{"y"})}}
	in := writeModel(t, dir, "mm.onnx", model(13, g))
	data := writeNPZ(t, filepath.Join(dir, "x.npz"), map[string]*tensor.Tensor{"x": tensor.FromFloat32([]int64{1, 2}, []float32{-1, 3})})

	check := func(perChannel bool, wantQ []int8, wantScales []float32) {
		t.Helper()
		out := filepath.Join(dir, "out.onnx")
		quantizeFile(t, in, out, Options{Mode: Static, PerChannel: perChannel, Calib: data})
		og := loadOut(t, out).Graph
		dq, w := dqSource(og, nodeByName(t, og, "mm").Input[1])
		wt, _ := onnx.ToTensor(w)
		for i, q := range wt.Int8s() {
			if q != wantQ[i] {
				t.Fatalf("per-channel %v: weight codes %v, want %v", perChannel, wt.Int8s(), wantQ)
			}
		}
		st, _ := onnx.ToTensor(initByName(og, dq.Input[1]))
		for i, s := range st.Float32s() {
			if s != wantScales[i] {
				t.Fatalf("per-channel %v: scales %v, want %v", perChannel, st.Float32s(), wantScales)
			}
		}
		// Activation x: range [-1, 3] as uint8: scale 4/255, zero point round(1/(4/255)) = 64.
		var q *onnxpb.NodeProto
		for _, n := range og.Node {
			if n.GetOpType() == "QuantizeLinear" && n.Input[0] == "x" {
				q = n
			}
		}
		s, _ := onnx.ToTensor(initByName(og, q.Input[1]))
		z, _ := onnx.ToTensor(initByName(og, q.Input[2]))
		if s.Float32s()[0] != float32(4.0/255) || z.Data[0] != 64 {
			t.Fatalf("x: scale %v zero point %d, want %v and 64", s.Float32s()[0], z.Data[0], float32(4.0/255))
		}
	}
	// Per tensor: amax 4 → scale 8/254; codes round(w·254/8) half to even.
	check(false, []int8{-32, 95, 8, -127}, []float32{float32(8.0 / 254)})
	// Per output column: column 0 {-1, 0.25} → scale 2/254, column 1 {3, -4} → 8/254.
	check(true, []int8{-127, 95, 32, -127}, []float32{float32(2.0 / 254), float32(8.0 / 254)})
}

// TestBiasArithmetic: int32 bias codes with scale = input scale × weight scale.
func TestBiasArithmetic(t *testing.T) {
	m := &onnx.Model{Proto: model(13, &onnxpb.GraphProto{Initializer: []*onnxpb.TensorProto{finit("b", []int64{2}, []float32{1.0, -0.3})}})}
	e := newEditor(m)
	b := newBuilder(e, Options{WeightType: tensor.Int8}, nil, nil, nil)
	q, s, _, scales, err := b.quantizeBias("b", 0.5, &weightQ{scales: []float32{0.1, 0.2}, perChannel: true})
	if err != nil {
		t.Fatal(err)
	}
	qt, _ := onnx.ToTensor(e.inits[q])
	got := []int32{int32(binary.LittleEndian.Uint32(qt.Data)), int32(binary.LittleEndian.Uint32(qt.Data[4:]))}
	if got[0] != 20 || got[1] != -3 || scales[0] != 0.5*0.1 || scales[1] != 0.5*0.2 || len(e.inits[s].Dims) != 1 {
		t.Fatalf("bias codes %v scales %v", got, scales)
	}
}

// TestOpsetUpgrade converts an opset-9 graph (Constant-node weights, attribute Clip and
// Slice, Softmax) to opset 13 and checks ONNX Runtime computes the same outputs.
func TestOpsetUpgrade(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	wv := onnx.FromTensor("", tensor.FromFloat32([]int64{6, 4}, seeded(9, 24, 1)))
	g := &onnxpb.GraphProto{Name: ptr("old"),
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, 2, 6)},
		Output: []*onnxpb.ValueInfoProto{vinfo("y", tensor.Float32, 2, 3)},
		Node: []*onnxpb.NodeProto{
			newNode("Constant", "", "wconst", nil, []string{"w"}, &onnxpb.AttributeProto{Name: ptr("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(), T: wv}),
			newNode("MatMul", "", "mm", []string{"x", "w"}, []string{"h"}),
			newNode("Clip", "", "clip", []string{"h"}, []string{"c"}, attrFloat("min", 0), attrFloat("max", 0.5)),
			newNode("Slice", "", "slice", []string{"c"}, []string{"s"}, attrInts("starts", []int64{1}), attrInts("ends", []int64{4}), attrInts("axes", []int64{1})),
			newNode("Softmax", "", "sm", []string{"s"}, []string{"y"}),
		}}
	old := writeModel(t, dir, "old.onnx", model(9, g))
	m, err := onnx.Load(old)
	if err != nil {
		t.Fatal(err)
	}
	e := newEditor(m)
	if n, err := constantsToInitializers(e); err != nil || n != 1 {
		t.Fatalf("constants: %d, %v", n, err)
	}
	changed, err := upgradeOpset(e, 13, map[string]int{"s": 2})
	if err != nil || !changed {
		t.Fatalf("upgrade: %v", err)
	}
	if getAttr(nodeByName(t, e.g, "clip"), "min") != nil || len(nodeByName(t, e.g, "slice").Input) != 4 || intAttr(nodeByName(t, e.g, "sm"), "axis", -9) != 1 {
		t.Fatalf("nodes not converted: %v", e.g.Node)
	}
	b, _ := m.MarshalInline()
	up := filepath.Join(dir, "new.onnx")
	os.WriteFile(up, b, 0o644)
	if worst, _, outs := agreement(t, old, up, "random:4", "", nil, "y"); worst < 1-1e-6 || !sameFloats(outs[0], outs[1]) {
		t.Fatalf("upgraded model computes differently (cosine %.7f)", worst)
	}
	// A node without a known conversion leaves the model untouched.
	g.Node = append(g.Node, newNode("Upsample", "", "up", []string{"y"}, []string{"u"}))
	m2 := &onnx.Model{Proto: model(9, g)}
	if changed, err := upgradeOpset(newEditor(m2), 13, nil); changed || err == nil {
		t.Fatalf("Upsample must block the upgrade")
	}
	if m2.Opset("") != 9 {
		t.Fatalf("refused upgrade changed the opset")
	}
}

func sameFloats(a, b [][]float32) bool {
	for i := range a {
		for j := range a[i] {
			if a[i][j] != b[i][j] {
				return false
			}
		}
	}
	return true
}

func TestExcludeAndDeterminism(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	o := Options{Mode: Static, PerChannel: true, Calib: "random:8", Exclude: []string{"conv2", "MatMul"}}
	a, b := filepath.Join(dir, "a.onnx"), filepath.Join(dir, "b.onnx")
	rep := quantizeFile(t, in, a, o)
	quantizeFile(t, in, b, o)
	ab, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	if !bytes.Equal(ab, bb) {
		t.Fatalf("two runs wrote different bytes")
	}
	g := loadOut(t, a).Graph
	if initByName(g, "w2") == nil || initByName(g, "w3") == nil || initByName(g, "w1") != nil {
		t.Fatalf("excluded weights must stay float, others quantized")
	}
	if len(rep.KeptFloat) != 2 {
		t.Fatalf("kept float %v", rep.KeptFloat)
	}
	if _, err := File(context.Background(), in, in, o); err == nil {
		t.Fatalf("writing over the input must be refused")
	}
}

func TestAutoFallback(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	out := filepath.Join(dir, "fb.onnx")
	// A gate no 8-bit layer can meet forces every layer back to float, most sensitive first.
	gate := 1 - 1e-9
	rep := quantizeFile(t, in, out, Options{Mode: Static, Calib: "random:8", AutoFallback: true, MinCosine: &gate})
	f := rep.Fallback
	if f == nil || !f.Passed || len(f.Kept) != len(rep.Sensitivity) || len(rep.Sensitivity) < 4 {
		t.Fatalf("fallback %+v, %d layers measured", f, len(rep.Sensitivity))
	}
	for i, s := range rep.Sensitivity {
		if s.Rank != i+1 || (i > 0 && s.AddedNoise > rep.Sensitivity[i-1].AddedNoise) || f.Kept[i] != s.Node {
			t.Fatalf("sensitivity not ranked: %+v", rep.Sensitivity)
		}
	}
	// A loose gate keeps everything quantized.
	loose := 0.5
	rep = quantizeFile(t, in, out, Options{Mode: Static, Calib: "random:8", AutoFallback: true, MinCosine: &loose})
	if !rep.Fallback.Passed || len(rep.Fallback.Kept) != 0 || rep.Fallback.Attempts != 1 {
		t.Fatalf("loose gate: %+v", rep.Fallback)
	}
}

// TestCalibrationRangesUsed checks the Q/DQ scales come from calibration.Calibrate's
// ranges for the same data (the table and the model agree).
func TestCalibrationRangesUsed(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	out := filepath.Join(dir, "q.onnx")
	quantizeFile(t, in, out, Options{Mode: Static, Calib: "random:8", Method: calibration.Percentile})
	tab, err := calibration.CalibrateFile(context.Background(), in, "random:8", calibration.Options{}, calibration.CalibrateOptions{Method: calibration.Percentile})
	if err != nil {
		t.Fatal(err)
	}
	g := loadOut(t, out).Graph
	for _, n := range g.Node {
		if n.GetOpType() != "QuantizeLinear" || n.Input[0] != "x" {
			continue
		}
		r, _ := tab.Lookup("x")
		s, _ := onnx.ToTensor(initByName(g, n.Input[1]))
		want := float32((float64(r.Max) - math.Min(0, float64(r.Min))) / 255)
		if d := math.Abs(float64(s.Float32s()[0]-want)) / float64(want); d > 1e-6 {
			t.Fatalf("x scale %v, table range %v gives %v", s.Float32s()[0], r, want)
		}
		return
	}
	t.Fatalf("x is not quantized")
}
