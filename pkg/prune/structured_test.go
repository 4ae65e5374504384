package prune

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// residualGraph has every coupling structured pruning must follow:
//
//	x → c1+bn1+Relu = a
//	a → c2+bn2 ┐
//	a → c3+bn3 ┴ Add → Relu = r2             (residual: c2 and c3 must drop the same channels)
//	r2 → depthwise dw(+bias)+bnd+Relu = d2   (group = channels)
//	d2 → GAP → se1 → Relu → se2 → HardSigmoid ┐
//	d2 ─────────────────────────────────────── Mul → Add K[1,8,1,1] → c4  (SE block, channel constant)
//	r2 → c5
//	Concat(c4, c5) → c6(+bias) → Relu → MaxPool → Flatten → Gemm(transB) → y
//
// Channel 5 of the residual group is made tiny in every layer producing it, so it must go.
func residualGraph(seed uint64) *onnxpb.GraphProto {
	rng := rand.New(rand.NewPCG(seed, 3))
	w := func(name string, dims ...int64) *onnxpb.TensorProto { return randInit(rng, name, dims...) }
	tiny := func(t *onnxpb.TensorProto, ch int) *onnxpb.TensorProto {
		v, _ := onnx.ToTensor(t)
		f := v.Float32s()
		per := len(f) / int(t.Dims[0])
		for i := ch * per; i < (ch+1)*per; i++ {
			f[i] *= 0.01
		}
		return onnx.FromTensor(t.GetName(), v)
	}
	pads := intsAttr("pads", 1, 1, 1, 1)
	g := &onnxpb.GraphProto{
		Name: proto.String("residual"),
		Node: []*onnxpb.NodeProto{
			node("Conv", "c1", []string{"x", "W1", "B1"}, []string{"c1o"}, pads),
			bnNode("bn1", "c1o", "a0"),
			node("Relu", "relu_a", []string{"a0"}, []string{"a"}),
			node("Conv", "c2", []string{"a", "W2"}, []string{"c2o"}),
			bnNode("bn2", "c2o", "b"),
			node("Conv", "c3", []string{"a", "W3"}, []string{"c3o"}, pads),
			bnNode("bn3", "c3o", "c"),
			node("Add", "res", []string{"b", "c"}, []string{"r"}),
			node("Relu", "relu_r", []string{"r"}, []string{"r2"}),
			node("Conv", "dw", []string{"r2", "Wd", "Bd"}, []string{"d"}, pads, intAttr("group", 8)),
			bnNode("bnd", "d", "d1"),
			node("Relu", "relu_d", []string{"d1"}, []string{"d2"}),
			node("GlobalAveragePool", "gap", []string{"d2"}, []string{"s0"}),
			node("Conv", "se1", []string{"s0", "Ws1", "Bs1"}, []string{"s1"}),
			node("Relu", "relu_s", []string{"s1"}, []string{"s2"}),
			node("Conv", "se2", []string{"s2", "Ws2", "Bs2"}, []string{"s3"}),
			node("HardSigmoid", "hsig", []string{"s3"}, []string{"s4"}),
			node("Mul", "scale", []string{"d2", "s4"}, []string{"e"}),
			node("Add", "shift", []string{"e", "K"}, []string{"e2"}),
			node("Conv", "c4", []string{"e2", "W4"}, []string{"f4"}),
			node("Conv", "c5", []string{"r2", "W5"}, []string{"f5"}),
			node("Concat", "cat", []string{"f4", "f5"}, []string{"cat"}, intAttr("axis", 1)),
			node("Conv", "c6", []string{"cat", "W6", "B6"}, []string{"g"}),
			node("Relu", "relu_g", []string{"g"}, []string{"g2"}),
			node("MaxPool", "pool", []string{"g2"}, []string{"g3"}, intsAttr("kernel_shape", 2, 2), intsAttr("strides", 2, 2)),
			node("Flatten", "flat", []string{"g3"}, []string{"h"}),
			node("Gemm", "fc", []string{"h", "Wg", "Bg"}, []string{"y"}, intAttr("transB", 1)),
		},
		Input:     []*onnxpb.ValueInfoProto{vinfo("x", -1, 3, 8, 8)},
		Output:    []*onnxpb.ValueInfoProto{vinfo("y", -1, 5)},
		ValueInfo: []*onnxpb.ValueInfoProto{vinfo("r2", -1, 8, 8, 8), vinfo("cat", -1, 10, 8, 8), vinfo("h", -1, 192)},
		Initializer: []*onnxpb.TensorProto{
			w("W1", 8, 3, 3, 3), w("B1", 8), tiny(w("W2", 8, 8, 1, 1), 5), tiny(w("W3", 8, 8, 3, 3), 5),
			tiny(w("Wd", 8, 1, 3, 3), 5), w("Bd", 8), w("Ws1", 2, 8, 1, 1), w("Bs1", 2),
			tiny(w("Ws2", 8, 2, 1, 1), 5), w("Bs2", 8), w("K", 1, 8, 1, 1), w("W4", 6, 8, 1, 1), w("W5", 4, 8, 1, 1),
			w("W6", 12, 10, 1, 1), w("B6", 12), w("Wg", 5, 192), w("Bg", 5),
		},
	}
	for _, bn := range []struct {
		name string
		c    int64
	}{{"bn1", 8}, {"bn2", 8}, {"bn3", 8}, {"bnd", 8}} {
		g.Initializer = append(g.Initializer, bnInits(rng, bn.name, bn.c)...)
	}
	return g
}

