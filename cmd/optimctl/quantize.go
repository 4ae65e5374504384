package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/int4"
	"github.com/optimctl/optimctl/pkg/quantize"
)

func init() { commands = append(commands, newQuantizeCmd) }

// quantizeFlags holds the raw flag values of `optimctl quantize`.
type quantizeFlags struct {
	output, mode, format, target, actType, weightType string
	perChannel, symmetric, reduceRange                bool
	exclude, opTypes, fp16Block                       []string
	keepIO                                            bool
	calib, preprocess, method, data                   string
	shapes                                            []string
	limit, batch                                      int
	percentile, avgConst                              float64
	movingAvg                                         bool
	report                                            string
	autoFallback                                      bool
	maxTop1Drop, minCosine, minSNR                    float64
	rt                                                runtimeFlags
	// --mode int4 (pkg/int4): the weight-only flags of the command-line contract.
	algo, calibModel, ckptFormat   string
	bits, groupSize, accuracyLevel int
	damp                           float64
	actOrder, staticGroups, seq    bool
}

func newQuantizeCmd(g *globals) *cobra.Command {
	fl := &quantizeFlags{}
	cmd := &cobra.Command{
		Use:   "quantize MODEL -o OUT --mode dynamic|static|fp16|int4",
		Short: "INT8 (dynamic or calibrated static, QDQ or QOperator, ONNX Runtime or TensorRT) and FP16 quantization",
		Long: `Quantizes an ONNX model.

  --mode dynamic   INT8 weights for MatMul/Gemm/Conv, activations quantized at run time
  --mode static    INT8 weights and activations; ranges calibrated on --calib data
                   (--target tensorrt --activation-type float8e4m3fn: FP8 E4M3 Q/DQ instead)
  --mode fp16      float16 weights and compute, float32 inputs/outputs kept
  --mode int4      weight-only INT4 (--algo rtn|gptq|awq, --group-size N) to ONNX MatMulNBits,
                   or --format gptq|awq to a safetensors checkpoint; --target tensorrt (same as
                   --format qdq): symmetric block-wise int4 DequantizeLinear into each MatMul, opset 21

Weights stored in Constant nodes become initializers, BatchNorms fold into Convs, and
old opsets are upgraded to 13 when per-channel weights need it (the report says what was
done). --report FILE lists each quantized layer's contribution to the output error;
--auto-fallback with --max-top1-drop, --min-cosine or --min-snr keeps the most sensitive layers in
float until the gate holds, and exits 3 (with the output written) if it never does.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if fl.mode == "int4" {
				return fl.runInt4(cmd, g, args[0])
			}
			o, err := fl.toOptions(cmd, g)
			if err != nil {
				return err
			}
			if g.stderrIsTerminal() && o.Mode == quantize.Static {
				o.Progress = newProgress(g, "calibrating", -1)
			}
			rep, err := quantize.File(cmd.Context(), args[0], fl.output, o)
			if err != nil {
				return err
			}
			if fl.report != "" {
				if err := writeSensitivity(fl.report, rep); err != nil {
					return err
				}
			}
			if g.JSON {
				if err := g.emitJSON(rep); err != nil {
					return err
				}
			} else {
				writeQuantizeText(g, rep)
			}
			if rep.Fallback != nil && !rep.Fallback.Passed {
				return gateError{fmt.Sprintf("quantize: gate not met even with %d layers kept in float: %s", len(rep.Fallback.Kept), strings.Join(rep.Fallback.FailedGates, "; "))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&fl.output, "output", "o", "", "output model (required)")
	f.StringVar(&fl.mode, "mode", "", "dynamic, static or fp16 (required)")
	f.StringVar(&fl.format, "format", "qdq", "static: qdq (QuantizeLinear/DequantizeLinear pairs) or qoperator (QLinearConv, QLinearMatMul, ...)")
	f.StringVar(&fl.target, "target", "ort", "static: ort or tensorrt (symmetric int8, per-channel weights, Q/DQ on layer inputs and residual adds); int4: tensorrt writes block-wise int4 DequantizeLinear (--format qdq)")
	f.BoolVar(&fl.perChannel, "per-channel", false, "one weight scale per output channel (upgrades old opsets to 13 when possible)")
	f.StringVar(&fl.actType, "activation-type", "", "int8 or uint8 (default uint8; tensorrt: int8), or float8e4m3fn with --target tensorrt (FP8 Q/DQ, opset 19)")
	f.StringVar(&fl.weightType, "weight-type", "", "int8 or uint8 (default int8), or float8e4m3fn with --target tensorrt")
	f.BoolVar(&fl.symmetric, "symmetric", false, "symmetric activation ranges (zero point 0 for int8)")
	f.BoolVar(&fl.reduceRange, "reduce-range", false, "7-bit weights, for CPUs without VNNI")
	f.StringSliceVar(&fl.exclude, "exclude", nil, "node names, output names or op types to keep in float (comma-separated)")
	f.StringSliceVar(&fl.opTypes, "op-types", nil, "quantize only these op types (default: every supported one)")
	f.StringVar(&fl.calib, "calib", "", "static: calibration data (.npz, folder, image folder with --preprocess, random:N)")
	f.StringVar(&fl.preprocess, "preprocess", "", `image preprocessing, e.g. "resize=48x192,mean=0.5/0.5/0.5,std=0.5/0.5/0.5"`)
	f.StringArrayVar(&fl.shapes, "shape", nil, "NAME=d0,d1,... fixes the dynamic dimensions of an input (repeatable)")
	f.IntVar(&fl.limit, "limit", 0, "use at most this many calibration samples (0 = all)")
	f.IntVar(&fl.batch, "calib-batch", 0, "samples per calibration run (0 = the model's batch size, else 1)")
	f.StringVar(&fl.method, "calib-method", "minmax", "minmax, entropy or percentile")
	f.Float64Var(&fl.percentile, "percentile", 99.999, "percentile calibration: percentage of values kept")
	f.BoolVar(&fl.movingAvg, "moving-average", false, "minmax: moving average of per-batch extremes instead of global extremes")
	f.Float64Var(&fl.avgConst, "averaging-constant", 0.01, "minmax --moving-average: smoothing constant")
	f.BoolVar(&fl.keepIO, "keep-io-types", true, "fp16: keep float32 graph inputs and outputs (Casts at the boundary)")
	f.StringSliceVar(&fl.fp16Block, "fp16-block-ops", nil, "fp16: op types kept in float32 (replaces the default list)")
	f.StringVar(&fl.report, "report", "", "write per-layer sensitivity to this file (.md for Markdown, else JSON)")
	f.BoolVar(&fl.autoFallback, "auto-fallback", false, "keep the most sensitive layers in float until --max-top1-drop/--min-cosine holds")
	f.Float64Var(&fl.maxTop1Drop, "max-top1-drop", -1, "gate for --auto-fallback: largest allowed 1 - top-1 agreement")
	f.Float64Var(&fl.minCosine, "min-cosine", -1, "gate for --auto-fallback: smallest allowed worst-sample cosine of every output")
	f.Float64Var(&fl.minSNR, "min-snr", -1, "gate for --auto-fallback: smallest allowed SNR (dB, over all samples) of every output")
	f.StringVar(&fl.data, "data", "", "data for --report/--auto-fallback (default: the calibration data)")
	f.StringVar(&fl.algo, "algo", "rtn", "int4: rtn, gptq or awq")
	f.IntVar(&fl.bits, "bits", 4, "int4: bits per weight (4; MatMulNBits and GPTQ also take 2 and 8)")
	f.IntVar(&fl.groupSize, "group-size", 128, "int4: weights per scale along K (-1 per channel for GPTQ)")
	f.Float64Var(&fl.damp, "damp", 0.01, "int4 gptq: damping, fraction of mean(diag H)")
	f.BoolVar(&fl.actOrder, "act-order", false, "int4 gptq: quantize columns by decreasing activation energy (desc_act)")
	f.BoolVar(&fl.staticGroups, "static-groups", false, "int4 gptq: groups fixed before act-order (always on for onnx and awq)")
	f.BoolVar(&fl.seq, "sequential", false, "int4 gptq, onnx/qdq: quantize block by block, capturing each block's inputs through the already quantized blocks")
	f.StringVar(&fl.calibModel, "calib-model", "", "int4 checkpoints: ONNX export of the same weights to capture activations with")
	f.IntVar(&fl.accuracyLevel, "accuracy-level", 0, "int4 MatMulNBits accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8")
	f.StringVar(&fl.ckptFormat, "checkpoint-format", "gptq", "int4 gptq checkpoints: gptq (v1) or gptq_v2")
	fl.rt.register(cmd, "basic")
	cmd.MarkFlagRequired("output")
	return cmd
}

// runInt4 is `quantize --mode int4`: weight-only INT4 to ONNX MatMulNBits, or to a GPTQ/AWQ
// safetensors checkpoint (--format onnx|gptq|awq; default onnx for an .onnx input).
func (fl *quantizeFlags) runInt4(cmd *cobra.Command, g *globals, model string) error {
	// The same conversion as the hidden int4 command, so the two cannot drift apart.
	f4 := &int4Flags{output: fl.output, algo: fl.algo, format: fl.format, ckptFormat: fl.ckptFormat, calib: fl.calib,
		calibModel: fl.calibModel, bits: fl.bits, group: fl.groupSize, accuracy: fl.accuracyLevel, limit: fl.limit,
		batch: fl.batch, symmetric: fl.symmetric, actOrder: fl.actOrder, staticGroups: fl.staticGroups, seq: fl.seq,
		damp: fl.damp, shapes: fl.shapes, exclude: fl.exclude, rt: fl.rt}
	if !cmd.Flags().Changed("format") {
		f4.format = "" // quantize's default (qdq) is an INT8 format; int4 picks by input type
	}
	if cmd.Flags().Changed("target") {
		f4.target = fl.target // tensorrt: block-wise int4 DequantizeLinear (format qdq)
	}
	o, err := f4.toOptions(cmd, g, model)
	if err != nil {
		return err
	}
	rep, err := int4.Run(cmd.Context(), o)
	if err != nil {
		return err
	}
	if g.JSON {
		return g.emitJSON(rep)
	}
	int4.WriteText(g.stdout, rep, g.Verbose)
	return nil
}

func (fl *quantizeFlags) toOptions(cmd *cobra.Command, g *globals) (quantize.Options, error) {
	o := quantize.Options{Mode: quantize.Mode(fl.mode), Format: quantize.Format(fl.format), Target: quantize.Target(fl.target),
		PerChannel: fl.perChannel, Symmetric: fl.symmetric, ReduceRange: fl.reduceRange, Exclude: fl.exclude, OpTypes: fl.opTypes,
		Calib: fl.calib, Preprocess: fl.preprocess, Limit: fl.limit, Batch: fl.batch,
		Percentile: fl.percentile, MovingAverage: fl.movingAvg, AveragingConstant: float32(fl.avgConst),
		KeepFloat32IO: fl.keepIO, FP16BlockOps: fl.fp16Block, Data: fl.data,
		Sensitivity: fl.report != "", AutoFallback: fl.autoFallback, Log: g.log}
	switch o.Mode {
	case quantize.Dynamic, quantize.Static, quantize.FP16:
	case "":
		return o, usagef("--mode is required: dynamic, static or fp16")
	default:
		return o, usagef("--mode %q: want dynamic, static or fp16", fl.mode)
	}
	if o.Mode == quantize.Static && fl.calib == "" {
		return o, usagef("--mode static needs --calib DATA")
	}
	if o.Mode != quantize.Static {
		for _, name := range []string{"calib", "format", "target", "calib-method"} {
			if cmd.Flags().Changed(name) {
				return o, usagef("--%s applies to --mode static only", name)
			}
		}
	}
	var err error
	if o.ActivationType, err = quantize.ParseType(fl.actType); err != nil {
		return o, usageError{fmt.Errorf("--activation-type: %w", err)}
	}
	if o.WeightType, err = quantize.ParseType(fl.weightType); err != nil {
		return o, usageError{fmt.Errorf("--weight-type: %w", err)}
	}
	if o.Method, err = calibration.ParseMethod(fl.method); err != nil {
		return o, usageError{err}
	}
	if o.Shapes, err = calibration.ParseShapes(fl.shapes); err != nil {
		return o, usageError{err}
	}
	if cmd.Flags().Changed("max-top1-drop") {
		v := fl.maxTop1Drop
		o.MaxTop1Drop = &v
	}
	if cmd.Flags().Changed("min-cosine") {
		v := fl.minCosine
		o.MinCosine = &v
	}
	if cmd.Flags().Changed("min-snr") {
		v := fl.minSNR
		o.MinSNR = &v
	}
	gated := o.MaxTop1Drop != nil || o.MinCosine != nil || o.MinSNR != nil
	if o.AutoFallback && !gated {
		return o, usagef("--auto-fallback needs --max-top1-drop, --min-cosine or --min-snr")
	}
	if gated && !o.AutoFallback {
		return o, usagef("--max-top1-drop/--min-cosine/--min-snr are gates of --auto-fallback (use optimctl validate to check a model)")
	}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	if o.Runtime, err = fl.rt.options(g); err != nil {
		return o, err
	}
	return o, nil
}

// writeSensitivity writes the per-layer report: Markdown for .md, else JSON.
func writeSensitivity(path string, rep *quantize.Report) error {
	if strings.EqualFold(filepath.Ext(path), ".md") {
		return fsutil.WriteFileAtomic(path, []byte(quantize.SensitivityMarkdown(rep)))
	}
	b, err := json.MarshalIndent(struct {
		Model       string                      `json:"model"`
		Layers      []quantize.LayerSensitivity `json:"layers"`
		Fallback    *quantize.FallbackReport    `json:"fallback,omitempty"`
		KeptInFloat []string                    `json:"kept_float"`
	}{rep.Input, rep.Sensitivity, rep.Fallback, rep.KeptFloat}, "", "  ")
	if err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, append(b, '\n'))
}

func writeQuantizeText(g *globals, r *quantize.Report) {
	w := g.stdout
	fmt.Fprintf(w, "%s → %s (%s", r.Input, r.Output, r.Mode)
	if r.Mode == quantize.Static {
		fmt.Fprintf(w, ", %s, target %s", r.Format, r.Target)
	}
	if r.PerChannel {
		fmt.Fprint(w, ", per-channel")
	}
	fmt.Fprintln(w, ")")
	fmt.Fprintf(w, "  nodes  %d → %d   size %s → %s   %.2fs\n", r.NodesBefore, r.NodesAfter, human(r.SizeBefore), human(r.SizeAfter), r.Seconds)
	if r.OpsetBefore != r.OpsetAfter {
		fmt.Fprintf(w, "  opset  %d → %d\n", r.OpsetBefore, r.OpsetAfter)
	}
	if c := r.Calibration; c != nil {
		fmt.Fprintf(w, "  calibration %s on %d samples, %d tensors, %.2fs\n", c.Method, c.Samples, c.Tensors, c.Seconds)
	}
	ops := make([]string, 0, len(r.QuantizedOps))
	for op, n := range r.QuantizedOps {
		ops = append(ops, fmt.Sprintf("%s %d", op, n))
	}
	sort.Strings(ops)
	fmt.Fprintf(w, "  quantized %d nodes: %s\n", r.QuantizedNodes, strings.Join(ops, ", "))
	if len(r.KeptFloat) > 0 {
		fmt.Fprintf(w, "  kept float: %s\n", strings.Join(r.KeptFloat, ", "))
	}
	if f := r.Fallback; f != nil {
		state := "gate met"
		if !f.Passed {
			state = "gate NOT met"
		}
		fmt.Fprintf(w, "  auto-fallback: %s with %d layer(s) in float: %s\n", state, len(f.Kept), strings.Join(f.Kept, ", "))
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
}

func human(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
