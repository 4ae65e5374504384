package quantize

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

func fp8Options(calib string) Options {
	return Options{Mode: Static, Target: TargetTensorRT, ActivationType: tensor.Float8E4M3FN, Calib: calib}
}

// TestFP8TensorRTStructure pins the FP8 graph: opset 19 / IR 9, float8e4m3fn zero points
// equal to 0 shaped like their scales, activation scales = calibrated amax/448 exactly,
// weights stored as float8e4m3fn per output channel with scales = channel amax/448 and
// codes = ToE4M3FN(w/scale), biases float, the INT8 placement (residual identity branch,
// no layer outputs quantized), and the model runs in ONNX Runtime close to the float one.
func TestFP8TensorRTStructure(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := writeModel(t, dir, "net.onnx", convNet())
	out := filepath.Join(dir, "fp8.onnx")
	rep := quantizeFile(t, in, out, fp8Options("random:16"))
	if rep.ActivationType != "float8e4m3fn" || rep.WeightType != "float8e4m3fn" || !rep.PerChannel || rep.OpsetAfter != opsetFP8 {
		t.Fatalf("report: activations %s, weights %s, per-channel %v, opset %d", rep.ActivationType, rep.WeightType, rep.PerChannel, rep.OpsetAfter)
	}
	m := loadOut(t, out)
	if v := onnx.OpsetOf(m.OpsetImport, ""); v != 19 || m.GetIrVersion() < 9 {
		t.Fatalf("opset %d, IR %d: want 19 and ≥ 9", v, m.GetIrVersion())
	}
	g := m.Graph

	tab, err := calibration.CalibrateFile(context.Background(), in, "random:16", calibration.Options{},
		calibration.CalibrateOptions{Method: calibration.MinMax, Symmetric: true})
	if err != nil {
		t.Fatal(err)
	}
	quantized := map[string]bool{}
	for _, n := range g.Node {
		op := n.GetOpType()
		if op != "QuantizeLinear" && op != "DequantizeLinear" {
			continue
		}
		if len(n.Input) != 3 {
			t.Fatalf("%s: %d inputs, want x, scale and a float8 zero point", n.GetName(), len(n.Input))
		}
		zp, sc := initByName(g, n.Input[2]), initByName(g, n.Input[1])
		if zp == nil || sc == nil {
			t.Fatalf("%s: scale/zero point not initializers", n.GetName())
		}
		if dt := tensor.DType(zp.GetDataType()); dt != tensor.Float8E4M3FN {
			t.Fatalf("%s: zero point type %s, want float8e4m3fn", n.GetName(), dt)
		}
		if len(zp.Dims) != len(sc.Dims) || (len(sc.Dims) == 1 && zp.Dims[0] != sc.Dims[0]) {
			t.Fatalf("%s: zero point shape %v, scale shape %v", n.GetName(), zp.Dims, sc.Dims)
		}
		z, _ := onnx.ToTensor(zp)
		for _, b := range z.Data {
			if b != 0 {
				t.Fatalf("%s: zero point %#02x, want 0", n.GetName(), b)
			}
		}
		if op != "QuantizeLinear" {
			continue
		}
		quantized[n.Input[0]] = true
		r, ok := tab.Lookup(n.Input[0])
		if !ok {
			t.Fatalf("no calibrated range for %s", n.Input[0])
		}
		s, _ := onnx.ToTensor(sc)
		if want := r.Amax() / 448; s.Float32s()[0] != want || len(sc.Dims) != 0 {
			t.Errorf("%s: scale %v (shape %v), want amax %v / 448 = %v per tensor", n.Input[0], s.Float32s()[0], sc.Dims, r.Amax(), want)
		}
	}
	// The INT8 placement: inputs of the layers and the residual identity branch, nothing else.
	// x (conv1), r (conv2 and the identity of add1), f (fc).
	for _, want := range []string{"x", "r", "f"} {
		if !quantized[want] {
			t.Errorf("%s is not quantized (quantized: %v)", want, quantized)
		}
	}
	for _, not := range []string{"c1", "c2", "a", "g", "y"} {
		if quantized[not] {
			t.Errorf("%s must not be quantized", not)
		}
	}
	add := nodeByName(t, g, "add1")
	if add.Input[0] != "c2" || producerOf(g, add.Input[1]).GetOpType() != "DequantizeLinear" {
		t.Errorf("residual add inputs %v: want c2 float and r dequantized", add.Input)
	}
	if b := initByName(g, nodeByName(t, g, "conv1").Input[2]); b == nil || tensor.DType(b.GetDataType()) != tensor.Float32 {
		t.Errorf("conv1 bias must stay a float initializer")
	}

	// Weights: per output channel (Conv axis 0, MatMul [K, N] axis 1), values by hand.
	src := convNet().Graph
	for _, c := range []struct {
		node, weight string
		axis         int
	}{{"conv1", "w1", 0}, {"conv2", "w2", 0}, {"fc", "w3", 1}} {
		dq, q := dqSource(g, nodeByName(t, g, c.node).Input[1])
		if q == nil || tensor.DType(q.GetDataType()) != tensor.Float8E4M3FN || intAttr(dq, "axis", -1) != int64(c.axis) {
			t.Fatalf("%s: weight is not a float8e4m3fn initializer behind a DequantizeLinear on axis %d", c.node, c.axis)
		}
		wt, _ := onnx.ToTensor(initByName(src, c.weight))
		w := wt.Float32s()
		qt, _ := onnx.ToTensor(q)
		st, _ := onnx.ToTensor(initByName(g, dq.Input[1]))
		scales := st.Float32s()
		dims := wt.Shape
		if int64(len(scales)) != dims[c.axis] {
			t.Fatalf("%s: %d scales for %d channels", c.node, len(scales), dims[c.axis])
		}
		inner := int64(1)
		for _, d := range dims[c.axis+1:] {
			inner *= d
		}
		amax := make([]float32, len(scales))
		for i, v := range w {
			ch := (int64(i) / inner) % dims[c.axis]
			amax[ch] = max(amax[ch], float32(math.Abs(float64(v))))
		}
		for ch, a := range amax {
			if scales[ch] != a/448 {
				t.Errorf("%s channel %d: scale %v, want amax %v / 448", c.node, ch, scales[ch], a)
			}
		}
		for i, v := range w {
			s := scales[(int64(i)/inner)%dims[c.axis]]
			code := qt.Data[i]
			if want := quant.ToE4M3FN(v / s); code != want {
				t.Fatalf("%s[%d] = %#02x, want %#02x", c.weight, i, code, want)
			}
			// 3 mantissa bits: within half a step, 2^-4 relative (2^-10·s below the normals).
			deq := tensor.E4M3FNToFloat32(code) * s
			if d := math.Abs(float64(deq - v)); d > math.Abs(float64(v))/16+float64(s)/1024+1e-12 {
				t.Fatalf("%s[%d] = %v dequantizes to %v", c.weight, i, v, deq)
			}
		}
	}
	// Runs in ONNX Runtime (float8 Q/DQ kernels) and agrees with the float model: measured
	// worst cosine 0.9995 on this net.
	worst, _, _ := agreement(t, in, out, "random:16", "", nil, "y")
	t.Logf("worst cosine %.5f", worst)
	if worst < 0.995 {
		t.Fatalf("worst cosine %.5f", worst)
	}
}

