package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/trt"
)

func init() { commands = append(commands, newBuildTRTCmd) }

// buildTRTFlags holds the raw flag values of `optimctl build-trt`.
type buildTRTFlags struct {
	output, calib, calibCache, preprocess, workspace, timingCache, trtLog string
	shapes, profiles                                                      []string
	fp16, int8, fp8, stronglyTyped, sparse, refit, versionCompat          bool
	printTrtexec                                                          bool
	calibLimit, trtMajor                                                  int
}

// trtexecReport is the --json report of `build-trt --print-trtexec`.
type trtexecReport struct {
	TensorRTMajor int      `json:"tensorrt_major"`
	Command       string   `json:"command"`
	Args          []string `json:"args"`
	Notes         []string `json:"notes,omitempty"`
}

func newBuildTRTCmd(g *globals) *cobra.Command {
	fl := &buildTRTFlags{}
	cmd := &cobra.Command{
		Use:   "build-trt MODEL -o ENGINE",
		Short: "Build a TensorRT 10/11 engine from an ONNX model (needs a build with -tags tensorrt)",
		Long: `Parses the model with TensorRT's ONNX parser and builds a serialized engine (.plan).

TensorRT 11 has no --fp16/--int8/--fp8 builder flags and no INT8 calibration: quantize first
(optimctl quantize --mode static --target tensorrt, or --mode fp16) and build the result.
On TensorRT 10, --int8 calibrates with --calib DATA (and writes --calib-cache FILE if given),
or reads the scales from --calib-cache FILE alone, or uses the model's own Q/DQ scales.

--print-trtexec prints the equivalent trtexec command line instead of building; it works in
every build of optimctl. See docs/tensorrt.md.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := fl.toOptions(g, args[0])
			if err != nil {
				return err
			}
			if fl.printTrtexec {
				return fl.printCommand(g, o)
			}
			rep, err := trt.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			if g.JSON {
				return g.emitJSON(rep)
			}
			fmt.Fprintf(g.stdout, "%s → %s (TensorRT %s, %d bytes, %.1f s, %s)\n", rep.Input, rep.Output, rep.TensorRTVersion,
				rep.SizeBytes, rep.Seconds, strings.Join(append([]string{"flags:"}, rep.Flags...), " "))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&fl.output, "output", "o", "", "engine file to write (required)")
	f.BoolVar(&fl.fp16, "fp16", false, "TensorRT 10: allow FP16 kernels (weakly typed)")
	f.BoolVar(&fl.int8, "int8", false, "TensorRT 10: allow INT8 kernels; scales from --calib, --calib-cache or the model's Q/DQ")
	f.BoolVar(&fl.fp8, "fp8", false, "TensorRT 10: allow FP8 kernels (scales from the model's Q/DQ)")
	f.BoolVar(&fl.stronglyTyped, "strongly-typed", false, "TensorRT 10: precisions from the model's types and Q/DQ only (always so on 11)")
	f.StringVar(&fl.calib, "calib", "", "INT8 calibration data (.npz, folder, images with --preprocess, random:N)")
	f.StringVar(&fl.preprocess, "preprocess", "", `image preprocessing for --calib, e.g. "size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"`)
	f.IntVar(&fl.calibLimit, "calib-limit", 0, "calibrate on at most this many samples (0 = all)")
	f.StringVar(&fl.calibCache, "calib-cache", "", "TensorRT calibration cache: read (without --calib) or written (with --calib)")
	f.StringArrayVar(&fl.shapes, "shapes", nil, "NAME:MIN/OPT/MAX optimisation profile of a dynamic input, e.g. images:1x3x224x224/8x3x224x224/32x3x224x224 (repeatable)")
	f.StringArrayVar(&fl.profiles, "profile", nil, "a further optimisation profile, NAME:MIN/OPT/MAX[,NAME:MIN/OPT/MAX...] for every dynamic input (repeatable; --shapes is profile 0)")
	f.StringVar(&fl.workspace, "workspace", "", "workspace memory-pool limit, e.g. 4GiB, 512MiB (bare number: MiB)")
	f.StringVar(&fl.timingCache, "timing-cache", "", "timing cache file: loaded if it exists, saved after the build")
	f.BoolVar(&fl.sparse, "sparse-weights", false, "let TensorRT use 2:4 sparse kernels where weights have the pattern (see optimctl prune --method 2:4)")
	f.BoolVar(&fl.refit, "refit", false, "build a refittable engine")
	f.BoolVar(&fl.versionCompat, "version-compatible", false, "build an engine later TensorRT versions of the same major can load")
	f.StringVar(&fl.trtLog, "trt-log", "", "TensorRT log level on stderr: error, warning, info or verbose (default warning, info with -v)")
	f.BoolVar(&fl.printTrtexec, "print-trtexec", false, "print the equivalent trtexec command line and exit (no TensorRT needed)")
	f.IntVar(&fl.trtMajor, "trt-major", 0, "TensorRT major (10 or 11) for --print-trtexec (default: the linked library, else 10)")
	return cmd
}

func (fl *buildTRTFlags) toOptions(g *globals, model string) (trt.Options, error) {
	o := trt.Options{
		Model: model, Output: fl.output, FP16: fl.fp16, INT8: fl.int8, FP8: fl.fp8, StronglyTyped: fl.stronglyTyped,
		Calib: fl.calib, Preprocess: fl.preprocess, CalibLimit: fl.calibLimit, CalibCache: fl.calibCache,
		TimingCache: fl.timingCache, SparseWeights: fl.sparse, Refit: fl.refit, VersionCompatible: fl.versionCompat,
	}
	if err := fsutil.CheckNotSame(model, fl.output); err != nil {
		return o, err
	}
	for _, s := range fl.shapes {
		spec, err := trt.ParseShapeSpec(s)
		if err != nil {
			return o, usageError{err}
		}
		o.Shapes = append(o.Shapes, spec)
	}
	for _, s := range fl.profiles {
		p, err := trt.ParseProfile(s)
		if err != nil {
			return o, usagef("--profile: %v", err)
		}
		o.Profiles = append(o.Profiles, p)
	}
	if fl.workspace != "" {
		n, err := trt.ParseSize(fl.workspace)
		if err != nil {
			return o, usagef("--workspace: %v", err)
		}
		o.Workspace = n
	}
	eo, err := trtLog(g, fl.trtLog)
	if err != nil {
		return o, err
	}
	o.LogSeverity, o.Log = eo.LogSeverity, eo.Log
	if g.stderrIsTerminal() {
		o.Progress = func(phase, parent string, steps int) {
			if parent == "" {
				fmt.Fprintf(g.stderr, "build-trt: %s\n", phase)
			}
		}
	}
	if err := o.Validate(); err != nil {
		return o, usageError{err}
	}
	return o, nil
}

// printCommand prints the trtexec equivalent of the options for the TensorRT major asked
// for, the linked library's, or 10.
func (fl *buildTRTFlags) printCommand(g *globals, o trt.Options) error {
	major := fl.trtMajor
	if major == 0 {
		major = 10
		if trt.Available {
			v, err := trt.LibraryVersion()
			if err != nil && !errors.Is(err, trt.ErrNotBuilt) {
				return err
			}
			if v > 0 {
				major = v / 10000
			}
		}
	}
	args, notes, err := trt.Trtexec(o, major)
	if err != nil {
		return usageError{err}
	}
	rep := trtexecReport{TensorRTMajor: major, Command: trt.ShellJoin(args), Args: args, Notes: notes}
	if g.JSON {
		return g.emitJSON(rep)
	}
	for _, n := range notes {
		fmt.Fprintf(g.stderr, "note: %s\n", n)
	}
	fmt.Fprintln(g.stdout, rep.Command)
	return nil
}

// trtLog sends TensorRT's log to optimctl's logger on stderr at the level of --trt-log
// (default warning, info with -v); build-trt, and bench and validate of a .plan, use it.
func trtLog(g *globals, level string) (trt.EngineOptions, error) {
	if level == "" {
		level = "warning"
		if g.Verbose {
			level = "info"
		}
	}
	sev, err := trt.ParseSeverity(level)
	if err != nil {
		return trt.EngineOptions{}, usagef("--trt-log: %v", err)
	}
	return trt.EngineOptions{LogSeverity: sev, Log: func(s trt.Severity, msg string) {
		l := slog.LevelInfo // only levels asked for with --trt-log reach here
		switch {
		case s <= trt.SeverityError:
			l = slog.LevelError
		case s == trt.SeverityWarning:
			l = slog.LevelWarn
		}
		g.log.Log(context.Background(), l, "tensorrt: "+strings.TrimSpace(msg))
	}}, nil
}
