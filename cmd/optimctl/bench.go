package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/optimctl/optimctl/pkg/bench"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/validate"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newBenchCmd) }

type benchFlags struct {
	data       dataFlags
	rt         runtimeFlags
	batches    string
	duration   time.Duration
	iterations int
	warmup     int
	trtLog     string
}

func newBenchCmd(g *globals) *cobra.Command {
	fl := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench MODEL",
		Short: "Measure latency percentiles, throughput and peak memory of a model in ONNX Runtime, or of a TensorRT engine",
		Long: `Runs the model on one sample (tiled to each --batch size) for --duration or --iterations
and reports latency percentiles, throughput and peak memory. MODEL is an ONNX model, run in
ONNX Runtime (--ep, --threads, --graph-opt), or a TensorRT engine (.plan or .engine, as
build-trt writes it), run through TensorRT in a build with the tensorrt tag: then latency is
from host inputs to host outputs as for ONNX Runtime, and the GPU time is reported beside it.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := fl.toOptions(g, args[0])
			if err != nil {
				return err
			}
			rep, err := bench.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.JSON {
				return g.emitJSON(rep)
			}
			bench.WriteText(g.stdout, rep)
			return nil
		},
	}
	fl.data.register(cmd, false)
	fl.rt.register(cmd, "all")
	f := cmd.Flags()
	f.StringVar(&fl.batches, "batch", "1", "batch sizes, comma-separated (the input's first dimension must be dynamic for > 1)")
	f.DurationVar(&fl.duration, "duration", 5*time.Second, "measuring time per batch size")
	f.IntVar(&fl.iterations, "iterations", 0, "measure this many runs per batch size instead of --duration")
	f.IntVar(&fl.warmup, "warmup", 5, "untimed runs per batch size")
	f.StringVar(&fl.trtLog, "trt-log", "", "TensorRT log level on stderr for a .plan: error, warning, info or verbose (default warning, info with -v)")
	return cmd
}

func (fl *benchFlags) toOptions(g *globals, model string) (bench.Options, error) {
	shapes, err := fl.data.shapes()
	if err != nil {
		return bench.Options{}, err
	}
	eo, err := trtLog(g, fl.trtLog)
	if err != nil {
		return bench.Options{}, err
	}
	var rt runtime.Options
	if validate.IsEngine(model) {
		if rt, err = fl.rt.engineOptions(); err != nil { // no ONNX Runtime needed
			return bench.Options{}, err
		}
	} else if rt, err = fl.rt.options(g); err != nil {
		return bench.Options{}, err
	}
	var batches []int
	for _, s := range strings.Split(fl.batches, ",") {
		b, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || b < 1 {
			return bench.Options{}, usagef("--batch: %q is not a positive integer", s)
		}
		batches = append(batches, b)
	}
	return bench.Options{Model: model, Data: fl.data.Data, Preprocess: fl.data.Preprocess, Shapes: shapes,
		Batches: batches, Runtime: rt, Duration: fl.duration, Iterations: fl.iterations, Warmup: fl.warmup, Engine: eo}, nil
}

// engineOptions checks the runtime flags of a TensorRT engine, which runs without ONNX
// Runtime: an ONNX Runtime execution provider other than the default cannot apply to it.
func (r *runtimeFlags) engineOptions() (runtime.Options, error) {
	if r.ep != runtime.ProviderCPU && r.ep != runtime.ProviderTensorRT {
		return runtime.Options{}, usagef("--ep %s: a TensorRT engine runs in TensorRT; leave --ep out", r.ep)
	}
	return runtime.Options{}, nil
}
