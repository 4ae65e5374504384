package recipe

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/optimctl/optimctl/pkg/bench"
	"github.com/optimctl/optimctl/pkg/inspect"
	"github.com/optimctl/optimctl/pkg/optimize"
	"github.com/optimctl/optimctl/pkg/prune"
	"github.com/optimctl/optimctl/pkg/quantize"
	"github.com/optimctl/optimctl/pkg/validate"
	"go.yaml.in/yaml/v3"
)

// stepEnv is what a step sees of the pipeline: its resolved input and output paths and a
// resolver for names of earlier steps.
type stepEnv struct {
	input, output string
	resolve       func(string) string // step name / "model" / relative path → path
}

// result is what a step hands back to the runner.
type result struct {
	report any
	failed []string // gates not met
}

type kind struct {
	ext    string // extension of the model the step writes; "" when it writes none
	decode func(n *yaml.Node, path string) (any, error)
	run    func(ctx context.Context, e *stepEnv, opts any) (result, error)
	// files lists the option values that are paths, for resolving and fingerprinting.
	files func(opts any) []*string
}

var kinds = map[string]kind{}

func kindNames() []string {
	var k []string
	for n := range kinds {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// decodeAs builds a kind's decoder for options of type T.
func decodeAs[T any]() func(*yaml.Node, string) (any, error) {
	return func(n *yaml.Node, path string) (any, error) {
		v := new(T)
		if n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") {
			return v, nil
		}
		if err := strictDecode(n, v, path, "step options"); err != nil {
			return nil, err
		}
		return v, nil
	}
}

// benchStep adds gates to the bench command's options.
type benchStep struct {
	bench.Options     `yaml:",inline"`
	MaxP50Ms          float64 `yaml:"max_p50_ms"`
	MaxP99Ms          float64 `yaml:"max_p99_ms"`
	MinThroughputPerS float64 `yaml:"min_throughput_per_s"`
}

type inspectStep struct{}

func isFileSpec(s string) bool { return s != "" && !strings.HasPrefix(s, "random:") }

func init() {
	kinds["inspect"] = kind{
		decode: decodeAs[inspectStep](),
		run: func(ctx context.Context, e *stepEnv, _ any) (result, error) {
			r, err := inspect.File(e.input)
			return result{report: r}, err
		},
		files: func(any) []*string { return nil },
	}
	kinds["optimize"] = kind{
		ext:    ".onnx",
		decode: decodeAs[optimize.Options](),
		files:  func(any) []*string { return nil },
		run: func(ctx context.Context, e *stepEnv, o any) (result, error) {
			r, err := optimize.File(e.input, e.output, *o.(*optimize.Options))
			return result{report: r}, err
		},
	}
	kinds["prune"] = kind{
		ext:    ".onnx",
		decode: decodeAs[prune.Options](),
		files:  func(any) []*string { return nil },
		run: func(ctx context.Context, e *stepEnv, o any) (result, error) {
			p := *o.(*prune.Options)
			p.Input, p.Output = e.input, e.output
			r, err := prune.Run(ctx, p)
			return result{report: r}, err
		},
	}
	kinds["quantize"] = kind{
		ext:    ".onnx",
		decode: decodeAs[quantize.Options](),
		files: func(o any) []*string {
			q := o.(*quantize.Options)
			var out []*string
			if isFileSpec(q.Calib) {
				out = append(out, &q.Calib)
			}
			if isFileSpec(q.Data) {
				out = append(out, &q.Data)
			}
			return out
		},
		run: func(ctx context.Context, e *stepEnv, o any) (result, error) {
			r, err := quantize.File(ctx, e.input, e.output, *o.(*quantize.Options))
			return result{report: r}, err
		},
	}
	kinds["validate"] = kind{
		decode: decodeAs[validate.Options](),
		files: func(o any) []*string {
			v := o.(*validate.Options)
			out := []*string{&v.Reference, &v.Candidate, &v.Labels}
			if isFileSpec(v.Data) {
				out = append(out, &v.Data)
			}
			return out
		},
		run: func(ctx context.Context, e *stepEnv, o any) (result, error) {
			v := *o.(*validate.Options)
			if v.Reference == "" {
				v.Reference = e.resolve("model")
			}
			if v.Candidate == "" {
				v.Candidate = e.input
			}
			if v.Data == "" {
				return result{}, fmt.Errorf("validate needs data: (an .npz, a folder, images or random:N)")
			}
			r, err := validate.Run(ctx, v)
			if err != nil {
				return result{}, err
			}
			return result{report: r, failed: r.FailedGates}, nil
		},
	}
	kinds["bench"] = kind{
		decode: decodeAs[benchStep](),
		files: func(o any) []*string {
			b := o.(*benchStep)
			out := []*string{&b.Model}
			if isFileSpec(b.Data) {
				out = append(out, &b.Data)
			}
			return out
		},
		run: func(ctx context.Context, e *stepEnv, o any) (result, error) {
			b := *o.(*benchStep)
			if b.Model == "" {
				b.Model = e.input
			}
			r, err := bench.Run(ctx, b.Options)
			if err != nil {
				return result{}, err
			}
			var failed []string
			if b.MaxP50Ms > 0 && r.LatencyMs.P50 > b.MaxP50Ms {
				failed = append(failed, fmt.Sprintf("max_p50_ms: p50 %.3f ms > %g", r.LatencyMs.P50, b.MaxP50Ms))
			}
			if b.MaxP99Ms > 0 && r.LatencyMs.P99 > b.MaxP99Ms {
				failed = append(failed, fmt.Sprintf("max_p99_ms: p99 %.3f ms > %g", r.LatencyMs.P99, b.MaxP99Ms))
			}
			if b.MinThroughputPerS > 0 && r.ThroughputPerS < b.MinThroughputPerS {
				failed = append(failed, fmt.Sprintf("min_throughput_per_s: %.1f/s < %g", r.ThroughputPerS, b.MinThroughputPerS))
			}
			return result{report: r, failed: failed}, nil
		},
	}
}

// resolvePaths makes the option paths of a step absolute-from-the-recipe: a step name or
// "model" becomes that model's path, a relative path is taken from the recipe's folder.
func resolvePaths(ptrs []*string, resolve func(string) string) {
	for _, p := range ptrs {
		if *p != "" {
			*p = resolve(*p)
		}
	}
}

func joinIfRel(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}
