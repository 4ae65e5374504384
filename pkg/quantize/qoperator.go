package quantize

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// msDomain is ONNX Runtime's contrib-operator domain (QLinearAdd, QGemm, ...).
const msDomain = "com.microsoft"

// buildQOperator rewrites the plan's nodes into integer operators: QLinearConv and
// QLinearMatMul from the ONNX standard, and ONNX Runtime's com.microsoft QGemm, QLinearAdd,
// QLinearMul, QLinearGlobalAveragePool, QLinearAveragePool, QLinearSigmoid,
// QLinearLeakyRelu and QLinearConcat; data-movement operators run on the 8-bit tensors as
// they are. Integer regions begin with a QuantizeLinear and end with a DequantizeLinear
// that writes the original float name, so every float reader and graph output is untouched.
func (b *builder) buildQOperator() error {
	b.absorbActivations()
	qname := map[string]string{}
	for _, t := range b.p.acts {
		qname[t] = b.e.fresh(t + "_quantized")
	}
	prod := producers(b.e.g)
	cons := consumers(b.e.g)
	outs := graphOutputs(b.e.g)
	// Boundaries: a quantize after a float producer, a dequantize after an integer one
	// when anything float reads the tensor.
	for _, t := range b.p.acts {
		s, z, err := b.paramInits(t)
		if err != nil {
			return err
		}
		p := prod[t]
		if p == nil || !b.p.sel[p] {
			q := newNode("QuantizeLinear", "", b.e.fresh(t+"_QuantizeLinear"), []string{t, s, z}, []string{qname[t]})
			if p != nil {
				b.post[p] = append(b.post[p], q)
			} else {
				b.head = append(b.head, q)
			}
			continue
		}
		floatReader := outs[t]
		for _, c := range cons[t] {
			floatReader = floatReader || !b.p.sel[c]
		}
		if floatReader {
			b.post[p] = append(b.post[p], newNode("DequantizeLinear", "", b.e.fresh(t+"_DequantizeLinear"), []string{qname[t], s, z}, []string{t}))
		}
	}
	usesMS := false
	replaced := map[*onnxpb.NodeProto]*onnxpb.NodeProto{}
	for _, n := range b.p.nodes {
		r, ms, err := b.qop(n, qname)
		if err != nil {
			return fmt.Errorf("%s: %w", nodeLabel(n), err)
		}
		usesMS = usesMS || ms
		replaced[n] = r
	}
	for i, n := range b.e.g.Node {
		if r, ok := replaced[n]; ok {
			b.e.g.Node[i] = r
			b.pre[r], b.post[r] = b.pre[n], b.post[n]
		}
	}
	if usesMS && onnx.OpsetOf(b.e.m.Proto.OpsetImport, msDomain) == 0 {
		b.e.m.Proto.OpsetImport = append(b.e.m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String(msDomain), Version: proto.Int64(1)})
	}
	b.assemble()
	return nil
}

// qin returns the integer tensor and parameters feeding an activation input.
func (b *builder) qin(name string, qname map[string]string) ([]string, error) {
	s, z, err := b.paramInits(name)
	if err != nil {
		return nil, err
	}
	return []string{qname[name], s, z}, nil
}

