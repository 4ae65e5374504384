package prune

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/onnx/onnxtest"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// Graph builders and ONNX Runtime helpers shared by this package's tests.

// vinfo declares a float32 value; a negative dimension is the symbolic batch "N".
func vinfo(name string, dims ...int64) *onnxpb.ValueInfoProto {
	d := make([]any, len(dims))
	for i, v := range dims {
		d[i] = v
	}
	return onnxtest.ValueInfo(name, tensor.Float32, d...)
}

func node(op, name string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	return onnxtest.Node(op, name, ins, outs, attrs...)
}

func intsAttr(name string, v ...int64) *onnxpb.AttributeProto { return onnxtest.Ints(name, v...) }

func intAttr(name string, v int64) *onnxpb.AttributeProto { return onnxtest.Int(name, v) }

// randInit is a float initializer of uniform values in ±(0.05, 1], quantized to 1/64 so
// that equal magnitudes (ties) occur, and never zero.
func randInit(rng *rand.Rand, name string, dims ...int64) *onnxpb.TensorProto {
	v := make([]float32, tensor.NumElements(dims))
	for i := range v {
		x := float32(math.Round((0.05+0.95*rng.Float64())*64) / 64)
		if rng.IntN(2) == 0 {
			x = -x
		}
		v[i] = x
	}
	return onnx.FromTensor(name, tensor.FromFloat32(dims, v))
}

// constInit is a float initializer of the given values.
func constInit(name string, dims []int64, v ...float32) *onnxpb.TensorProto {
	return onnxtest.Float32s(name, dims, v...)
}

func int64Init(name string, v ...int64) *onnxpb.TensorProto { return onnxtest.Int64s(name, v...) }

// bnInits are BatchNormalization parameters for c channels (scale, bias, mean, var).
func bnInits(rng *rand.Rand, prefix string, c int64) []*onnxpb.TensorProto {
	v := make([]float32, c)
	for i := range v {
		v[i] = 0.5 + rng.Float32()
	}
	return []*onnxpb.TensorProto{randInit(rng, prefix+"_s", c), randInit(rng, prefix+"_b", c),
		randInit(rng, prefix+"_m", c), constInit(prefix+"_v", []int64{c}, v...)}
}

func bnNode(name, in, out string) *onnxpb.NodeProto {
	return node("BatchNormalization", name, []string{in, name + "_s", name + "_b", name + "_m", name + "_v"}, []string{out})
}

// build loads a model built from g (opset 13) as the pruner sees a file.
func build(t testing.TB, g *onnxpb.GraphProto) *onnx.Model {
	t.Helper()
	return onnxtest.Load(t, g, 13)
}

func marshal(t testing.TB, m *onnx.Model) []byte {
	t.Helper()
	b, err := m.MarshalInline()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// initORT loads the ONNX Runtime library `make setup` caches, skipping when absent.
func initORT(t testing.TB) {
	t.Helper()
	if err := runtime.Init(testassets.Path(t, testassets.ORTLibrary)); err != nil {
		t.Fatal(err)
	}
}

// runORT runs a serialized model on inputs and returns its outputs and the extra
// (intermediate) values asked for.
func runORT(t testing.TB, model []byte, in map[string]*tensor.Tensor, extra ...string) map[string]*tensor.Tensor {
	t.Helper()
	s, err := runtime.NewSession(model, runtime.Options{IntraOpThreads: 2, ExtraOutputs: extra})
	if err != nil {
		t.Fatalf("ONNX Runtime refuses the model: %v", err)
	}
	defer s.Close()
	out, err := s.Run(in)
	if err != nil {
		t.Fatalf("ONNX Runtime cannot run the model: %v", err)
	}
	return out
}

// randInput is a deterministic input tensor of the given shape.
func randInput(seed uint64, dims ...int64) *tensor.Tensor {
	rng := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, tensor.NumElements(dims))
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return tensor.FromFloat32(dims, v)
}

func maxAbsDiff(t testing.TB, a, b *tensor.Tensor) float64 {
	t.Helper()
	if !slices.Equal(a.Shape, b.Shape) {
		t.Fatalf("shapes differ: %v vs %v", a.Shape, b.Shape)
	}
	x, y := a.Float32s(), b.Float32s()
	d := 0.0
	for i := range x {
		d = max(d, math.Abs(float64(x[i]-y[i])))
	}
	return d
}

