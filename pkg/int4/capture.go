package int4

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	goruntime "runtime"
	"slices"
	"time"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// captureSpec asks for the statistics of one layer input (a MatMul's A).
type captureSpec struct {
	name    string
	k       int
	hessian bool // GPTQ (and error reports): the K×K Hessian
	sample  int  // AWQ: rows to keep (reservoir), 0 for none
}

func (s captureSpec) bytes() int64 {
	var b int64
	if s.hessian {
		b += int64(s.k) * int64(s.k) * 8 // float64 sum
		b += int64(s.k) * 1024 * 4       // transposed chunk scratch
	}
	return b + int64(s.sample)*int64(s.k)*4
}

// inputStats are the statistics of one layer input over the calibration data.
type inputStats struct {
	k       int
	h       *quant.Hessian
	sample  *reservoir
	rows    int64 // activation rows seen (after masking)
	dropped int64 // rows left out as padding
}

// reservoir keeps a uniform sample of at most max rows of a stream (Vitter's algorithm R)
// with a generator seeded from the tensor name, so the sample is the same on every run.
type reservoir struct {
	k, max int
	rows   []float32
	n      int   // rows held
	seen   int64 // rows offered
	rng    *rand.Rand
}

func newReservoir(name string, k, max int) *reservoir {
	h := fnv.New64a()
	h.Write([]byte(name))
	return &reservoir{k: k, max: max, rng: rand.New(rand.NewPCG(h.Sum64(), 0x1f4))}
}

func (r *reservoir) add(row []float32) {
	r.seen++
	if r.n < r.max {
		r.rows = append(r.rows, row...)
		r.n++
		return
	}
	if j := r.rng.Int64N(r.seen); j < int64(r.max) {
		copy(r.rows[int(j)*r.k:(int(j)+1)*r.k], row)
	}
}

// statsCache keeps captured statistics between runs (tests quantize one model many ways).
// The statistics are read-only once captured, so runs can share them.
type statsCache struct {
	stats   map[string]*inputStats
	samples int
}

func (c *statsCache) key(modelPath string, s captureSpec, o *Options) string {
	return fmt.Sprintf("%s|%s|%d|%d|%s|%v|%s|%d|%t|%d", modelPath, o.Calib, o.CalibLimit, o.CalibBatch, o.MaskInput, o.Shapes, s.name, s.k, s.hessian, s.sample)
}

// captureResult is what a capture run gathered.
type captureResult struct {
	stats   map[string]*inputStats
	samples int // calibration samples (batches) per pass
	passes  int
	seconds float64
}

