package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/optimctl/optimctl/pkg/bench"
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
}

func newBenchCmd(g *globals) *cobra.Command {
	fl := &benchFlags{}
	cmd := &cobra.Command{
		Use:   "bench MODEL",
		Short: "Measure latency percentiles, throughput and peak memory of a model in ONNX Runtime",
		Args:  exactArgs(1),
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
	return cmd
}

func (fl *benchFlags) toOptions(g *globals, model string) (bench.Options, error) {
	shapes, err := fl.data.shapes()
	if err != nil {
		return bench.Options{}, err
	}
	rt, err := fl.rt.options(g)
	if err != nil {
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
		Batches: batches, Runtime: rt, Duration: fl.duration, Iterations: fl.iterations, Warmup: fl.warmup}, nil
}
