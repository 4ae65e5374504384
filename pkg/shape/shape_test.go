package shape

import (
	"path/filepath"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/onnx/onnxtest"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// vi builds a float value info; a dim is an int (size) or a string (symbolic).
func vi(name string, dims ...any) *onnxpb.ValueInfoProto {
	return onnxtest.ValueInfo(name, tensor.Float32, dims...)
}

func node(op string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return onnxtest.Node(op, "", ins, outs, attrs...)
}

func ints(name string, v ...int64) *onnxpb.AttributeProto { return onnxtest.Ints(name, v...) }

func intAttr(name string, v int64) *onnxpb.AttributeProto { return onnxtest.Int(name, v) }

func i64(name string, v ...int64) *onnxpb.TensorProto { return onnxtest.Int64s(name, v...) }

func model(t *testing.T, opset int64, g *onnxpb.GraphProto) *onnx.Model {
	t.Helper()
	if g.Output == nil {
		g.Output = []*onnxpb.ValueInfoProto{{Name: proto.String(g.Node[len(g.Node)-1].Output[0])}}
	}
	return onnxtest.Load(t, g, opset)
}

// dims renders an inferred shape as []any of int64 sizes and symbolic names ("?" unknown).
func dims(i *Info) []any {
	if i == nil || !i.Ranked {
		return nil
	}
	out := []any{}
	for _, d := range i.Dims {
		switch {
		case d.IsKnown():
			out = append(out, int(d.Value))
		case d.Param != "":
			out = append(out, d.Param)
		default:
			out = append(out, "?")
		}
	}
	return out
}

func check(t *testing.T, r *Result, name string, want ...any) {
	t.Helper()
	if want == nil {
		want = []any{}
	}
	if got := dims(r.Info(name)); !reflect.DeepEqual(got, want) {
		t.Errorf("%s: shape %v, want %v", name, got, want)
	}
}

func TestConvPoolAndSymbolicBatch(t *testing.T) {
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{vi("x", "N", 3, 224, 224)},
		Initializer: []*onnxpb.TensorProto{
			onnx.FromTensor("w", tensor.New(tensor.Float32, []int64{16, 3, 7, 7})),
			onnx.FromTensor("wt", tensor.New(tensor.Float32, []int64{16, 4, 2, 2})),
		},
		Node: []*onnxpb.NodeProto{
			node("Conv", []string{"x", "w"}, []string{"c"}, ints("strides", 2, 2), ints("pads", 3, 3, 3, 3)),
			node("MaxPool", []string{"c"}, []string{"p"}, ints("kernel_shape", 3, 3), ints("strides", 2, 2), intAttr("ceil_mode", 1)),
			node("AveragePool", []string{"p"}, []string{"a"}, ints("kernel_shape", 2, 2), ints("strides", 2, 2)),
			node("Conv", []string{"a", "w2"}, []string{"same"}, ints("kernel_shape", 3, 3), &onnxpb.AttributeProto{Name: proto.String("auto_pad"), S: []byte("SAME_UPPER")}),
			node("ConvTranspose", []string{"a", "wt"}, []string{"up"}, ints("strides", 2, 2)),
			node("GlobalAveragePool", []string{"up"}, []string{"gap"}),
			node("Flatten", []string{"gap"}, []string{"f"}),
		},
	}
	g.Initializer = append(g.Initializer, onnx.FromTensor("w2", tensor.New(tensor.Float32, []int64{8, 16, 3, 3})))
	r, err := Analyze(model(t, 13, g), Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, "c", "N", 16, 112, 112)
	check(t, r, "p", "N", 16, 56, 56) // ceil((112-3)/2)+1 = 56
	check(t, r, "a", "N", 16, 28, 28)
	check(t, r, "same", "N", 8, 28, 28)
	check(t, r, "up", "N", 4, 56, 56) // W is [C, M/group, kh, kw]
	check(t, r, "gap", "N", 4, 1, 1)
	check(t, r, "f", "N", 4)
}

func TestReshapeShapeArithmetic(t *testing.T) {
	// Reshape(x, Concat(Shape(x)[0:1], [-1])) keeps the symbolic batch; its target
	// elements are tracked.
	g := &onnxpb.GraphProto{
		Input:       []*onnxpb.ValueInfoProto{vi("x", "N", 4, 3, 2)},
		Initializer: []*onnxpb.TensorProto{i64("st", 0), i64("en", 1), i64("m1", -1), i64("z", 0, 6, -1)},
		Node: []*onnxpb.NodeProto{
			node("Shape", []string{"x"}, []string{"s"}),
			node("Slice", []string{"s", "st", "en"}, []string{"b"}),
			node("Concat", []string{"b", "m1"}, []string{"t"}, intAttr("axis", 0)),
			node("Reshape", []string{"x", "t"}, []string{"y"}),
			node("Reshape", []string{"x", "z"}, []string{"y0"}),
		},
	}
	r, err := Analyze(model(t, 13, g), Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, "y", "N", 24)
	check(t, r, "y0", "N", 6, 4)
	v, _ := r.Values("t")
	if len(v) != 2 || v[0].Known || v[0].Param != "N" || !v[1].Known || v[1].V != -1 {
		t.Errorf("tracked target = %+v", v)
	}
	// Fixing the input makes every element known.
	r, _ = Analyze(model(t, 13, g), Options{InputShapes: map[string][]int64{"x": {5, 4, 3, 2}}})
	if got, ok := r.KnownInts("t"); !ok || !reflect.DeepEqual(got, []int64{5, -1}) {
		t.Errorf("fixed target = %v %v", got, ok)
	}
	check(t, r, "y", 5, 24)
}

