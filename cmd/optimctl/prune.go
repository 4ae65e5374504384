package main

import (
	"strings"

	"github.com/optimctl/optimctl/pkg/prune"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newPruneCmd) }

// pruneFlags holds the raw flag values of `optimctl prune`.
type pruneFlags struct {
	output, method   string
	sparsity         float64
	global           bool
	norm             int
	multiple         int
	include, exclude []string
	externalData     bool
}

func newPruneCmd(g *globals) *cobra.Command {
	fl := &pruneFlags{}
	cmd := &cobra.Command{
		Use:   "prune MODEL -o OUT --method magnitude|structured|2:4 --sparsity F",
		Short: "Zero or remove weights: magnitude (per tensor or --global), 2:4 sparsity, or structured channel pruning",
		Long: `Prunes the weights of Conv, ConvTranspose, Gemm and MatMul layers (--include/--exclude
change the choice by node name, initializer name or op type; globs allowed).

  magnitude   zero the fraction --sparsity of smallest |w| in each tensor, or with --global
              below one threshold over all chosen tensors (the file keeps its size)
  2:4         keep the 2 largest |w| of every 4 consecutive weights along the input axis
              (Conv: input channels, per output channel and kernel position; MatMul: K)
  structured  delete the fraction --sparsity of output channels of each channel group,
              ranked by the L1 or L2 norm (--norm) of the weights producing them; the
              consumers (next layers, BatchNorm, biases, depthwise convs, residual Adds, SE
              blocks, Concat, Flatten/Reshape before a Gemm) shrink with them. Groups that
              cannot change are listed with the reason. The model gets smaller and faster;
              --channel-multiple keeps channel counts aligned so kernels stay fast.
See docs/prune.md for the rules, the report and measurements.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := fl.toOptions(cmd, args[0])
			if err != nil {
				return err
			}
			rep, err := prune.Run(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.JSON {
				return g.emitJSON(rep)
			}
			prune.WriteText(g.stdout, rep, g.Verbose)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&fl.output, "output", "o", "", "pruned model to write")
	f.StringVar(&fl.method, "method", "", "magnitude, structured or 2:4")
	f.Float64Var(&fl.sparsity, "sparsity", 0, "fraction to remove, in [0, 1): of each tensor's weights, or of each group's channels (structured)")
	f.BoolVar(&fl.global, "global", false, "one ranking over all chosen tensors (magnitude) or all channel groups (structured)")
	f.IntVar(&fl.norm, "norm", 1, "structured: rank channels by the L1 or L2 norm of their weights (1 or 2)")
	f.IntVar(&fl.multiple, "channel-multiple", 8, "structured: a channel group whose size is a multiple of N keeps a multiple of N (fast kernels block channels by 8 or 16); 1 disables")
	f.StringSliceVar(&fl.include, "include", nil, "only prune these nodes, initializers or op types (comma-separated, globs allowed)")
	f.StringSliceVar(&fl.exclude, "exclude", nil, "never prune these nodes, initializers or op types (comma-separated, globs allowed)")
	f.BoolVar(&fl.externalData, "external-data", false, "write tensors to OUT.data beside the model")
	return cmd
}

func (fl *pruneFlags) toOptions(cmd *cobra.Command, model string) (prune.Options, error) {
	// Checked here rather than with MarkFlagRequired, whose error is not a usage error (exit 2).
	if fl.output == "" {
		return prune.Options{}, usagef("-o/--output is required")
	}
	if fl.method == "" {
		return prune.Options{}, usagef("--method is required (magnitude, structured or 2:4)")
	}
	o := prune.Options{Input: model, Output: fl.output, Method: prune.Method(strings.ToLower(fl.method)),
		Sparsity: fl.sparsity, Global: fl.global, Norm: fl.norm, ChannelMultiple: fl.multiple, Include: fl.include, Exclude: fl.exclude,
		ExternalData: fl.externalData}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	if o.Method != prune.TwoFour && !cmd.Flags().Changed("sparsity") {
		return o, usagef("--sparsity is required for --method %s", fl.method)
	}
	return o, nil
}
