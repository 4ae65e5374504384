package bench

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// WriteText prints the report for a terminal.
func WriteText(w io.Writer, r *Report) {
	fmt.Fprintf(w, "%s on ONNX Runtime (ep %s, intra-op threads %d, graph optimisation %s)\n\n", r.Model, r.EP, r.Threads, r.GraphOptLevel)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BATCH\tRUNS\tP50 ms\tP95 ms\tP99 ms\tMEAN ms\tSAMPLES/s")
	for _, x := range r.Results {
		l := x.LatencyMs
		fmt.Fprintf(tw, "%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\n", x.Batch, x.Iterations, l.P50, l.P95, l.P99, l.Mean, x.ThroughputPerS)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nPeak RSS: %.1f MiB\n", float64(r.PeakRSSBytes)/(1<<20))
}
