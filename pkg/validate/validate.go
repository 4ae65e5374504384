package validate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"time"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/trt"
)

// Gates are the thresholds CI decides on; a nil gate is not checked.
type Gates struct {
	// MaxTop1Drop bounds the loss of top-1: accuracy_reference − accuracy_candidate with
	// labels, else 1 − top1_agreement.
	MaxTop1Drop *float64 `json:"max_top1_drop,omitempty" yaml:"max_top1_drop"`
	// MinCosine bounds the worst sample's cosine similarity of every output.
	MinCosine *float64 `json:"min_cosine,omitempty" yaml:"min_cosine"`
	// MaxAbsErr bounds the largest absolute error of every output.
	MaxAbsErr *float64 `json:"max_abs_err,omitempty" yaml:"max_abs_err"`
	// MinSNR bounds every output's signal-to-noise ratio in dB.
	MinSNR *float64 `json:"min_snr_db,omitempty" yaml:"min_snr_db"`
	// MaxSizeRatio bounds candidate size / reference size.
	MaxSizeRatio *float64 `json:"max_size_ratio,omitempty" yaml:"max_size_ratio"`
	// MaxLatencyRatio bounds candidate p50 / reference p50.
	MaxLatencyRatio *float64 `json:"max_latency_ratio,omitempty" yaml:"max_latency_ratio"`
}

// Options configures a validation run. The yaml names are a recipe's validate step keys.
type Options struct {
	Reference  string             `yaml:"reference"`
	Candidate  string             `yaml:"candidate"`
	Data       string             `yaml:"data"` // calibration.Open spec: .npz, folder, test-data folder, images, random:N
	Preprocess string             `yaml:"preprocess"`
	Shapes     map[string][]int64 `yaml:"shapes"`
	Limit      int                `yaml:"limit"`  // 0 = all samples
	Labels     string             `yaml:"labels"` // file of one class index per line, in sample order
	// ClassOutput names the output holding class scores; "" picks the first rank-2 float output.
	ClassOutput string          `yaml:"class_output"`
	Runtime     runtime.Options `yaml:"runtime"`
	Warmup      int             `yaml:"warmup"` // untimed runs of each model before measuring (default 3)
	Gates       Gates           `yaml:"gates"`
	// Progress, when set, is called after each sample.
	Progress func(done, total int) `yaml:"-" json:"-"`
	// Engine configures loading a TensorRT engine given as reference or candidate (.plan).
	Engine trt.EngineOptions `yaml:"-" json:"-"`
}

// Report is the validate report; its JSON keys are part of the command-line contract.
type Report struct {
	Reference         string                 `json:"reference"`
	Candidate         string                 `json:"candidate"`
	EP                string                 `json:"ep"`
	GraphOptLevel     string                 `json:"graph_opt_level"`
	Samples           int                    `json:"samples"`
	Outputs           []*OutputStats         `json:"outputs"`
	Top1Agreement     *float64               `json:"top1_agreement,omitempty"`
	AccuracyReference *float64               `json:"accuracy_reference,omitempty"`
	AccuracyCandidate *float64               `json:"accuracy_candidate,omitempty"`
	LatencyMs         map[string]Percentiles `json:"latency_ms"`
	SizeReference     int64                  `json:"size_reference"`
	SizeCandidate     int64                  `json:"size_candidate"`
	SizeRatio         float64                `json:"size_ratio"`
	Gates             Gates                  `json:"gates"`
	Passed            bool                   `json:"passed"`
	FailedGates       []string               `json:"failed_gates"`
	Seconds           float64                `json:"seconds"`
	// OverheadFraction is the share of wall time spent outside the two models' Run calls
	// (reading data, comparing outputs).
	OverheadFraction float64 `json:"overhead_fraction"`
	// Runtimes says what ran each model: "onnxruntime" or "tensorrt" (a .plan engine).
	Runtimes map[string]string `json:"runtimes"`
	// GPUMs is the GPU time of each TensorRT engine's runs (CUDA events), beside the wall
	// time of latency_ms, which includes the copies to and from the device.
	GPUMs map[string]Percentiles `json:"gpu_ms,omitempty"`
}

