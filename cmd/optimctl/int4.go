package main

import (
	"github.com/spf13/cobra"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/int4"
)

func init() { commands = append(commands, newInt4Cmd) }

// int4Flags holds the raw flag values of the hidden `optimctl int4` command, the flags
// `optimctl quantize --mode int4` takes.
type int4Flags struct {
	output, algo, format, ckptFormat, calib, calibModel, mask string
	target                                                    string // quantize --target; the int4 command says --format qdq
	bits, group, accuracy, limit, batch, awqRows              int
	symmetric, actOrder, staticGroups, externalData, duo, seq bool
	damp                                                      float64
	shapes, include, exclude                                  []string
	rt                                                        runtimeFlags
}

func newInt4Cmd(g *globals) *cobra.Command {
	fl := &int4Flags{}
	cmd := &cobra.Command{
		Use:    "int4 MODEL -o OUT [--algo rtn|gptq|awq] [--group-size N] [--format onnx|qdq|gptq|awq]",
		Short:  "INT4 weight-only quantization (what quantize --mode int4 runs)",
		Hidden: true,
		Args:   exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := fl.toOptions(cmd, g, args[0])
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
		},
	}
	f := cmd.Flags()
	f.StringVarP(&fl.output, "output", "o", "", "output: .onnx model, or checkpoint folder (required)")
	f.StringVar(&fl.algo, "algo", "rtn", "rtn, gptq or awq")
	f.IntVar(&fl.bits, "bits", 4, "bits per weight (4; MatMulNBits and GPTQ also take 2 and 8)")
	f.IntVar(&fl.group, "group-size", 128, "weights per scale along K (MatMulNBits block_size: a power of two ≥ 16; -1 per channel for GPTQ)")
	f.BoolVar(&fl.symmetric, "symmetric", false, "zero point fixed at 2^(bits-1) (default: asymmetric for onnx/awq, symmetric for gptq)")
	f.Float64Var(&fl.damp, "damp", 0.01, "gptq: damping, fraction of mean(diag H)")
	f.BoolVar(&fl.actOrder, "act-order", false, "gptq: quantize columns by decreasing activation energy (desc_act)")
	f.BoolVar(&fl.staticGroups, "static-groups", false, "gptq: groups fixed before act-order (always on for onnx and awq)")
	f.BoolVar(&fl.seq, "sequential", false, "gptq, onnx: quantize block by block, capturing each block's inputs through the already quantized blocks")
	f.StringVar(&fl.calib, "calib", "", "calibration data for gptq/awq (.npz, folder, random:N)")
	f.StringVar(&fl.calibModel, "calib-model", "", "checkpoints: ONNX export of the same weights to capture activations with")
	f.StringArrayVar(&fl.shapes, "shape", nil, "NAME=d0,d1,... fixes the dynamic dimensions of an input (repeatable)")
	f.IntVar(&fl.limit, "limit", 0, "use at most this many calibration samples (0 = all)")
	f.IntVar(&fl.batch, "calib-batch", 0, "samples per calibration run (0 = 1)")
	f.StringVar(&fl.mask, "mask-input", "", `input whose zeros mark padding rows to leave out ("" = attention_mask if present, "-" = none)`)
	f.IntVar(&fl.awqRows, "awq-max-rows", 0, "awq: activation rows sampled per layer input (0 = 2048)")
	f.BoolVar(&fl.duo, "awq-duo-scaling", false, "awq: divide activation scales by weight saliency (AutoAWQ duo_scaling)")
	f.IntVar(&fl.accuracy, "accuracy-level", 0, "MatMulNBits accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 (fastest on CPU)")
	f.StringVar(&fl.format, "format", "", "onnx (MatMulNBits), qdq (block-wise int4 DequantizeLinear for TensorRT), gptq or awq checkpoint (default: onnx for .onnx input, else gptq)")
	f.StringVar(&fl.ckptFormat, "checkpoint-format", "gptq", "gptq checkpoints: gptq (v1) or gptq_v2")
	f.StringSliceVar(&fl.include, "include", nil, "only quantize these nodes/weights (globs)")
	f.StringSliceVar(&fl.exclude, "exclude", nil, "keep these nodes/weights in float (globs)")
	f.BoolVar(&fl.externalData, "external-data", false, "onnx: write tensors to OUT.data beside the model")
	fl.rt.register(cmd, "basic")
	return cmd
}

func (fl *int4Flags) toOptions(cmd *cobra.Command, g *globals, model string) (int4.Options, error) {
	o := int4.Options{Input: model, Output: fl.output, Algo: int4.Algo(fl.algo), Bits: fl.bits, GroupSize: fl.group,
		Damp: fl.damp, ActOrder: fl.actOrder, StaticGroups: fl.staticGroups, Sequential: fl.seq, Calib: fl.calib, CalibModel: fl.calibModel,
		CalibLimit: fl.limit, CalibBatch: fl.batch, MaskInput: fl.mask, AWQMaxRows: fl.awqRows, AWQDuoScaling: fl.duo,
		AccuracyLevel: fl.accuracy, Format: int4.Format(fl.format), Target: fl.target, CheckpointFormat: fl.ckptFormat,
		Include: fl.include, Exclude: fl.exclude, ExternalData: fl.externalData, Log: g.log}
	if fl.output == "" {
		return o, usagef("-o/--output is required")
	}
	if cmd.Flags().Changed("symmetric") {
		v := fl.symmetric
		o.Symmetric = &v
	}
	var err error
	if o.Shapes, err = calibration.ParseShapes(fl.shapes); err != nil {
		return o, usageError{err}
	}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	if o.Algo != int4.RTN || o.Calib != "" {
		if o.Runtime, err = fl.rt.options(g); err != nil {
			return o, err
		}
	}
	if g.stderrIsTerminal() {
		o.Progress = int4Progress(g)
	}
	return o, nil
}

// int4Progress draws a bar per stage of an int4 run: each capture pass over the calibration
// data, then the layers.
func int4Progress(g *globals) func(stage string, done, total int) {
	return int4.StagedProgress(func(stage string) func(done, total int) { return newProgress(g, stage, -1) })
}