// TestFP8MatchesORTQuantizeLinear runs ONNX Runtime's own QuantizeLinear to float8e4m3fn
// (scale 1, saturate) on every midpoint between neighbouring codes, the float32 values
// either side of it, the codes themselves and the special values, and compares its bytes
// with quant.ToE4M3FN: activations are quantized by ONNX Runtime (or TensorRT) and weights
// by optimctl, so both must round alike.
func TestFP8MatchesORTQuantizeLinear(t *testing.T) {
	needORT(t)
	var vals []float32
	for k := 0; k < 0x7e; k++ {
		lo, hi := tensor.E4M3FNToFloat32(byte(k)), tensor.E4M3FNToFloat32(byte(k+1))
		mid := (lo + hi) / 2
		for _, v := range []float32{lo, mid, math.Nextafter32(mid, 0), math.Nextafter32(mid, 1000)} {
			vals = append(vals, v, -v)
		}
	}
	inf := float32(math.Inf(1))
	vals = append(vals, 448, 449, 464, 479, 480, 1e9, inf, -inf, float32(math.NaN()), 0x1p-12, math.SmallestNonzeroFloat32)
	n := int64(len(vals))
	g := &onnxpb.GraphProto{Name: proto.String("q8"),
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, n)},
		Output: []*onnxpb.ValueInfoProto{vinfo("q", tensor.Float8E4M3FN, n), vinfo("y", tensor.Float32, n)},
		Initializer: []*onnxpb.TensorProto{finit("s", nil, []float32{1}),
			onnx.FromTensor("z", tensor.New(tensor.Float8E4M3FN, nil))},
		Node: []*onnxpb.NodeProto{
			newNode("QuantizeLinear", "", "quant", []string{"x", "s", "z"}, []string{"q"}),
			newNode("DequantizeLinear", "", "dequant", []string{"q", "s", "z"}, []string{"y"}),
		}}
	mp := model(19, g)
	mp.IrVersion = proto.Int64(9)
	b, err := mp.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.NewSession(b, runtime.Options{})
	if err != nil {
		t.Fatalf("ONNX Runtime rejects float8 Q/DQ: %v", err)
	}
	defer s.Close()
	res, err := s.Run(map[string]*tensor.Tensor{"x": tensor.FromFloat32([]int64{n}, vals)}, "q", "y")
	if err != nil {
		t.Fatalf("ONNX Runtime float8 Q/DQ: %v", err)
	}
	q, y := res["q"], res["y"].Float32s()
	if q.DType != tensor.Float8E4M3FN {
		t.Fatalf("q is %s", q.DType)
	}
	bad := 0
	for i, v := range vals {
		want := quant.ToE4M3FN(v)
		if q.Data[i] != want {
			bad++
			if bad <= 10 {
				t.Errorf("QuantizeLinear(%g): ONNX Runtime %#02x, quant.ToE4M3FN %#02x", v, q.Data[i], want)
			}
		}
		d := tensor.E4M3FNToFloat32(q.Data[i])
		if !(d == y[i] || (d != d && y[i] != y[i])) {
			t.Errorf("DequantizeLinear(%#02x) = %v, want %v", q.Data[i], y[i], d)
		}
	}
	if bad > 0 {
		t.Fatalf("%d of %d values round differently", bad, len(vals))
	}
}

