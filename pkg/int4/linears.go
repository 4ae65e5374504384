package int4

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/optimctl/optimctl/pkg/safetensors"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Which checkpoint tensors are Linear weights, and how each architecture lets an AWQ input
// scale be folded away. GPTQ and AWQ tools quantize the Linear layers inside the repeated
// blocks (AutoGPTQ's inside_layer_modules, AutoAWQ's get_layers_for_scaling) and leave the
// embeddings, norms, pooler and lm_head in float; so do we.

// blockRe finds the repeated-block part of a tensor name: BERT "encoder.layer.3.",
// Llama/Qwen2/Mistral "model.layers.3.", GPT-2 "h.3." (also "transformer.h.3.").
var blockRe = regexp.MustCompile(`(^|\.)(layer|layers|h|blocks)\.(\d+)\.`)

// ckptLinear is one Linear weight of a checkpoint.
type ckptLinear struct {
	prefix string // module path: the tensor is prefix + ".weight"
	n, k   int
	// conv1D: GPT-2's Conv1D stores its weight [in=K, out=N], the transpose of nn.Linear's.
	conv1D bool
	dtype  string
}

func (c *ckptLinear) weight() string { return c.prefix + ".weight" }

// isNormOrEmbedding recognises the 2-D tensors inside blocks that are not Linear weights.
func isNormOrEmbedding(name string) bool {
	l := strings.ToLower(name)
	return strings.Contains(l, "norm") || strings.Contains(l, "embed") || strings.Contains(l, ".ln_") ||
		strings.Contains(l, "wte") || strings.Contains(l, "wpe")
}

// selectLinears lists the checkpoint's Linear weights inside repeated blocks, in name order.
func selectLinears(ck *safetensors.Checkpoint, modelType string, o *Options) ([]*ckptLinear, []Skip) {
	var out []*ckptLinear
	var skips []Skip
	for _, name := range ck.Names() {
		if !strings.HasSuffix(name, ".weight") {
			continue
		}
		info, _ := ck.Tensor(name)
		if len(info.Shape) != 2 || !blockRe.MatchString(name) || isNormOrEmbedding(name) {
			continue
		}
		prefix := strings.TrimSuffix(name, ".weight")
		if len(o.Include) > 0 && !matches(o.Include, name, prefix) {
			continue
		}
		if matches(o.Exclude, name, prefix) {
			skips = append(skips, Skip{name, "excluded"})
			continue
		}
		dt, ok := safetensors.ToTensorDType(info.DType)
		if !ok || (dt != tensor.Float32 && dt != tensor.Float16 && dt != tensor.BFloat16) {
			skips = append(skips, Skip{name, fmt.Sprintf("dtype %s is not F32, F16 or BF16", info.DType)})
			continue
		}
		l := &ckptLinear{prefix: prefix, n: int(info.Shape[0]), k: int(info.Shape[1]), dtype: info.DType}
		if modelType == "gpt2" {
			l.conv1D = true
			l.n, l.k = l.k, l.n
		}
		out = append(out, l)
	}
	return out, skips
}

// loadLinear reads a checkpoint Linear as float32 [N, K].
func loadLinear(ck *safetensors.Checkpoint, l *ckptLinear) ([]float32, error) {
	v, err := readF32(ck, l.weight())
	if err != nil {
		return nil, err
	}
	if l.conv1D {
		t := make([]float32, len(v))
		transpose(t, v, l.k, l.n)
		return t, nil
	}
	return v, nil
}

// readF32 reads any float tensor of the checkpoint as float32.
func readF32(ck *safetensors.Checkpoint, name string) ([]float32, error) {
	info, ok := ck.Tensor(name)
	if !ok {
		return nil, fmt.Errorf("no tensor %q", name)
	}
	dt, ok := safetensors.ToTensorDType(info.DType)
	if !ok {
		return nil, fmt.Errorf("tensor %q: unsupported dtype %s", name, info.DType)
	}
	v, err := (&tensor.Tensor{DType: dt, Shape: info.Shape, Data: ck.Data(name)}).AsFloat32()
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return v, nil
}

// ckptFold says where an AWQ group's 1/s goes in a checkpoint: into a norm's weight (and
// bias), or into the output rows of the previous Linear. nil: nowhere exact, so the group
// gets s = 1 (AWQ's clipping search only).
type ckptFold struct {
	normWeight, normBias string      // norm tensors to divide by s
	prev                 *ckptLinear // Linear whose output rows (and bias) to divide by s
}

func (f *ckptFold) String() string {
	if f.prev != nil {
		return "rows of " + f.prev.weight()
	}
	if f.normBias != "" {
		return f.normWeight + " and " + f.normBias
	}
	return f.normWeight
}

// foldFor applies AutoAWQ's scaling rules: pre-norm decoders (Llama, Mistral, Qwen2/3)
// fold q/k/v into input_layernorm, gate/up into post_attention_layernorm, o into v_proj
// (when the shapes agree: no grouped-query attention) and down into up_proj; GPT-2 folds
// c_attn into ln_1 and c_fc into ln_2. BERT is post-norm: every Linear's input also feeds a
// residual branch, so nothing folds.
func foldFor(modelType string, members []*ckptLinear, all map[string]*ckptLinear, ck *safetensors.Checkpoint) *ckptFold {
	set := map[string]bool{}
	block := ""
	for _, m := range members {
		loc := blockRe.FindStringIndex(m.prefix)
		if loc == nil {
			return nil
		}
		b := m.prefix[:loc[1]]
		if block != "" && b != block {
			return nil
		}
		block = b
		set[m.prefix[loc[1]:]] = true
	}
	is := func(names ...string) bool {
		if len(names) != len(set) {
			return false
		}
		for _, n := range names {
			if !set[n] {
				return false
			}
		}
		return true
	}
	has := func(name string) bool { _, ok := ck.Tensor(name); return ok }
	norm := func(w, b string) *ckptFold {
		if !has(block + w) {
			return nil
		}
		f := &ckptFold{normWeight: block + w}
		if b != "" && has(block+b) {
			f.normBias = block + b
		}
		return f
	}
	prev := func(name string, k int) *ckptFold {
		p := all[block+name]
		if p == nil || p.n != k {
			return nil
		}
		return &ckptFold{prev: p}
	}
	k := members[0].k
	switch modelType {
	case "llama", "mistral", "qwen2", "qwen3":
		switch {
		case is("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
			return norm("input_layernorm.weight", "")
		case is("mlp.gate_proj", "mlp.up_proj"):
			return norm("post_attention_layernorm.weight", "")
		case is("self_attn.o_proj"):
			return prev("self_attn.v_proj", k)
		case is("mlp.down_proj"):
			return prev("mlp.up_proj", k)
		}
	case "gpt2":
		switch {
		case is("attn.c_attn"):
			return norm("ln_1.weight", "ln_1.bias")
		case is("mlp.c_fc"):
			return norm("ln_2.weight", "ln_2.bias")
		}
	}
	return nil
}
