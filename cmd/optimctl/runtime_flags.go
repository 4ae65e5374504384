package main

import (
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/spf13/cobra"
)

// runtimeFlags are the ONNX Runtime flags of commands that run models.
type runtimeFlags struct {
	ep       string
	threads  int
	optLevel string
}

// register adds the flags; optLevel is the command's default graph optimisation level
// (validate pins "basic" so numbers are comparable, bench measures "all" as served).
func (r *runtimeFlags) register(cmd *cobra.Command, optLevel string) {
	f := cmd.Flags()
	f.StringVar(&r.ep, "ep", "cpu", "execution provider: cpu, cuda or tensorrt (needs a GPU build of ONNX Runtime)")
	f.IntVar(&r.threads, "threads", 0, "ONNX Runtime intra-op threads (0 = one per core)")
	f.StringVar(&r.optLevel, "graph-opt", optLevel, "ONNX Runtime graph optimisation level: disabled, basic, extended, all")
}

// options loads the ONNX Runtime library (--ort-lib) and converts the flags.
func (r *runtimeFlags) options(g *globals) (runtime.Options, error) {
	switch r.ep {
	case runtime.ProviderCPU, runtime.ProviderCUDA, runtime.ProviderTensorRT:
	default:
		return runtime.Options{}, usagef("--ep %q: want cpu, cuda or tensorrt", r.ep)
	}
	if r.threads < 0 {
		return runtime.Options{}, usagef("--threads must not be negative")
	}
	lvl, err := runtime.ParseOptLevel(r.optLevel)
	if err != nil {
		return runtime.Options{}, usageError{err}
	}
	if err := runtime.Init(g.ORTLib); err != nil {
		return runtime.Options{}, err
	}
	return runtime.Options{ExecutionProvider: r.ep, IntraOpThreads: r.threads, GraphOptLevel: lvl}, nil
}
