package main

import (
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/optimctl/optimctl/pkg/optimize"
	"github.com/optimctl/optimctl/pkg/passes"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newOptimizeCmd) }

// optimizeFlags holds the raw flag values of `optimctl optimize`.
type optimizeFlags struct {
	output       string
	passes       []string
	shapes       []string
	maxFoldBytes int64
	noShapes     bool
	list         bool
}

func newOptimizeCmd(g *globals) *cobra.Command {
	fl := &optimizeFlags{}
	cmd := &cobra.Command{
		Use:   "optimize MODEL -o OUT",
		Short: "Fold constants and BatchNorm, fuse layers and clean up the graph of an ONNX model",
		Long: `Runs graph passes to a fixed point: constant folding (shape arithmetic included),
BatchNormalization and per-channel Mul/Add folded into Conv/Gemm weights, MatMul+Add into Gemm,
hard-swish fusion, no-op and Identity/Dropout removal, Transpose/Reshape chain merging,
duplicate initializer and node merging, dead-code removal. Outputs stay equal up to float
rounding. --shape fixes dynamic input dimensions so shape computations fold too; the written
model then declares (and only accepts) those shapes.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if fl.list {
				return nil
			}
			return exactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if fl.list {
				return listPasses(g)
			}
			o, err := fl.toOptions()
			if err != nil {
				return err
			}
			rep, err := optimize.File(args[0], fl.output, o)
			if err != nil {
				return err
			}
			if g.JSON {
				return g.emitJSON(rep)
			}
			return writeOptimizeText(g, rep)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&fl.output, "output", "o", "", "output model path (required)")
	f.StringSliceVar(&fl.passes, "passes", nil, "comma-separated passes to run (default: all default passes; see --list-passes)")
	f.StringArrayVar(&fl.shapes, "shape", nil, "NAME=d0,d1,... fixes the dynamic dimensions of an input (repeatable; -1 keeps one dynamic)")
	f.Int64Var(&fl.maxFoldBytes, "max-fold-bytes", 0, "do not fold a constant larger than this many bytes (0 = no limit)")
	f.BoolVar(&fl.noShapes, "no-shapes", false, "do not write inferred shapes into value_info")
	f.BoolVar(&fl.list, "list-passes", false, "list the passes and exit")
	return cmd
}

// toOptions validates the flags.
func (fl *optimizeFlags) toOptions() (optimize.Options, error) {
	if fl.output == "" {
		return optimize.Options{}, usagef("optimize needs -o OUT")
	}
	if fl.maxFoldBytes < 0 {
		return optimize.Options{}, usagef("--max-fold-bytes must not be negative")
	}
	shapes, err := parseShapeFlags(fl.shapes)
	if err != nil {
		return optimize.Options{}, err
	}
	o := optimize.Options{InputShapes: shapes, MaxFoldBytes: fl.maxFoldBytes, NoShapes: fl.noShapes}
	if fl.passes != nil {
		o.Passes = fl.passes
		if _, err := passes.Lookup(fl.passes); err != nil {
			return o, usageError{err}
		}
	}
	return o, nil
}

// parseShapeFlags reads repeated NAME=d0,d1,... values.
func parseShapeFlags(vals []string) (map[string][]int64, error) {
	if len(vals) == 0 {
		return nil, nil
	}
	out := map[string][]int64{}
	for _, v := range vals {
		name, dims, ok := strings.Cut(v, "=")
		if !ok || name == "" || dims == "" {
			return nil, usagef("--shape %q: want NAME=d0,d1,...", v)
		}
		var ds []int64
		for _, s := range strings.Split(dims, ",") {
			d, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil || d < -1 {
				return nil, usagef("--shape %q: dimension %q is not a size (or -1)", v, s)
			}
			ds = append(ds, d)
		}
		if _, dup := out[name]; dup {
			return nil, usagef("--shape %q: input %q given twice", v, name)
		}
		out[name] = ds
	}
	return out, nil
}

func listPasses(g *globals) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PASS\tDEFAULT\tWHAT")
	for _, p := range passes.All() {
		def := "no"
		if p.Default {
			def = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, def, p.Doc)
	}
	return tw.Flush()
}

func writeOptimizeText(g *globals, r *optimize.Report) error {
	tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "%s -> %s\n", r.Input, r.Output)
	fmt.Fprintf(tw, "nodes\t%d -> %d\n", r.NodesBefore, r.NodesAfter)
	fmt.Fprintf(tw, "size\t%s -> %s\n", optimizeSizeText(r.SizeBefore), optimizeSizeText(r.SizeAfter))
	fmt.Fprintf(tw, "time\t%.3fs, %d round(s)\n", r.Seconds, r.Rounds)
	fmt.Fprintln(tw, "\nPASS\tCHANGES")
	shown := 0
	for _, p := range r.Passes {
		if p.Changes > 0 || g.Verbose {
			fmt.Fprintf(tw, "%s\t%d\n", p.Name, p.Changes)
			shown++
		}
	}
	if shown == 0 {
		fmt.Fprintln(tw, "(no pass changed anything)")
	}
	return tw.Flush()
}

// optimizeSizeText prints a size in B/KB/MB/GB (powers of 1024).
func optimizeSizeText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "KMGT"[exp])
}
