package calibration

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// TestTensorRTCacheGolden pins the cache byte for byte: header, then one line per tensor
// with the big-endian hex of float32(amax/127), in table order, each ending in '\n'.
func TestTensorRTCacheGolden(t *testing.T) {
	tab := &Table{Ranges: []Range{
		{Name: "input", Min: -127, Max: 3},  // amax 127 → scale 1.0
		{Name: "conv1", Min: -0.25, Max: 1}, // amax 1 → 1/127
		{Name: "relu1", Min: 0, Max: 6},     // amax 6 → 6/127
		{Name: "(Unnamed Layer* 48) [Shuffle]_output", Min: -2.5, Max: 0.5},
		{Name: "zero", Min: 0, Max: 0}, // an all-zero tensor: scale 0
	}}
	const want = "TRT-100900-EntropyCalibration2\n" +
		"input: 3f800000\n" +
		"conv1: 3c010204\n" +
		"relu1: 3d418306\n" +
		"(Unnamed Layer* 48) [Shuffle]_output: 3ca14285\n" +
		"zero: 00000000\n"
	var buf bytes.Buffer
	if err := WriteTensorRTCache(&buf, tab, 0, ""); err != nil {
		t.Fatal(err)
	}
	if buf.String() != want {
		t.Fatalf("cache:\n%s\nwant:\n%s", buf.String(), want)
	}
	buf.Reset()
	if err := WriteTensorRTCache(&buf, tab, 8601, "MinMaxCalibration"); err != nil || !strings.HasPrefix(buf.String(), "TRT-8601-MinMaxCalibration\n") {
		t.Fatalf("header with version and algorithm: %q, %v", strings.SplitN(buf.String(), "\n", 2)[0], err)
	}
	// Reading it back gives symmetric ranges with the same amax (to float32 rounding).
	back, v, algo, err := ReadTensorRTCache(strings.NewReader(want))
	if err != nil || v != 100900 || algo != "EntropyCalibration2" || len(back.Ranges) != len(tab.Ranges) {
		t.Fatalf("read back: %v %d %s %v", back, v, algo, err)
	}
	for i, r := range back.Ranges {
		if r.Name != tab.Ranges[i].Name || math.Abs(float64(r.Amax()-tab.Ranges[i].Amax())) > 1e-6*float64(tab.Ranges[i].Amax()) || r.Min != -r.Max {
			t.Fatalf("range %d: %+v, wrote %+v", i, r, tab.Ranges[i])
		}
	}
	for _, bad := range []*Table{{Ranges: []Range{{Name: "a\nb"}}}, {Ranges: []Range{{Name: "a: b"}}}} {
		if err := WriteTensorRTCache(io.Discard, bad, 0, ""); err == nil {
			t.Fatalf("name %q must be refused", bad.Ranges[0].Name)
		}
	}
	if err := WriteTensorRTCache(io.Discard, tab, 0, "Percentile"); err == nil {
		t.Fatalf("unknown calibrator name must be refused")
	}
	for _, bad := range []string{"", "TRT-x-Entropy\n", "TRT-1-EntropyCalibration2\nname 3f800000\n", "TRT-1-EntropyCalibration2\nname: 3f8\n"} {
		if _, _, _, err := ReadTensorRTCache(strings.NewReader(bad)); err == nil {
			t.Fatalf("cache %q must be refused", bad)
		}
	}
}