// checkStructured prunes g, runs it and the masked original in ONNX Runtime on in, and
// requires the same outputs; it returns the pruned model and report.
func checkStructured(t *testing.T, g *onnxpb.GraphProto, o Options, in map[string]*tensor.Tensor) (*onnx.Model, *Report) {
	t.Helper()
	ref := maskedEquivalent(t, build(t, proto.Clone(g).(*onnxpb.GraphProto)), o)
	m := build(t, g)
	r, err := Apply(m, o)
	if err != nil {
		t.Fatal(err)
	}
	want := runORT(t, ref, in)
	got := runORT(t, marshal(t, m), in)
	for k, v := range want {
		if d := maxAbsDiff(t, v, got[k]); d > 1e-4 {
			t.Errorf("output %s: pruned model differs from the masked original by %g", k, d)
		}
	}
	return m, r
}

func dimsOf(m *onnx.Model, name string) []int64 {
	if t := m.Initializer(name); t != nil {
		return t.Dims
	}
	return nil
}

func groupOf(r *Report, producer string) *GroupReport {
	for i, g := range r.Groups {
		if slices.Contains(g.Producers, producer) {
			return &r.Groups[i]
		}
	}
	return nil
}

func TestStructuredResidualGraph(t *testing.T) {
	initORT(t)
	in := map[string]*tensor.Tensor{"x": randInput(1, 2, 3, 8, 8)}
	m, r := checkStructured(t, residualGraph(1), Options{Method: Structured, Sparsity: 0.25, ChannelMultiple: 1}, in)

	res := groupOf(r, "c2")
	if res == nil || !slices.Contains(res.Producers, "c3") || !slices.Contains(res.Producers, "se2") {
		t.Fatalf("residual group = %+v, want c2, c3 and the SE excitation se2 together", res)
	}
	if res.Channels != 8 || res.Kept != 6 || !slices.Contains(res.Removed, 5) {
		t.Errorf("residual group %+v: want 8 → 6 channels with the weak channel 5 removed", res)
	}
	for name, want := range map[string][]int64{
		"W1": {6, 3, 3, 3}, "B1": {6}, "bn1_s": {6}, // group of c1: 8 → 6
		"W2": {6, 6, 1, 1}, "W3": {6, 6, 3, 3}, "bn2_v": {6}, "bn3_m": {6}, // residual group, inputs follow c1
		"Wd": {6, 1, 3, 3}, "Bd": {6}, "bnd_b": {6}, // depthwise follows the residual group
		"Ws1": {1, 6, 1, 1}, "Ws2": {6, 1, 1, 1}, "Bs2": {6}, "K": {1, 6, 1, 1},
		"W4": {4, 6, 1, 1}, "W5": {3, 6, 1, 1}, // 6 → 4, 4 → 3
		"W6": {9, 7, 1, 1}, "B6": {9}, // reads the concatenation 4 + 3; 12 → 9
		"Wg": {5, 9 * 16}, "Bg": {5}, // 9 channels × 4×4 positions after Flatten; output untouched
	} {
		if got := dimsOf(m, name); !slices.Equal(got, want) {
			t.Errorf("%s: shape %v, want %v", name, got, want)
		}
	}
	for _, n := range m.Proto.Graph.Node {
		if n.GetName() == "dw" && attrInt(n, "group", 0) != 6 {
			t.Errorf("depthwise group = %d, want 6", attrInt(n, "group", 0))
		}
	}
	if len(m.Proto.Graph.ValueInfo) != 0 {
		t.Errorf("stale value_info left: %v", m.Proto.Graph.ValueInfo)
	}
	if r.ParametersAfter >= r.ParametersBefore || r.Sparsity <= 0.25 {
		t.Errorf("parameters %d → %d, sparsity %v", r.ParametersBefore, r.ParametersAfter, r.Sparsity)
	}
	if len(r.Skipped) != 0 {
		// The Gemm's 5 outputs reach the graph output; a 1-output... nothing else may be skipped.
		for _, s := range r.Skipped {
			if !strings.Contains(s.Reason, "graph output") {
				t.Errorf("unexpected skip %+v", s)
			}
		}
	}
	// The same model at batch 1 and 3 (dynamic batch is kept).
	runORT(t, marshal(t, m), map[string]*tensor.Tensor{"x": randInput(2, 3, 3, 8, 8)})
}