// qop builds the integer replacement of n; ms reports a com.microsoft operator.
func (b *builder) qop(n *onnxpb.NodeProto, qname map[string]string) (*onnxpb.NodeProto, bool, error) {
	op := n.GetOpType()
	out := n.Output[0]
	ys, yz, err := b.paramInits(out)
	if err != nil {
		return nil, false, err
	}
	name := n.GetName()
	if name == "" {
		name = out
	}
	name = b.e.fresh(name + "_quant")
	switch op {
	case "Conv", "MatMul", "Gemm":
		x, err := b.qin(n.Input[0], qname)
		if err != nil {
			return nil, false, err
		}
		var w []string
		var wq *weightQ
		if b.e.isConst(n.Input[1]) {
			rank := len(b.e.inits[n.Input[1]].Dims)
			// QLinearMatMul takes per-column scales for a 2-D b only.
			per := b.o.PerChannel && (op != "MatMul" || rank == 2)
			wq, err = b.quantizeWeight(n.Input[1], weightAxis(n, rank), per)
			if err != nil {
				return nil, false, err
			}
			w = []string{wq.q, wq.scale, wq.zp}
		} else if w, err = b.qin(n.Input[1], qname); err != nil {
			return nil, false, err
		}
		ins := append(append([]string{}, x...), w...)
		var bias string
		if len(n.Input) > 2 && n.Input[2] != "" {
			xp, err := b.actParam(n.Input[0])
			if err != nil {
				return nil, false, err
			}
			if bias, _, _, _, err = b.quantizeBias(n.Input[2], xp.scale, wq); err != nil {
				return nil, false, err
			}
		}
		switch op {
		case "Conv":
			ins = append(ins, ys, yz)
			if bias != "" {
				ins = append(ins, bias)
			}
			return b.like(n, "QLinearConv", "", name, ins, qname[out], "auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"), false, nil
		case "MatMul":
			return newNode("QLinearMatMul", "", name, append(ins, ys, yz), []string{qname[out]}), false, nil
		default: // Gemm
			ins = append(ins, bias, ys, yz)
			return b.like(n, "QGemm", msDomain, name, ins, qname[out], "alpha", "transA", "transB"), true, nil
		}
	case "Add", "Mul":
		var ins []string
		for _, in := range n.Input {
			var q []string
			if b.e.isConst(in) {
				q, err = b.constActivation(in)
			} else {
				q, err = b.qin(in, qname)
			}
			if err != nil {
				return nil, false, err
			}
			ins = append(ins, q...)
		}
		return newNode("QLinear"+op, msDomain, name, append(ins, ys, yz), []string{qname[out]}), true, nil
	case "GlobalAveragePool", "AveragePool", "Sigmoid", "LeakyRelu":
		x, err := b.qin(n.Input[0], qname)
		if err != nil {
			return nil, false, err
		}
		r := b.like(n, "QLinear"+op, msDomain, name, append(x, ys, yz), qname[out],
			"alpha", "auto_pad", "ceil_mode", "count_include_pad", "kernel_shape", "pads", "strides")
		if op == "GlobalAveragePool" || op == "AveragePool" {
			r.Attribute = append(r.Attribute, attrInt("channels_last", 0))
		}
		return r, true, nil
	case "Concat":
		ins := []string{ys, yz}
		for _, in := range n.Input {
			x, err := b.qin(in, qname)
			if err != nil {
				return nil, false, err
			}
			ins = append(ins, x...)
		}
		return b.like(n, "QLinearConcat", msDomain, name, ins, qname[out], "axis"), true, nil
	}
	// Data movement: the same operator on the integers (MaxPool takes 8-bit since opset 12).
	r := proto.Clone(n).(*onnxpb.NodeProto)
	r.Name = proto.String(name)
	r.Input[0] = qname[n.Input[0]]
	for i, o := range r.Output {
		if q, ok := qname[o]; ok {
			r.Output[i] = q
		}
	}
	return r, false, nil
}

// like builds op with the given inputs and n's attributes among keep.
func (b *builder) like(n *onnxpb.NodeProto, op, domain, name string, ins []string, out string, keep ...string) *onnxpb.NodeProto {
	r := newNode(op, domain, name, ins, []string{out})
	for _, a := range n.Attribute {
		for _, k := range keep {
			if a.GetName() == k {
				r.Attribute = append(r.Attribute, a)
			}
		}
	}
	return r
}

// constActivation quantizes a constant operand of QLinearAdd/QLinearMul with the
// activation type (both operands must share it), per tensor, from its own range.
func (b *builder) constActivation(name string) ([]string, error) {
	vals, dims, err := b.e.floats(name)
	if err != nil {
		return nil, err
	}
	lo, hi := finiteMinMax(vals)
	dt := b.o.ActivationType
	qmin, qmax := quant.QType(dt).Range(false, b.o.Symmetric)
	s, z := quant.ComputeScaleZP(lo, hi, qmin, qmax, b.o.Symmetric, 0)
	data := make([]byte, len(vals))
	for i, v := range vals {
		data[i] = byte(quant.Quantize(v, s, z, qmin, qmax))
	}
	q := b.e.addInit(name+"_quantized", &tensor.Tensor{DType: dt, Shape: dims, Data: data})
	sn := b.e.addInit(name+"_scale", tensor.FromFloat32([]int64{}, []float32{s}))
	zn := b.e.addInit(name+"_zero_point", zeroPoints(dt, []int64{}, []int32{z}))
	return []string{q, sn, zn}, nil
}

func finiteMinMax(x []float32) (lo, hi float32) {
	first := true
	for _, v := range x {
		if v-v != 0 {
			continue
		}
		if first {
			lo, hi, first = v, v, false
		}
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}