// maskedEquivalent builds what structured pruning must compute, without removing anything:
// m with the weights that read each removed channel (next layers' input channels, the
// Gemm/MatMul rows after a flatten) set to zero. A removed channel then contributes nothing
// anywhere, so the pruned model must give the same outputs up to float rounding. This checks
// every index mapping (Concat offsets, flatten blocks, residual groups) against the original
// graph rather than against the pruner's own bookkeeping.
func maskedEquivalent(t testing.TB, m *onnx.Model, o Options) []byte {
	t.Helper()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	gr := newGraph(m)
	if _, err := gr.materializeConstants(); err != nil {
		t.Fatal(err)
	}
	a, err := plan(gr, matcher{include: o.Include, exclude: o.Exclude}, o, &Report{})
	if err != nil {
		t.Fatal(err)
	}
	memo := map[int][]int{}
	for _, u := range a.uses {
		if u.score || u.input != 1 || !weightOps[u.node.GetOpType()] {
			continue // not a layer reading the channels
		}
		root := a.find(u.comp)
		if a.comps[root].fixed != "" {
			continue
		}
		keep := map[int]bool{}
		for _, k := range a.kept(root, memo) {
			keep[k] = true
		}
		name := u.node.Input[u.input]
		w := gr.constant(name)
		v, err := gr.floats(w)
		if err != nil {
			t.Fatal(err)
		}
		dims := w.Dims
		outer := int(tensor.NumElements(dims[:u.axis]))
		d := int(dims[u.axis])
		inner := int(tensor.NumElements(dims[u.axis+1:]))
		for o := 0; o < outer; o++ {
			for k := 0; k < d; k++ {
				if !keep[k] {
					clear(v[(o*d+k)*inner : (o*d+k+1)*inner])
				}
			}
		}
		gr.setInitializer(onnx.FromTensor(name, tensor.FromFloat32(dims, v)))
	}
	return marshal(t, m)
}

// checkShapes runs pkg/shape's inference over a pruned model and checks that every layer's
// weights agree with the channels that reach it: Conv and ConvTranspose inputs with the
// weight's input channels × group, BatchNormalization inputs with its parameters, Gemm and
// MatMul inputs with K. It checks without running the model and names the layer at fault,
// and that every output keeps the shape it had (want, inferred on the original).
func checkShapes(t testing.TB, m *onnx.Model, inputs map[string][]int64, want map[string][]int64) {
	t.Helper()
	r, err := shape.Analyze(m, shape.Options{InputShapes: inputs})
	if err != nil {
		t.Fatal(err)
	}
	dim := func(v string, axis int) int64 {
		info := r.Info(v)
		if info == nil || !info.Ranked {
			return -1
		}
		if axis < 0 {
			axis += len(info.Dims)
		}
		if axis < 0 || axis >= len(info.Dims) {
			return -1
		}
		return info.Dims[axis].Value
	}
	checked := 0
	for _, n := range m.Proto.Graph.Node {
		w := m.Initializer(input(n, 1))
		var have, need int64 = -1, -1
		switch n.GetOpType() {
		case "Conv":
			if w != nil {
				have, need = dim(input(n, 0), 1), w.Dims[1]*attrInt(n, "group", 1)
			}
		case "ConvTranspose":
			if w != nil {
				have, need = dim(input(n, 0), 1), w.Dims[0]
			}
		case "BatchNormalization":
			if w != nil {
				have, need = dim(input(n, 0), 1), w.Dims[0]
			}
		case "MatMul":
			if w != nil && len(w.Dims) == 2 {
				have, need = dim(input(n, 0), -1), w.Dims[0]
			}
		case "Gemm":
			if w != nil {
				k := w.Dims[0]
				if attrInt(n, "transB", 0) != 0 {
					k = w.Dims[1]
				}
				have, need = dim(input(n, 0), -1), k
			}
		}
		if have < 0 || need < 0 {
			continue
		}
		checked++
		if have != need {
			t.Errorf("%s: %d channels arrive, its weights expect %d", onnx.NodeLabel(n), have, need)
		}
	}
	if checked == 0 {
		t.Errorf("shape inference typed no layer input")
	}
	for name, dims := range want {
		info := r.Info(name)
		var got []int64
		if info != nil {
			for _, d := range info.Dims {
				got = append(got, d.Value)
			}
		}
		if !slices.Equal(got, dims) {
			t.Errorf("output %s: inferred %v, want %v as before pruning", name, got, dims)
		}
	}
}
