package quantize

import (
	"fmt"
	"log/slog"
	"strings"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Mode is what gets quantized and when.
type Mode string

// Quantization modes.
const (
	// Dynamic stores INT8 weights and quantizes activations at run time
	// (DynamicQuantizeLinear + MatMulInteger/ConvInteger); no calibration data.
	Dynamic Mode = "dynamic"
	// Static quantizes weights and activations with ranges calibrated on data.
	Static Mode = "static"
	// FP16 converts float32 weights and compute to float16.
	FP16 Mode = "fp16"
)

// Format is how a statically quantized model expresses quantization.
type Format string

// Static formats.
const (
	// QDQ keeps float operators between QuantizeLinear/DequantizeLinear pairs; runtimes
	// fuse the patterns they support (ONNX Runtime's recommended form, TensorRT's only one).
	QDQ Format = "qdq"
	// QOperator emits integer operators (QLinearConv, QLinearMatMul, com.microsoft
	// QLinearAdd, ...) with Quantize/Dequantize only where float and integer regions meet.
	QOperator Format = "qoperator"
)

// Target is the runtime the Q/DQ placement is tuned for.
type Target string

// Targets.
const (
	// TargetORT places Q/DQ as onnxruntime.quantization does, so ONNX Runtime's QDQ
	// fusions apply (weights, activations and biases of quantized operators).
	TargetORT Target = "ort"
	// TargetTensorRT follows TensorRT's explicit-quantization rules: symmetric INT8 with
	// zero point 0, per-channel weights on the output-channel axis, Q/DQ on the inputs of
	// Conv/Gemm/MatMul and on the identity branch of residual adds, float biases.
	TargetTensorRT Target = "tensorrt"
)

// Options configure a quantization. The zero value is not valid: Mode must be set.
type Options struct {
	Mode   Mode   `yaml:"mode"`
	Format Format `yaml:"format"` // static only; "" = qdq
	Target Target `yaml:"target"` // static only; "" = ort
	// PerChannel quantizes weights with one scale per output channel (Conv axis 0, MatMul
	// and Gemm on their output axis). It needs opset 13; older models are upgraded when
	// every operator can be carried over, otherwise weights fall back to per-tensor and
	// the report says so.
	PerChannel bool `yaml:"per_channel"`
	// ActivationType and WeightType are tensor.Uint8 or tensor.Int8 ("" defaults: uint8
	// activations, int8 weights; TensorRT: int8 for both), or tensor.Float8E4M3FN with
	// target tensorrt (either one sets both: FP8 Q/DQ, opset 19; see fp8.go).
	ActivationType tensor.DType `yaml:"activation_type"`
	WeightType     tensor.DType `yaml:"weight_type"`
	// Symmetric quantizes activations symmetrically (zero point 0 for int8, 128 for
	// uint8). Weights are symmetric when int8 and asymmetric when uint8, as in ORT.
	Symmetric bool `yaml:"symmetric"`
	// ReduceRange quantizes weights to 7 bits (for CPUs without VNNI whose u8×s8 dot
	// products can saturate).
	ReduceRange bool `yaml:"reduce_range"`
	// Exclude names nodes (by name or first output) or op types to keep in float.
	Exclude []string `yaml:"exclude"`
	// OpTypes restricts quantization to these op types ("" = every supported one).
	OpTypes []string `yaml:"op_types"`

	// Calibration data (static mode), as calibration.Open takes it.
	Calib      string             `yaml:"calib"`
	Preprocess string             `yaml:"preprocess"`
	Shapes     map[string][]int64 `yaml:"shapes"`
	Limit      int                `yaml:"limit"`
	Batch      int                `yaml:"batch"`
	// Method, Percentile, MovingAverage and AveragingConstant as in calibration.CalibrateOptions.
	Method            calibration.Method `yaml:"method"`
	Percentile        float64            `yaml:"percentile"`
	MovingAverage     bool               `yaml:"moving_average"`
	AveragingConstant float32            `yaml:"averaging_constant"`

	// FP16: KeepFloat32IO keeps float32 graph inputs and outputs (Casts at the boundary);
	// FP16BlockOps replaces the default list of operators kept in float32 (nil = default).
	KeepFloat32IO bool     `yaml:"keep_float32_io"`
	FP16BlockOps  []string `yaml:"fp16_block_ops"`

	// Sensitivity measures every quantized layer's contribution to the output error.
	Sensitivity bool `yaml:"sensitivity"`
	// AutoFallback keeps the most sensitive layers in float until the gates hold on the
	// calibration data (or Data when set). At least one gate must be set.
	AutoFallback bool     `yaml:"auto_fallback"`
	MaxTop1Drop  *float64 `yaml:"max_top1_drop"`
	MinCosine    *float64 `yaml:"min_cosine"`
	// MinSNR bounds every output's SNR in dB over all samples: the gate for outputs where a
	// per-sample cosine means little (mostly-zero maps such as a text detector's).
	MinSNR *float64 `yaml:"min_snr_db"`
	// Data is what sensitivity and fallback measure on (default: the calibration data).
	Data string `yaml:"data"`

	Runtime runtime.Options `yaml:"runtime"`
	Log     *slog.Logger    `yaml:"-" json:"-"`
	// Progress, when set, is called as calibration advances.
	Progress func(done, total int) `yaml:"-" json:"-"`
}

// Validate reports contradictory or incomplete settings (what File would refuse).
func (o Options) Validate() error {
	_, err := o.normalized()
	return err
}

// normalized fills defaults and rejects contradictory settings.
func (o Options) normalized() (Options, error) {
	switch o.Mode {
	case Dynamic, Static, FP16:
	case "":
		return o, fmt.Errorf("no quantization mode (want dynamic, static or fp16)")
	default:
		return o, fmt.Errorf("unknown mode %q (want dynamic, static or fp16)", o.Mode)
	}
	if o.Format == "" {
		o.Format = QDQ
	}
	if o.Target == "" {
		o.Target = TargetORT
	}
	switch o.Format {
	case QDQ, QOperator:
	default:
		return o, fmt.Errorf("unknown format %q (want qdq or qoperator)", o.Format)
	}
	switch o.Target {
	case TargetORT, TargetTensorRT:
	default:
		return o, fmt.Errorf("unknown target %q (want ort or tensorrt)", o.Target)
	}
	fp8, err := o.checkFP8()
	if err != nil {
		return o, err
	}
	if o.Target == TargetTensorRT {
		if o.Format == QOperator {
			return o, fmt.Errorf("target tensorrt takes Q/DQ only (format qdq)")
		}
		if o.ActivationType == tensor.Uint8 || o.WeightType == tensor.Uint8 {
			return o, fmt.Errorf("target tensorrt needs signed int8 activations and weights")
		}
		o.ActivationType, o.WeightType, o.Symmetric, o.PerChannel = tensor.Int8, tensor.Int8, true, true
		if fp8 {
			o.ActivationType, o.WeightType = tensor.Float8E4M3FN, tensor.Float8E4M3FN
		}
	}
	if o.ActivationType == tensor.Undefined {
		o.ActivationType = tensor.Uint8
	}
	if o.WeightType == tensor.Undefined {
		o.WeightType = tensor.Int8
	}
	for _, t := range []tensor.DType{o.ActivationType, o.WeightType} {
		if t != tensor.Int8 && t != tensor.Uint8 && !(fp8 && isFP8(t)) {
			return o, fmt.Errorf("quantized type %s: want int8 or uint8", t)
		}
	}
	if o.Mode == Dynamic && o.ActivationType != tensor.Uint8 {
		// DynamicQuantizeLinear produces uint8 only.
		return o, fmt.Errorf("dynamic mode quantizes activations to uint8 (DynamicQuantizeLinear); int8 activations need --mode static")
	}
	if o.Mode == Static && o.Calib == "" {
		return o, fmt.Errorf("static mode needs calibration data")
	}
	if o.Method == "" {
		o.Method = calibration.MinMax
	}
	if o.AutoFallback {
		if o.Mode == FP16 {
			return o, fmt.Errorf("auto-fallback applies to int8 modes")
		}
		if o.MaxTop1Drop == nil && o.MinCosine == nil && o.MinSNR == nil {
			return o, fmt.Errorf("auto-fallback needs a gate: max top-1 drop, min cosine or min SNR")
		}
	}
	if (o.Sensitivity || o.AutoFallback) && o.Data == "" {
		o.Data = o.Calib
	}
	if (o.Sensitivity || o.AutoFallback) && o.Data == "" {
		return o, fmt.Errorf("sensitivity and auto-fallback need data (--data or --calib)")
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// ParseType accepts int8, uint8 and float8e4m3fn (also ORT's QInt8/QUInt8/QFLOAT8E4M3FN
// spelling, and fp8).
func ParseType(s string) (tensor.DType, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "int8", "qint8", "s8":
		return tensor.Int8, nil
	case "uint8", "quint8", "u8":
		return tensor.Uint8, nil
	case "float8e4m3fn", "qfloat8e4m3fn", "fp8", "e4m3":
		return tensor.Float8E4M3FN, nil
	case "":
		return tensor.Undefined, nil
	}
	return tensor.Undefined, fmt.Errorf("unknown quantized type %q (want int8, uint8 or float8e4m3fn)", s)
}
