// Package bench measures a model's latency and throughput in ONNX Runtime, or a TensorRT
// engine's (a .plan, in a build with the tensorrt tag), the way a person would script it by hand: warm up, run for a duration or a number of iterations per batch
// size, and report percentiles, throughput and the process's peak memory.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/trt"
	"github.com/optimctl/optimctl/pkg/validate"
)

// Options configures a benchmark. The yaml names are a recipe's bench step keys.
type Options struct {
	Model      string             `yaml:"model"`
	Data       string             `yaml:"data"` // one sample is taken from it; default "random:1"
	Preprocess string             `yaml:"preprocess"`
	Shapes     map[string][]int64 `yaml:"shapes"`
	Batches    []int              `yaml:"batch"` // default [1]
	Runtime    runtime.Options    `yaml:"runtime"`
	Duration   time.Duration      `yaml:"duration"`   // per batch size; default 5s unless Iterations is set
	Iterations int                `yaml:"iterations"` // per batch size; overrides Duration when > 0
	Warmup     int                `yaml:"warmup"`     // untimed runs per batch size (default 5)
	// Engine configures loading a TensorRT engine (a .plan Model).
	Engine trt.EngineOptions `yaml:"-" json:"-"`
}

// Result is one batch size's measurement.
type Result struct {
	Batch          int                  `json:"batch"`
	Iterations     int                  `json:"iterations"`
	LatencyMs      validate.Percentiles `json:"latency_ms"`
	ThroughputPerS float64              `json:"throughput_per_s"` // samples per second
	// GPUMs is a TensorRT engine's GPU time per run (CUDA events), beside the wall time of
	// LatencyMs, which includes the copies to and from the device.
	GPUMs *validate.Percentiles `json:"gpu_ms,omitempty"`
}

// Report is the bench report; the top-level latency keys describe the first batch size,
// as the command-line contract names them, and Results lists every batch size.
type Report struct {
	Model          string               `json:"model"`
	EP             string               `json:"ep"`
	Threads        int                  `json:"threads"`
	GraphOptLevel  string               `json:"graph_opt_level"`
	Batch          int                  `json:"batch"`
	LatencyMs      validate.Percentiles `json:"latency_ms"`
	ThroughputPerS float64              `json:"throughput_per_s"`
	PeakRSSBytes   int64                `json:"peak_rss_bytes"`
	Results        []Result             `json:"results"`
	// Runtime is what ran the model: "onnxruntime", or "tensorrt" for a .plan engine (then
	// ep is "tensorrt" and threads and graph_opt_level do not apply).
	Runtime string `json:"runtime"`
}

// Run benchmarks the model.
func Run(ctx context.Context, o Options) (*Report, error) {
	if len(o.Batches) == 0 {
		o.Batches = []int{1}
	}
	if o.Data == "" {
		o.Data = "random:1"
	}
	if o.Warmup == 0 {
		o.Warmup = 5
	}
	if o.Iterations <= 0 && o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	s, err := validate.OpenModel(o.Model, validate.ModelOptions{Runtime: o.Runtime, Engine: o.Engine})
	if err != nil {
		return nil, err // names the file already
	}
	defer s.Close()
	shapes := map[string][]int64{}
	for k, v := range o.Shapes {
		shapes[k] = v
	}
	src, err := calibration.Open(o.Data, s.Inputs(), calibration.Options{Preprocess: o.Preprocess, Shapes: shapes, Limit: 1})
	if err != nil {
		return nil, err
	}
	sample, err := src.Next()
	src.Close()
	if errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: no samples", o.Data)
	}
	if err != nil {
		return nil, err
	}
	r := &Report{Model: o.Model, EP: validate.EPName(o.Runtime), Threads: o.Runtime.IntraOpThreads, GraphOptLevel: string(o.Runtime.GraphOptLevel.Effective()), Runtime: s.Runtime()}
	if r.Runtime == validate.RuntimeTensorRT {
		r.EP, r.Threads, r.GraphOptLevel = validate.RuntimeTensorRT, 0, ""
	}
	for _, b := range o.Batches {
		in, err := tile(sample, b, s.Inputs())
		if err != nil {
			return nil, err
		}
		res, err := measure(ctx, s, in, b, o)
		if err != nil {
			return nil, err
		}
		r.Results = append(r.Results, res)
	}
	r.Batch, r.LatencyMs, r.ThroughputPerS = r.Results[0].Batch, r.Results[0].LatencyMs, r.Results[0].ThroughputPerS
	r.PeakRSSBytes = PeakRSS()
	return r, nil
}