// TestStructuredGlobal: the global ranking still prunes groups identically and keeps a channel
// in every group.
func TestStructuredGlobal(t *testing.T) {
	initORT(t)
	in := map[string]*tensor.Tensor{"x": randInput(1, 1, 3, 8, 8)}
	_, r := checkStructured(t, residualGraph(2), Options{Method: Structured, Sparsity: 0.5, Global: true, Norm: 2, ChannelMultiple: 1}, in)
	removed := r.ChannelsBefore - r.ChannelsAfter
	if want := removeCount(0.5, r.ChannelsBefore); removed != want {
		t.Errorf("global: removed %d of %d channels, want %d", removed, r.ChannelsBefore, want)
	}
	for _, g := range r.Groups {
		if g.Kept < 1 {
			t.Errorf("group %v emptied", g.Producers)
		}
	}
}

// headGraph: conv → Relu → Reshape → MatMul, with the Reshape target either a constant or
// built at run time the way exporters do: Concat(Unsqueeze(Gather(Shape(v), 0)), Cast(const)).
func headGraph(computed bool) *onnxpb.GraphProto {
	rng := rand.New(rand.NewPCG(9, 9))
	g := &onnxpb.GraphProto{
		Name: proto.String("head"),
		Node: []*onnxpb.NodeProto{
			node("Conv", "conv", []string{"x", "W"}, []string{"c"}),
			node("Relu", "relu", []string{"c"}, []string{"v"}),
			node("Reshape", "flat", []string{"v", "target"}, []string{"f"}),
			node("MatMul", "fc", []string{"f", "Wfc"}, []string{"y"}),
		},
		Input:       []*onnxpb.ValueInfoProto{vinfo("x", -1, 3, 2, 2)},
		Output:      []*onnxpb.ValueInfoProto{vinfo("y", -1, 5)},
		Initializer: []*onnxpb.TensorProto{randInit(rng, "W", 8, 3, 1, 1), randInit(rng, "Wfc", 32, 5)},
	}
	if !computed {
		g.Initializer = append(g.Initializer, int64Init("target", -1, 32))
		return g
	}
	to := intAttr("to", int64(tensor.Int64))
	g.Node = append([]*onnxpb.NodeProto{
		node("Shape", "shape", []string{"v"}, []string{"sh"}),
		node("Gather", "batch", []string{"sh", "zero"}, []string{"n"}),
		node("Unsqueeze", "n1", []string{"n", "axes0"}, []string{"n_1"}),
		node("Cast", "cast", []string{"width32"}, []string{"width"}, to),
		node("Concat", "tgt", []string{"n_1", "width"}, []string{"target"}, intAttr("axis", 0)),
	}, g.Node...)
	g.Initializer = append(g.Initializer, onnx.FromTensor("zero", tensor.FromInt64(nil, []int64{0})),
		int64Init("axes0", 0), onnx.FromTensor("width32", func() *tensor.Tensor {
			v := tensor.New(tensor.Int32, []int64{1})
			v.Int32s()[0] = 32
			return v
		}()))
	return g
}

