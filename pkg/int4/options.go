package int4

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/optimctl/optimctl/pkg/quant/pack"
	"github.com/optimctl/optimctl/pkg/runtime"
)

// Algo names a weight-only quantization algorithm as the command line spells it.
type Algo string

// The algorithms.
const (
	RTN  Algo = "rtn"  // round to nearest, per group: no data needed
	GPTQ Algo = "gptq" // error-compensating, from each layer's input Hessian
	AWQ  Algo = "awq"  // activation-aware input scaling and clipping
)

// Format names what Run writes.
type Format string

// The output formats.
const (
	// FormatONNX replaces MatMul nodes of an ONNX model by com.microsoft::MatMulNBits.
	FormatONNX Format = "onnx"
	// FormatGPTQ writes a GPTQ checkpoint (qweight/qzeros/scales/g_idx) from a Hugging Face
	// safetensors checkpoint.
	FormatGPTQ Format = "gptq"
	// FormatAWQ writes an AutoAWQ "gemm" checkpoint from a Hugging Face safetensors checkpoint.
	FormatAWQ Format = "awq"
)

// Defaults.
const (
	DefaultGroupSize = 128
	// DefaultAWQMaxRows bounds the calibration rows AWQ keeps per layer input (a
	// deterministic reservoir sample): memory is rows × K × 4 bytes per input, 2048 × 4096 ×
	// 4 = 32 MiB for a 4096-wide input. AutoAWQ searches on 128 × 512 tokens but clips on a
	// 512-token subsample.
	DefaultAWQMaxRows = 2048
	// DefaultMaxCaptureBytes bounds the statistics held at once while capturing: GPTQ needs a
	// K×K float64 Hessian per distinct layer input, AWQ its row sample. Inputs that do not fit
	// are captured in further passes over the calibration data.
	DefaultMaxCaptureBytes = 2 << 30
)