func measure(ctx context.Context, s validate.Model, in map[string]*tensor.Tensor, batch int, o Options) (Result, error) {
	for i := 0; i < o.Warmup; i++ {
		if _, err := s.Run(in); err != nil {
			return Result{}, fmt.Errorf("%s, batch %d: %w", o.Model, batch, err)
		}
	}
	var lat, gpu []float64
	timer, _ := s.(validate.GPUTimer)
	start := time.Now()
	for i := 0; ; i++ {
		if o.Iterations > 0 && i >= o.Iterations {
			break
		}
		if o.Iterations <= 0 && time.Since(start) >= o.Duration && i > 0 {
			break
		}
		if err := ctx.Err(); err != nil {
			return Result{}, err
		}
		t0 := time.Now()
		if _, err := s.Run(in); err != nil {
			return Result{}, fmt.Errorf("%s, batch %d: %w", o.Model, batch, err)
		}
		lat = append(lat, float64(time.Since(t0).Nanoseconds())/1e6)
		if timer != nil {
			gpu = append(gpu, float64(timer.GPUTime().Nanoseconds())/1e6)
		}
	}
	wall := time.Since(start).Seconds()
	res := Result{Batch: batch, Iterations: len(lat), LatencyMs: validate.Summarize(lat),
		ThroughputPerS: float64(len(lat)*batch) / wall}
	if timer != nil {
		g := validate.Summarize(gpu)
		res.GPUMs = &g
	}
	return res, nil
}

// tile repeats a one-sample input n times along axis 0; the model's first dimension must be
// dynamic (or already n).
func tile(sample map[string]*tensor.Tensor, n int, specs []tensor.Spec) (map[string]*tensor.Tensor, error) {
	out := map[string]*tensor.Tensor{}
	for _, sp := range specs {
		v := sample[sp.Name]
		if v == nil {
			return nil, fmt.Errorf("input %q missing from the data", sp.Name)
		}
		if n == 1 {
			out[sp.Name] = v
			continue
		}
		if len(v.Shape) == 0 || v.Shape[0] != 1 {
			return nil, fmt.Errorf("input %q: batching needs a leading dimension of 1, have %v", sp.Name, v.Shape)
		}
		if len(sp.Shape) > 0 && sp.Shape[0] >= 0 && sp.Shape[0] != int64(n) {
			return nil, fmt.Errorf("input %q has a fixed batch dimension %d; batch %d needs a dynamic one", sp.Name, sp.Shape[0], n)
		}
		shape := append([]int64{int64(n)}, v.Shape[1:]...)
		t := &tensor.Tensor{DType: v.DType, Shape: shape}
		if v.DType == tensor.String {
			for i := 0; i < n; i++ {
				t.Strings = append(t.Strings, v.Strings...)
			}
		} else {
			t.Data = make([]byte, 0, len(v.Data)*n)
			for i := 0; i < n; i++ {
				t.Data = append(t.Data, v.Data...)
			}
		}
		out[sp.Name] = t
	}
	return out, nil
}

// PeakRSS is the process's peak resident set size (VmHWM) in bytes, or 0 where /proc is absent.
func PeakRSS() int64 { return procStatus("VmHWM:") }

// CurrentRSS is the process's resident set size (VmRSS) in bytes.
func CurrentRSS() int64 { return procStatus("VmRSS:") }

func procStatus(key string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line[len(key):])
			if len(f) >= 1 {
				kb, _ := strconv.ParseInt(f[0], 10, 64)
				return kb * 1024
			}
		}
	}
	return 0
}