func TestStructuredReshapeTarget(t *testing.T) {
	initORT(t)
	for _, computed := range []bool{false, true} {
		in := map[string]*tensor.Tensor{"x": randInput(3, 2, 3, 2, 2)}
		m, r := checkStructured(t, headGraph(computed), Options{Method: Structured, Sparsity: 0.25, ChannelMultiple: 1}, in)
		if g := groupOf(r, "conv"); g == nil || g.Kept != 6 {
			t.Fatalf("computed=%v: conv group %+v, want 8 → 6", computed, g)
		}
		if got := dimsOf(m, "Wfc"); !slices.Equal(got, []int64{24, 5}) {
			t.Errorf("computed=%v: Wfc %v, want [24 5] (6 channels × 4 positions)", computed, got)
		}
		if computed {
			// The constant piece was replaced by an int64 [24]; the dead Cast and int32 constant are gone.
			for _, n := range m.Proto.Graph.Node {
				if n.GetOpType() == "Cast" {
					t.Errorf("dead Cast left in the graph")
				}
			}
			if m.Initializer("width32") != nil {
				t.Errorf("unused initializer width32 left")
			}
		}
	}
}

func TestStructuredSkips(t *testing.T) {
	initORT(t)
	rng := rand.New(rand.NewPCG(5, 5))
	g := &onnxpb.GraphProto{
		Name: proto.String("skips"),
		Node: []*onnxpb.NodeProto{
			// Splits the channels into two halves: no flatten, cannot follow pruning.
			node("Conv", "split", []string{"x", "Wa"}, []string{"a"}),
			node("Reshape", "halves", []string{"a", "t4"}, []string{"a4"}),
			// A target shape fed at run time.
			node("Conv", "runtime", []string{"x", "Wb"}, []string{"b"}),
			node("Reshape", "fed", []string{"b", "shape"}, []string{"b2"}),
			// Reaches a graph output directly.
			node("Conv", "out", []string{"x", "Wc"}, []string{"c"}),
			// Prunable: conv → Relu → conv.
			node("Conv", "ok1", []string{"x", "Wd"}, []string{"d"}),
			node("Relu", "relu", []string{"d"}, []string{"d2"}),
			node("Conv", "ok2", []string{"d2", "We"}, []string{"e"}),
		},
		Input: []*onnxpb.ValueInfoProto{vinfo("x", 1, 4, 2, 2), {Name: proto.String("shape"), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Int64)), Shape: &onnxpb.TensorShapeProto{
				Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 2}}}}}}}}},
		Output: []*onnxpb.ValueInfoProto{vinfo("a4", 1, 2, 4, 4), vinfo("b2", 1, 32), vinfo("c", 1, 8, 2, 2), vinfo("e", 1, 8, 2, 2)},
		Initializer: []*onnxpb.TensorProto{randInit(rng, "Wa", 8, 4, 1, 1), randInit(rng, "Wb", 8, 4, 1, 1),
			randInit(rng, "Wc", 8, 4, 1, 1), randInit(rng, "Wd", 8, 4, 1, 1), randInit(rng, "We", 8, 8, 1, 1),
			int64Init("t4", 1, 2, 4, 4)},
	}
	in := map[string]*tensor.Tensor{"x": randInput(4, 1, 4, 2, 2), "shape": tensor.FromInt64([]int64{2}, []int64{1, -1})}
	m, r := checkStructured(t, g, Options{Method: Structured, Sparsity: 0.5, ChannelMultiple: 1}, in)
	want := map[string]string{
		"split":   "only flattening",
		"runtime": "computed at run time",
		"out":     `graph output "c"`,
	}
	for _, s := range r.Skipped {
		if frag, ok := want[s.Name]; ok && strings.Contains(s.Reason, frag) {
			delete(want, s.Name)
		}
	}
	if len(want) > 0 {
		t.Errorf("missing skips %v in %+v", want, r.Skipped)
	}
	if g := groupOf(r, "ok1"); g == nil || g.Kept != 4 {
		t.Errorf("the prunable group ok1 = %+v, want 8 → 4", g)
	}
	for name, want := range map[string][]int64{"Wa": {8, 4, 1, 1}, "Wb": {8, 4, 1, 1}, "Wc": {8, 4, 1, 1}, "Wd": {4, 4, 1, 1}, "We": {8, 4, 1, 1}} {
		if got := dimsOf(m, name); !slices.Equal(got, want) {
			t.Errorf("%s: %v, want %v", name, got, want)
		}
	}
}