// Options configure an INT4 run. The yaml keys are those of a recipe's quantize step with
// mode int4; the same struct is what `optimctl quantize --mode int4` fills from its flags.
type Options struct {
	Input  string `json:"-" yaml:"-"`
	Output string `json:"-" yaml:"-"`
	// Algo is rtn (default), gptq or awq.
	Algo Algo `json:"algo" yaml:"algo"`
	// Bits per weight: 4 (default). MatMulNBits and GPTQ also take 2 and 8; AWQ is 4-bit only.
	Bits int `json:"bits" yaml:"bits"`
	// GroupSize is the number of consecutive inputs sharing a scale (MatMulNBits block_size):
	// a power of two ≥ 16 for ONNX; 0 means 128. Checkpoints also take −1 (per channel).
	GroupSize int `json:"group_size" yaml:"group_size"`
	// Symmetric fixes every zero point at 2^(bits−1) (no zero_points input in MatMulNBits,
	// GPTQ's sym=True). nil means the format's usual default: asymmetric for ONNX (ONNX
	// Runtime's quantizer default) and AWQ (zero_point=True), symmetric for GPTQ checkpoints
	// (AutoGPTQ's default, and the only choice that checkpoint_format "gptq" stores exactly).
	Symmetric *bool `json:"symmetric,omitempty" yaml:"symmetric"`
	// Damp is GPTQ's damp_percent as a fraction of mean(diag H); 0 means 0.01.
	Damp float64 `json:"damp,omitempty" yaml:"damp"`
	// ActOrder quantizes GPTQ columns by decreasing activation energy (desc_act). For ONNX,
	// and whenever StaticGroups is set, groups stay k / group_size (static_groups), since
	// MatMulNBits has no g_idx; GPTQ checkpoints otherwise store the permuted g_idx.
	ActOrder     bool `json:"act_order,omitempty" yaml:"act_order"`
	StaticGroups bool `json:"static_groups,omitempty" yaml:"static_groups"`
	// Sequential (GPTQ, ONNX) quantizes level by level — transformer blocks, else MatMul
	// depth — capturing each level's inputs through the model with the earlier levels
	// already quantized (true_sequential); one capture pass per level.
	Sequential bool `json:"sequential,omitempty" yaml:"sequential"`
	// Calib is the calibration data (calibration.Open spec: .npz, folder, test-data, random:N)
	// for gptq and awq. CalibModel is the ONNX model to run it through: the input itself for
	// ONNX (leave empty), an ONNX export of the same weights for checkpoints.
	Calib      string             `json:"calib,omitempty" yaml:"calib"`
	CalibModel string             `json:"calib_model,omitempty" yaml:"calib_model"`
	Shapes     map[string][]int64 `json:"shapes,omitempty" yaml:"shapes"`
	// CalibLimit caps the samples read (0: all); CalibBatch stacks samples per run (0: 1).
	CalibLimit int `json:"calib_limit,omitempty" yaml:"calib_limit"`
	CalibBatch int `json:"calib_batch,omitempty" yaml:"calib_batch"`
	// MaskInput names a [batch, seq] model input whose zeros mark padding: activation rows at
	// those positions are left out of the statistics. "" means "attention_mask" when the model
	// has it; "-" disables.
	MaskInput string `json:"mask_input,omitempty" yaml:"mask_input"`
	// AWQMaxRows bounds AWQ's per-input row sample (default DefaultAWQMaxRows).
	AWQMaxRows int `json:"awq_max_rows,omitempty" yaml:"awq_max_rows"`
	// AWQDuoScaling divides the activation scales by weight saliency (AutoAWQ's duo_scaling).
	AWQDuoScaling bool `json:"awq_duo_scaling,omitempty" yaml:"awq_duo_scaling"`
	// MaxCaptureBytes bounds capture memory (default DefaultMaxCaptureBytes).
	MaxCaptureBytes int64 `json:"max_capture_bytes,omitempty" yaml:"max_capture_bytes"`
	// AccuracyLevel is MatMulNBits' accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8
	// activations (fastest on CPU, but A is then quantized too).
	AccuracyLevel int `json:"accuracy_level,omitempty" yaml:"accuracy_level"`
	// Format is onnx, qdq (block-wise int4 DequantizeLinear for TensorRT), gptq or awq; ""
	// picks onnx for an .onnx input, gptq otherwise.
	Format Format `json:"format" yaml:"format"`
	// Target is ort (default) or tensorrt, as quantize's --target: tensorrt means format qdq
	// (TensorRT's INT4 weight-only form), symmetric.
	Target string `json:"target,omitempty" yaml:"target"`
	// CheckpointFormat is GPTQ's checkpoint_format: "gptq" (v1, default: zero points stored
	// minus one, what every loader reads) or "gptq_v2".
	CheckpointFormat string `json:"checkpoint_format,omitempty" yaml:"checkpoint_format"`
	// Include restricts quantization to layers whose node, weight or checkpoint tensor name
	// matches one of these globs; Exclude leaves matching ones in float.
	Include []string `json:"include,omitempty" yaml:"include"`
	Exclude []string `json:"exclude,omitempty" yaml:"exclude"`
	// ExternalData writes ONNX output with its tensors in OUT.data.
	ExternalData bool `json:"external_data,omitempty" yaml:"external_data"`
	// Runtime configures the ONNX Runtime sessions that capture activations.
	Runtime runtime.Options `json:"-" yaml:"runtime"`
	// Log receives progress lines (nil: none).
	Log *slog.Logger `json:"-" yaml:"-"`
	// Progress, when set, is called as work advances: stage "capturing" after each
	// calibration sample of each capture pass (total: samples per pass, −1 if unknown), stage
	// "quantizing" after each layer (total: layers). Calls come from one goroutine.
	Progress func(stage string, done, total int) `json:"-" yaml:"-"`

	// cache lets tests reuse captured statistics across runs on the same data.
	cache *statsCache
}

