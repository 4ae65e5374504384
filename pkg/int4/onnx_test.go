package int4

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/quant/pack"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		want string // error substring; "" = valid
	}{
		{"defaults", Options{}, ""},
		{"gptq without data", Options{Algo: GPTQ}, "needs calibration data"},
		{"awq 8 bits", Options{Algo: AWQ, Bits: 8, Calib: "random:1"}, "4-bit only"},
		{"bad algo", Options{Algo: "hqq"}, `algo "hqq"`},
		{"tiny group", Options{GroupSize: 8}, "at least 16"},
		{"per channel", Options{GroupSize: -1}, ""},
		{"bits 3", Options{Bits: 3}, "bits 3"},
		{"damp", Options{Damp: 1.5}, "damp"},
		{"accuracy level", Options{AccuracyLevel: 5}, "accuracy level"},
		{"format", Options{Format: "gguf"}, `format "gguf"`},
		{"checkpoint format", Options{CheckpointFormat: "gptq_v3"}, "checkpoint format"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			err := o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				if o.Bits != 4 || o.Algo == "" || o.GroupSize == 0 || o.CheckpointFormat != pack.GPTQFormatV1 {
					t.Fatalf("defaults not filled: %+v", o)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	// Format-dependent defaults and constraints.
	for _, tc := range []struct {
		f       Format
		o       Options
		wantSym bool
		want    string
	}{
		{FormatONNX, Options{}, false, ""},
		{FormatGPTQ, Options{}, true, ""},
		{FormatAWQ, Options{}, false, ""},
		{FormatONNX, Options{GroupSize: 48}, false, "power of two"},
		{FormatAWQ, Options{GroupSize: -1}, false, "per-channel"},
		{FormatGPTQ, Options{Algo: GPTQ, Calib: "x.npz"}, true, "calib_model"},
	} {
		o := tc.o
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		err := o.resolve(tc.f)
		if tc.want != "" {
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s %+v: error %v, want %q", tc.f, tc.o, err, tc.want)
			}
			continue
		}
		if err != nil || *o.Symmetric != tc.wantSym {
			t.Errorf("%s: err %v, symmetric %v, want %v", tc.f, err, *o.Symmetric, tc.wantSym)
		}
	}
}

// TestMatMulNBitsRewrite pins the graph RTN writes: MatMulNBits nodes with the attributes,
// initializer shapes and dtypes ONNX Runtime reads, the com.microsoft opset, codes equal to
// quant's RTN, the Constant-node weight consumed, and identical bytes on a second run.
func TestMatMulNBitsRewrite(t *testing.T) {
	in := save(t, pipelineModel(1, false), tmp(t, "m.onnx"))
	for _, tc := range []struct {
		group int
		sym   bool
	}{{32, false}, {16, true}, {64, false}} {
		out := tmp(t, "q.onnx")
		rep, err := Run(context.Background(), Options{Input: in, Output: out, GroupSize: tc.group, Symmetric: boolPtr(tc.sym), AccuracyLevel: 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Layers) != 4 || rep.QuantizedParams != 64*64+64*48+64*128+128*32 || rep.NodesBefore != 7 || rep.NodesAfter != 6 {
			t.Fatalf("group %d: report %d layers, %d params, nodes %d → %d", tc.group, len(rep.Layers), rep.QuantizedParams, rep.NodesBefore, rep.NodesAfter)
		}
		m, err := onnx.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		if m.Opset(pack.MatMulNBitsDomain) != 1 {
			t.Fatalf("no com.microsoft opset import")
		}
		src, err := onnx.Load(in)
		if err != nil {
			t.Fatal(err)
		}
		weights := map[string][]float32{}
		for _, n := range src.Graph().Node {
			if n.GetOpType() == "MatMul" {
				if it := src.Initializer(n.Input[1]); it != nil {
					weights[n.Output[0]], _ = src.Float32s(it)
				}
			}
			if n.GetOpType() == "Constant" {
				weights["k"], _ = shape.ConstantValue(n).AsFloat32()
			}
		}
		ix := onnx.NewIndex(m.Graph())
		count := 0
		for _, n := range m.Graph().Node {
			switch n.GetOpType() {
			case "MatMul", "Constant":
				t.Fatalf("%s left in the graph", n.GetOpType())
			case pack.MatMulNBitsOp:
			default:
				continue
			}
			count++
			if n.GetDomain() != pack.MatMulNBitsDomain {
				t.Fatalf("domain %q", n.GetDomain())
			}
			k, nn := shape.AttrInt(n, "K", 0), shape.AttrInt(n, "N", 0)
			if shape.AttrInt(n, "bits", 0) != 4 || shape.AttrInt(n, "block_size", 0) != int64(tc.group) || shape.AttrInt(n, "accuracy_level", -1) != 4 {
				t.Fatalf("%s: attributes %v", n.GetName(), n.Attribute)
			}
			wantIn := 4
			if tc.sym {
				wantIn = 3
			}
			if len(n.Input) != wantIn {
				t.Fatalf("%s: %d inputs, want %d", n.GetName(), len(n.Input), wantIn)
			}
			kb := (k + int64(tc.group) - 1) / int64(tc.group)
			b, sc := ix.Initializers[n.Input[1]], ix.Initializers[n.Input[2]]
			if tensor.DType(b.GetDataType()) != tensor.Uint8 || !equalDims(b.Dims, nn, kb, int64(tc.group/2)) ||
				tensor.DType(sc.GetDataType()) != tensor.Float32 || !equalDims(sc.Dims, nn, kb) {
				t.Fatalf("%s: B %v %v, scales %v %v", n.GetName(), b.GetDataType(), b.Dims, sc.GetDataType(), sc.Dims)
			}
			var zp *onnxpb.TensorProto
			if !tc.sym {
				zp = ix.Initializers[n.Input[3]]
				if !equalDims(zp.Dims, nn, (kb*4+7)/8) {
					t.Fatalf("%s: zero_points %v", n.GetName(), zp.Dims)
				}
			}
			// Codes and parameters are quant's RTN of the transposed weight.
			want, err := quant.QuantizeRTN(quant.FromKN(weights[n.Output[0]], int(k), int(nn)), int(nn), int(k),
				quant.GroupOptions{Bits: 4, GroupSize: tc.group, Symmetric: tc.sym})
			if err != nil {
				t.Fatal(err)
			}
			codes, zeros := make([]uint8, nn*k), make([]uint8, nn*kb)
			var zpData []byte
			if zp != nil {
				zpData = zp.RawData
			}
			if err := pack.UnpackMatMulNBits(codes, zeros, b.RawData, zpData, int(nn), int(k), 4, tc.group); err != nil {
				t.Fatal(err)
			}
			scales, _ := m.Float32s(sc)
			for i := range codes {
				if codes[i] != want.Codes[i] {
					t.Fatalf("%s: code %d = %d, want %d", n.GetName(), i, codes[i], want.Codes[i])
				}
			}
			for i := range zeros {
				if zeros[i] != want.Zeros[i] || scales[i] != want.Scales[i] {
					t.Fatalf("%s: group %d: zero %d scale %v, want %d %v", n.GetName(), i, zeros[i], scales[i], want.Zeros[i], want.Scales[i])
				}
			}
		}
		if count != 4 {
			t.Fatalf("%d MatMulNBits nodes, want 4", count)
		}
		// Deterministic bytes.
		out2 := tmp(t, "q2.onnx")
		if _, err := Run(context.Background(), Options{Input: in, Output: out2, GroupSize: tc.group, Symmetric: boolPtr(tc.sym), AccuracyLevel: 4}); err != nil {
			t.Fatal(err)
		}
		if fileSHA(t, out) != fileSHA(t, out2) {
			t.Fatalf("group %d: two runs wrote different bytes", tc.group)
		}
	}
}

func equalDims(d []int64, want ...int64) bool {
	if len(d) != len(want) {
		return false
	}
	for i := range d {
		if d[i] != want[i] {
			return false
		}
	}
	return true
}

// TestORTReadsMatMulNBits: ONNX Runtime's MatMulNBits on our packed weights gives what a
// float MatMul gives on our own dequantization of them, so both sides read one layout.
func TestORTReadsMatMulNBits(t *testing.T) {
	needORT(t)
	in := save(t, pipelineModel(2, false), tmp(t, "m.onnx"))
	x := map[string]*tensor.Tensor{"x": randInput(9, 4, 8, 64)}
	for _, sym := range []bool{false, true} {
		out := tmp(t, "q.onnx")
		if _, err := Run(context.Background(), Options{Input: in, Output: out, GroupSize: 32, Symmetric: boolPtr(sym)}); err != nil {
			t.Fatal(err)
		}
		fake := fakeQuant(t, out, tmp(t, "fake.onnx"))
		for _, name := range []string{"y", "k"} {
			got, want := runModel(t, out, x, name), runModel(t, fake, x, name)
			if d := maxAbsDiff(got, want); d > 2e-5 {
				t.Errorf("sym %v, output %s: MatMulNBits and dequantized MatMul differ by %g", sym, name, d)
			}
		}
	}
}

// fakeQuant writes a copy of a MatMulNBits model with each node turned back into a float
// MatMul over the weight dequantized from its packed inputs (pack's unpacker, quant's
// dequantization convention).
func fakeQuant(t testing.TB, in, out string) string {
	t.Helper()
	m, err := onnx.Load(in)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph()
	ix := onnx.NewIndex(g)
	for i, n := range g.Node {
		if n.GetOpType() != pack.MatMulNBitsOp {
			continue
		}
		k, nn := int(shape.AttrInt(n, "K", 0)), int(shape.AttrInt(n, "N", 0))
		bs, bits := int(shape.AttrInt(n, "block_size", 0)), int(shape.AttrInt(n, "bits", 0))
		kb := (k + bs - 1) / bs
		codes, zeros := make([]uint8, nn*k), make([]uint8, nn*kb)
		var zp []byte
		if len(n.Input) > 3 && n.Input[3] != "" {
			zp = ix.Initializers[n.Input[3]].RawData
		}
		if err := pack.UnpackMatMulNBits(codes, zeros, ix.Initializers[n.Input[1]].RawData, zp, nn, k, bits, bs); err != nil {
			t.Fatal(err)
		}
		scales, err := m.Float32s(ix.Initializers[n.Input[2]])
		if err != nil {
			t.Fatal(err)
		}
		gq := &quant.GroupQuant{N: nn, K: k, Bits: bits, GroupSize: bs, Codes: codes, Scales: scales, Zeros: zeros}
		w := quant.ToKN(gq.Dequantize(), nn, k)
		name := n.Input[1] + "_dequantized"
		g.Initializer = append(g.Initializer, onnx.FromTensor(name, tensor.FromFloat32([]int64{int64(k), int64(nn)}, w)))
		g.Node[i] = &onnxpb.NodeProto{Name: n.Name, OpType: strPtr("MatMul"), Input: []string{n.Input[0], name}, Output: n.Output}
	}
	if err := m.Save(out, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

func strPtr(s string) *string { return &s }

// TestAWQFoldIsExact: folding 1/s into a LayerNorm, into a quantized MatMul's rows and into
// an Add bias gives the same function as explicit Muls (made necessary in the second model
// by exposing the tensors as graph outputs), up to float rounding; and the folds happen.
func TestAWQFoldIsExact(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	folded := save(t, pipelineModel(3, false), dir+"/a.onnx")
	muls := save(t, pipelineModel(3, true), dir+"/b.onnx")
	o := Options{Algo: AWQ, Calib: "random:16:-2:2", GroupSize: 16, Shapes: map[string][]int64{"x": {1, 8, 64}}}
	oa, ob := o, o
	oa.Input, oa.Output = folded, dir+"/qa.onnx"
	ob.Input, ob.Output = muls, dir+"/qb.onnx"
	ra, err := Run(context.Background(), oa)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := Run(context.Background(), ob)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{ // layer → where 1/s went in the foldable model
		"MatMul_q": "LayerNormalization LayerNormalization_h", "MatMul_k": "LayerNormalization LayerNormalization_h",
		"MatMul_up": "rows of MatMul_q", "MatMul_y": "rows of MatMul_up",
	}
	for i, l := range ra.Layers {
		if l.AWQAlpha == nil || *l.AWQAlpha == 0 {
			t.Fatalf("%s: AWQ kept s = 1 (alpha %v); the test needs a real scale", l.Name, l.AWQAlpha)
		}
		if l.AWQScale != want[l.Name] {
			t.Errorf("%s: scale went to %q, want %q", l.Name, l.AWQScale, want[l.Name])
		}
		if !strings.HasPrefix(rb.Layers[i].AWQScale, "Mul ") {
			t.Errorf("%s: with exposed inputs the scale went to %q, want an explicit Mul", l.Name, rb.Layers[i].AWQScale)
		}
		if l.Error > l.RTNError {
			t.Errorf("%s: AWQ error %g above RTN's %g", l.Name, l.Error, l.RTNError)
		}
	}
	if rb.NodesAfter != ra.NodesAfter+3 {
		t.Errorf("nodes: folded %d, with Muls %d; want 3 more", ra.NodesAfter, rb.NodesAfter)
	}
	x := map[string]*tensor.Tensor{"x": randInput(5, 2, 8, 64)}
	for _, name := range []string{"y", "k"} {
		a, b := runModel(t, oa.Output, x, name), runModel(t, ob.Output, x, name)
		ref := runModel(t, folded, x, name)
		t.Logf("%s: folded vs Mul max diff %g (scale %g), cosine to float %.6f", name, maxAbsDiff(a, b), maxAbs(ref), cosine(a, ref))
		if d, scale := maxAbsDiff(a, b), maxAbs(ref); d > 1e-4*scale {
			t.Errorf("%s: folded and explicit-Mul models differ by %g (outputs up to %g)", name, d, scale)
		}
		if c := cosine(a, ref); c < 0.99 {
			t.Errorf("%s: cosine to float %v", name, c)
		}
	}
}

func maxAbs(v []float32) float64 {
	var m float64
	for _, x := range v {
		m = max(m, float64(max(x, -x)))
	}
	return m
}

// TestGPTQSyntheticBeatsRTN: on every layer GPTQ's output error is at most RTN's, and
// act-order (with the static groups MatMulNBits needs) still runs in ONNX Runtime.
func TestGPTQSyntheticBeatsRTN(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	in := save(t, pipelineModel(4, false), dir+"/m.onnx")
	for _, act := range []bool{false, true} {
		last := map[string][2]int{}
		o := Options{Input: in, Output: dir + "/q.onnx", Algo: GPTQ, Calib: "random:32:-2:2", GroupSize: 16, ActOrder: act,
			Shapes:   map[string][]int64{"x": {1, 8, 64}},
			Progress: func(stage string, done, total int) { last[stage] = [2]int{done, total} }}
		rep, err := Run(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(rep.Layers); last["quantizing"] != [2]int{n, n} || last["capturing"][0] != 32 {
			t.Errorf("progress: last calls %v, want quantizing %d of %d and 32 samples captured", last, n, n)
		}
		if rep.CalibRows != 32*8 || rep.CalibSamples != 32 {
			t.Fatalf("calibration rows %d samples %d", rep.CalibRows, rep.CalibSamples)
		}
		for _, l := range rep.Layers {
			if !(l.Error <= l.RTNError) || l.Error <= 0 {
				t.Errorf("act order %v, %s: GPTQ error %g, RTN %g", act, l.Name, l.Error, l.RTNError)
			}
		}
		x := map[string]*tensor.Tensor{"x": randInput(6, 2, 8, 64)}
		if c := cosine(runModel(t, o.Output, x, "y"), runModel(t, in, x, "y")); c < 0.99 {
			t.Errorf("act order %v: cosine %v", act, c)
		}
	}
}

func TestRefusals(t *testing.T) {
	in := save(t, pipelineModel(1, false), tmp(t, "m.onnx"))
	if _, err := Run(context.Background(), Options{Input: in, Output: in}); !errors.Is(err, fsutil.ErrSameFile) {
		t.Errorf("writing over the input: %v", err)
	}
	if _, err := Run(context.Background(), Options{Input: in, Output: tmp(t, "o"), Format: FormatGPTQ}); err == nil || !strings.Contains(err.Error(), "safetensors") {
		t.Errorf("gptq format from onnx: %v", err)
	}
	if _, err := Run(context.Background(), Options{Input: in, Output: tmp(t, "o.onnx"), Exclude: []string{"W*"}}); err == nil || !strings.Contains(err.Error(), "no MatMul") {
		t.Errorf("everything excluded: %v", err)
	}
	rep, err := Run(context.Background(), Options{Input: in, Output: tmp(t, "o.onnx"), Exclude: []string{"MatMul_y"}})
	if err != nil || len(rep.Layers) != 3 || len(rep.Skipped) != 1 || rep.Skipped[0].Name != "Wdown" {
		t.Errorf("exclude by node name: %v, %d layers, skipped %v", err, len(rep.Layers), rep.Skipped)
	}
}
