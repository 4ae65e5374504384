package passes

import (
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/onnx/onnxtest"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// builder assembles small graphs for pass tests.
type builder struct {
	g     *onnxpb.GraphProto
	opset int64
	rng   *rand.Rand
}

func newBuilder(opset int64) *builder {
	return &builder{g: &onnxpb.GraphProto{Name: proto.String("test")}, opset: opset, rng: rand.New(rand.NewPCG(1, 2))}
}

// vi builds a value info; a dim is an int (size) or a string (symbolic).
func vi(name string, dt tensor.DType, dims ...any) *onnxpb.ValueInfoProto {
	return onnxtest.ValueInfo(name, dt, dims...)
}

func (b *builder) input(name string, dims ...any) *builder {
	b.g.Input = append(b.g.Input, vi(name, tensor.Float32, dims...))
	return b
}

// output declares a graph output of unknown shape (ONNX Runtime infers it).
func (b *builder) output(name string) *builder {
	b.g.Output = append(b.g.Output, onnxtest.Untyped(name))
	return b
}

// init adds a float initializer; without values it is filled with seeded random numbers.
func (b *builder) init(name string, shp []int64, vals ...float32) *builder {
	if vals == nil {
		vals = make([]float32, tensor.NumElements(shp))
		for i := range vals {
			vals[i] = float32(b.rng.NormFloat64())
		}
	}
	b.g.Initializer = append(b.g.Initializer, onnx.FromTensor(name, tensor.FromFloat32(shp, vals)))
	return b
}

// positive adds a float initializer of random values in [0.5, 1.5) (variances, scales).
func (b *builder) positive(name string, shp []int64) *builder {
	vals := make([]float32, tensor.NumElements(shp))
	for i := range vals {
		vals[i] = 0.5 + float32(b.rng.Float64())
	}
	return b.init(name, shp, vals...)
}

func (b *builder) ints(name string, shp []int64, vals ...int64) *builder {
	b.g.Initializer = append(b.g.Initializer, onnx.FromTensor(name, tensor.FromInt64(shp, vals)))
	return b
}

func (b *builder) node(op string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := newNode(op, op+"_"+outs[0], ins, outs, attrs...)
	b.g.Node = append(b.g.Node, n)
	return n
}

// model encodes and decodes the graph, as a file on disk would be.
func (b *builder) model(t *testing.T) *onnx.Model {
	t.Helper()
	return onnxtest.Load(t, b.g, b.opset)
}

// run applies one pass and returns its change count.
func run(t *testing.T, m *onnx.Model, p *Pass, shapes map[string][]int64) int {
	t.Helper()
	c := NewContext(m, shapes)
	if p.Applies != nil && !p.Applies(c) {
		return 0
	}
	n, err := p.Run(c)
	if err != nil {
		t.Fatalf("%s: %v", p.Name, err)
	}
	if err := onnx.Check(m.Graph()); err != nil {
		t.Fatalf("%s left an invalid graph: %v", p.Name, err)
	}
	return n
}

// ops lists the op types of the graph in order.
func ops(m *onnx.Model) []string {
	var out []string
	for _, n := range m.Graph().Node {
		out = append(out, n.GetOpType())
	}
	return out
}

func wantOps(t *testing.T, m *onnx.Model, want ...string) {
	t.Helper()
	got := ops(m)
	if len(got) != len(want) {
		t.Fatalf("ops = %v, want %v", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("ops = %v, want %v", got, want)
		}
	}
}

// ortReady loads ONNX Runtime when `make setup` installed it; numeric checks are skipped
// (structure is still checked) when it is absent.
func ortReady(t *testing.T) bool {
	t.Helper()
	lib := filepath.Join(testassets.CacheDir(), testassets.ORTLibrary)
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("OPTIMCTL_REQUIRE_ASSETS") != "" {
			t.Fatalf("ONNX Runtime missing at %s", lib)
		}
		t.Logf("ONNX Runtime not installed (%s): numeric check skipped", lib)
		return false
	}
	if err := runtime.Init(lib); err != nil {
		t.Fatal(err)
	}
	return true
}

// outputsOf runs a model in ONNX Runtime (graph optimizations off) on the given feeds.
func outputsOf(t *testing.T, m *onnx.Model, feeds map[string]*tensor.Tensor) map[string]*tensor.Tensor {
	t.Helper()
	enc, err := m.MarshalInline()
	if err != nil {
		t.Fatal(err)
	}
	s, err := runtime.NewSession(enc, runtime.Options{GraphOptLevel: runtime.OptDisabled, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Run(feeds)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// randomFeeds makes seeded float inputs.
func randomFeeds(shapes map[string][]int64) map[string]*tensor.Tensor {
	rng := rand.New(rand.NewPCG(7, 9))
	out := map[string]*tensor.Tensor{}
	for name, shp := range shapes {
		v := make([]float32, tensor.NumElements(shp))
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		out[name] = tensor.FromFloat32(shp, v)
	}
	return out
}

// sameOutputs checks that a rewrite kept every output within float rounding.
func sameOutputs(t *testing.T, before, after *onnx.Model, shapes map[string][]int64) {
	t.Helper()
	if !ortReady(t) {
		return
	}
	feeds := randomFeeds(shapes)
	ref, got := outputsOf(t, before, feeds), outputsOf(t, after, feeds)
	for name, r := range ref {
		g, ok := got[name]
		if !ok {
			t.Fatalf("output %q missing after the pass", name)
		}
		rv, _ := r.AsFloat64()
		gv, _ := g.AsFloat64()
		if len(rv) != len(gv) {
			t.Fatalf("output %q: %d values, want %d (shape %v vs %v)", name, len(gv), len(rv), g.Shape, r.Shape)
		}
		maxRef, maxErr := 1.0, 0.0
		for i := range rv {
			maxRef = math.Max(maxRef, math.Abs(rv[i]))
			maxErr = math.Max(maxErr, math.Abs(rv[i]-gv[i]))
		}
		if maxErr > 1e-5*maxRef {
			t.Fatalf("output %q: max abs error %g (reference max %g)", name, maxErr, maxRef)
		}
	}
}

// optimizeOnce clones a model, applies passes in order and returns the result.
func applied(t *testing.T, b *builder, shapes map[string][]int64, ps ...*Pass) (*onnx.Model, *onnx.Model, int) {
	t.Helper()
	before, after := b.model(t), b.model(t)
	total := 0
	for _, p := range ps {
		total += run(t, after, p, shapes)
	}
	return before, after, total
}