func TestFP8Options(t *testing.T) {
	for _, s := range []string{"float8e4m3fn", "FP8", "QFLOAT8E4M3FN", "e4m3"} {
		if dt, err := ParseType(s); err != nil || dt != tensor.Float8E4M3FN {
			t.Errorf("ParseType(%q) = %v, %v", s, dt, err)
		}
	}
	// Either type set to float8 makes both float8.
	o, err := Options{Mode: Static, Target: TargetTensorRT, WeightType: tensor.Float8E4M3FN, Calib: "random:1"}.normalized()
	if err != nil || o.ActivationType != tensor.Float8E4M3FN || o.WeightType != tensor.Float8E4M3FN || !o.Symmetric || !o.PerChannel {
		t.Fatalf("normalized: %+v, %v", o, err)
	}
	bad := []struct {
		o    Options
		want string
	}{
		{Options{Mode: Static, ActivationType: tensor.Float8E4M3FN, Calib: "random:1"}, "target tensorrt only"},
		{Options{Mode: Dynamic, ActivationType: tensor.Float8E4M3FN}, "--mode static"},
		{Options{Mode: Static, Target: TargetTensorRT, ActivationType: tensor.Float8E4M3FN, WeightType: tensor.Int8, Calib: "random:1"}, "alike"},
		{Options{Mode: Static, Target: TargetTensorRT, ActivationType: tensor.Float8E4M3FN, Method: calibration.Entropy, Calib: "random:1"}, "entropy"},
		{Options{Mode: Static, Target: TargetTensorRT, Format: QOperator, ActivationType: tensor.Float8E4M3FN, Calib: "random:1"}, "Q/DQ only"},
		{Options{Mode: Static, Target: TargetTensorRT, ActivationType: tensor.Float8E4M3FN, ReduceRange: true, Calib: "random:1"}, "reduce-range"},
	}
	for _, c := range bad {
		if err := c.o.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one containing %q", c.o, err, c.want)
		}
	}
}