// capture streams the calibration data through the model at modelPath once per pass and
// accumulates, batch by batch, the statistics of each requested tensor: memory is the
// statistics (O(K²) per GPTQ input, the bounded row sample per AWQ input) plus one batch of
// activations, never the whole activation history. Inputs are spread over passes so that the
// statistics of one pass fit in o.MaxCaptureBytes.
func capture(ctx context.Context, m *onnx.Model, modelPath string, specs []captureSpec, o *Options) (*captureResult, error) {
	start := time.Now()
	res := &captureResult{stats: map[string]*inputStats{}}
	if c := o.cache; c != nil {
		var todo []captureSpec
		for _, s := range specs {
			if st, ok := c.stats[c.key(modelPath, s, o)]; ok {
				res.stats[s.name] = st
				res.samples = c.samples
			} else {
				todo = append(todo, s)
			}
		}
		specs = todo
	}
	if len(specs) == 0 {
		return res, nil
	}
	inputs := m.InputSpecs()
	isInput := map[string]bool{}
	for _, in := range inputs {
		isInput[in.Name] = true
	}
	mask := o.MaskInput
	if mask == "" && isInput["attention_mask"] {
		mask = "attention_mask"
	}
	if mask == "-" {
		mask = ""
	}
	if mask != "" && !isInput[mask] {
		return nil, fmt.Errorf("mask input %q: the model has no such input", mask)
	}
	src, err := calibration.Open(o.Calib, inputs, calibration.Options{Shapes: o.Shapes, Limit: o.CalibLimit, Batch: o.CalibBatch})
	if err != nil {
		return nil, fmt.Errorf("calibration data: %w", err)
	}
	defer src.Close()

	// Passes: consecutive specs whose statistics fit the budget together.
	var passes [][]captureSpec
	var cur []captureSpec
	var curBytes int64
	for _, s := range specs {
		b := s.bytes()
		if len(cur) > 0 && curBytes+b > o.MaxCaptureBytes {
			passes = append(passes, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, s)
		curBytes += b
	}
	passes = append(passes, cur)
	res.passes = len(passes)

	for pi, pass := range passes {
		if pi > 0 {
			if err := src.Reset(); err != nil {
				return nil, fmt.Errorf("calibration data: %w", err)
			}
		}
		n, err := capturePass(ctx, m, pass, isInput, mask, src, o, res.stats)
		if err != nil {
			return nil, err
		}
		if o.Log != nil {
			o.Log.Info("captured layer inputs", "pass", pi+1, "of", len(passes), "tensors", len(pass), "samples", n)
		}
		res.samples = n
	}
	for _, s := range specs {
		if st := res.stats[s.name]; st.rows == 0 {
			return nil, fmt.Errorf("calibration data gave no rows for %q (all padding?)", s.name)
		}
	}
	if c := o.cache; c != nil {
		for _, s := range specs {
			c.stats[c.key(modelPath, s, o)] = res.stats[s.name]
		}
		c.samples = res.samples
	}
	res.seconds = time.Since(start).Seconds()
	return res, nil
}

func capturePass(ctx context.Context, m *onnx.Model, pass []captureSpec, isInput map[string]bool, mask string,
	src calibration.Source, o *Options, stats map[string]*inputStats) (int, error) {
	var extra []string
	for _, s := range pass {
		if !isInput[s.name] {
			extra = append(extra, s.name)
		}
	}
	var sess *runtime.Session
	if len(extra) > 0 {
		ro := o.Runtime
		if ro.ExternalDataDir == "" {
			ro.ExternalDataDir = m.Dir
		}
		// A fixed thread count (the Hessians, hence the codes, must not depend on the
		// machine's cores) and no spinning: ONNX Runtime's pool threads spinning after each
		// run starved the Hessian accumulation that follows (on 2 cores: 13 s instead of
		// 4 s for MiniLM on 8192 tokens).
		ro = ro.Reproducible()
		// Only what the captured tensors depend on, with them as the outputs (see
		// captureModel); the bytes are garbage once ONNX Runtime has read them.
		b, err := captureModel(m, extra)
		if err != nil {
			return 0, err
		}
		sess, err = runtime.NewSession(b, ro)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", m.Path, err)
		}
		defer sess.Close()
		// ONNX Runtime holds its own copy now: collect the serialized model before the
		// statistics are allocated, so that the heap's growth target is set by what stays.
		goruntime.GC()
	}
	// The statistics, allocated once the session exists.
	for _, s := range pass {
		st := &inputStats{k: s.k}
		if s.hessian {
			st.h = quant.NewHessian(s.k)
		}
		if s.sample > 0 {
			st.sample = newReservoir(s.name, s.k, s.sample)
		}
		stats[s.name] = st
	}
	samples := 0
	for {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		smp, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("calibration data: %w", err)
		}
		got := map[string]*tensor.Tensor{}
		if sess != nil {
			if got, err = sess.Run(smp, extra...); err != nil {
				return 0, fmt.Errorf("calibration sample %d: %w", samples, err)
			}
		}
		keep, err := keepRows(smp, mask)
		if err != nil {
			return 0, err
		}
		for _, s := range pass {
			t := got[s.name]
			if t == nil {
				t = smp[s.name]
			}
			if t == nil {
				return 0, fmt.Errorf("calibration sample %d: no value for %q", samples, s.name)
			}
			if err := stats[s.name].add(s.name, t, keep); err != nil {
				return 0, fmt.Errorf("calibration sample %d: %w", samples, err)
			}
		}
		samples++
		if o.Progress != nil {
			o.Progress("capturing", samples, src.Len())
		}
	}
	if samples == 0 {
		return 0, fmt.Errorf("calibration data %s holds no samples", o.Calib)
	}
	return samples, nil
}

// keepRows returns, per [batch·seq] position, whether it is a real token (nil: keep all).
func keepRows(smp calibration.Sample, mask string) ([]bool, error) {
	if mask == "" {
		return nil, nil
	}
	t := smp[mask]
	if t == nil {
		return nil, nil
	}
	v, err := t.AsFloat64()
	if err != nil {
		return nil, fmt.Errorf("mask input %q: %w", mask, err)
	}
	keep := make([]bool, len(v))
	for i, x := range v {
		keep[i] = x != 0
	}
	return keep, nil
}

// add folds one batch of activations [..., K] into the statistics.
func (st *inputStats) add(name string, t *tensor.Tensor, keep []bool) error {
	if len(t.Shape) == 0 || t.Shape[len(t.Shape)-1] != int64(st.k) {
		return fmt.Errorf("tensor %q has shape %v, want last dimension %d", name, t.Shape, st.k)
	}
	x, err := t.AsFloat32()
	if err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	rows := len(x) / st.k
	if keep != nil && len(keep) == rows && slices.Contains(keep, false) {
		dst := x[:0]
		for r := 0; r < rows; r++ {
			if keep[r] {
				dst = append(dst, x[r*st.k:(r+1)*st.k]...)
			}
		}
		st.dropped += int64(rows - len(dst)/st.k)
		x, rows = dst, len(dst)/st.k
	}
	if rows == 0 {
		return nil
	}
	if st.h != nil {
		if err := st.h.Add(x, rows); err != nil {
			return fmt.Errorf("tensor %q: %w", name, err)
		}
	}
	if st.sample != nil {
		for r := 0; r < rows; r++ {
			row := x[r*st.k : (r+1)*st.k]
			for _, v := range row {
				if v-v != 0 {
					return fmt.Errorf("tensor %q: non-finite activation %v", name, v)
				}
			}
			st.sample.add(row)
		}
	}
	st.rows += int64(rows)
	return nil
}
