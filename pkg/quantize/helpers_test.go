package quantize

import (
	"archive/zip"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// needORT skips a test when the ONNX Runtime library has not been fetched.
func needORT(t testing.TB) {
	t.Helper()
	testassets.Path(t, testassets.ORTLibrary)
}

func vinfo(name string, dt tensor.DType, dims ...int64) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: shape}}}}
}

func finit(name string, dims []int64, v []float32) *onnxpb.TensorProto {
	return onnx.FromTensor(name, tensor.FromFloat32(dims, v))
}

// seeded returns n reproducible values in [-scale, scale).
func seeded(seed uint64, n int, scale float32) []float32 {
	r := rand.New(rand.NewPCG(seed, 7))
	v := make([]float32, n)
	for i := range v {
		v[i] = (2*r.Float32() - 1) * scale
	}
	return v
}

func model(opset int64, g *onnxpb.GraphProto) *onnxpb.ModelProto {
	return &onnxpb.ModelProto{IrVersion: proto.Int64(8), ProducerName: proto.String("optimctl-test"), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(opset)}}}
}

func writeModel(t testing.TB, dir, name string, m *onnxpb.ModelProto) string {
	t.Helper()
	b, err := m.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// convNet is a small CNN with every pattern the placements care about:
//
//	x[1,3,8,8] → Conv(3×3, bias) → Relu → r → Conv(1×1) → c2 → Add(c2, r) → GlobalAveragePool
//	→ Flatten → MatMul([4,2]) → y[1,2]
//
// The Add is a residual whose identity branch is r.
func convNet() *onnxpb.ModelProto {
	g := &onnxpb.GraphProto{Name: proto.String("convnet"),
		Input:  []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, 1, 3, 8, 8)},
		Output: []*onnxpb.ValueInfoProto{vinfo("y", tensor.Float32, 1, 2)},
		Initializer: []*onnxpb.TensorProto{
			finit("w1", []int64{4, 3, 3, 3}, seeded(1, 108, 0.5)),
			finit("b1", []int64{4}, seeded(2, 4, 0.1)),
			finit("w2", []int64{4, 4, 1, 1}, seeded(3, 16, 0.5)),
			finit("w3", []int64{4, 2}, seeded(4, 8, 1)),
		},
		Node: []*onnxpb.NodeProto{
			newNode("Conv", "", "conv1", []string{"x", "w1", "b1"}, []string{"c1"}, attrInts("pads", []int64{1, 1, 1, 1})),
			newNode("Relu", "", "relu1", []string{"c1"}, []string{"r"}),
			newNode("Conv", "", "conv2", []string{"r", "w2"}, []string{"c2"}),
			newNode("Add", "", "add1", []string{"c2", "r"}, []string{"a"}),
			newNode("GlobalAveragePool", "", "gap", []string{"a"}, []string{"g"}),
			newNode("Flatten", "", "flat", []string{"g"}, []string{"f"}),
			newNode("MatMul", "", "fc", []string{"f", "w3"}, []string{"y"}),
		}}
	return model(13, g)
}

// loadOut decodes a written model.
func loadOut(t testing.TB, path string) *onnxpb.ModelProto {
	t.Helper()
	m, err := onnx.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return m.Proto
}

// opCount counts nodes of an op type.
func opCount(g *onnxpb.GraphProto, op string) int {
	n := 0
	for _, nd := range g.Node {
		if nd.GetOpType() == op {
			n++
		}
	}
	return n
}

func nodeByName(t testing.TB, g *onnxpb.GraphProto, name string) *onnxpb.NodeProto {
	t.Helper()
	for _, n := range g.Node {
		if n.GetName() == name {
			return n
		}
	}
	t.Fatalf("no node %q", name)
	return nil
}

func initByName(g *onnxpb.GraphProto, name string) *onnxpb.TensorProto {
	for _, t := range g.Initializer {
		if t.GetName() == name {
			return t
		}
	}
	return nil
}

// agreement runs two models on the same samples and returns the worst per-sample cosine
// and the cosine of all samples' outputs concatenated, for the named output.
func agreement(t testing.TB, ref, cand, data, pre string, shapes map[string][]int64, output string) (worst, global float64, outs [2][][]float32) {
	t.Helper()
	rs, err := runtime.NewSessionFromFile(ref, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	cs, err := runtime.NewSessionFromFile(cand, runtime.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	src, err := calibration.Open(data, rs.Inputs(), calibration.Options{Preprocess: pre, Shapes: shapes})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	worst = 1
	var dot, na, nb float64
	for {
		s, err := src.Next()
		if err != nil {
			break
		}
		ro, err := rs.Run(s, output)
		if err != nil {
			t.Fatal(err)
		}
		co, err := cs.Run(s, output)
		if err != nil {
			t.Fatal(err)
		}
		a, err := ro[output].AsFloat32()
		if err != nil {
			t.Fatal(err)
		}
		b, err := co[output].AsFloat32()
		if err != nil {
			t.Fatal(err)
		}
		var d, x, y float64
		for i := range a {
			d += float64(a[i]) * float64(b[i])
			x += float64(a[i]) * float64(a[i])
			y += float64(b[i]) * float64(b[i])
		}
		dot, na, nb = dot+d, na+x, nb+y
		c := d / math.Sqrt(x*y)
		if x == 0 && y == 0 {
			c = 1
		}
		worst = math.Min(worst, c)
		outs[0] = append(outs[0], a)
		outs[1] = append(outs[1], b)
	}
	return worst, dot / math.Sqrt(na*nb), outs
}

// writeNPZ writes one float32 array per input (axis 0 = samples) as an .npz.
func writeNPZ(t testing.TB, path string, arrays map[string]*tensor.Tensor) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	zw := zip.NewWriter(f)
	for _, name := range onnx.SortedKeys(arrays) {
		a := arrays[name]
		dims := make([]string, len(a.Shape))
		for i, d := range a.Shape {
			dims[i] = fmt.Sprint(d)
		}
		hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s,), }", strings.Join(dims, ", "))
		for (10+len(hdr)+1)%64 != 0 {
			hdr += " "
		}
		hdr += "\n"
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name + ".npy", Method: zip.Store})
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, byte(len(hdr)), byte(len(hdr) >> 8)})
		w.Write([]byte(hdr))
		w.Write(a.Data)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// quantizeFile runs File and fails the test on error.
func quantizeFile(t testing.TB, in, out string, o Options) *Report {
	t.Helper()
	r, err := File(context.Background(), in, out, o)
	if err != nil {
		t.Fatalf("quantize %s: %v", filepath.Base(in), err)
	}
	return r
}