// TestJSONTable checks the JSON table's parameters against ORT's formulas and its bytes
// are stable.
func TestJSONTable(t *testing.T) {
	tab := &Table{Method: MinMax, Samples: 3, Ranges: []Range{{Name: "a", Min: -1, Max: 3}, {Name: "b", Min: 0.5, Max: 2}}}
	j, err := tab.ToJSON("m.onnx", quant.Uint8, false)
	if err != nil {
		t.Fatal(err)
	}
	// a: scale 4/255, zero point round(1/(4/255)) = round(63.75) = 64; b: the range
	// widens to include 0: [0, 2] → scale 2/255, zero point 0.
	if a := j.Tensors[0]; a.Scale != float32(4.0/255) || a.ZeroPoint != 64 || a.Amax != 3 {
		t.Fatalf("a: %+v", a)
	}
	if b := j.Tensors[1]; b.Scale != float32(2.0/255) || b.ZeroPoint != 0 {
		t.Fatalf("b: %+v", b)
	}
	js, _ := tab.ToJSON("m.onnx", quant.Int8, true)
	if a := js.Tensors[0]; a.Scale != float32(6.0/254) || a.ZeroPoint != 0 {
		t.Fatalf("symmetric int8 a: %+v", a)
	}
	var b1, b2 bytes.Buffer
	WriteJSON(&b1, j)
	WriteJSON(&b2, j)
	if !bytes.Equal(b1.Bytes(), b2.Bytes()) || !bytes.HasSuffix(b1.Bytes(), []byte("}\n")) {
		t.Fatalf("JSON not stable")
	}
	back, err := ReadJSON(&b1)
	if err != nil || back.Ranges[1] != tab.Ranges[1] {
		t.Fatalf("read back %+v %v", back, err)
	}
	if _, err := tab.ToJSON("", quant.Int4, false); err == nil {
		t.Fatalf("int4 must be refused")
	}
}

// chainModel is x[1,4] → MatMul → h → Relu → r → Mul(2) → y, with the named intermediates.
func chainModel(t *testing.T) []byte {
	t.Helper()
	w := make([]float32, 16)
	for i := range w {
		w[i] = float32(i%5) - 2
	}
	vi := func(name string, dims ...int64) *onnxpb.ValueInfoProto {
		s := &onnxpb.TensorShapeProto{}
		for _, d := range dims {
			s.Dim = append(s.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Float32)), Shape: s}}}}
	}
	node := func(op string, ins, outs []string) *onnxpb.NodeProto {
		return &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(outs[0]), Input: ins, Output: outs}
	}
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(8), OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("chain"),
			Input:  []*onnxpb.ValueInfoProto{vi("x", 1, 4)},
			Output: []*onnxpb.ValueInfoProto{vi("y", 1, 4)},
			Initializer: []*onnxpb.TensorProto{onnx.FromTensor("w", tensor.FromFloat32([]int64{4, 4}, w)),
				onnx.FromTensor("two", tensor.FromFloat32(nil, []float32{2}))},
			Node: []*onnxpb.NodeProto{node("MatMul", []string{"x", "w"}, []string{"h"}), node("Relu", []string{"h"}, []string{"r"}),
				node("Mul", []string{"r", "two"}, []string{"y"})}}}
	b, err := m.MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// direct computes every sample's per-batch extremes by fetching the full tensors.
func direct(t *testing.T, model []byte, names []string, src Source) map[string][][2]float32 {
	t.Helper()
	s, err := runtime.NewSession(model, runtime.Options{ExtraOutputs: names})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	src.Reset()
	out := map[string][][2]float32{}
	for {
		smp, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		res, err := s.Run(smp)
		if err != nil {
			t.Fatal(err)
		}
		res["x"] = smp["x"]
		for _, n := range names {
			v := res[n].Float32s()
			lo, hi := v[0], v[0]
			for _, x := range v {
				lo, hi = min(lo, x), max(hi, x)
			}
			out[n] = append(out[n], [2]float32{lo, hi})
		}
	}
	return out
}

