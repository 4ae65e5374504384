package validate

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints the report for a terminal.
func WriteText(w io.Writer, r *Report) {
	verdict := "PASSED"
	if !r.Passed {
		verdict = "FAILED"
	}
	fmt.Fprintf(w, "Validation %s: %s vs %s on %d samples (%s)\n\n", verdict, r.Candidate, r.Reference, r.Samples, runtimeNote(r))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "OUTPUT\tMAX ABS ERR\tMEAN ABS ERR\tCOSINE MIN\tCOSINE MEAN\tSNR dB\tTOP-1")
	for _, o := range r.Outputs {
		top1 := "-"
		if o.Top1Agreement != nil {
			top1 = fmt.Sprintf("%.2f%%", 100**o.Top1Agreement)
		}
		fmt.Fprintf(tw, "%s\t%.4g\t%.4g\t%.6f\t%.6f\t%.1f\t%s\n", o.Name, o.MaxAbsErr, o.MeanAbsErr, o.CosineMin, o.CosineMean, o.SNRdB, top1)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if r.AccuracyReference != nil {
		fmt.Fprintf(w, "Accuracy: reference %.2f%%, candidate %.2f%%\n", 100**r.AccuracyReference, 100**r.AccuracyCandidate)
	}
	ref, cand := r.LatencyMs["reference"], r.LatencyMs["candidate"]
	fmt.Fprintf(w, "Latency ms (p50/p95/p99): reference %.3f/%.3f/%.3f, candidate %.3f/%.3f/%.3f\n", ref.P50, ref.P95, ref.P99, cand.P50, cand.P95, cand.P99)
	for _, role := range []string{"reference", "candidate"} {
		if g, ok := r.GPUMs[role]; ok {
			fmt.Fprintf(w, "GPU ms of the %s TensorRT engine (p50/p95/p99): %.3f/%.3f/%.3f\n", role, g.P50, g.P95, g.P99)
		}
	}
	fmt.Fprintf(w, "Size: reference %d B, candidate %d B (ratio %.3f)\n", r.SizeReference, r.SizeCandidate, r.SizeRatio)
	for _, f := range r.FailedGates {
		fmt.Fprintf(w, "GATE FAILED: %s\n", f)
	}
}

// Markdown renders the report for a pull-request comment or CI artifact.
func Markdown(r *Report) string {
	var b strings.Builder
	verdict := "✅ passed"
	if !r.Passed {
		verdict = "❌ failed"
	}
	fmt.Fprintf(&b, "## optimctl validate: %s\n\n", verdict)
	fmt.Fprintf(&b, "- reference: `%s` (%d bytes)\n- candidate: `%s` (%d bytes, ratio %.3f)\n", r.Reference, r.SizeReference, r.Candidate, r.SizeCandidate, r.SizeRatio)
	fmt.Fprintf(&b, "- samples: %d; %s\n\n", r.Samples, runtimeNote(r))
	b.WriteString("| output | max abs err | mean abs err | cosine min | cosine mean | SNR dB | top-1 agreement |\n|---|---|---|---|---|---|---|\n")
	for _, o := range r.Outputs {
		top1 := "–"
		if o.Top1Agreement != nil {
			top1 = fmt.Sprintf("%.2f%%", 100**o.Top1Agreement)
		}
		fmt.Fprintf(&b, "| `%s` | %.4g | %.4g | %.6f | %.6f | %.1f | %s |\n", o.Name, o.MaxAbsErr, o.MeanAbsErr, o.CosineMin, o.CosineMean, o.SNRdB, top1)
	}
	if r.AccuracyReference != nil {
		fmt.Fprintf(&b, "\nAccuracy against labels: reference **%.2f%%**, candidate **%.2f%%**\n", 100**r.AccuracyReference, 100**r.AccuracyCandidate)
	}
	ref, cand := r.LatencyMs["reference"], r.LatencyMs["candidate"]
	b.WriteString("\n| latency (ms) | p50 | p95 | p99 | mean |\n|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| reference | %.3f | %.3f | %.3f | %.3f |\n| candidate | %.3f | %.3f | %.3f | %.3f |\n", ref.P50, ref.P95, ref.P99, ref.Mean, cand.P50, cand.P95, cand.P99, cand.Mean)
	for _, role := range []string{"reference", "candidate"} {
		if g, ok := r.GPUMs[role]; ok {
			fmt.Fprintf(&b, "| %s (GPU time) | %.3f | %.3f | %.3f | %.3f |\n", role, g.P50, g.P95, g.P99, g.Mean)
		}
	}
	if len(r.FailedGates) > 0 {
		b.WriteString("\n### Failed gates\n\n")
		for _, f := range r.FailedGates {
			fmt.Fprintf(&b, "- %s\n", f)
		}
	}
	return b.String()
}

// runtimeNote says what ran the models: ONNX Runtime's provider and level, and which model,
// if any, is a TensorRT engine.
func runtimeNote(r *Report) string {
	note := fmt.Sprintf("ONNX Runtime ep %s, graph optimisation %s", r.EP, r.GraphOptLevel)
	for _, role := range []string{"reference", "candidate"} {
		if r.Runtimes[role] == RuntimeTensorRT {
			note += "; " + role + ": TensorRT engine"
		}
	}
	return note
}
