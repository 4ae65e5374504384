package recipe

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/optimctl/optimctl/pkg/bench"
	"github.com/optimctl/optimctl/pkg/inspect"
	"github.com/optimctl/optimctl/pkg/int4"
	"github.com/optimctl/optimctl/pkg/optimize"
	"github.com/optimctl/optimctl/pkg/prune"
	"github.com/optimctl/optimctl/pkg/quantize"
	"github.com/optimctl/optimctl/pkg/validate"
	"go.yaml.in/yaml/v3"
)

// stepEnv is what a step sees of the pipeline: its resolved input and output paths, a
// resolver for names of earlier steps, and the progress bar factory (nil: no bars).
type stepEnv struct {
	input, output string
	work, name    string              // the workdir and the step's name
	resolve       func(string) string // step name / "model" / relative path → path
	progress      func(what string) func(done, total int)
}

// bar returns a progress callback for what, or nil when bars are off.
func (e *stepEnv) bar(what string) func(done, total int) {
	if e.progress == nil {
		return nil
	}
	return e.progress(what)
}

// stageBars is the int4 staged progress (capture passes, then layers) on this step's bars;
// nil without a terminal.
func (e *stepEnv) stageBars() func(stage string, done, total int) {
	if e.progress == nil {
		return nil
	}
	return int4.StagedProgress(e.bar)
}

// result is what a step hands back to the runner.
type result struct {
	report any
	failed []string // gates not met
}

type kind struct {
	// ext is the extension of the model the step writes; "" when it writes none. out, when
	// set, decides instead from the options, and says whether what is written is a model
	// that later steps read by default (false: an artifact such as a calibration table or
	// an engine, which later steps name explicitly).
	ext    string
	out    func(opts any) (ext string, model bool)
	decode func(n *yaml.Node, path string) (any, error)
	// check validates decoded options before anything runs (nil: decoding is the check).
	check func(opts any) error
	run   func(ctx context.Context, e *stepEnv, opts any) (result, error)
	// plan, when set, is the report of a dry run (e.g. the trtexec command of build-trt).
	plan func(e *stepEnv, opts any) (any, error)
	// files lists the option values that are paths, for resolving and fingerprinting.
	files func(opts any) []*string
	// paths lists option paths that are resolved but not fingerprinted (files a step
	// updates itself, such as a timing cache).
	paths func(opts any) []*string
}

// output says what a step of this kind writes given its options.
func (k kind) output(opts any) (ext string, model bool) {
	if k.out != nil {
		return k.out(opts)
	}
	return k.ext, k.ext != ""
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

// int4Step is a quantize step with mode: int4, whose options are pkg/int4's (the flags of
// `optimctl quantize --mode int4`).
type int4Step struct {
	Mode         string `yaml:"mode" json:"mode"`
	int4.Options `yaml:",inline"`
	// Runtime is repeated here because int4.Options keeps it out of its JSON, and the
	// step's cache key is the JSON of its options.
	RuntimeKey any `yaml:"-" json:"runtime,omitempty"`
}

// decodeQuantize decodes a quantize step: pkg/int4's options for mode: int4, else
// pkg/quantize's.
func decodeQuantize(n *yaml.Node, path string) (any, error) {
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "mode" && n.Content[i+1].Value == "int4" {
				q, err := decodeAs[int4Step]()(n, path)
				if err != nil {
					return nil, err
				}
				s := q.(*int4Step)
				s.RuntimeKey = s.Runtime
				return s, nil
			}
		}
	}
	return decodeAs[quantize.Options]()(n, path)
}

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
		decode: decodeQuantize,
		out: func(o any) (string, bool) {
			if q, ok := o.(*int4Step); ok && q.Format != "" && q.Format != int4.FormatONNX && q.Format != int4.FormatQDQ {
				return "", false // a checkpoint folder: <workdir>/<name>, not an ONNX model
			}
			return ".onnx", true
		},
		check: func(o any) error {
			switch q := o.(type) {
			case *int4Step:
				c := q.Options
				return c.Validate()
			case *quantize.Options:
				return q.Validate()
			}
			return nil
		},
		files: func(o any) []*string {
			var out []*string
			switch q := o.(type) {
			case *quantize.Options:
				if isFileSpec(q.Calib) {
					out = append(out, &q.Calib)
				}
				if isFileSpec(q.Data) {
					out = append(out, &q.Data)
				}
			case *int4Step:
				if isFileSpec(q.Calib) {
					out = append(out, &q.Calib)
				}
				out = append(out, &q.CalibModel)
			}
			return out
		},
		run: func(ctx context.Context, e *stepEnv, o any) (result, error) {
			if q, ok := o.(*int4Step); ok {
				p := q.Options
				p.Input, p.Output = e.input, e.output
				if err := p.Validate(); err != nil {
					return result{}, err
				}
				p.Progress = e.stageBars()
				r, err := int4.Run(ctx, p)
				return result{report: r}, err
			}
			q := *o.(*quantize.Options)
			if q.Mode == quantize.Static {
				q.Progress = e.bar("calibrating")
			}
			r, err := quantize.File(ctx, e.input, e.output, q)
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
			v.Progress = e.bar("validating")
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
