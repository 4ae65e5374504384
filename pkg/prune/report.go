package prune

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// Report is the prune report. input, output, nodes_before, nodes_after, size_before,
// size_after, seconds and sparsity are part of the command-line contract.
type Report struct {
	Input          string  `json:"input"`
	Output         string  `json:"output"`
	Method         string  `json:"method"`
	TargetSparsity float64 `json:"target_sparsity"`
	Global         bool    `json:"global"`
	Norm           int     `json:"norm,omitempty"`
	NodesBefore    int     `json:"nodes_before"`
	NodesAfter     int     `json:"nodes_after"`
	SizeBefore     int64   `json:"size_before"`
	SizeAfter      int64   `json:"size_after"`
	Seconds        float64 `json:"seconds"`
	// Sparsity is the achieved fraction of zero weights over the pruned tensors (magnitude,
	// 2:4); for structured pruning, the fraction of those tensors' elements removed.
	Sparsity float64 `json:"sparsity"`
	// ParametersBefore/After count initializer elements, after Constant and ConstantOfShape
	// nodes were turned into initializers (so both sides count the same things).
	ParametersBefore   int64 `json:"parameters_before"`
	ParametersAfter    int64 `json:"parameters_after"`
	ConstantsConverted int   `json:"constants_converted"`
	// ChannelsBefore/After sum the channels of the structured groups that could be pruned.
	ChannelsBefore int `json:"channels_before,omitempty"`
	ChannelsAfter  int `json:"channels_after,omitempty"`
	// Compensated counts the layers whose bias absorbed the mean of the channels they lost,
	// measured on CalibSamples calibration samples (structured with calibration data).
	Compensated  int            `json:"compensated,omitempty"`
	CalibSamples int            `json:"calib_samples,omitempty"`
	Tensors      []TensorReport `json:"tensors"`
	Groups       []GroupReport  `json:"groups,omitempty"`
	Skipped      []Skip         `json:"skipped"`
}

// TensorReport is one pruned tensor.
type TensorReport struct {
	Name     string  `json:"name"`
	Node     string  `json:"node"`
	OpType   string  `json:"op_type"`
	Shape    []int64 `json:"shape"`
	Elements int64   `json:"elements"`
	// Zeros and Sparsity describe the tensor after pruning (magnitude, 2:4).
	Zeros    int64   `json:"zeros"`
	Sparsity float64 `json:"sparsity"`
	// NMAxis is the axis 2:4 groups run along; Conforms24 says whether every group of 4
	// along it holds at most 2 non-zeros.
	NMAxis     *int  `json:"nm_axis,omitempty"`
	Conforms24 *bool `json:"conforms_2_4,omitempty"`
	// ShapeAfter and ElementsAfter describe a tensor structured pruning sliced.
	ShapeAfter    []int64 `json:"shape_after,omitempty"`
	ElementsAfter int64   `json:"elements_after,omitempty"`
}

// GroupReport is one structured channel group: output channels that must be kept or
// removed together because an Add, Mul, Concat or depthwise conv ties them.
type GroupReport struct {
	Producers []string `json:"producers"`
	Channels  int      `json:"channels"`
	Kept      int      `json:"kept"`
	Removed   []int    `json:"removed,omitempty"`
}

// Skip names a tensor or a channel group that was left alone, and why.
type Skip struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// WriteText prints the human report; verbose adds every tensor and group.
func WriteText(w io.Writer, r *Report, verbose bool) {
	what := "zero weights"
	if r.Method == string(Structured) {
		what = "of the pruned tensors' weights removed"
	}
	scope := "per tensor"
	switch {
	case r.Method == string(Structured) && r.Global:
		scope = "global channel ranking"
	case r.Method == string(Structured):
		scope = "per channel group"
	case r.Global:
		scope = "global threshold"
	case r.Method == string(TwoFour):
		scope = "2 of every 4"
	}
	fmt.Fprintf(w, "Pruned %s -> %s: method %s (%s), target %.1f%%, achieved %.2f%% %s over %d tensors\n",
		r.Input, r.Output, r.Method, scope, 100*r.TargetSparsity, 100*r.Sparsity, what, len(r.Tensors))
	fmt.Fprintf(w, "Parameters %d -> %d (%.1f%%), nodes %d -> %d, size %d -> %d bytes, %.2fs\n",
		r.ParametersBefore, r.ParametersAfter, pct(r.ParametersAfter, r.ParametersBefore),
		r.NodesBefore, r.NodesAfter, r.SizeBefore, r.SizeAfter, r.Seconds)
	if r.ConstantsConverted > 0 {
		fmt.Fprintf(w, "%d Constant/ConstantOfShape nodes became initializers\n", r.ConstantsConverted)
	}
	if r.Method == string(Structured) {
		fmt.Fprintf(w, "Channels in prunable groups %d -> %d (%d groups)\n", r.ChannelsBefore, r.ChannelsAfter, len(r.Groups))
	}
	if verbose {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		if r.Method == string(Structured) {
			fmt.Fprintln(tw, "TENSOR\tNODE\tSHAPE\tAFTER")
			for _, t := range r.Tensors {
				fmt.Fprintf(tw, "%s\t%s\t%v\t%v\n", t.Name, t.Node, t.Shape, t.ShapeAfter)
			}
		} else {
			fmt.Fprintln(tw, "TENSOR\tNODE\tSHAPE\tSPARSITY\t2:4")
			for _, t := range r.Tensors {
				nm := "-"
				if t.Conforms24 != nil {
					nm = fmt.Sprint(*t.Conforms24)
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%.2f%%\t%s\n", t.Name, t.Node, t.Shape, 100*t.Sparsity, nm)
			}
		}
		tw.Flush()
		for _, g := range r.Groups {
			fmt.Fprintf(w, "group %v: %d -> %d channels\n", g.Producers, g.Channels, g.Kept)
		}
	}
	if n := len(r.Skipped); n > 0 {
		fmt.Fprintf(w, "Skipped %d:\n", n)
		limit := n
		if !verbose && limit > 10 {
			limit = 10
		}
		for _, s := range r.Skipped[:limit] {
			fmt.Fprintf(w, "  %s: %s\n", s.Name, s.Reason)
		}
		if limit < n {
			fmt.Fprintf(w, "  ... %d more (-v lists them all)\n", n-limit)
		}
	}
}

func pct(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return 100 * float64(a) / float64(b)
}
