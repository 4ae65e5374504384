package recipe

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/optimctl/optimctl/pkg/trt"
)

// buildTRTStep holds the options of a build-trt step: the flags of `optimctl build-trt`.
// It writes the engine to <workdir>/<name>.plan. In a binary built without the tensorrt
// tag the step parses and dry-runs, and fails when run with the stub's "built without
// TensorRT" error; print_trtexec: true reports the equivalent trtexec command instead of
// building, in any build.
type buildTRTStep struct {
	FP16          bool `yaml:"fp16" json:"fp16,omitempty"`
	INT8          bool `yaml:"int8" json:"int8,omitempty"`
	FP8           bool `yaml:"fp8" json:"fp8,omitempty"`
	StronglyTyped bool `yaml:"strongly_typed" json:"strongly_typed,omitempty"`
	// Calib is INT8 calibration data; CalibCache a TensorRT calibration cache (a path, or
	// the name of an earlier calibrate step with format: tensorrt).
	Calib      string `yaml:"calib" json:"calib,omitempty"`
	Preprocess string `yaml:"preprocess" json:"preprocess,omitempty"`
	CalibLimit int    `yaml:"calib_limit" json:"calib_limit,omitempty"`
	CalibCache string `yaml:"calib_cache" json:"calib_cache,omitempty"`
	// Shapes maps a dynamic input to its MIN/OPT/MAX profile, e.g. images: 1x3x224x224/8x3x224x224/32x3x224x224.
	Shapes map[string]string `yaml:"shapes" json:"shapes,omitempty"`
	// Profiles are further optimisation profiles (shapes is profile 0), each mapping every
	// dynamic input to MIN/OPT/MAX.
	Profiles          []map[string]string `yaml:"profiles" json:"profiles,omitempty"`
	Workspace         string              `yaml:"workspace" json:"workspace,omitempty"` // 4GiB, 512MiB; a bare number is MiB
	TimingCache       string              `yaml:"timing_cache" json:"timing_cache,omitempty"`
	SparseWeights     bool                `yaml:"sparse_weights" json:"sparse_weights,omitempty"`
	Refit             bool                `yaml:"refit" json:"refit,omitempty"`
	VersionCompatible bool                `yaml:"version_compatible" json:"version_compatible,omitempty"`
	// PrintTrtexec reports the trtexec command line instead of building (no TensorRT needed).
	PrintTrtexec bool `yaml:"print_trtexec" json:"print_trtexec,omitempty"`
	// TRTMajor is the TensorRT major the trtexec command is for (0: the linked library's, else 10).
	TRTMajor int `yaml:"trt_major" json:"trt_major,omitempty"`
}

// trtexecReport is a build-trt step's report with print_trtexec (and of every dry run).
type trtexecReport struct {
	TensorRTMajor int      `json:"tensorrt_major"`
	Command       string   `json:"command"`
	Args          []string `json:"args"`
	Notes         []string `json:"notes,omitempty"`
	// Built says whether this binary can build the engine itself (tag tensorrt).
	Built bool `json:"tensorrt_build"`
}

// TrtexecCommand is the command line, for text output.
func (r *trtexecReport) TrtexecCommand() string { return "trtexec: " + r.Command }

// options converts the step to pkg/trt's options for model → output.
func (b *buildTRTStep) options(model, output string) (trt.Options, error) {
	o := trt.Options{Model: model, Output: output, FP16: b.FP16, INT8: b.INT8, FP8: b.FP8, StronglyTyped: b.StronglyTyped,
		Calib: b.Calib, Preprocess: b.Preprocess, CalibLimit: b.CalibLimit, CalibCache: b.CalibCache,
		TimingCache: b.TimingCache, SparseWeights: b.SparseWeights, Refit: b.Refit, VersionCompatible: b.VersionCompatible}
	var err error
	if o.Shapes, err = shapeSpecs(b.Shapes, "shapes"); err != nil {
		return o, err
	}
	for i, p := range b.Profiles {
		specs, err := shapeSpecs(p, fmt.Sprintf("profiles[%d]", i))
		if err != nil {
			return o, err
		}
		o.Profiles = append(o.Profiles, specs)
	}
	if b.Workspace != "" {
		n, err := trt.ParseSize(b.Workspace)
		if err != nil {
			return o, fmt.Errorf("workspace: %w", err)
		}
		o.Workspace = n
	}
	if b.TRTMajor != 0 && b.TRTMajor != 10 && b.TRTMajor != 11 {
		return o, fmt.Errorf("trt_major %d: want 10 or 11", b.TRTMajor)
	}
	return o, o.Validate()
}

// shapeSpecs reads {input: MIN/OPT/MAX} in input-name order.
func shapeSpecs(m map[string]string, what string) ([]trt.ShapeSpec, error) {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	var out []trt.ShapeSpec
	for _, n := range names {
		s, err := trt.ParseShapeSpec(n + ":" + m[n])
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", what, n, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// trtexec is the trtexec equivalent of the step for the major asked for, the linked
// library's, or 10.
func (b *buildTRTStep) trtexec(o trt.Options) (*trtexecReport, error) {
	major := b.TRTMajor
	if major == 0 {
		major = 10
		if v, err := trt.LibraryVersion(); err == nil && v > 0 {
			major = v / 10000
		} else if err != nil && !errors.Is(err, trt.ErrNotBuilt) {
			return nil, err
		}
	}
	args, notes, err := trt.Trtexec(o, major)
	if err != nil {
		return nil, err
	}
	return &trtexecReport{TensorRTMajor: major, Command: trt.ShellJoin(args), Args: args, Notes: notes, Built: trt.Available}, nil
}

func init() {
	kinds["build-trt"] = kind{
		decode: decodeAs[buildTRTStep](),
		out: func(o any) (string, bool) {
			if o.(*buildTRTStep).PrintTrtexec {
				return "", false
			}
			return ".plan", false
		},
		check: func(o any) error {
			_, err := o.(*buildTRTStep).options("model.onnx", "engine.plan")
			return err
		},
		files: func(o any) []*string {
			b := o.(*buildTRTStep)
			if isFileSpec(b.Calib) {
				return []*string{&b.Calib}
			}
			return []*string{&b.CalibCache} // read, not written
		},
		paths: func(o any) []*string {
			b := o.(*buildTRTStep)
			out := []*string{&b.TimingCache}
			if b.Calib != "" {
				out = append(out, &b.CalibCache) // written by the build
			}
			return out
		},
		plan: func(e *stepEnv, o any) (any, error) {
			b := o.(*buildTRTStep)
			out := e.output
			if out == "" {
				out = filepath.Join(e.work, e.name+".plan") // print_trtexec: where trtexec would write
			}
			opts, err := b.options(e.input, out)
			if err != nil {
				return nil, err
			}
			return b.trtexec(opts)
		},
		run: func(ctx context.Context, e *stepEnv, o any) (result, error) {
			b := o.(*buildTRTStep)
			out := e.output
			if b.PrintTrtexec {
				out = filepath.Join(e.work, e.name+".plan")
			}
			opts, err := b.options(e.input, out)
			if err != nil {
				return result{}, err
			}
			if b.PrintTrtexec {
				r, err := b.trtexec(opts)
				return result{report: r}, err
			}
			r, err := trt.Build(ctx, opts)
			return result{report: r}, err
		},
	}
}
