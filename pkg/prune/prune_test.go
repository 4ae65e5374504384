package prune

import (
	"bytes"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/x448/float16"
	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// smallCNN: x[1,8,6,6] → conv1 (W1 16×8×3×3, B1) → Relu → conv2 (W2 12×16×1×1) → GAP →
// Flatten → fc MatMul (W3 12×10, scaled by 0.1 so a global threshold treats it differently)
// → Add b3 → y[1,10].
func smallCNN(seed uint64) *onnxpb.GraphProto {
	rng := rand.New(rand.NewPCG(seed, 1))
	w3 := randInit(rng, "W3", 12, 10)
	v, _ := onnx.ToTensor(w3)
	f := v.Float32s()
	for i := range f {
		f[i] *= 0.1
	}
	w3 = onnx.FromTensor("W3", v)
	return &onnxpb.GraphProto{
		Name: proto.String("small"),
		Node: []*onnxpb.NodeProto{
			node("Conv", "conv1", []string{"x", "W1", "B1"}, []string{"c1"}, intsAttr("pads", 1, 1, 1, 1)),
			node("Relu", "relu1", []string{"c1"}, []string{"r1"}),
			node("Conv", "conv2", []string{"r1", "W2"}, []string{"c2"}),
			node("GlobalAveragePool", "gap", []string{"c2"}, []string{"g"}),
			node("Flatten", "flat", []string{"g"}, []string{"f"}),
			node("MatMul", "fc", []string{"f", "W3"}, []string{"mm"}),
			node("Add", "bias", []string{"mm", "b3"}, []string{"y"}),
		},
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", 1, 8, 6, 6)},
		Output: []*onnxpb.ValueInfoProto{vinfo("y", 1, 10)},
		Initializer: []*onnxpb.TensorProto{randInit(rng, "W1", 16, 8, 3, 3), randInit(rng, "B1", 16),
			randInit(rng, "W2", 12, 16, 1, 1), w3, randInit(rng, "b3", 10)},
	}
}

func floatsOf(t testing.TB, m *onnx.Model, name string) []float32 {
	t.Helper()
	init := m.Initializer(name)
	if init == nil {
		t.Fatalf("no initializer %q", name)
	}
	v, err := m.Float32s(init)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkPruned verifies one tensor: every pruned weight had a magnitude no larger than any
// kept one, kept weights are bit-identical, and among equal magnitudes the lower indices
// went first. It returns the number of zeros.
func checkPruned(t *testing.T, name string, before, after []float32) int {
	t.Helper()
	maxPruned, minKept := -1.0, math.Inf(1)
	zeros := 0
	lastPrunedAtTie := map[float64]int{}
	for i := range before {
		a := math.Abs(float64(before[i]))
		if after[i] == 0 {
			zeros++
			maxPruned = max(maxPruned, a)
			lastPrunedAtTie[a] = i
			continue
		}
		if math.Float32bits(after[i]) != math.Float32bits(before[i]) {
			t.Fatalf("%s[%d]: kept weight changed %v → %v", name, i, before[i], after[i])
		}
		minKept = min(minKept, a)
	}
	if maxPruned > minKept {
		t.Errorf("%s: pruned |w| up to %v but kept |w| as small as %v", name, maxPruned, minKept)
	}
	// Ties at the threshold: no kept weight of that magnitude may come before a pruned one.
	if maxPruned == minKept {
		for i := range before {
			if after[i] != 0 && math.Abs(float64(before[i])) == minKept && i < lastPrunedAtTie[minKept] {
				t.Errorf("%s: tie at |w|=%v broken against index order (kept %d, pruned %d)", name, minKept, i, lastPrunedAtTie[minKept])
				break
			}
		}
	}
	return zeros
}

func TestMagnitudePerTensorExact(t *testing.T) {
	orig := build(t, smallCNN(1))
	for _, f := range []float64{0, 0.1, 0.37, 0.5, 0.9} {
		m := build(t, smallCNN(1))
		r, err := Apply(m, Options{Method: Magnitude, Sparsity: f})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Tensors) != 3 {
			t.Fatalf("f=%v: pruned %d tensors, want W1, W2, W3 (biases left alone)", f, len(r.Tensors))
		}
		var zeros, total int
		for _, name := range []string{"W1", "W2", "W3"} {
			before, after := floatsOf(t, orig, name), floatsOf(t, m, name)
			z := checkPruned(t, name, before, after)
			n := len(before)
			if want := int(math.Round(f * float64(n))); z != want {
				t.Errorf("f=%v %s: %d zeros, want round(%v·%d) = %d", f, name, z, f, n, want)
			}
			if d := math.Abs(float64(z)/float64(n) - f); d > 0.5/float64(n)+1e-12 {
				t.Errorf("f=%v %s: sparsity off by %v, more than half a weight", f, name, d)
			}
			zeros, total = zeros+z, total+n
		}
		for _, name := range []string{"B1", "b3"} {
			if !slices.Equal(floatsOf(t, orig, name), floatsOf(t, m, name)) {
				t.Errorf("f=%v: bias %s changed", f, name)
			}
		}
		if math.Abs(r.Sparsity-float64(zeros)/float64(total)) > 1e-12 {
			t.Errorf("f=%v: report sparsity %v, counted %v", f, r.Sparsity, float64(zeros)/float64(total))
		}
		if r.ParametersBefore != r.ParametersAfter || r.ParametersBefore != 16*8*9+16+12*16+120+10 {
			t.Errorf("parameters %d → %d", r.ParametersBefore, r.ParametersAfter)
		}
	}
	// Deterministic: the same input gives the same bytes.
	a, b := build(t, smallCNN(1)), build(t, smallCNN(1))
	for _, m := range []*onnx.Model{a, b} {
		if _, err := Apply(m, Options{Method: Magnitude, Sparsity: 0.45}); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(marshal(t, a), marshal(t, b)) {
		t.Error("two runs on the same model differ")
	}
}

func TestMagnitudeGlobal(t *testing.T) {
	orig := build(t, smallCNN(2))
	for _, f := range []float64{0.2, 0.5, 0.8} {
		m := build(t, smallCNN(2))
		r, err := Apply(m, Options{Method: Magnitude, Sparsity: f, Global: true})
		if err != nil {
			t.Fatal(err)
		}
		maxPruned, minKept := 0.0, math.Inf(1)
		zeros, total := 0, 0
		per := map[string]float64{}
		for _, name := range []string{"W1", "W2", "W3"} {
			before, after := floatsOf(t, orig, name), floatsOf(t, m, name)
			z := 0
			for i := range before {
				a := math.Abs(float64(before[i]))
				if after[i] == 0 {
					z++
					maxPruned = max(maxPruned, a)
				} else {
					minKept = min(minKept, a)
				}
			}
			per[name] = float64(z) / float64(len(before))
			zeros, total = zeros+z, total+len(before)
		}
		if want := int(math.Round(f * float64(total))); zeros != want {
			t.Errorf("f=%v: %d zeros over all tensors, want %d", f, zeros, want)
		}
		if maxPruned > minKept {
			t.Errorf("f=%v: one threshold violated: pruned |w| %v > kept %v", f, maxPruned, minKept)
		}
		// W3 is ten times smaller: a single threshold takes more of it.
		if per["W3"] <= per["W1"] {
			t.Errorf("f=%v: global sparsity per tensor %v: the scaled-down W3 should be pruned more", f, per)
		}
		if math.Abs(r.Sparsity-float64(zeros)/float64(total)) > 1e-12 {
			t.Errorf("f=%v: report sparsity %v", f, r.Sparsity)
		}
	}
}

func TestIncludeExclude(t *testing.T) {
	pruned := func(o Options) []string {
		t.Helper()
		m := build(t, smallCNN(3))
		o.Method, o.Sparsity = Magnitude, 0.5
		r, err := Apply(m, o)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, tr := range r.Tensors {
			names = append(names, tr.Name)
		}
		slices.Sort(names)
		return names
	}
	for _, tc := range []struct {
		o    Options
		want []string
	}{
		{Options{}, []string{"W1", "W2", "W3"}},
		{Options{Include: []string{"Conv"}}, []string{"W1", "W2"}},
		{Options{Include: []string{"fc"}}, []string{"W3"}},
		{Options{Exclude: []string{"W3", "conv2"}}, []string{"W1"}},
		{Options{Include: []string{"conv*"}, Exclude: []string{"W2"}}, []string{"W1"}},
		{Options{Include: []string{"b3", "W1"}}, []string{"W1", "b3"}},
	} {
		if got := pruned(tc.o); !slices.Equal(got, tc.want) {
			t.Errorf("include %v exclude %v: pruned %v, want %v", tc.o.Include, tc.o.Exclude, got, tc.want)
		}
	}
}

func TestConformsNM(t *testing.T) {
	for _, tc := range []struct {
		v    []float32
		dims []int64
		axis int
		want bool
	}{
		{[]float32{1, 0, 0, 2, 3, 4, 0, 0}, []int64{2, 4}, 1, true},
		{[]float32{1, 2, 3, 0, 0, 0, 0, 0}, []int64{2, 4}, 1, false},
		{[]float32{0, 0, 0, 0}, []int64{1, 4}, 1, true},
		// Axis 0 of [4,2]: the groups are columns (1,0,2,0) and (0,0,5,6).
		{[]float32{1, 0, 0, 0, 2, 5, 0, 6}, []int64{4, 2}, 0, true},
		{[]float32{1, 3, 0, 0, 2, 5, 0, 6}, []int64{4, 2}, 0, false},
		// A length that is not a multiple of 4 cannot use sparse kernels.
		{[]float32{1, 0, 0, 0, 0, 0}, []int64{1, 6}, 1, false},
		// Conv [M=1, C=4, 1, 2]: groups run over C at each kernel position.
		{[]float32{1, 1, 0, 0, 0, 0, 1, 1}, []int64{1, 4, 1, 2}, 1, true},
		{[]float32{1, 0, 1, 0, 1, 0, 0, 0}, []int64{1, 4, 1, 2}, 1, false},
	} {
		if got := ConformsNM(tc.v, tc.dims, tc.axis, 2, 4); got != tc.want {
			t.Errorf("ConformsNM(%v, %v, axis %d) = %v, want %v", tc.v, tc.dims, tc.axis, got, tc.want)
		}
	}
}

func TestTwoFour(t *testing.T) {
	g := smallCNN(4)
	// A 1×1 conv over 6 channels: no 2:4 layout exists, it must be skipped with the reason.
	rng := rand.New(rand.NewPCG(4, 2))
	g.Node = append(g.Node, node("Conv", "narrow", []string{"x6", "W6"}, []string{"z"}))
	g.Input = append(g.Input, vinfo("x6", 1, 6, 2, 2))
	g.Output = append(g.Output, vinfo("z", 1, 4, 2, 2))
	g.Initializer = append(g.Initializer, randInit(rng, "W6", 4, 6, 1, 1))
	orig := build(t, proto.Clone(g).(*onnxpb.GraphProto))
	before, err := Check24(orig)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range before {
		if c.Conforms {
			t.Errorf("%s conforms to 2:4 before pruning", c.Name)
		}
	}
	m := build(t, g)
	r, err := Apply(m, Options{Method: TwoFour})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Skipped) != 1 || r.Skipped[0].Name != "W6" || !strings.Contains(r.Skipped[0].Reason, "not a multiple of 4") {
		t.Errorf("skipped = %+v, want W6 (6 input channels)", r.Skipped)
	}
	if r.Sparsity != 0.5 {
		t.Errorf("sparsity %v, want exactly 0.5", r.Sparsity)
	}
	axes := map[string]int{"W1": 1, "W2": 1, "W3": 0}
	for _, tr := range r.Tensors {
		if tr.Conforms24 == nil || !*tr.Conforms24 || *tr.NMAxis != axes[tr.Name] {
			t.Errorf("%s: conforms %v along axis %v, want true along %d", tr.Name, tr.Conforms24, tr.NMAxis, axes[tr.Name])
		}
		// The two largest magnitudes of every group survive.
		b, a := floatsOf(t, orig, tr.Name), floatsOf(t, m, tr.Name)
		nmGroups(tr.Shape, axes[tr.Name], 4, func(idx []int) {
			var kept, dropped []float64
			for _, i := range idx {
				if a[i] != 0 {
					kept = append(kept, math.Abs(float64(b[i])))
				} else {
					dropped = append(dropped, math.Abs(float64(b[i])))
				}
			}
			if len(kept) != 2 || slices.Max(dropped) > slices.Min(kept) {
				t.Fatalf("%s group %v: kept %v dropped %v", tr.Name, idx, kept, dropped)
			}
		})
	}
	after, err := Check24(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range after {
		if c.Conforms != (c.Name != "W6") {
			t.Errorf("after pruning %s conforms = %v", c.Name, c.Conforms)
		}
	}
}

// TestConstantNodeWeights: weights held in Constant and ConstantOfShape nodes (as the
// PaddlePaddle exports and the ONNX "light" models hold them) are pruned like initializers.
func TestConstantNodeWeights(t *testing.T) {
	g := smallCNN(5)
	var keep []*onnxpb.TensorProto
	var consts []*onnxpb.NodeProto
	for _, init := range g.Initializer {
		if init.GetName() == "W2" {
			at := onnxpb.AttributeProto_TENSOR
			consts = append(consts, &onnxpb.NodeProto{OpType: proto.String("Constant"), Output: []string{"W2"},
				Attribute: []*onnxpb.AttributeProto{{Name: proto.String("value"), Type: &at, T: init}}})
			continue
		}
		keep = append(keep, init)
	}
	// W1 becomes a ConstantOfShape fill of 0.25.
	for i, init := range keep {
		if init.GetName() == "W1" {
			keep[i] = int64Init("W1_shape", 16, 8, 3, 3)
			at := onnxpb.AttributeProto_TENSOR
			consts = append(consts, &onnxpb.NodeProto{OpType: proto.String("ConstantOfShape"), Input: []string{"W1_shape"}, Output: []string{"W1"},
				Attribute: []*onnxpb.AttributeProto{{Name: proto.String("value"), Type: &at, T: constInit("", []int64{1}, 0.25)}}})
		}
	}
	g.Initializer = keep
	g.Node = append(consts, g.Node...)
	m := build(t, g)
	r, err := Apply(m, Options{Method: Magnitude, Sparsity: 0.5})
	if err != nil {
		t.Fatal(err)
	}
	if r.ConstantsConverted != 2 || r.NodesBefore != 9 || r.NodesAfter != 7 {
		t.Errorf("converted %d, nodes %d → %d", r.ConstantsConverted, r.NodesBefore, r.NodesAfter)
	}
	w1 := floatsOf(t, m, "W1")
	if z := countZeros(w1); z != int64(len(w1)/2) {
		t.Errorf("W1 (all 0.25): %d zeros of %d, want half (ties broken by index)", z, len(w1))
	}
	if w1[0] != 0 || w1[len(w1)-1] != 0.25 {
		t.Errorf("ties among equal weights must prune the lowest indices first")
	}
	if z := countZeros(floatsOf(t, m, "W2")); z != 12*16/2 {
		t.Errorf("W2: %d zeros", z)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, o := range []Options{
		{Method: "random", Sparsity: 0.5},
		{Method: Magnitude, Sparsity: 1},
		{Method: Magnitude, Sparsity: -0.1},
		{Method: Structured, Sparsity: math.NaN()},
		{Method: TwoFour, Sparsity: 0.3},
		{Method: TwoFour, Global: true},
		{Method: Structured, Sparsity: 0.2, Norm: 3},
	} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) accepted bad options", o)
		}
	}
	o := Options{Method: Structured, Sparsity: 0.3}
	if err := o.Validate(); err != nil || o.Norm != 1 {
		t.Errorf("Validate: %v, norm %d (want the L1 default)", err, o.Norm)
	}
}

// TestFloat16Weights: zeroing works on the element bytes, whatever the float width.
func TestFloat16Weights(t *testing.T) {
	g := smallCNN(6)
	for i, init := range g.Initializer {
		if init.GetName() == "W3" {
			v, _ := onnx.ToTensor(init)
			f := v.Float32s()
			h := tensor.New(tensor.Float16, v.Shape)
			for j, x := range f {
				u := float16.Fromfloat32(x).Bits()
				h.Data[2*j], h.Data[2*j+1] = byte(u), byte(u>>8)
			}
			g.Initializer[i] = onnx.FromTensor("W3", h)
		}
	}
	// The graph is not runnable any more (mixed types), but pruning only reads weights.
	m := build(t, g)
	if _, err := Apply(m, Options{Method: Magnitude, Sparsity: 0.25}); err != nil {
		t.Fatal(err)
	}
	if z := countZeros(floatsOf(t, m, "W3")); z != 30 {
		t.Errorf("float16 W3: %d zeros, want 30", z)
	}
}
