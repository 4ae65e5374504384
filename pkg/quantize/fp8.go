package quantize

import (
	"fmt"
	"math"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// FP8 E4M3 Q/DQ for TensorRT's explicit quantization (--target tensorrt with
// float8e4m3fn activation/weight types). The placement is the INT8 one (planTensorRT);
// what changes is the arithmetic and the types:
//   - activations: one QuantizeLinear/DequantizeLinear pair per tensor, scale = amax/448
//     from the calibrated range, zero point a float8e4m3fn scalar 0 (it carries the type);
//   - weights: stored as float8e4m3fn initializers (ToE4M3FN of w/scale) feeding a
//     DequantizeLinear, one scale per output channel (axis as for INT8), channel amax/448;
//   - biases stay float; the opset is raised to 19 (float8 Q/DQ) and the IR version to 9.

const (
	// opsetFP8 is the first opset whose QuantizeLinear/DequantizeLinear take float8 types.
	opsetFP8 = 19
	// irFP8 is the IR version that introduced the float8 element types.
	irFP8 = 9
)

// isFP8 reports whether a quantized type is the FP8 one.
func isFP8(dt tensor.DType) bool { return dt == tensor.Float8E4M3FN }

// checkFP8 validates the options of an FP8 run (nothing to check when neither type is FP8)
// and reports whether the run is one.
func (o Options) checkFP8() (bool, error) {
	if !isFP8(o.ActivationType) && !isFP8(o.WeightType) {
		return false, nil
	}
	switch {
	case o.Mode != Static:
		return true, fmt.Errorf("float8e4m3fn applies to --mode static --target tensorrt, not mode %s", o.Mode)
	case o.Target != TargetTensorRT:
		return true, fmt.Errorf("float8e4m3fn Q/DQ is written for target tensorrt only (target %s)", o.Target)
	case o.ActivationType != tensor.Undefined && !isFP8(o.ActivationType),
		o.WeightType != tensor.Undefined && !isFP8(o.WeightType):
		return true, fmt.Errorf("float8e4m3fn quantizes activations and weights alike (got activations %s, weights %s)", o.ActivationType, o.WeightType)
	case o.Method == calibration.Entropy:
		return true, fmt.Errorf("entropy calibration searches thresholds for 8-bit integer bins; use minmax or percentile with float8e4m3fn")
	case o.ReduceRange:
		return true, fmt.Errorf("reduce-range applies to integer weights, not float8e4m3fn")
	}
	return true, nil
}

// fp8ActParam is an activation's FP8 parameters: scale amax/448, zero point 0.
func (b *builder) fp8ActParam(name string, r calibration.Range) (qparam, error) {
	amax := r.Amax()
	if math.IsNaN(float64(amax)) || math.IsInf(float64(amax), 0) {
		return qparam{}, fmt.Errorf("tensor %q: calibrated range [%g, %g] is not finite", name, r.Min, r.Max)
	}
	q := qparam{scale: quant.E4M3Scale(amax)}
	b.params[name] = q
	return q, nil
}

// quantizeWeightFP8 stores a float weight as float8e4m3fn with symmetric scales (per
// channel along axis when asked and the weight has that axis) and float8 zero points 0.
func (b *builder) quantizeWeightFP8(key, name string, axis int, perChannel bool) (*weightQ, error) {
	vals, dims, err := b.e.floats(name)
	if err != nil {
		return nil, err
	}
	if axis < 0 {
		axis += len(dims)
	}
	if len(dims) == 0 || axis < 0 || axis >= len(dims) || dims[axis] <= 1 {
		perChannel = false
	}
	q := make([]byte, len(vals))
	var scales []float32
	if perChannel {
		shape := make([]int, len(dims))
		for i, d := range dims {
			shape[i] = int(d)
		}
		if scales, err = quant.E4M3ScalesPerChannel(vals, shape, axis); err == nil {
			err = quant.QuantizeE4M3FNPerChannel(q, vals, shape, axis, scales)
		}
		if err != nil {
			return nil, fmt.Errorf("weight %q: %w", name, err)
		}
	} else {
		lo, hi := finiteMinMax(vals)
		scales = []float32{quant.E4M3Scale(max(-lo, hi))}
		quant.QuantizeE4M3FN(q, vals, scales[0])
	}
	w := &weightQ{scales: scales, zps: make([]int32, len(scales)), axis: axis, perChannel: perChannel}
	w.q = b.e.addInit(name+"_quantized", &tensor.Tensor{DType: tensor.Float8E4M3FN, Shape: dims, Data: q})
	pshape := []int64{}
	if perChannel {
		pshape = []int64{int64(len(scales))}
	}
	w.scale = b.e.addInit(name+"_scale", tensor.FromFloat32(pshape, scales))
	w.zp = b.e.addInit(name+"_zero_point", zeroPoints(tensor.Float8E4M3FN, pshape, w.zps))
	b.weights[key] = w
	return w, nil
}

// upgradeFP8 raises the default-domain opset to 19, which float8 Q/DQ needs: through 13
// with the INT8 upgrade when older, then the operators whose signature changed between 13
// and 19 are converted (the Reduce* family took axes as an input in opset 18; RoiAlign
// gained a coordinate mode in 16 whose default differs from the old behaviour). Every node
// is checked before anything changes; a model that cannot be carried over is an error that
// names the first node in the way.
func (j *job) upgradeFP8(e *editor) error {
	cur := j.m.Opset("")
	if cur < opsetFP8 {
		for _, n := range e.g.Node {
			if !isDefaultDomain(n) {
				continue
			}
			if err := canUpgradeTo19(n, cur); err != nil {
				return fmt.Errorf("float8e4m3fn Q/DQ needs opset %d and the model (opset %d) cannot be upgraded: %v", opsetFP8, cur, err)
			}
		}
		if cur < opsetPerChannel {
			if _, err := upgradeOpset(e, opsetPerChannel, j.types.ranks()); err != nil {
				return fmt.Errorf("float8e4m3fn Q/DQ needs opset %d and the model (opset %d) cannot be upgraded: %v", opsetFP8, cur, err)
			}
		}
		for _, n := range e.g.Node {
			if isDefaultDomain(n) {
				convertTo19(e, n, max(cur, opsetPerChannel))
			}
		}
		for _, o := range e.m.Proto.OpsetImport {
			if d := o.GetDomain(); d == "" || d == "ai.onnx" {
				o.Version = proto.Int64(opsetFP8)
			}
		}
		j.note("opset upgraded from %d to %d (float8e4m3fn Q/DQ needs it)", cur, opsetFP8)
	}
	if e.m.Proto.GetIrVersion() < irFP8 {
		e.m.Proto.IrVersion = proto.Int64(irFP8)
	}
	return nil
}

// reduceAxesTo18 are the reductions whose axes moved from an attribute to an input in
// opset 18 (ReduceSum moved in 13, handled by the upgrade to 13).
var reduceAxesTo18 = map[string]bool{
	"ReduceMax": true, "ReduceMin": true, "ReduceMean": true, "ReduceProd": true, "ReduceL1": true,
	"ReduceL2": true, "ReduceLogSum": true, "ReduceLogSumExp": true, "ReduceSumSquare": true,
}

// convertedTo13 are the operators the upgrade to 13 rewrites into their opset-13 form,
// which opset 19 still accepts with the same meaning.
var convertedTo13 = map[string]bool{
	"Clip": true, "Slice": true, "Pad": true, "Squeeze": true, "Unsqueeze": true, "ReduceSum": true,
	"Split": true, "TopK": true, "Dropout": true, "Softmax": true, "LogSoftmax": true, "Hardmax": true,
}

// sameSemantics13to19 are operators introduced after opset 13 and up to 18 whose meaning
// did not change up to 19 (a model at opset 14–18 may use them). Operators of
// sameSemantics7to13 carry over too, except the reductions and RoiAlign converted below:
// their later versions only added types or attributes whose defaults keep the old meaning
// (Reshape allowzero, Pad axes and wrap, Resize antialias/axes/keep_aspect_ratio_policy,
// AveragePool dilations, Split num_outputs, Scatter* reduction, RNN layout, Cast and
// QuantizeLinear saturate, BatchNormalization training_mode, Shape start/end, LpPool
// ceil_mode), checked against the ONNX operator changelog.
var sameSemantics13to19 = map[string]bool{
	"HardSwish": true, "Trilu": true, "Bernoulli": true, "CastLike": true, "GridSample": true,
	"LayerNormalization": true, "Mish": true, "GroupNormalization": true, "Col2Im": true, "CenterCropPad": true,
	"BitwiseAnd": true, "BitwiseOr": true, "BitwiseXor": true, "BitwiseNot": true,
	"GreaterOrEqual": true, "LessOrEqual": true,
}

// canUpgradeTo19 checks that n (at opset cur) can be carried over to opset 19.
func canUpgradeTo19(n *onnxpb.NodeProto, cur int64) error {
	for _, a := range n.Attribute {
		if a.G != nil || len(a.Graphs) > 0 {
			return fmt.Errorf("%s has a subgraph", nodeLabel(n))
		}
	}
	op := n.GetOpType()
	switch {
	case reduceAxesTo18[op], op == "RoiAlign", convertedTo13[op], op == "BatchNormalization":
		return nil
	case op == "Resize" && cur < 11:
		return fmt.Errorf("%s: Resize-10 coordinate semantics are not converted", nodeLabel(n))
	case sameSemantics7to13[op], sameSemantics13to19[op]:
		return nil
	}
	return fmt.Errorf("%s: no conversion of %s to opset %d is known", nodeLabel(n), op, opsetFP8)
}

// convertTo19 rewrites n from its opset-cur (≥ 13) form to opset 19 in place.
func convertTo19(e *editor, n *onnxpb.NodeProto, cur int64) {
	op := n.GetOpType()
	switch {
	case reduceAxesTo18[op] && cur < 18:
		a := getAttr(n, "axes")
		if a == nil {
			return // all axes: the default of both versions
		}
		name := e.addInit(nodeBase(n)+"_axes", tensor.FromInt64([]int64{int64(len(a.Ints))}, a.Ints))
		n.Input = append(n.Input[:1], name)
		dropAttr(n, "axes")
	case op == "RoiAlign" && cur < 16:
		if getAttr(n, "coordinate_transformation_mode") == nil {
			n.Attribute = append(n.Attribute, &onnxpb.AttributeProto{Name: proto.String("coordinate_transformation_mode"),
				Type: onnxpb.AttributeProto_STRING.Enum(), S: []byte("output_half_pixel")})
		}
	}
}
