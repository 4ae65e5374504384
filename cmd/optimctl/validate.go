package main

import (
	"fmt"
	"os"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/validate"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newValidateCmd) }

// dataFlags are the data-source flags shared by validate, bench and calibration commands.
type dataFlags struct {
	Data       string
	Preprocess string
	Shapes     []string
	Limit      int
}

func (d *dataFlags) register(cmd *cobra.Command, required bool) {
	f := cmd.Flags()
	f.StringVar(&d.Data, "data", "", "samples: .npz file or folder, ONNX test-data folder, image folder, or random:N")
	f.StringVar(&d.Preprocess, "preprocess", "", `image preprocessing, e.g. "size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=nchw"`)
	f.StringArrayVar(&d.Shapes, "shape", nil, "NAME=d0,d1,... fixes the dynamic dimensions of an input (repeatable)")
	f.IntVar(&d.Limit, "limit", 0, "use at most this many samples (0 = all)")
	if required {
		cmd.MarkFlagRequired("data")
	}
}

func (d *dataFlags) shapes() (map[string][]int64, error) {
	s, err := calibration.ParseShapes(d.Shapes)
	if err != nil {
		return nil, usageError{err}
	}
	return s, nil
}

// validateFlags holds the raw flag values of `optimctl validate`.
type validateFlags struct {
	data                              dataFlags
	rt                                runtimeFlags
	labels, classOutput, reportMD     string
	warmup                            int
	maxTop1Drop, minCosine, maxAbsErr float64
	minSNR, maxSizeRatio, maxLatRatio float64
	trtLog                            string
}

func newValidateCmd(g *globals) *cobra.Command {
	fl := &validateFlags{}
	cmd := &cobra.Command{
		Use:   "validate REFERENCE CANDIDATE --data DATA",
		Short: "Run two models on the same samples and measure agreement, accuracy and latency, with CI gates",
		Long: `Runs the reference and the candidate model on the same samples and reports,
per output, the max/mean absolute error, cosine similarity (worst sample and mean), SNR in dB,
top-1 agreement for class-score outputs, accuracy against --labels, latency percentiles of
each model, and the size ratio. A gate that is not met makes the command exit with code 3.

Models are ONNX, run in ONNX Runtime (--ep cpu|cuda|tensorrt; tensorrt is ONNX Runtime's
TensorRT provider), or one of them a TensorRT engine (.plan or .engine, as build-trt writes
it), run through TensorRT itself in a build with the tensorrt tag.`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := fl.toOptions(cmd, g, args)
			if err != nil {
				return err
			}
			if g.stderrIsTerminal() {
				o.Progress = newProgress(g, "validating", -1)
			}
			rep, err := validate.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if fl.reportMD != "" {
				if err := fsutil.WriteFileAtomic(fl.reportMD, []byte(validate.Markdown(rep))); err != nil {
					return err
				}
			}
			if g.JSON {
				if err := g.emitJSON(rep); err != nil {
					return err
				}
			} else {
				validate.WriteText(g.stdout, rep)
			}
			if !rep.Passed {
				return gateError{fmt.Sprintf("validation gate failed: %s", rep.FailedGates[0])}
			}
			return nil
		},
	}
	fl.data.register(cmd, true)
	fl.rt.register(cmd, "basic")
	f := cmd.Flags()
	f.StringVar(&fl.labels, "labels", "", "file with one class index per line, in sample order (accuracy of each model)")
	f.StringVar(&fl.classOutput, "class-output", "", "output holding class scores (default: first rank-2 float output)")
	f.StringVar(&fl.reportMD, "report", "", "also write a Markdown report to this file")
	f.IntVar(&fl.warmup, "warmup", 3, "untimed runs of each model before measuring")
	f.Float64Var(&fl.maxTop1Drop, "max-top1-drop", -1, "gate: largest allowed top-1 loss (accuracy drop with --labels, else 1 - top-1 agreement)")
	f.Float64Var(&fl.minCosine, "min-cosine", -1, "gate: smallest allowed worst-sample cosine similarity of every output")
	f.Float64Var(&fl.maxAbsErr, "max-abs-err", -1, "gate: largest allowed absolute error of every output")
	f.Float64Var(&fl.minSNR, "min-snr", -1, "gate: smallest allowed SNR (dB) of every output")
	f.Float64Var(&fl.maxSizeRatio, "max-size-ratio", -1, "gate: largest allowed candidate/reference size ratio")
	f.Float64Var(&fl.maxLatRatio, "max-latency-ratio", -1, "gate: largest allowed candidate/reference p50 latency ratio")
	f.StringVar(&fl.trtLog, "trt-log", "", "TensorRT log level on stderr for a .plan: error, warning, info or verbose (default warning, info with -v)")
	return cmd
}

func (fl *validateFlags) toOptions(cmd *cobra.Command, g *globals, args []string) (validate.Options, error) {
	shapes, err := fl.data.shapes()
	if err != nil {
		return validate.Options{}, err
	}
	rt, err := fl.rt.options(g)
	if err != nil {
		return validate.Options{}, err
	}
	for _, p := range args {
		if _, err := os.Stat(p); err != nil {
			return validate.Options{}, err
		}
	}
	eo, err := trtLog(g, fl.trtLog)
	if err != nil {
		return validate.Options{}, err
	}
	gate := func(name string, v float64) *float64 {
		if !cmd.Flags().Changed(name) {
			return nil
		}
		return &v
	}
	return validate.Options{
		Reference: args[0], Candidate: args[1],
		Data: fl.data.Data, Preprocess: fl.data.Preprocess, Shapes: shapes, Limit: fl.data.Limit,
		Labels: fl.labels, ClassOutput: fl.classOutput, Runtime: rt, Warmup: fl.warmup, Engine: eo,
		Gates: validate.Gates{
			MaxTop1Drop:     gate("max-top1-drop", fl.maxTop1Drop),
			MinCosine:       gate("min-cosine", fl.minCosine),
			MaxAbsErr:       gate("max-abs-err", fl.maxAbsErr),
			MinSNR:          gate("min-snr", fl.minSNR),
			MaxSizeRatio:    gate("max-size-ratio", fl.maxSizeRatio),
			MaxLatencyRatio: gate("max-latency-ratio", fl.maxLatRatio),
		},
	}, nil
}
