package int4

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/quant/pack"
	"github.com/optimctl/optimctl/pkg/quantize"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// FormatQDQ keeps every quantized MatMul and feeds its B from a block-wise DequantizeLinear
// (opset 21): the explicit INT4 weight-only form TensorRT builds (`--target tensorrt`), which
// ONNX Runtime runs too. Layout, for a MatMul weight B [K, N] with block size b:
//
//	B_q      int4 initializer [K, N], row-major, two values per byte, the lower flat index in
//	         the low nibble (pack.PackInt4); signed codes q − 8 of the symmetric quantizer
//	scale    float32 or float16 (B's type) initializer [ceil(K/b), N]
//	DequantizeLinear(B_q, scale) with axis=0 and block_size=b, no zero point (TensorRT
//	         rejects a nonzero one; ONNX's default for int4 is 0)
//	MatMul(A, DequantizeLinear output)
//
// The codes and scales are the ones MatMulNBits would get (RTN, GPTQ or AWQ), transposed
// from [N, K] to [K, N]: both models compute the same product.
const FormatQDQ Format = "qdq"

// qdqAxis is DequantizeLinear's axis for a MatMul weight [K, N]: the blocks run along K.
const qdqAxis = 0

// validateTarget maps Target onto Format: tensorrt writes format qdq.
func (o *Options) validateTarget() error {
	o.Target = strings.ToLower(o.Target)
	switch o.Target {
	case "", "ort":
	case "tensorrt":
		if o.Format != "" && o.Format != FormatQDQ {
			return fmt.Errorf("target tensorrt writes format qdq (block-wise int4 DequantizeLinear), not %s", o.Format)
		}
		o.Format = FormatQDQ
	default:
		return fmt.Errorf("target %q: want ort or tensorrt", o.Target)
	}
	return nil
}

// resolveQDQ checks the options a blocked int4 DequantizeLinear can store: 4-bit, symmetric
// (zero point 0), a block size that is a power of two ≥ 16, no MatMulNBits-only setting.
func resolveQDQ(o *Options) error {
	if o.Bits != 4 {
		return fmt.Errorf("format qdq (tensorrt) stores int4 weights only (bits %d)", o.Bits)
	}
	if o.Symmetric == nil {
		sym := true
		o.Symmetric = &sym
	}
	if !*o.Symmetric {
		return errors.New("format qdq (tensorrt) is symmetric only: TensorRT rejects INT4 with a zero point")
	}
	if o.GroupSize < 16 || o.GroupSize&(o.GroupSize-1) != 0 {
		return fmt.Errorf("group size %d: block-wise DequantizeLinear for TensorRT needs a power of two ≥ 16 (32, 64 or 128 usual)", o.GroupSize)
	}
	if o.AccuracyLevel != 0 {
		return fmt.Errorf("accuracy level %d applies to MatMulNBits, not format qdq", o.AccuracyLevel)
	}
	return nil
}

// upgradeForQDQ raises the model to opset 21 before anything else changes, so that a model
// that cannot be carried over is refused before the work.
func upgradeForQDQ(m *onnx.Model, o *Options, r *Report) error {
	from, err := quantize.UpgradeOpset(m, quantize.OpsetBlockedQDQ, o.Shapes, o.Runtime)
	if err != nil {
		return fmt.Errorf("%s: int4 DequantizeLinear: %w", o.Input, err)
	}
	if from < quantize.OpsetBlockedQDQ && from > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("opset upgraded from %d to %d (block-wise int4 DequantizeLinear needs it)", from, quantize.OpsetBlockedQDQ))
	}
	return nil
}

// qdqWeights turns the quantizer's result for a weight [K, N] into DequantizeLinear's
// inputs: signed codes [K, N] packed as int4, and scales [ceil(K/b), N].
func qdqWeights(q *quant.GroupQuant, k, n int) (packed []byte, scales []float32, err error) {
	if q.Bits != 4 || !q.Symmetric {
		return nil, nil, fmt.Errorf("block-wise int4 DequantizeLinear needs symmetric 4-bit codes (bits %d, symmetric %v)", q.Bits, q.Symmetric)
	}
	if q.GIdx != nil {
		return nil, nil, errors.New("act-order groups without static groups cannot be stored in a block-wise DequantizeLinear")
	}
	if q.N != n || q.K != k || len(q.Codes) != n*k {
		return nil, nil, fmt.Errorf("internal: codes for [%d, %d], weight [%d, %d]", q.N, q.K, k, n)
	}
	groups := q.NumGroups()
	if len(q.Scales) != n*groups {
		return nil, nil, fmt.Errorf("internal: %d scales for %d rows of %d groups", len(q.Scales), n, groups)
	}
	const zero = 8 // the symmetric quantizer's zero point: code 8 is 0
	vals := make([]int8, k*n)
	for j := 0; j < n; j++ {
		row := q.Codes[j*k : (j+1)*k]
		for i, c := range row {
			vals[i*n+j] = int8(c) - zero
		}
	}
	packed = make([]byte, pack.Int4Bytes(len(vals)))
	if err := pack.PackInt4(packed, vals); err != nil {
		return nil, nil, err
	}
	scales = make([]float32, groups*n)
	for j := 0; j < n; j++ {
		for g := 0; g < groups; g++ {
			scales[g*n+j] = q.Scales[j*groups+g]
		}
	}
	return packed, scales, nil
}

// rewriteLayerQDQ replaces B of every MatMul reading l.weight by one blocked
// DequantizeLinear of an int4 initializer.
func rewriteLayerQDQ(m *onnx.Model, ns *names, l *matmulLayer, q *quant.GroupQuant) error {
	g := m.Graph()
	packed, scales, err := qdqWeights(q, l.k, l.n)
	if err != nil {
		return fmt.Errorf("weight %q: %w", l.weight, err)
	}
	base := safeName(l.weight)
	qName := ns.fresh(base + "_int4")
	g.Initializer = append(g.Initializer, onnx.FromTensor(qName,
		&tensor.Tensor{DType: tensor.Int4, Shape: []int64{int64(l.k), int64(l.n)}, Data: packed}))
	sName := ns.fresh(base + "_scale")
	g.Initializer = append(g.Initializer, floatTensor(sName, l.dtype, []int64{int64(len(scales) / l.n), int64(l.n)}, scales))
	out := ns.fresh(base + "_dequantized")
	dq := &onnxpb.NodeProto{Name: proto.String(ns.fresh(base + "_DequantizeLinear")), OpType: proto.String("DequantizeLinear"),
		Input: []string{qName, sName}, Output: []string{out},
		Attribute: []*onnxpb.AttributeProto{intAttr("axis", qdqAxis), intAttr("block_size", int64(q.GroupSize))}}
	for _, i := range l.nodes {
		g.Node[i].Input[1] = out
	}
	// Appended: node indices held by the other layers stay valid; the caller sorts.
	g.Node = append(g.Node, dq)
	return nil
}