// Validate fills defaults and checks what a user can get wrong; format-dependent defaults
// are resolved once the input is known (see resolve).
func (o *Options) Validate() error {
	o.Algo = Algo(strings.ToLower(string(o.Algo)))
	if o.Algo == "" {
		o.Algo = RTN
	}
	switch o.Algo {
	case RTN, GPTQ, AWQ:
	default:
		return fmt.Errorf("algo %q: want rtn, gptq or awq", o.Algo)
	}
	if o.Bits == 0 {
		o.Bits = 4
	}
	if o.Bits != 2 && o.Bits != 4 && o.Bits != 8 {
		return fmt.Errorf("bits %d: want 4 (or 2, 8)", o.Bits)
	}
	if o.Algo == AWQ && o.Bits != 4 {
		return fmt.Errorf("awq is 4-bit only (bits %d)", o.Bits)
	}
	if o.GroupSize == 0 {
		o.GroupSize = DefaultGroupSize
	}
	if o.GroupSize < -1 || (o.GroupSize > 0 && o.GroupSize < 16) {
		return fmt.Errorf("group size %d: want at least 16, or -1 for one group per row", o.GroupSize)
	}
	if o.Damp < 0 || o.Damp >= 1 {
		return fmt.Errorf("damp %v: want a fraction in [0, 1)", o.Damp)
	}
	if o.AccuracyLevel < 0 || o.AccuracyLevel > 4 {
		return fmt.Errorf("accuracy level %d: want 0 (unset), 1 fp32, 2 fp16, 3 bf16 or 4 int8", o.AccuracyLevel)
	}
	o.Format = Format(strings.ToLower(string(o.Format)))
	switch o.Format {
	case "", FormatONNX, FormatGPTQ, FormatAWQ, FormatQDQ:
	default:
		return fmt.Errorf("format %q: want onnx, qdq, gptq or awq", o.Format)
	}
	if o.Format == FormatAWQ && o.Bits != 4 {
		return fmt.Errorf("awq checkpoints are 4-bit only (bits %d)", o.Bits)
	}
	if err := o.validateTarget(); err != nil {
		return err
	}
	switch o.CheckpointFormat {
	case "":
		o.CheckpointFormat = pack.GPTQFormatV1
	case pack.GPTQFormatV1, pack.GPTQFormatV2:
	default:
		return fmt.Errorf("checkpoint format %q: want gptq or gptq_v2", o.CheckpointFormat)
	}
	if o.Algo != RTN && o.Calib == "" {
		return fmt.Errorf("algo %s needs calibration data (calib)", o.Algo)
	}
	if o.CalibLimit < 0 || o.CalibBatch < 0 || o.AWQMaxRows < 0 || o.MaxCaptureBytes < 0 {
		return errors.New("calib_limit, calib_batch, awq_max_rows and max_capture_bytes must not be negative")
	}
	if o.AWQMaxRows == 0 {
		o.AWQMaxRows = DefaultAWQMaxRows
	}
	if o.MaxCaptureBytes == 0 {
		o.MaxCaptureBytes = DefaultMaxCaptureBytes
	}
	return nil
}

// resolve settles the format-dependent defaults once the format is known.
func (o *Options) resolve(f Format) error {
	o.Format = f
	if f == FormatQDQ {
		if err := resolveQDQ(o); err != nil {
			return err
		}
	}
	if o.Symmetric == nil {
		sym := f == FormatGPTQ
		o.Symmetric = &sym
	}
	if f == FormatONNX && (o.GroupSize < 16 || o.GroupSize&(o.GroupSize-1) != 0) {
		return fmt.Errorf("group size %d: MatMulNBits needs a power of two ≥ 16 (its block_size)", o.GroupSize)
	}
	if f == FormatAWQ && o.GroupSize == -1 {
		return errors.New("awq checkpoints need a group size (AutoAWQ has no per-channel form)")
	}
	if f != FormatGPTQ && o.ActOrder {
		o.StaticGroups = true // MatMulNBits and AWQ checkpoints have no g_idx
	}
	if o.Sequential && ((f != FormatONNX && f != FormatQDQ) || o.Algo != GPTQ) {
		return errors.New("sequential: only for algo gptq with onnx or qdq output")
	}
	if f != FormatONNX && f != FormatQDQ && o.Algo != RTN && o.CalibModel == "" {
		return fmt.Errorf("algo %s on a checkpoint needs calib_model: an ONNX export of the same weights to capture activations with", o.Algo)
	}
	return nil
}

// StagedProgress adapts a progress-bar factory to Options.Progress: each new stage, or a
// count that starts over (the next capture pass), opens a new bar. Nil in, nil out.
func StagedProgress(newBar func(stage string) func(done, total int)) func(stage string, done, total int) {
	if newBar == nil {
		return nil
	}
	var cur string
	last := 0
	var bar func(done, total int)
	return func(stage string, done, total int) {
		if bar == nil || stage != cur || done < last {
			cur, bar = stage, newBar(stage)
		}
		last = done
		bar(done, total)
	}
}
