package int4

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteText prints the report for people; verbose adds one line per layer.
func WriteText(w io.Writer, r *Report, verbose bool) {
	sym := "asymmetric"
	if r.Symmetric {
		sym = "symmetric"
	}
	fmt.Fprintf(w, "%s → %s: %s %d-bit, group %d, %s, format %s\n", r.Input, r.Output, r.Algo, r.Bits, r.GroupSize, sym, r.Format)
	fmt.Fprintf(w, "  %d layers, %d weights quantized; size %d → %d bytes (%.2fx) in %.1fs\n",
		len(r.Layers), r.QuantizedParams, r.SizeBefore, r.SizeAfter, ratio(r.SizeBefore, r.SizeAfter), r.Seconds)
	if r.CalibSamples > 0 {
		fmt.Fprintf(w, "  calibration: %d samples, %d rows per input (%d padding rows left out), %d pass(es), %.1fs\n",
			r.CalibSamples, r.CalibRows, r.PaddingRows, r.CapturePasses, r.CaptureSeconds)
	}
	if r.Matched > 0 {
		fmt.Fprintf(w, "  %d checkpoint weights matched to calibration-model MatMuls\n", r.Matched)
	}
	if verbose && len(r.Layers) > 0 {
		tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  layer\tN×K\talgo\trtn error\terror\trel error\tawq scale")
		for _, l := range r.Layers {
			fmt.Fprintf(tw, "  %s\t%d×%d\t%s\t%.4g\t%.4g\t%.4g\t%s\n", l.Name, l.N, l.K, l.Algo, l.RTNError, l.Error, l.RelError, l.AWQScale)
		}
		tw.Flush()
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "  kept float: %s (%s)\n", s.Name, s.Reason)
	}
	for _, s := range r.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", s)
	}
}

func ratio(a, b int64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