func TestSqueezeUnsqueezeByOpset(t *testing.T) {
	for _, opset := range []int64{11, 13} {
		g := &onnxpb.GraphProto{Input: []*onnxpb.ValueInfoProto{vi("x", 1, 3, 1, 5)}}
		if opset < 13 {
			g.Node = []*onnxpb.NodeProto{
				node("Squeeze", []string{"x"}, []string{"s"}, ints("axes", 0, -2)),
				node("Unsqueeze", []string{"s"}, []string{"u"}, ints("axes", 0, 3)),
			}
		} else {
			g.Initializer = []*onnxpb.TensorProto{i64("a", 0, -2), i64("b", 0, 3)}
			g.Node = []*onnxpb.NodeProto{
				node("Squeeze", []string{"x", "a"}, []string{"s"}),
				node("Unsqueeze", []string{"s", "b"}, []string{"u"}),
			}
		}
		r, err := Analyze(model(t, opset, g), Options{})
		if err != nil {
			t.Fatal(err)
		}
		check(t, r, "s", 3, 5)
		check(t, r, "u", 1, 3, 5, 1)
	}
}

func TestBroadcastMatMulGemmSlice(t *testing.T) {
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{vi("a", "B", 1, 5), vi("b", 7, 1), vi("m", "B", "T", 8), vi("k", 8, 6)},
		Initializer: []*onnxpb.TensorProto{i64("st", 1), i64("en", -1), i64("ax", 2),
			onnx.FromTensor("gw", tensor.New(tensor.Float32, []int64{4, 6}))},
		Node: []*onnxpb.NodeProto{
			node("Add", []string{"a", "b"}, []string{"ab"}),
			node("MatMul", []string{"m", "k"}, []string{"mk"}),
			node("Slice", []string{"mk", "st", "en", "ax"}, []string{"sl"}),
			node("Transpose", []string{"sl"}, []string{"tr"}, ints("perm", 2, 0, 1)),
			node("Gemm", []string{"k", "gw"}, []string{"gm"}, intAttr("transB", 1)),
			node("Where", []string{"ab", "a", "b"}, []string{"wh"}),
		},
	}
	g.Node[len(g.Node)-1].Input[0] = "ab"
	r, err := Analyze(model(t, 13, g), Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, "ab", "B", 7, 5)
	check(t, r, "mk", "B", "T", 6)
	check(t, r, "sl", "B", "T", 4)
	check(t, r, "tr", 4, "B", "T")
	check(t, r, "gm", 8, 4)
	check(t, r, "wh", "B", 7, 5)
}

func TestResizeSplitPadConcat(t *testing.T) {
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{vi("x", 1, 4, 10, 12)},
		Initializer: []*onnxpb.TensorProto{onnx.FromTensor("sc", tensor.FromFloat32([]int64{4}, []float32{1, 1, 2, 0.5})),
			i64("pads", 0, 0, 1, 2, 0, 0, 3, 4), i64("sp", 1, 3)},
		Node: []*onnxpb.NodeProto{
			node("Resize", []string{"x", "", "sc"}, []string{"rs"}, &onnxpb.AttributeProto{Name: proto.String("mode"), S: []byte("nearest")}),
			node("Pad", []string{"x", "pads"}, []string{"pd"}),
			node("Split", []string{"x", "sp"}, []string{"s1", "s2"}, intAttr("axis", 1)),
			node("Concat", []string{"s2", "s1", "x"}, []string{"cc"}, intAttr("axis", 1)),
			node("ReduceMean", []string{"x"}, []string{"rm"}, ints("axes", -1), intAttr("keepdims", 0)),
		},
	}
	r, err := Analyze(model(t, 13, g), Options{})
	if err != nil {
		t.Fatal(err)
	}
	check(t, r, "rs", 1, 4, 20, 6)
	check(t, r, "pd", 1, 4, 14, 18)
	check(t, r, "s1", 1, 1, 10, 12)
	check(t, r, "s2", 1, 3, 10, 12)
	check(t, r, "cc", 1, 8, 10, 12)
	check(t, r, "rm", 1, 4, 10)
}