// TestFP8OpsetUpgrade: an opset-13 model with a ReduceMean (axes attribute until opset 18)
// comes out at opset 19 with the axes as an input, and computes the same.
func TestFP8OpsetUpgrade(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	g := &onnxpb.GraphProto{Name: proto.String("reduce"),
		Input:       []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, 1, 3, 8, 8)},
		Output:      []*onnxpb.ValueInfoProto{vinfo("y", tensor.Float32, 1, 4, 1, 1)},
		Initializer: []*onnxpb.TensorProto{finit("w", []int64{4, 3, 3, 3}, seeded(5, 108, 0.5))},
		Node: []*onnxpb.NodeProto{
			newNode("Conv", "", "conv", []string{"x", "w"}, []string{"c"}),
			newNode("ReduceMean", "", "mean", []string{"c"}, []string{"y"}, attrInts("axes", []int64{2, 3})),
		}}
	in := writeModel(t, dir, "reduce.onnx", model(13, g))
	out := filepath.Join(dir, "reduce.fp8.onnx")
	rep := quantizeFile(t, in, out, fp8Options("random:8"))
	if rep.OpsetBefore != 13 || rep.OpsetAfter != 19 || len(rep.Notes) == 0 {
		t.Fatalf("opset %d → %d, notes %v", rep.OpsetBefore, rep.OpsetAfter, rep.Notes)
	}
	og := loadOut(t, out).Graph
	mean := nodeByName(t, og, "mean")
	ax := initByName(og, mean.Input[len(mean.Input)-1])
	if len(mean.Input) != 2 || getAttr(mean, "axes") != nil || ax == nil {
		t.Fatalf("ReduceMean at opset 19: inputs %v, attributes %v", mean.Input, mean.Attribute)
	}
	if v, _ := onnx.ToTensor(ax); v.Int64s()[0] != 2 || v.Int64s()[1] != 3 {
		t.Fatalf("axes %v", v.Int64s())
	}
	if worst, _, _ := agreement(t, in, out, "random:8", "", nil, "y"); worst < 0.99 {
		t.Fatalf("worst cosine %.4f", worst)
	}

	// What cannot be carried over is named, and nothing is written.
	for _, c := range []struct {
		n    *onnxpb.NodeProto
		want string
	}{
		{newNode("Upsample", "", "up", []string{"x", "s"}, []string{"y"}), "no conversion of Upsample"},
		{&onnxpb.NodeProto{OpType: proto.String("If"), Name: proto.String("branch"),
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("then_branch"), G: &onnxpb.GraphProto{}}}}, "subgraph"},
		{newNode("Resize", "", "rs", []string{"x", "s"}, []string{"y"}), "Resize-10"},
	} {
		if err := canUpgradeTo19(c.n, 10); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.n.GetOpType(), err, c.want)
		}
	}
	for _, op := range []string{"ReduceMax", "Softmax", "Conv", "HardSwish", "LayerNormalization", "RoiAlign"} {
		if err := canUpgradeTo19(newNode(op, "", "n", []string{"x"}, []string{"y"}), 13); err != nil {
			t.Errorf("%s: %v", op, err)
		}
	}
}

// TestRealFP8 quantizes the PP-OCR classifier and detector to FP8 (TensorRT placement) on
// the 30 photos and measures them in ONNX Runtime against the float models. Measured
// (2-core x86, ORT 1.30 CPU), beside INT8 with the same placement:
//   - classifier: worst cosine 0.857, top-1 19/30 (INT8: 0.924, 25/30);
//   - detector: global cosine 0.828, text-mask IoU 0.678 (INT8: 0.702, 0.511).
//
// E4M3 keeps 3 mantissa bits, a relative step of 2^-4 at every magnitude: INT8 with a tight
// per-tensor range resolves the bulk of the classifier's activations more finely, while the
// detector's per-channel outliers (which one INT8 scale cannot serve) suit FP8's range.
func TestRealFP8(t *testing.T) {
	needORT(t)
	imgs := testassets.Path(t, testassets.Images)
	dir := t.TempDir()
	t.Run("classifier", func(t *testing.T) {
		in := testassets.Path(t, testassets.OCRClassifier)
		out := filepath.Join(dir, "cls.fp8.onnx")
		o := fp8Options(imgs)
		o.Preprocess, o.Shapes = clsPre, clsShape
		rep := quantizeFile(t, in, out, o)
		if rep.OpsetBefore != 9 || rep.OpsetAfter != 19 {
			t.Errorf("opset %d → %d, want 9 → 19", rep.OpsetBefore, rep.OpsetAfter)
		}
		worst, global, outs := agreement(t, in, out, imgs, clsPre, clsShape, "softmax_0.tmp_0")
		agreed := top1(outs)
		t.Logf("fp8 classifier: worst cosine %.4f, global %.5f, top-1 agreement %.3f, %d → %d bytes", worst, global, agreed, rep.SizeBefore, rep.SizeAfter)
		if worst < 0.80 || agreed < 0.55 {
			t.Fatalf("worst cosine %.4f (want ≥ 0.80), top-1 %.3f (want ≥ 0.55)", worst, agreed)
		}
	})
	t.Run("detector", func(t *testing.T) {
		if testing.Short() {
			t.Skip("320×320 detector runs take seconds (-short)")
		}
		in := testassets.Path(t, testassets.OCRDetector)
		out := filepath.Join(dir, "det.fp8.onnx")
		o := fp8Options(imgs)
		o.Preprocess, o.Shapes = detPre, detShape
		quantizeFile(t, in, out, o)
		_, global, outs := agreement(t, in, out, imgs, detPre, detShape, "sigmoid_0.tmp_0")
		iou := maskIoU(outs)
		t.Logf("fp8 detector: global cosine %.5f, text-mask IoU %.4f", global, iou)
		if global < 0.78 || iou < 0.62 {
			t.Fatalf("global cosine %.5f (want ≥ 0.78), IoU %.4f (want ≥ 0.62)", global, iou)
		}
	})
}
