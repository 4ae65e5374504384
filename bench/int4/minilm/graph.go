package main

import (
	"fmt"
	"math"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/safetensors"
	"github.com/optimctl/optimctl/pkg/tensor"
	"google.golang.org/protobuf/proto"
)

// bertConfig is the part of a Hugging Face BERT config.json the graph needs.
type bertConfig struct {
	Hidden       int     `json:"hidden_size"`
	Heads        int     `json:"num_attention_heads"`
	Layers       int     `json:"num_hidden_layers"`
	Intermediate int     `json:"intermediate_size"`
	LayerNormEps float64 `json:"layer_norm_eps"`
	HiddenAct    string  `json:"hidden_act"`
	ModelType    string  `json:"model_type"`
}

// builder accumulates the nodes and initializers of one graph.
type builder struct {
	ckpt  *safetensors.Checkpoint
	nodes []*onnxpb.NodeProto
	inits []*onnxpb.TensorProto
	names map[string]bool
	seq   int // numbering of exporter-style "onnx::MatMul_<n>" weight names
}

func (b *builder) node(name, op string, ins []string, attrs ...*onnxpb.AttributeProto) string {
	out := name + "_output_0"
	b.nodes = append(b.nodes, &onnxpb.NodeProto{Name: proto.String(name), OpType: proto.String(op),
		Input: ins, Output: []string{out}, Attribute: attrs})
	return out
}

func (b *builder) init(name string, t *tensor.Tensor) string {
	if b.names[name] {
		return name
	}
	b.names[name] = true
	b.inits = append(b.inits, onnx.FromTensor(name, t))
	return name
}