// Run validates Candidate against Reference.
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if o.Warmup == 0 {
		o.Warmup = 3
	}
	if IsEngine(o.Reference) && IsEngine(o.Candidate) {
		return nil, fmt.Errorf("%s and %s are both TensorRT engines: one engine can be open per process, so compare each with the ONNX model", o.Reference, o.Candidate)
	}
	// An engine is opened first: without TensorRT, or with a plan TensorRT refuses, that
	// fails at once rather than after ONNX Runtime has read the other model.
	mo := ModelOptions{Runtime: o.Runtime, Engine: o.Engine}
	var ref, cand Model
	type opening struct {
		role, path string
		to         *Model
	}
	order := []opening{{"reference", o.Reference, &ref}, {"candidate", o.Candidate, &cand}}
	if IsEngine(o.Candidate) {
		order[0], order[1] = order[1], order[0]
	}
	for _, x := range order {
		m, err := OpenModel(x.path, mo)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", x.role, err)
		}
		defer m.Close()
		*x.to = m
	}
	if err := sameSignature(ref, cand, o.Candidate); err != nil {
		return nil, err
	}
	src, err := calibration.Open(o.Data, ref.Inputs(), calibration.Options{Preprocess: o.Preprocess, Shapes: o.Shapes, Limit: o.Limit})
	if err != nil {
		return nil, err
	}
	defer src.Close()
	var labels []int
	if o.Labels != "" {
		if labels, err = calibration.ReadLabels(o.Labels); err != nil {
			return nil, err
		}
	}
	classOut, err := pickClassOutput(ref.Outputs(), o.ClassOutput)
	if err != nil {
		return nil, err
	}

	r := &Report{Reference: o.Reference, Candidate: o.Candidate, EP: EPName(o.Runtime),
		GraphOptLevel: string(o.Runtime.GraphOptLevel.Effective()), LatencyMs: map[string]Percentiles{}, Gates: o.Gates, FailedGates: []string{},
		Runtimes: map[string]string{"reference": ref.Runtime(), "candidate": cand.Runtime()}}
	gpuMs := map[string][]float64{}
	gpuTime := func(role string, m Model) {
		if g, ok := m.(GPUTimer); ok {
			gpuMs[role] = append(gpuMs[role], ms(g.GPUTime()))
		}
	}
	stats := map[string]*OutputStats{}
	for _, s := range ref.Outputs() {
		classes := 0
		if s.Name == classOut {
			classes = -1 // set from the first output's last dimension
		}
		st := newOutputStats(s.Name, classes)
		stats[s.Name] = st
		r.Outputs = append(r.Outputs, st)
	}
	var refMs, candMs []float64
	var inRun time.Duration
	var refHits, candHits, labelled int
	total := src.Len()
	samples, stop := prefetch(src)
	defer stop()
	loopStart := time.Now()
	var warm time.Duration
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next := <-samples
		sample, err := next.sample, next.err
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		if i == 0 {
			w0 := time.Now()
			for w := 0; w < o.Warmup; w++ {
				if _, err := ref.Run(sample); err != nil {
					return nil, fmt.Errorf("reference %s: %w", o.Reference, err)
				}
				if _, err := cand.Run(sample); err != nil {
					return nil, fmt.Errorf("candidate %s: %w", o.Candidate, err)
				}
			}
			warm = time.Since(w0)
		}
		t0 := time.Now()
		ro, err := ref.Run(sample)
		t1 := time.Now()
		if err != nil {
			return nil, fmt.Errorf("reference %s, sample %d: %w", o.Reference, i, err)
		}
		co, err := cand.Run(sample)
		t2 := time.Now()
		if err != nil {
			return nil, fmt.Errorf("candidate %s, sample %d: %w", o.Candidate, i, err)
		}
		inRun += t2.Sub(t0)
		refMs = append(refMs, ms(t1.Sub(t0)))
		candMs = append(candMs, ms(t2.Sub(t1)))
		gpuTime("reference", ref)
		gpuTime("candidate", cand)
		for _, st := range r.Outputs {
			rv, cv := ro[st.Name], co[st.Name]
			if cv == nil {
				return nil, fmt.Errorf("candidate %s: output %q missing", o.Candidate, st.Name)
			}
			if !slices.Equal(rv.Shape, cv.Shape) {
				return nil, fmt.Errorf("output %q: reference shape %v, candidate shape %v (sample %d)", st.Name, rv.Shape, cv.Shape, i)
			}
			if st.classes < 0 && len(rv.Shape) > 0 {
				st.classes = int(rv.Shape[len(rv.Shape)-1])
				st.classScore = st.classes >= 2
			}
			var a, b []float64
			if rv.DType == tensor.Float32 && cv.DType == tensor.Float32 {
				addSample(st, rv.Float32s(), cv.Float32s())
			} else {
				if a, err = rv.AsFloat64(); err != nil {
					return nil, fmt.Errorf("output %q: %w", st.Name, err)
				}
				if b, err = cv.AsFloat64(); err != nil {
					return nil, fmt.Errorf("output %q: %w", st.Name, err)
				}
				st.add(a, b)
			}
			if st.Name == classOut && labels != nil {
				if a == nil {
					a, _ = rv.AsFloat64()
					b, _ = cv.AsFloat64()
				}
				rows := len(a) / max(st.classes, 1)
				for k := 0; k < rows; k++ {
					idx := labelled
					if idx >= len(labels) {
						return nil, fmt.Errorf("%s: %d labels, but the data has more samples", o.Labels, len(labels))
					}
					lo, hi := k*st.classes, (k+1)*st.classes
					if argmax(a[lo:hi]) == labels[idx] {
						refHits++
					}
					if argmax(b[lo:hi]) == labels[idx] {
						candHits++
					}
					labelled++
				}
			}
		}
		r.Samples++
		if o.Progress != nil {
			o.Progress(r.Samples, total)
		}
	}
	if r.Samples == 0 {
		return nil, fmt.Errorf("%s: no samples", o.Data)
	}
	for _, st := range r.Outputs {
		st.finish()
		if st.Name == classOut {
			r.Top1Agreement = st.Top1Agreement
		}
	}
	if labels != nil {
		if labelled != len(labels) {
			return nil, fmt.Errorf("%s: %d labels for %d samples", o.Labels, len(labels), labelled)
		}
		ar, ac := float64(refHits)/float64(labelled), float64(candHits)/float64(labelled)
		r.AccuracyReference, r.AccuracyCandidate = &ar, &ac
	}
	r.LatencyMs["reference"] = Summarize(refMs)
	r.LatencyMs["candidate"] = Summarize(candMs)
	for role, v := range gpuMs {
		if r.GPUMs == nil {
			r.GPUMs = map[string]Percentiles{}
		}
		r.GPUMs[role] = Summarize(v)
	}
	r.SizeReference, r.SizeCandidate = modelSize(o.Reference), modelSize(o.Candidate)
	if r.SizeReference > 0 {
		r.SizeRatio = float64(r.SizeCandidate) / float64(r.SizeReference)
	}
	if loop := time.Since(loopStart) - warm; loop > 0 {
		r.OverheadFraction = math.Max(0, float64(loop-inRun)/float64(loop))
	}
	r.Seconds = time.Since(start).Seconds()
	r.applyGates()
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e6 }