func TestCalibrateMinMaxMatchesDirect(t *testing.T) {
	testassets.Path(t, testassets.ORTLibrary)
	model := chainModel(t)
	inputs := []tensor.Spec{{Name: "x", DType: tensor.Float32, Shape: []int64{1, 4}}}
	src, err := Open("random:20:-3:3", inputs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	names := []string{"x", "h", "r", "y"}
	want := direct(t, model, []string{"h", "r", "y"}, src)
	ctx := context.Background()
	for _, ema := range []bool{false, true} {
		tab, err := Calibrate(ctx, model, names, src, CalibrateOptions{MovingAverage: ema})
		if err != nil {
			t.Fatal(err)
		}
		if tab.Samples != 20 || len(tab.Ranges) != 4 {
			t.Fatalf("samples %d, ranges %d", tab.Samples, len(tab.Ranges))
		}
		for _, n := range names[1:] {
			// Reference: pkg/quant's MinMax fed each sample's values.
			ref := quant.NewMinMax(false, ema)
			for _, e := range want[n] {
				ref.Add(e[:])
			}
			lo, hi := ref.Range()
			r, _ := tab.Lookup(n)
			if r.Min != lo || r.Max != hi {
				t.Fatalf("ema %v, %s: %v, want [%v, %v]", ema, n, r, lo, hi)
			}
		}
	}
	// Symmetric ranges; unknown and duplicate names are refused.
	tab, err := Calibrate(ctx, model, []string{"h"}, src, CalibrateOptions{Symmetric: true})
	if err != nil || tab.Ranges[0].Min != -tab.Ranges[0].Max {
		t.Fatalf("symmetric: %+v %v", tab, err)
	}
	for _, bad := range [][]string{{"nope"}, {"h", "h"}, {"w"}} {
		if _, err := Calibrate(ctx, model, bad, src, CalibrateOptions{}); err == nil {
			t.Fatalf("tensors %v must be refused", bad)
		}
	}
}

// TestCalibrateHistogramPasses: splitting the tensors into several passes (a tiny byte
// budget) gives exactly the single-pass ranges, for entropy and percentile.
func TestCalibrateHistogramPasses(t *testing.T) {
	testassets.Path(t, testassets.ORTLibrary)
	model := chainModel(t)
	inputs := []tensor.Spec{{Name: "x", DType: tensor.Float32, Shape: []int64{1, 4}}}
	src, err := Open("random:40:-3:3", inputs, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	names := []string{"x", "h", "r", "y"}
	for _, m := range []Method{Entropy, Percentile} {
		for _, sym := range []bool{false, true} {
			one, err := Calibrate(context.Background(), model, names, src, CalibrateOptions{Method: m, Symmetric: sym, Bins: 256})
			if err != nil {
				t.Fatal(err)
			}
			many, err := Calibrate(context.Background(), model, names, src, CalibrateOptions{Method: m, Symmetric: sym, Bins: 256, MaxBytesPerPass: 16})
			if err != nil {
				t.Fatal(err)
			}
			if one.Passes != 1 || many.Passes != 4 || many.Samples != 40 {
				t.Fatalf("%s: passes %d and %d, samples %d", m, one.Passes, many.Passes, many.Samples)
			}
			for i := range one.Ranges {
				if one.Ranges[i] != many.Ranges[i] {
					t.Fatalf("%s sym %v: %+v vs %+v", m, sym, one.Ranges[i], many.Ranges[i])
				}
				if r := one.Ranges[i]; r.Min > r.Max || (sym && r.Min != -r.Max) {
					t.Fatalf("%s sym %v: bad range %+v", m, sym, r)
				}
			}
		}
	}
}

// TestCalibrateFileAndTables runs the whole calibrate path on the real classifier.
func TestCalibrateFileAndTables(t *testing.T) {
	testassets.Path(t, testassets.ORTLibrary)
	model := testassets.Path(t, testassets.OCRClassifier)
	tab, err := CalibrateFile(context.Background(), model, "random:3", Options{Shapes: map[string][]int64{"x": {1, 3, 48, 192}}},
		CalibrateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Every float activation: the input and the node outputs, no Constant-node weights.
	if tab.Ranges[0].Name != "x" || len(tab.Ranges) < 150 {
		t.Fatalf("%d ranges, first %q", len(tab.Ranges), tab.Ranges[0].Name)
	}
	for _, r := range tab.Ranges {
		if strings.HasPrefix(r.Name, "batch_norm_0.w_") {
			t.Fatalf("weight %s in the table", r.Name)
		}
	}
	var buf bytes.Buffer
	if err := WriteTensorRTCache(&buf, tab, 0, ""); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(buf.String(), "\n"); lines != len(tab.Ranges)+1 {
		t.Fatalf("%d lines for %d tensors", lines, len(tab.Ranges))
	}
	path := filepath.Join(t.TempDir(), "t.cache")
	os.WriteFile(path, buf.Bytes(), 0o644)
}
