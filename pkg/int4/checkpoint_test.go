package int4

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/safetensors"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// ckptTensor is one tensor of a synthetic checkpoint, float values in stored order.
type ckptTensor struct {
	shape []int64
	v     []float32
}

// writeCkpt writes model.safetensors (dtype F32, F16 or BF16) and config.json.
func writeCkpt(t *testing.T, dir, modelType, dtype string, ts map[string]ckptTensor) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	w, err := safetensors.NewWriter(filepath.Join(dir, "model.safetensors"), map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	for name, x := range ts {
		b, err := encodeFloats(dtype, x.v)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Add(name, dtype, x.shape, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`{"model_type": %q, "hidden_size": 64, "torch_dtype": "bfloat16"}`, modelType)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func randT(r *rand.Rand, scale float64, shape ...int64) ckptTensor {
	v := make([]float32, tensor.NumElements(shape))
	for i := range v {
		v[i] = float32(r.NormFloat64() * scale)
	}
	return ckptTensor{shape, v}
}

func gains(n int) ckptTensor {
	v := make([]float32, n)
	for i := range v {
		v[i] = 1 + float32(i%5)*0.4
	}
	return ckptTensor{[]int64{int64(n)}, v}
}

// llamaCheckpoint is one Llama decoder layer (hidden 64, MLP 128) with embeddings, final
// norm and lm_head, in BF16.
func llamaCheckpoint(seed uint64) map[string]ckptTensor {
	r := rand.New(rand.NewPCG(seed, 1))
	p := "model.layers.0."
	return map[string]ckptTensor{
		"model.embed_tokens.weight":           randT(r, 1, 100, 64),
		p + "input_layernorm.weight":          gains(64),
		p + "self_attn.q_proj.weight":         randT(r, 0.1, 64, 64),
		p + "self_attn.k_proj.weight":         randT(r, 0.1, 64, 64),
		p + "self_attn.v_proj.weight":         randT(r, 0.1, 64, 64),
		p + "self_attn.o_proj.weight":         randT(r, 0.1, 64, 64),
		p + "post_attention_layernorm.weight": gains(64),
		p + "mlp.gate_proj.weight":            randT(r, 0.1, 128, 64),
		p + "mlp.up_proj.weight":              randT(r, 0.1, 128, 64),
		p + "mlp.down_proj.weight":            randT(r, 0.1, 64, 128),
		"model.norm.weight":                   gains(64),
		"lm_head.weight":                      randT(r, 0.1, 100, 64),
	}
}

// llamaGraph is the calibration export of llamaCheckpoint's layer, attention reduced to
// v (enough to give every Linear its real input):
//
//	h = LN(x)·γ1; q,k,v = h·W; o = v·Woᵀ; h2 = LN(o)·γ2; a = (h2·Wupᵀ)·σ(h2·Wgateᵀ); y = a·Wdownᵀ
//
// get returns a Linear weight [N, K] or a norm weight by checkpoint name.
func llamaGraph(t *testing.T, get func(string) []float32, path string) string {
	p := "model.layers.0."
	b := newGB(0)
	b.inputs = []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, -1, 8, 64)}
	lin := func(name, in string, n, k int) string {
		w := get(p + name + ".weight")
		wt := make([]float32, len(w))
		transpose(wt, w, n, k)
		init := b.init(fmt.Sprintf("onnx::MatMul_%d", len(b.inits)), []int64{int64(k), int64(n)}, wt)
		return b.node("MatMul", name, in, init)
	}
	ln := func(out, in, gamma string) string {
		b.node("LayerNormalization", out, in, b.init(gamma, []int64{64}, get(p+gamma)), b.init(gamma+".beta", []int64{64}, make([]float32, 64)))
		b.nodes[len(b.nodes)-1].Attribute = []*onnxpb.AttributeProto{{Name: proto.String("axis"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(-1)}}
		return out
	}
	h := ln("h", "x", "input_layernorm.weight")
	q := lin("self_attn.q_proj", h, 64, 64)
	k := lin("self_attn.k_proj", h, 64, 64)
	v := lin("self_attn.v_proj", h, 64, 64)
	o := lin("self_attn.o_proj", v, 64, 64)
	h2 := ln("h2", o, "post_attention_layernorm.weight")
	g := lin("mlp.gate_proj", h2, 128, 64)
	u := lin("mlp.up_proj", h2, 128, 64)
	a := b.node("Mul", "a", u, b.node("Sigmoid", "sg", g))
	lin("mlp.down_proj", a, 64, 128)
	b.outputs = []*onnxpb.ValueInfoProto{vinfo("mlp.down_proj", tensor.Float32, -1, 8, 64),
		vinfo(q, tensor.Float32, -1, 8, 64), vinfo(k, tensor.Float32, -1, 8, 64)}
	return save(t, b.model(), path)
}

// getter reads a checkpoint written by Run: quantized Linears dequantized, the rest as stored.
func getter(t *testing.T, dir string, format Format) func(string) []float32 {
	ck, err := safetensors.OpenAny(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ck.Close() })
	return func(name string) []float32 {
		prefix := strings.TrimSuffix(name, ".weight")
		if _, ok := ck.Tensor(prefix + ".qweight"); ok {
			w, _, _, err := DequantizeLinear(ck, prefix, format, 4, "gptq")
			if err != nil {
				t.Fatal(err)
			}
			return w
		}
		v, err := readF32(ck, name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// TestLlamaAWQFolds: a pre-norm decoder's AWQ scales fold as AutoAWQ folds them (norms,
// v→o, up→down), the folded checkpoint computes what the float one does better than RTN,
// and a BF16 norm is rewritten in BF16.
func TestLlamaAWQFolds(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "llama")
	writeCkpt(t, src, "llama", "BF16", llamaCheckpoint(1))
	srcGet := getter(t, src, "")
	calibModel := llamaGraph(t, srcGet, filepath.Join(dir, "calib.onnx"))
	base := Options{Input: src, Format: FormatAWQ, GroupSize: 32, CalibModel: calibModel, Calib: "random:32:-2:2",
		Shapes: map[string][]int64{"x": {1, 8, 64}}}
	awq, rtn := base, base
	awq.Algo, awq.Output = AWQ, filepath.Join(dir, "awq")
	rtn.Algo, rtn.Output = RTN, filepath.Join(dir, "rtn")
	rep, err := Run(context.Background(), awq)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Run(context.Background(), rtn); err != nil {
		t.Fatal(err)
	}
	p := "model.layers.0."
	want := map[string]string{
		"self_attn.q_proj": p + "input_layernorm.weight", "self_attn.k_proj": p + "input_layernorm.weight",
		"self_attn.v_proj": p + "input_layernorm.weight", "self_attn.o_proj": "rows of " + p + "self_attn.v_proj.weight",
		"mlp.gate_proj": p + "post_attention_layernorm.weight", "mlp.up_proj": p + "post_attention_layernorm.weight",
		"mlp.down_proj": "rows of " + p + "mlp.up_proj.weight",
	}
	if len(rep.Layers) != 7 || rep.Matched != 7 {
		t.Fatalf("%d layers, %d matched; want 7 (lm_head and embeddings stay float)", len(rep.Layers), rep.Matched)
	}
	for _, l := range rep.Layers {
		short := strings.TrimSuffix(strings.TrimPrefix(l.Weight, p), ".weight")
		if l.AWQScale != want[short] {
			t.Errorf("%s: scale went to %q, want %q", short, l.AWQScale, want[short])
		}
	}
	outGet := getter(t, awq.Output, FormatAWQ)
	if g := outGet(p + "input_layernorm.weight"); g[0] == srcGet(p + "input_layernorm.weight")[0] && g[1] == srcGet(p + "input_layernorm.weight")[1] {
		t.Errorf("input_layernorm not rescaled")
	}
	if a, b := outGet("lm_head.weight"), srcGet("lm_head.weight"); maxAbsDiff(a, b) != 0 {
		t.Errorf("lm_head changed")
	}
	// The whole layer on fresh inputs: AWQ (with its folds) closer to float than RTN.
	x := map[string]*tensor.Tensor{"x": randInput(11, 16, 8, 64)}
	ref := runModel(t, calibModel, x, "mlp.down_proj")
	yA := runModel(t, llamaGraph(t, outGet, filepath.Join(dir, "a.onnx")), x, "mlp.down_proj")
	yR := runModel(t, llamaGraph(t, getter(t, rtn.Output, FormatAWQ), filepath.Join(dir, "r.onnx")), x, "mlp.down_proj")
	eA, eR := sqDist(yA, ref), sqDist(yR, ref)
	t.Logf("layer output error: AWQ %.4g, RTN %.4g (cosine %.5f vs %.5f)", eA, eR, cosine(yA, ref), cosine(yR, ref))
	if !(eA < eR) || cosine(yA, ref) < 0.98 {
		t.Errorf("AWQ with folds: error %.4g, RTN %.4g, cosine %.5f", eA, eR, cosine(yA, ref))
	}
}

func sqDist(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		s += d * d
	}
	return s
}

// TestGPT2Conv1D: GPT-2 stores Conv1D weights [in, out]; the checkpoint's N and K come out
// right, the dequantized weight is the transpose of the stored one, and AWQ folds c_attn
// into ln_1 (weight and bias) and c_fc into ln_2.
func TestGPT2Conv1D(t *testing.T) {
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(5, 1))
	ts := map[string]ckptTensor{
		"wte.weight": randT(r, 1, 100, 64), "wpe.weight": randT(r, 1, 32, 64),
		"h.0.ln_1.weight": gains(64), "h.0.ln_1.bias": randT(r, 0.1, 64),
		"h.0.attn.c_attn.weight": randT(r, 0.1, 64, 192), "h.0.attn.c_attn.bias": randT(r, 0.1, 192),
		"h.0.attn.c_proj.weight": randT(r, 0.1, 64, 64),
		"h.0.ln_2.weight":        gains(64), "h.0.ln_2.bias": randT(r, 0.1, 64),
		"h.0.mlp.c_fc.weight": randT(r, 0.1, 64, 256), "h.0.mlp.c_proj.weight": randT(r, 0.1, 256, 64),
		"ln_f.weight": gains(64),
	}
	src := filepath.Join(dir, "gpt2")
	writeCkpt(t, src, "gpt2", "F32", ts)
	rep, err := Run(context.Background(), Options{Input: src, Output: filepath.Join(dir, "q"), GroupSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	dims := map[string][2]int{}
	for _, l := range rep.Layers {
		dims[l.Weight] = [2]int{l.N, l.K}
	}
	want := map[string][2]int{"h.0.attn.c_attn.weight": {192, 64}, "h.0.attn.c_proj.weight": {64, 64},
		"h.0.mlp.c_fc.weight": {256, 64}, "h.0.mlp.c_proj.weight": {64, 256}}
	if fmt.Sprint(dims) != fmt.Sprint(want) {
		t.Fatalf("layers %v, want %v", dims, want)
	}
	ck, err := safetensors.OpenAny(filepath.Join(dir, "q"))
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	w, n, k, err := DequantizeLinear(ck, "h.0.attn.c_attn", FormatGPTQ, 4, "gptq")
	if err != nil {
		t.Fatal(err)
	}
	orig := ts["h.0.attn.c_attn.weight"].v // [K=64, N=192]
	var worst float64
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			worst = max(worst, math.Abs(float64(w[i*k+j]-orig[j*n+i])))
		}
	}
	// Symmetric 4-bit with |w| ≲ 0.45: one step is about 0.06.
	if worst > 0.07 {
		t.Fatalf("dequantized c_attn is not the transpose of the stored weight (max |Δ| %.3g)", worst)
	}

	// AWQ folds.
	needORT(t)
	b := newGB(0)
	b.inputs = []*onnxpb.ValueInfoProto{vinfo("x", tensor.Float32, -1, 8, 64)}
	ln := func(out, in, p string) string {
		b.node("LayerNormalization", out, in, b.init(p+".weight", []int64{64}, ts[p+".weight"].v), b.init(p+".bias", []int64{64}, ts[p+".bias"].v))
		return out
	}
	mm := func(out, in, name string) string {
		x := ts[name]
		return b.node("MatMul", out, in, b.init(name, x.shape, x.v)) // Conv1D: already [K, N]
	}
	mm("qkv", ln("h1", "x", "h.0.ln_1"), "h.0.attn.c_attn.weight")
	mm("proj", "x", "h.0.attn.c_proj.weight")
	fc := mm("fc", ln("h2", "x", "h.0.ln_2"), "h.0.mlp.c_fc.weight")
	mm("y", b.node("Mul", "act", fc, b.node("Sigmoid", "sg", fc)), "h.0.mlp.c_proj.weight")
	b.outputs = []*onnxpb.ValueInfoProto{vinfo("qkv", tensor.Float32, -1, 8, 192), vinfo("proj", tensor.Float32, -1, 8, 64), vinfo("y", tensor.Float32, -1, 8, 64)}
	calib := save(t, b.model(), filepath.Join(dir, "calib.onnx"))
	rep, err = Run(context.Background(), Options{Input: src, Output: filepath.Join(dir, "awq"), Format: FormatAWQ, Algo: AWQ, GroupSize: 32,
		Calib: "random:16:-2:2", CalibModel: calib, Shapes: map[string][]int64{"x": {1, 8, 64}}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, l := range rep.Layers {
		got[l.Weight] = strings.SplitN(l.AWQScale, " (", 2)[0]
	}
	wantFold := map[string]string{"h.0.attn.c_attn.weight": "h.0.ln_1.weight and h.0.ln_1.bias", "h.0.attn.c_proj.weight": "none",
		"h.0.mlp.c_fc.weight": "h.0.ln_2.weight and h.0.ln_2.bias", "h.0.mlp.c_proj.weight": "none"}
	if fmt.Sprint(got) != fmt.Sprint(wantFold) {
		t.Errorf("folds %v, want %v", got, wantFold)
	}
}

// TestSelectLinears: which checkpoint tensors count as Linear weights, per architecture.
func TestSelectLinears(t *testing.T) {
	names := []string{
		// BERT
		"embeddings.word_embeddings.weight", "encoder.layer.0.attention.self.query.weight", "encoder.layer.0.attention.output.dense.weight",
		"encoder.layer.0.attention.output.LayerNorm.weight", "encoder.layer.0.intermediate.dense.bias", "pooler.dense.weight",
		// Llama / Qwen2
		"model.embed_tokens.weight", "model.layers.11.self_attn.q_proj.weight", "model.layers.11.mlp.down_proj.weight",
		"model.layers.11.input_layernorm.weight", "model.norm.weight", "lm_head.weight",
		// GPT-2
		"transformer.wte.weight", "transformer.h.0.attn.c_attn.weight", "transformer.h.0.ln_1.weight",
	}
	ts := map[string]ckptTensor{}
	for _, n := range names {
		if strings.HasSuffix(n, "bias") || strings.Contains(n, "norm") || strings.Contains(n, "LayerNorm") || strings.Contains(n, "ln_1") {
			ts[n] = ckptTensor{[]int64{32}, make([]float32, 32)}
		} else {
			ts[n] = ckptTensor{[]int64{32, 16}, make([]float32, 512)}
		}
	}
	dir := t.TempDir()
	writeCkpt(t, dir, "bert", "F16", ts)
	ck, err := safetensors.OpenAny(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer ck.Close()
	for _, tc := range []struct {
		modelType string
		o         Options
		want      []string
		skipped   int
		conv1D    bool
	}{
		{"bert", Options{}, []string{"encoder.layer.0.attention.output.dense", "encoder.layer.0.attention.self.query",
			"model.layers.11.mlp.down_proj", "model.layers.11.self_attn.q_proj", "transformer.h.0.attn.c_attn"}, 0, false},
		{"gpt2", Options{Include: []string{"transformer.*"}}, []string{"transformer.h.0.attn.c_attn"}, 0, true},
		{"llama", Options{Exclude: []string{"*.q_proj*", "encoder.*"}}, []string{"model.layers.11.mlp.down_proj", "transformer.h.0.attn.c_attn"}, 3, false},
	} {
		ls, skips := selectLinears(ck, tc.modelType, &tc.o)
		var got []string
		for _, l := range ls {
			got = append(got, l.prefix)
			if l.conv1D != tc.conv1D {
				t.Errorf("%s %s: conv1D %v", tc.modelType, l.prefix, l.conv1D)
			}
		}
		sort.Strings(got)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) || len(skips) != tc.skipped {
			t.Errorf("%s: selected %v (skipped %v), want %v (%d skipped)", tc.modelType, got, skips, tc.want, tc.skipped)
		}
	}
}