func TestUnknownOpLeavesOutputUnknown(t *testing.T) {
	g := &onnxpb.GraphProto{
		Input: []*onnxpb.ValueInfoProto{vi("x", 2, 3)},
		Node: []*onnxpb.NodeProto{
			{OpType: proto.String("Mystery"), Domain: proto.String("com.example"), Input: []string{"x"}, Output: []string{"m"}},
			node("Relu", []string{"m"}, []string{"r"}),
			node("Relu", []string{"x"}, []string{"ok"}),
		},
		Output: []*onnxpb.ValueInfoProto{{Name: proto.String("r")}},
	}
	mp := model(t, 13, g)
	mp.Proto.OpsetImport = append(mp.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("com.example"), Version: proto.Int64(1)})
	specs, err := Infer(mp, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := specs["m"]; ok {
		t.Error("unknown op output typed")
	}
	if s := specs["ok"]; !reflect.DeepEqual(s.Shape, []int64{2, 3}) || s.DType != tensor.Float32 {
		t.Errorf("ok = %+v", s)
	}
	// value_info: only what is known, in graph order.
	var names []string
	for _, v := range mp.Graph().ValueInfo {
		names = append(names, v.GetName())
	}
	if !reflect.DeepEqual(names, []string{"ok"}) {
		t.Errorf("value_info = %v, want [ok] (m and r are unknown)", names)
	}
}

func TestBadInputShape(t *testing.T) {
	g := &onnxpb.GraphProto{Input: []*onnxpb.ValueInfoProto{vi("x", 2, 3)}, Node: []*onnxpb.NodeProto{node("Relu", []string{"x"}, []string{"y"})}}
	if _, err := Analyze(model(t, 13, g), Options{InputShapes: map[string][]int64{"x": {1}}}); err == nil {
		t.Error("rank mismatch accepted")
	}
	if _, err := Analyze(model(t, 13, g), Options{InputShapes: map[string][]int64{"nope": {1}}}); err == nil {
		t.Error("unknown input accepted")
	}
}

// TestRealModelsFullyStatic: with the input fixed, every value of every real model gets
// a static shape, and graph outputs come out as ONNX Runtime produces them.
func TestRealModelsFullyStatic(t *testing.T) {
	cases := []struct {
		rel   string
		input []int64
		out   []int64
	}{
		{testassets.OCRClassifier, []int64{1, 3, 48, 192}, []int64{1, 2}},
		{testassets.OCRDetector, []int64{1, 3, 640, 640}, []int64{1, 1, 640, 640}},
		{testassets.OCRRecognizer, []int64{1, 3, 48, 320}, []int64{1, 40, 6625}},
		{filepath.Join(testassets.ONNXLight, "light_inception_v1.onnx"), nil, []int64{1, 1000}},
		{filepath.Join(testassets.ONNXLight, "light_densenet121.onnx"), nil, []int64{1, 1000, 1, 1}},
		{filepath.Join(testassets.ONNXLight, "light_shufflenet.onnx"), nil, []int64{1, 1000}},
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.rel), func(t *testing.T) {
			m, err := onnx.Load(testassets.Path(t, c.rel))
			if err != nil {
				t.Fatal(err)
			}
			var shapes map[string][]int64
			if c.input != nil {
				shapes = map[string][]int64{m.InputSpecs()[0].Name: c.input}
			}
			specs, err := Infer(m, shapes)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range m.Graph().Node {
				for _, o := range n.Output {
					if s, ok := specs[o]; !ok || s.Dynamic() {
						t.Errorf("%s output %q: %+v", onnx.NodeLabel(n), o, s)
					}
				}
			}
			out := m.Graph().Output[0].GetName()
			if got := specs[out].Shape; !reflect.DeepEqual(got, c.out) {
				t.Errorf("output %s = %v, want %v", out, got, c.out)
			}
		})
	}
}

func TestInferredDimCancelsNames(t *testing.T) {
	// [N, T, 8] reshaped to [T, -1, 8]: the -1 is N, whatever the map order.
	for range 20 {
		got := inferredDim([]Dim{Sym("N"), Sym("T"), Known(8)}, []Dim{Sym("T"), Unknown, Known(8)}, 1)
		if !got.Same(Sym("N")) {
			t.Fatalf("inferred %v, want N", got)
		}
	}
	if got := inferredDim([]Dim{Sym("N"), Known(6)}, []Dim{Unknown, Known(4)}, 0); got.IsKnown() || got.Param != "" {
		t.Errorf("N*6/4 inferred as %v, want unknown", got)
	}
	if got := inferredDim([]Dim{Known(2), Known(6)}, []Dim{Known(3), Unknown}, 1); !got.Same(Known(4)) {
		t.Errorf("2*6/3 = %v", got)
	}
}
