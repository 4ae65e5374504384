package bench

import (
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/optimctl/optimctl/pkg/validate"
)

// WriteText prints the report for a terminal.
func WriteText(w io.Writer, r *Report) {
	engine := r.Runtime == validate.RuntimeTensorRT
	if engine {
		fmt.Fprintf(w, "%s: TensorRT engine (latency from host inputs to host outputs; GPU time from CUDA events)\n\n", r.Model)
	} else {
		fmt.Fprintf(w, "%s on ONNX Runtime (ep %s, intra-op threads %d, graph optimisation %s)\n\n", r.Model, r.EP, r.Threads, r.GraphOptLevel)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := "BATCH\tRUNS\tP50 ms\tP95 ms\tP99 ms\tMEAN ms\tSAMPLES/s"
	if engine {
		head += "\tGPU P50 ms\tGPU P99 ms"
	}
	fmt.Fprintln(tw, head)
	for _, x := range r.Results {
		l := x.LatencyMs
		fmt.Fprintf(tw, "%d\t%d\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f", x.Batch, x.Iterations, l.P50, l.P95, l.P99, l.Mean, x.ThroughputPerS)
		if engine && x.GPUMs != nil {
			fmt.Fprintf(tw, "\t%.3f\t%.3f", x.GPUMs.P50, x.GPUMs.P99)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nPeak RSS: %.1f MiB\n", float64(r.PeakRSSBytes)/(1<<20))
}