// sameSignature checks that the candidate takes the same inputs and gives every output of the reference.
func sameSignature(ref, cand Model, candPath string) error {
	have := map[string]tensor.Spec{}
	for _, s := range cand.Inputs() {
		have[s.Name] = s
	}
	for _, s := range ref.Inputs() {
		c, ok := have[s.Name]
		if !ok {
			return fmt.Errorf("candidate %s: has no input %q", candPath, s.Name)
		}
		if c.DType != s.DType {
			return fmt.Errorf("candidate %s: input %q is %s, reference takes %s", candPath, s.Name, c.DType, s.DType)
		}
	}
	outs := map[string]bool{}
	for _, s := range cand.Outputs() {
		outs[s.Name] = true
	}
	for _, s := range ref.Outputs() {
		if !outs[s.Name] {
			return fmt.Errorf("candidate %s: has no output %q", candPath, s.Name)
		}
	}
	return nil
}

// pickClassOutput chooses the output that holds class scores: the named one, else the first
// float output of rank 2 (a batch of score vectors).
func pickClassOutput(outs []tensor.Spec, name string) (string, error) {
	if name != "" {
		for _, s := range outs {
			if s.Name == name {
				return name, nil
			}
		}
		return "", fmt.Errorf("class output %q is not an output of the model", name)
	}
	for _, s := range outs {
		if s.DType.IsFloat() && len(s.Shape) == 2 && (s.Shape[1] < 0 || s.Shape[1] >= 2) {
			return s.Name, nil
		}
	}
	return "", nil
}

func modelSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	size := st.Size()
	if d, err := os.Stat(path + ".data"); err == nil {
		size += d.Size()
	}
	return size
}

func (r *Report) applyGates() {
	g := r.Gates
	fail := func(format string, a ...any) { r.FailedGates = append(r.FailedGates, fmt.Sprintf(format, a...)) }
	if g.MaxTop1Drop != nil {
		switch {
		case r.AccuracyReference != nil:
			if drop := *r.AccuracyReference - *r.AccuracyCandidate; drop > *g.MaxTop1Drop {
				fail("max-top1-drop: accuracy fell %.4f (%.4f → %.4f) > %g", drop, *r.AccuracyReference, *r.AccuracyCandidate, *g.MaxTop1Drop)
			}
		case r.Top1Agreement != nil:
			if drop := 1 - *r.Top1Agreement; drop > *g.MaxTop1Drop {
				fail("max-top1-drop: top-1 agreement %.4f, drop %.4f > %g", *r.Top1Agreement, drop, *g.MaxTop1Drop)
			}
		default:
			fail("max-top1-drop: no class-score output and no labels to measure top-1 on")
		}
	}
	for _, o := range r.Outputs {
		if g.MinCosine != nil && (o.CosineMin < *g.MinCosine || math.IsNaN(o.CosineMin)) {
			fail("min-cosine: output %q worst-sample cosine %.6f < %g", o.Name, o.CosineMin, *g.MinCosine)
		}
		if g.MaxAbsErr != nil && !(o.MaxAbsErr <= *g.MaxAbsErr) {
			fail("max-abs-err: output %q max abs error %.6g > %g", o.Name, o.MaxAbsErr, *g.MaxAbsErr)
		}
		if g.MinSNR != nil && o.SNRdB < *g.MinSNR {
			fail("min-snr: output %q SNR %.2f dB < %g", o.Name, o.SNRdB, *g.MinSNR)
		}
	}
	if g.MaxSizeRatio != nil && r.SizeRatio > *g.MaxSizeRatio {
		fail("max-size-ratio: size ratio %.3f > %g", r.SizeRatio, *g.MaxSizeRatio)
	}
	if g.MaxLatencyRatio != nil {
		rp, cp := r.LatencyMs["reference"].P50, r.LatencyMs["candidate"].P50
		if rp > 0 && cp/rp > *g.MaxLatencyRatio {
			fail("max-latency-ratio: p50 %.3f ms / %.3f ms = %.3f > %g", cp, rp, cp/rp, *g.MaxLatencyRatio)
		}
	}
	r.Passed = len(r.FailedGates) == 0
}

// EPName reports the execution provider as a person would name it.
func EPName(o runtime.Options) string {
	if o.ExecutionProvider == "" {
		return runtime.ProviderCPU
	}
	return o.ExecutionProvider
}

type fetched struct {
	sample calibration.Sample
	err    error
}

// prefetch reads the next sample while the models run on the current one, so decoding
// images or files overlaps inference; one sample ahead keeps memory bounded.
func prefetch(src calibration.Source) (<-chan fetched, func()) {
	out := make(chan fetched, 1)
	done := make(chan struct{})
	go func() {
		defer close(out)
		for {
			s, err := src.Next()
			select {
			case out <- fetched{s, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	stopped := false
	return out, func() {
		if !stopped {
			stopped = true
			close(done)
			for range out { // wait for the reader to finish before the source is closed
			}
		}
	}
}