func (b *builder) f32s(name string) ([]float32, []int64, error) {
	info, ok := b.ckpt.Tensor(name)
	if !ok {
		return nil, nil, fmt.Errorf("checkpoint has no tensor %q", name)
	}
	dt, ok := safetensors.ToTensorDType(info.DType)
	if !ok {
		return nil, nil, fmt.Errorf("tensor %q: unsupported dtype %s", name, info.DType)
	}
	v, err := (&tensor.Tensor{DType: dt, Shape: info.Shape, Data: b.ckpt.Data(name)}).AsFloat32()
	if err != nil {
		return nil, nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return v, info.Shape, nil
}

// param adds a checkpoint tensor under its own name (as torch.onnx.export names the
// parameters it uses directly: biases, LayerNorm weights, embeddings).
func (b *builder) param(name string) (string, error) {
	v, shape, err := b.f32s(name)
	if err != nil {
		return "", err
	}
	return b.init(name, tensor.FromFloat32(shape, v)), nil
}

// linearT adds a Linear weight [out, in] transposed to [in, out] under an exporter-style
// anonymous name, as torch.onnx.export stores the B of a MatMul: nothing in the name ties it
// to the checkpoint, which is what optimctl's value matching has to cope with.
func (b *builder) linearT(name string) (string, error) {
	v, shape, err := b.f32s(name)
	if err != nil {
		return "", err
	}
	if len(shape) != 2 {
		return "", fmt.Errorf("tensor %q: shape %v, want 2-D", name, shape)
	}
	n, k := int(shape[0]), int(shape[1])
	t := make([]float32, n*k)
	for r := 0; r < n; r++ {
		for c := 0; c < k; c++ {
			t[c*n+r] = v[r*k+c]
		}
	}
	b.seq++
	return b.init(fmt.Sprintf("onnx::MatMul_%d", 1000+b.seq), tensor.FromFloat32([]int64{int64(k), int64(n)}, t)), nil
}

func (b *builder) scalarF(name string, v float32) string {
	return b.init(name, tensor.FromFloat32([]int64{}, []float32{v}))
}

func (b *builder) ints(name string, v ...int64) string {
	return b.init(name, tensor.FromInt64([]int64{int64(len(v))}, v))
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func attrInts(name string, v ...int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func attrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// linear is x·Wᵀ + bias for the checkpoint module prefix (prefix.weight, prefix.bias).
func (b *builder) linear(scope, prefix, x string) (string, error) {
	w, err := b.linearT(prefix + ".weight")
	if err != nil {
		return "", err
	}
	bias, err := b.param(prefix + ".bias")
	if err != nil {
		return "", err
	}
	y := b.node(scope+"/MatMul", "MatMul", []string{x, w})
	return b.node(scope+"/Add", "Add", []string{bias, y}), nil
}

func (b *builder) layerNorm(scope, prefix, x string, eps float32) (string, error) {
	g, err := b.param(prefix + ".weight")
	if err != nil {
		return "", err
	}
	beta, err := b.param(prefix + ".bias")
	if err != nil {
		return "", err
	}
	return b.node(scope+"/LayerNormalization", "LayerNormalization", []string{x, g, beta},
		attrInt("axis", -1), attrFloat("epsilon", eps)), nil
}

// buildBERT writes the graph of sentence-transformers' BERT pipeline (Transformer → mean
// Pooling → Normalize), as torch.onnx.export at opset 17 lays out Hugging Face's BertModel
// in eval mode: embeddings, post-LN encoder layers with erf GELU, and the additive mask
// (1 − mask)·finfo(float32).min.
func buildBERT(ckpt *safetensors.Checkpoint, cfg bertConfig) (*onnxpb.ModelProto, error) {
	if cfg.ModelType != "bert" || cfg.HiddenAct != "gelu" || cfg.Hidden%cfg.Heads != 0 {
		return nil, fmt.Errorf("config: model_type %q, hidden_act %q, hidden %d, heads %d: want a BERT with exact gelu", cfg.ModelType, cfg.HiddenAct, cfg.Hidden, cfg.Heads)
	}
	b := &builder{ckpt: ckpt, names: map[string]bool{}}
	eps := float32(cfg.LayerNormEps)
	headDim := cfg.Hidden / cfg.Heads

	// Embeddings.
	wordEmb, err := b.param("embeddings.word_embeddings.weight")
	if err != nil {
		return nil, err
	}
	posEmb, err := b.param("embeddings.position_embeddings.weight")
	if err != nil {
		return nil, err
	}
	typeEmb, err := b.param("embeddings.token_type_embeddings.weight")
	if err != nil {
		return nil, err
	}
	_, posShape, err := b.f32s("embeddings.position_embeddings.weight")
	if err != nil {
		return nil, err
	}
	maxPos := posShape[0]
	ids := make([]int64, maxPos)
	for i := range ids {
		ids[i] = int64(i)
	}
	b.init("embeddings.position_ids", tensor.FromInt64([]int64{1, maxPos}, ids))

	shape := b.node("/embeddings/Shape", "Shape", []string{"input_ids"})
	seqLen := b.node("/embeddings/Slice_len", "Slice", []string{shape, b.ints("const_1", 1), b.ints("const_2", 2), b.ints("const_0", 0)})
	posIDs := b.node("/embeddings/Slice", "Slice", []string{"embeddings.position_ids", b.ints("const_0", 0), seqLen, b.ints("const_1", 1)})
	we := b.node("/embeddings/word_embeddings/Gather", "Gather", []string{wordEmb, "input_ids"})
	te := b.node("/embeddings/token_type_embeddings/Gather", "Gather", []string{typeEmb, "token_type_ids"})
	pe := b.node("/embeddings/position_embeddings/Gather", "Gather", []string{posEmb, posIDs})
	sum := b.node("/embeddings/Add", "Add", []string{we, te})
	sum = b.node("/embeddings/Add_1", "Add", []string{sum, pe})
	x, err := b.layerNorm("/embeddings/LayerNorm", "embeddings.LayerNorm", sum, eps)
	if err != nil {
		return nil, err
	}

	// Additive attention mask [b, 1, 1, s].
	maskF := b.node("/Cast", "Cast", []string{"attention_mask"}, attrInt("to", int64(tensor.Float32)))
	maskU := b.node("/Unsqueeze", "Unsqueeze", []string{maskF, b.ints("const_axes_1_2", 1, 2)})
	inv := b.node("/Sub", "Sub", []string{b.scalarF("const_one", 1), maskU})
	mask := b.node("/Mul", "Mul", []string{inv, b.scalarF("const_finfo_min", -math.MaxFloat32)})

	headShape := b.ints("const_head_shape", 0, 0, int64(cfg.Heads), int64(headDim))
	hiddenShape := b.ints("const_hidden_shape", 0, 0, int64(cfg.Hidden))
	scale := b.scalarF("const_sqrt_head_dim", float32(math.Sqrt(float64(headDim))))
	sqrt2 := b.scalarF("const_sqrt2", float32(math.Sqrt2))
	one := b.scalarF("const_one", 1)
	half := b.scalarF("const_half", 0.5)

	for l := 0; l < cfg.Layers; l++ {
		sc := fmt.Sprintf("/encoder/layer.%d", l)
		pf := fmt.Sprintf("encoder.layer.%d", l)
		heads := func(name string, perm ...int64) (string, error) {
			y, err := b.linear(sc+"/attention/self/"+name, pf+".attention.self."+name, x)
			if err != nil {
				return "", err
			}
			y = b.node(sc+"/attention/self/"+name+"/Reshape", "Reshape", []string{y, headShape})
			return b.node(sc+"/attention/self/"+name+"/Transpose", "Transpose", []string{y}, attrInts("perm", perm...)), nil
		}
		q, err := heads("query", 0, 2, 1, 3)
		if err != nil {
			return nil, err
		}
		k, err := heads("key", 0, 2, 3, 1)
		if err != nil {
			return nil, err
		}
		v, err := heads("value", 0, 2, 1, 3)
		if err != nil {
			return nil, err
		}
		s := b.node(sc+"/attention/self/MatMul", "MatMul", []string{q, k})
		s = b.node(sc+"/attention/self/Div", "Div", []string{s, scale})
		s = b.node(sc+"/attention/self/Add", "Add", []string{s, mask})
		p := b.node(sc+"/attention/self/Softmax", "Softmax", []string{s}, attrInt("axis", -1))
		c := b.node(sc+"/attention/self/MatMul_1", "MatMul", []string{p, v})
		c = b.node(sc+"/attention/self/Transpose", "Transpose", []string{c}, attrInts("perm", 0, 2, 1, 3))
		c = b.node(sc+"/attention/self/Reshape", "Reshape", []string{c, hiddenShape})
		o, err := b.linear(sc+"/attention/output/dense", pf+".attention.output.dense", c)
		if err != nil {
			return nil, err
		}
		o = b.node(sc+"/attention/output/Add", "Add", []string{o, x})
		x1, err := b.layerNorm(sc+"/attention/output/LayerNorm", pf+".attention.output.LayerNorm", o, eps)
		if err != nil {
			return nil, err
		}
		h, err := b.linear(sc+"/intermediate/dense", pf+".intermediate.dense", x1)
		if err != nil {
			return nil, err
		}
		// gelu(h) = h · 0.5 · (1 + erf(h / √2))
		g := b.node(sc+"/intermediate/intermediate_act_fn/Div", "Div", []string{h, sqrt2})
		g = b.node(sc+"/intermediate/intermediate_act_fn/Erf", "Erf", []string{g})
		g = b.node(sc+"/intermediate/intermediate_act_fn/Add", "Add", []string{g, one})
		g = b.node(sc+"/intermediate/intermediate_act_fn/Mul", "Mul", []string{h, g})
		g = b.node(sc+"/intermediate/intermediate_act_fn/Mul_1", "Mul", []string{g, half})
		d, err := b.linear(sc+"/output/dense", pf+".output.dense", g)
		if err != nil {
			return nil, err
		}
		d = b.node(sc+"/output/Add", "Add", []string{d, x1})
		if x, err = b.layerNorm(sc+"/output/LayerNorm", pf+".output.LayerNorm", d, eps); err != nil {
			return nil, err
		}
	}
	hiddenOut := x
	b.nodes = append(b.nodes, &onnxpb.NodeProto{Name: proto.String("/Identity_last_hidden_state"), OpType: proto.String("Identity"),
		Input: []string{hiddenOut}, Output: []string{"last_hidden_state"}})

	// Mean pooling over the unmasked tokens, then L2 normalisation.
	m := b.node("/pooling/Unsqueeze", "Unsqueeze", []string{maskF, b.ints("const_axes_m1", -1)})
	xm := b.node("/pooling/Mul", "Mul", []string{hiddenOut, m})
	axis1 := b.ints("const_axes_1", 1)
	num := b.node("/pooling/ReduceSum", "ReduceSum", []string{xm, axis1}, attrInt("keepdims", 0))
	den := b.node("/pooling/ReduceSum_1", "ReduceSum", []string{m, axis1}, attrInt("keepdims", 0))
	den = b.node("/pooling/Max", "Max", []string{den, b.scalarF("const_1e-9", 1e-9)})
	mean := b.node("/pooling/Div", "Div", []string{num, den})
	norm := b.node("/normalize/ReduceL2", "ReduceL2", []string{mean}, attrInts("axes", 1), attrInt("keepdims", 1))
	norm = b.node("/normalize/Max", "Max", []string{norm, b.scalarF("const_1e-12", 1e-12)})
	b.nodes = append(b.nodes, &onnxpb.NodeProto{Name: proto.String("/normalize/Div"), OpType: proto.String("Div"),
		Input: []string{mean, norm}, Output: []string{"sentence_embedding"}})

	ioInfo := func(name string, dt tensor.DType, dims ...any) *onnxpb.ValueInfoProto {
		sh := &onnxpb.TensorShapeProto{}
		for _, d := range dims {
			switch d := d.(type) {
			case string:
				sh.Dim = append(sh.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d}})
			case int:
				sh.Dim = append(sh.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(d)}})
			}
		}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(dt)), Shape: sh}}}}
	}
	g := &onnxpb.GraphProto{
		Name: proto.String("main_graph"),
		Node: b.nodes,
		Input: []*onnxpb.ValueInfoProto{
			ioInfo("input_ids", tensor.Int64, "batch", "sequence"),
			ioInfo("attention_mask", tensor.Int64, "batch", "sequence"),
			ioInfo("token_type_ids", tensor.Int64, "batch", "sequence"),
		},
		Output: []*onnxpb.ValueInfoProto{
			ioInfo("last_hidden_state", tensor.Float32, "batch", "sequence", cfg.Hidden),
			ioInfo("sentence_embedding", tensor.Float32, "batch", cfg.Hidden),
		},
		Initializer: b.inits,
	}
	return &onnxpb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("optimctl bench/int4/minilm"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph:        g,
	}, nil
}
