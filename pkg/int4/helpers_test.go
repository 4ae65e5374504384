package int4

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// gb builds small ONNX graphs for the tests.
type gb struct {
	nodes   []*onnxpb.NodeProto
	inits   []*onnxpb.TensorProto
	inputs  []*onnxpb.ValueInfoProto
	outputs []*onnxpb.ValueInfoProto
	rng     *rand.Rand
}

func newGB(seed uint64) *gb { return &gb{rng: rand.New(rand.NewPCG(seed, 7))} }

func vinfo(name string, dt tensor.DType, dims ...int64) *onnxpb.ValueInfoProto {
	sh := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		if d < 0 {
			sh.Dim = append(sh.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}})
			continue
		}
		sh.Dim = append(sh.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: sh}}}}
}

func (b *gb) node(op, out string, ins ...string) string {
	b.nodes = append(b.nodes, &onnxpb.NodeProto{Name: proto.String(op + "_" + out), OpType: proto.String(op), Input: ins, Output: []string{out}})
	return out
}

func (b *gb) randn(n int, scale float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(b.rng.NormFloat64() * scale)
	}
	return v
}

func (b *gb) init(name string, dims []int64, v []float32) string {
	b.inits = append(b.inits, onnx.FromTensor(name, tensor.FromFloat32(dims, v)))
	return name
}

// weight adds a random [k, n] MatMul weight with a few outlier input rows, as real
// layers have (what AWQ's scaling exploits).
func (b *gb) weight(name string, k, n int) string {
	v := b.randn(k*n, 0.1)
	return b.init(name, []int64{int64(k), int64(n)}, v)
}

func (b *gb) model() *onnxpb.ModelProto {
	return &onnxpb.ModelProto{IrVersion: proto.Int64(8), ProducerName: proto.String("int4 test"),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph:       &onnxpb.GraphProto{Name: proto.String("g"), Node: b.nodes, Initializer: b.inits, Input: b.inputs, Output: b.outputs}}
}

func save(t testing.TB, m *onnxpb.ModelProto, path string) string {
	t.Helper()
	raw, err := m.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// pipelineModel is a small pre-norm block:
//
//	h = LayerNorm(x);  q = h·Wq;  k = h·Wk (a Constant node);  u = q·Wup + bup;  y = u·Wdown
//	outputs: y, k
//
// AWQ can fold every group's scale: {q, k} into the LayerNorm, {up} into q's rows, {down}
// into up's rows and bias. extraOutputs also exposes h, q and u, which makes every fold
// illegal (explicit Muls instead).
func pipelineModel(seed uint64, extraOutputs bool) *onnxpb.ModelProto {
	b := newGB(seed)
	const d, seq = 64, 8
	b.inputs = []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, -1, seq, d)}
	g := make([]float32, d)
	for i := range g {
		g[i] = 1 + float32(i%7)*0.3 // uneven channel gains: salient inputs
	}
	b.node("LayerNormalization", "h", "x", b.init("ln.g", []int64{d}, g), b.init("ln.b", []int64{d}, b.randn(d, 0.1)))
	b.nodes[len(b.nodes)-1].Attribute = []*onnxpb.AttributeProto{{Name: proto.String("axis"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(-1)}}
	b.node("MatMul", "q", "h", b.weight("Wq", d, d))
	wk := b.randn(d*48, 0.1)
	b.nodes = append(b.nodes, &onnxpb.NodeProto{Name: proto.String("Constant_Wk"), OpType: proto.String("Constant"), Output: []string{"Wk"},
		Attribute: []*onnxpb.AttributeProto{{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(),
			T: onnx.FromTensor("Wk", tensor.FromFloat32([]int64{d, 48}, wk))}}})
	b.node("MatMul", "k", "h", "Wk")
	up := b.node("MatMul", "up", "q", b.weight("Wup", d, 128))
	b.node("Add", "u", up, b.init("bup", []int64{128}, b.randn(128, 0.5)))
	b.node("MatMul", "y", "u", b.weight("Wdown", 128, 32))
	b.outputs = []*onnxpb.ValueInfoProto{vinfo("y", tensor.Float32, -1, seq, 32), vinfo("k", tensor.Float32, -1, seq, 48)}
	if extraOutputs {
		b.outputs = append(b.outputs, vinfo("h", tensor.Float32, -1, seq, d), vinfo("q", tensor.Float32, -1, seq, d), vinfo("u", tensor.Float32, -1, seq, 128))
	}
	return b.model()
}

var ortOnce sync.Once
var ortErr error

// needORT skips without the ONNX Runtime library of `make setup`.
func needORT(t testing.TB) {
	t.Helper()
	lib := testassets.Path(t, testassets.ORTLibrary)
	ortOnce.Do(func() { ortErr = runtime.Init(lib) })
	if ortErr != nil {
		t.Fatalf("loading ONNX Runtime: %v", ortErr)
	}
}

// runModel runs a model file on inputs and returns the named output as float32.
func runModel(t testing.TB, path string, in map[string]*tensor.Tensor, out string) []float32 {
	t.Helper()
	s, err := runtime.NewSessionFromFile(path, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	res, err := s.Run(in, out)
	if err != nil {
		t.Fatal(err)
	}
	v, err := res[out].AsFloat32()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func randInput(seed uint64, shape ...int64) *tensor.Tensor {
	r := rand.New(rand.NewPCG(seed, 3))
	n := tensor.NumElements(shape)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return tensor.FromFloat32(shape, v)
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func maxAbsDiff(a, b []float32) float64 {
	var m float64
	for i := range a {
		m = max(m, math.Abs(float64(a[i])-float64(b[i])))
	}
	return m
}

func fileSHA(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func tmp(t testing.TB, name string) string { return filepath.Join(t.TempDir(), name) }

func boolPtr(v bool) *bool { return &v }

// sha256F32 hashes float32 values as little-endian bytes (numpy's tobytes() on x86).
func sha256F32(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