func TestAlignedKeep(t *testing.T) {
	for _, tc := range []struct{ c, keep, multiple, want int }{
		{16, 11, 8, 8},  // nearest multiple of 8
		{16, 12, 8, 16}, // halfway: keep more
		{8, 7, 8, 8},    // never below one multiple
		{48, 43, 8, 40}, //
		{200, 180, 8, 184},
		{22, 20, 8, 20}, // 22 was not aligned: no rounding
		{16, 11, 1, 11}, // 1: no rounding
		{5, 0, 1, 1},    // always one channel
	} {
		if got := alignedKeep(tc.c, tc.keep, tc.multiple); got != tc.want {
			t.Errorf("alignedKeep(%d, %d, %d) = %d, want %d", tc.c, tc.keep, tc.multiple, got, tc.want)
		}
	}
}

// TestStructuredDefaultAlignment: by default a 16-channel group asked to lose 30% keeps 8
// channels (a multiple of 8), not 11.
func TestStructuredDefaultAlignment(t *testing.T) {
	initORT(t)
	rng := rand.New(rand.NewPCG(6, 6))
	g := &onnxpb.GraphProto{
		Name: proto.String("align"),
		Node: []*onnxpb.NodeProto{
			node("Conv", "a", []string{"x", "Wa"}, []string{"y1"}),
			node("Relu", "r", []string{"y1"}, []string{"y2"}),
			node("Conv", "b", []string{"y2", "Wb"}, []string{"y"}),
		},
		Input:       []*onnxpb.ValueInfoProto{vinfo("x", 1, 4, 3, 3)},
		Output:      []*onnxpb.ValueInfoProto{vinfo("y", 1, 2, 3, 3)},
		Initializer: []*onnxpb.TensorProto{randInit(rng, "Wa", 16, 4, 1, 1), randInit(rng, "Wb", 2, 16, 1, 1)},
	}
	m, r := checkStructured(t, g, Options{Method: Structured, Sparsity: 0.3}, map[string]*tensor.Tensor{"x": randInput(6, 1, 4, 3, 3)})
	if got := dimsOf(m, "Wa"); !slices.Equal(got, []int64{8, 4, 1, 1}) || r.Groups[0].Kept != 8 {
		t.Errorf("Wa %v, group %+v: want 8 channels kept", got, r.Groups[0])
	}
}
