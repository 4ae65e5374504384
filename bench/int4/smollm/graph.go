package main

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

type builder struct {
	nodes []*onnxpb.NodeProto
	inits []*onnxpb.TensorProto
	seen  map[string]bool
	n     int
}

func (b *builder) node(name, op string, ins []string, attrs ...*onnxpb.AttributeProto) string {
	out := name + "_output_0"
	b.nodes = append(b.nodes, &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(op), Input: ins, Output: []string{out}, Attribute: attrs})
	return out
}

func (b *builder) init(name string, t *tensor.Tensor) string {
	if !b.seen[name] {
		b.seen[name] = true
		b.inits = append(b.inits, onnx.FromTensor(name, t))
	}
	return name
}

func (b *builder) ints(name string, v ...int64) string {
	return b.init(name, tensor.FromInt64([]int64{int64(len(v))}, v))
}

func (b *builder) scalar(name string, v float32) string {
	return b.init(name, tensor.FromFloat32([]int64{}, []float32{v}))
}

func attrI(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func attrIs(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

// linearT adds the transpose of a Linear weight [N, K] as an exporter-style MatMul B [K, N].
func (b *builder) linearT(w []float32, n, k int) string {
	t := make([]float32, n*k)
	for r := 0; r < n; r++ {
		for c := 0; c < k; c++ {
			t[c*n+r] = w[r*k+c]
		}
	}
	b.n++
	return b.init(fmt.Sprintf("onnx::MatMul_%d", 2000+b.n), tensor.FromFloat32([]int64{int64(k), int64(n)}, t))
}

// buildLlama writes Hugging Face's LlamaForCausalLM forward pass (eval mode, no cache) as
// torch.onnx.export lays it out at opset 17: RMSNorm in float32 ops, rotary embedding with
// rotate_half, grouped-query attention by repeating k/v heads, causal mask, SiLU MLP, tied
// lm_head. Sequences up to maxPos tokens.
func buildLlama(c llamaConfig, w map[string][]float32) (*onnxpb.ModelProto, error) {
	b := &builder{seen: map[string]bool{}}
	H, d := c.Hidden, c.HeadDim
	get := func(name string) ([]float32, error) {
		v, ok := w[name]
		if !ok {
			return nil, fmt.Errorf("no weight %q", name)
		}
		return v, nil
	}
	emb, err := get("model.embed_tokens.weight")
	if err != nil {
		return nil, err
	}
	b.init("model.embed_tokens.weight", tensor.FromFloat32([]int64{int64(c.Vocab), int64(H)}, emb))

	// Rotary tables [maxPos, d]: cos/sin of pos·θ^(−2i/d), both halves alike.
	cos, sin := make([]float32, maxPos*d), make([]float32, maxPos*d)
	for p := 0; p < maxPos; p++ {
		for i := 0; i < d/2; i++ {
			f := float64(p) / math.Pow(c.RopeTheta, float64(2*i)/float64(d))
			cos[p*d+i], cos[p*d+i+d/2] = float32(math.Cos(f)), float32(math.Cos(f))
			sin[p*d+i], sin[p*d+i+d/2] = float32(math.Sin(f)), float32(math.Sin(f))
		}
	}
	b.init("rotary.cos", tensor.FromFloat32([]int64{maxPos, int64(d)}, cos))
	b.init("rotary.sin", tensor.FromFloat32([]int64{maxPos, int64(d)}, sin))
	mask := make([]float32, maxPos*maxPos)
	for i := 0; i < maxPos; i++ {
		for j := i + 1; j < maxPos; j++ {
			mask[i*maxPos+j] = -math.MaxFloat32
		}
	}
	b.init("causal_mask", tensor.FromFloat32([]int64{maxPos, maxPos}, mask))

	shape := b.node("/model/Shape", "Shape", []string{"input_ids"})
	seq := b.node("/model/Slice_seq", "Slice", []string{shape, b.ints("const_1", 1), b.ints("const_2", 2), b.ints("const_0", 0)})
	cosS := b.node("/model/rotary_emb/Slice_cos", "Slice", []string{"rotary.cos", b.ints("const_0", 0), seq, b.ints("const_0", 0)})
	sinS := b.node("/model/rotary_emb/Slice_sin", "Slice", []string{"rotary.sin", b.ints("const_0", 0), seq, b.ints("const_0", 0)})
	seq2 := b.node("/model/Concat_seq", "Concat", []string{seq, seq}, attrI("axis", 0))
	maskS := b.node("/model/Slice_mask", "Slice", []string{"causal_mask", b.ints("const_0_0", 0, 0), seq2, b.ints("const_0_1", 0, 1)})
	x := b.node("/model/embed_tokens/Gather", "Gather", []string{"model.embed_tokens.weight", "input_ids"})

	eps := b.scalar("const_eps", float32(c.Eps))
	rms := func(scope, weight, x string) (string, error) {
		g, err := get(weight)
		if err != nil {
			return "", err
		}
		b.init(weight, tensor.FromFloat32([]int64{int64(H)}, g))
		sq := b.node(scope+"/Mul", "Mul", []string{x, x})
		v := b.node(scope+"/ReduceMean", "ReduceMean", []string{sq}, attrIs("axes", -1), attrI("keepdims", 1))
		v = b.node(scope+"/Add", "Add", []string{v, eps})
		v = b.node(scope+"/Sqrt", "Sqrt", []string{v})
		y := b.node(scope+"/Div", "Div", []string{x, v})
		return b.node(scope+"/Mul_1", "Mul", []string{weight, y}), nil
	}
	lin := func(scope, name, x string, n, k int) (string, error) {
		v, err := get(name)
		if err != nil {
			return "", err
		}
		return b.node(scope+"/MatMul", "MatMul", []string{x, b.linearT(v, n, k)}), nil
	}
	rotate := func(scope, t string) string {
		x1 := b.node(scope+"/Slice", "Slice", []string{t, b.ints("const_0", 0), b.ints("const_half", int64(d/2)), b.ints("const_m1", -1)})
		x2 := b.node(scope+"/Slice_1", "Slice", []string{t, b.ints("const_half", int64(d/2)), b.ints("const_d", int64(d)), b.ints("const_m1", -1)})
		rh := b.node(scope+"/Concat", "Concat", []string{b.node(scope+"/Neg", "Neg", []string{x2}), x1}, attrI("axis", -1))
		a := b.node(scope+"/Mul", "Mul", []string{t, cosS})
		return b.node(scope+"/Add", "Add", []string{a, b.node(scope+"/Mul_1", "Mul", []string{rh, sinS})})
	}
	rep := c.Heads / c.KVHeads
	scale := b.scalar("const_inv_sqrt_d", float32(1/math.Sqrt(float64(d))))
	for l := 0; l < c.Layers; l++ {
		sc, p := fmt.Sprintf("/model/layers.%d", l), fmt.Sprintf("model.layers.%d.", l)
		h, err := rms(sc+"/input_layernorm", p+"input_layernorm.weight", x)
		if err != nil {
			return nil, err
		}
		heads := func(name string, nh int, perm ...int64) (string, error) {
			y, err := lin(sc+"/self_attn/"+name, p+"self_attn."+name+".weight", h, nh*d, H)
			if err != nil {
				return "", err
			}
			y = b.node(sc+"/self_attn/"+name+"/Reshape", "Reshape", []string{y, b.ints(fmt.Sprintf("const_heads_%d", nh), 0, 0, int64(nh), int64(d))})
			return b.node(sc+"/self_attn/"+name+"/Transpose", "Transpose", []string{y}, attrIs("perm", 0, 2, 1, 3)), nil
		}
		q, err := heads("q_proj", c.Heads)
		if err != nil {
			return nil, err
		}
		k, err := heads("k_proj", c.KVHeads)
		if err != nil {
			return nil, err
		}
		v, err := heads("v_proj", c.KVHeads)
		if err != nil {
			return nil, err
		}
		q, k = rotate(sc+"/self_attn/rotary_q", q), rotate(sc+"/self_attn/rotary_k", k)
		repeat := func(name, t string) string {
			u := b.node(sc+"/self_attn/repeat_"+name+"/Unsqueeze", "Unsqueeze", []string{t, b.ints("const_2", 2)})
			ins := make([]string, rep)
			for i := range ins {
				ins[i] = u
			}
			cat := b.node(sc+"/self_attn/repeat_"+name+"/Concat", "Concat", ins, attrI("axis", 2))
			return b.node(sc+"/self_attn/repeat_"+name+"/Reshape", "Reshape", []string{cat, b.ints("const_rep_shape", 0, int64(c.Heads), -1, int64(d))})
		}
		k, v = repeat("k", k), repeat("v", v)
		kt := b.node(sc+"/self_attn/Transpose_k", "Transpose", []string{k}, attrIs("perm", 0, 1, 3, 2))
		s := b.node(sc+"/self_attn/MatMul", "MatMul", []string{q, kt})
		s = b.node(sc+"/self_attn/Mul", "Mul", []string{s, scale})
		s = b.node(sc+"/self_attn/Add", "Add", []string{s, maskS})
		s = b.node(sc+"/self_attn/Softmax", "Softmax", []string{s}, attrI("axis", -1))
		o := b.node(sc+"/self_attn/MatMul_1", "MatMul", []string{s, v})
		o = b.node(sc+"/self_attn/Transpose", "Transpose", []string{o}, attrIs("perm", 0, 2, 1, 3))
		o = b.node(sc+"/self_attn/Reshape", "Reshape", []string{o, b.ints("const_hidden", 0, 0, int64(H))})
		if o, err = lin(sc+"/self_attn/o_proj", p+"self_attn.o_proj.weight", o, H, H); err != nil {
			return nil, err
		}
		x1 := b.node(sc+"/Add", "Add", []string{x, o})
		h2, err := rms(sc+"/post_attention_layernorm", p+"post_attention_layernorm.weight", x1)
		if err != nil {
			return nil, err
		}
		g, err := lin(sc+"/mlp/gate_proj", p+"mlp.gate_proj.weight", h2, c.Inter, H)
		if err != nil {
			return nil, err
		}
		u, err := lin(sc+"/mlp/up_proj", p+"mlp.up_proj.weight", h2, c.Inter, H)
		if err != nil {
			return nil, err
		}
		a := b.node(sc+"/mlp/act_fn/Mul", "Mul", []string{g, b.node(sc+"/mlp/act_fn/Sigmoid", "Sigmoid", []string{g})})
		a = b.node(sc+"/mlp/Mul", "Mul", []string{a, u})
		dn, err := lin(sc+"/mlp/down_proj", p+"mlp.down_proj.weight", a, H, c.Inter)
		if err != nil {
			return nil, err
		}
		x = b.node(sc+"/Add_1", "Add", []string{x1, dn})
	}
	x, err = rms("/model/norm", "model.norm.weight", x)
	if err != nil {
		return nil, err
	}
	// Tied lm_head: logits = x · embedᵀ.
	b.nodes = append(b.nodes, &onnxpb.NodeProto{Name: proto.String("/lm_head/MatMul"), OpType: proto.String("MatMul"),
		Input: []string{x, b.linearT(emb, c.Vocab, H)}, Output: []string{"logits"}})
	dim := func(v any) *onnxpb.TensorShapeProto_Dimension {
		if s, ok := v.(string); ok {
			return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: s}}
		}
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(v.(int))}}
	}
	vi := func(name string, dt tensor.DType, dims ...any) *onnxpb.ValueInfoProto {
		sh := &onnxpb.TensorShapeProto{}
		for _, x := range dims {
			sh.Dim = append(sh.Dim, dim(x))
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: sh}}}}
	}
	return &onnxpb.ModelProto{
		IrVersion: proto.Int64(8), ProducerName: proto.String("optimctl bench/int4/smollm"),
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("main_graph"), Node: b.nodes, Initializer: b.inits,
			Input:  []*onnxpb.ValueInfoProto{vi("input_ids", tensor.Int64, "batch", "sequence")},
			Output: []*onnxpb.ValueInfoProto{vi("logits", tensor.Float32, "batch", "sequence", c.Vocab)}},
	}, nil
}
