package trt

import (
	"fmt"
	"strings"
)

// Trtexec returns the trtexec arguments (program name first) that build the same engine as
// Build with these options on TensorRT `major`, and notes on what trtexec cannot reproduce
// (calibration from data: trtexec only reads a calibration cache). It works without
// TensorRT, so that a user can compare with, or fall back to, NVIDIA's own tool.
//
// Spellings follow trtexec's --help of 10.16 and 11.1: shapes as name:1x3x224x224 joined by
// commas (a name with ':' or ',' in single quotes), sizes with single-letter base-2
// suffixes (workspace:4096M). --stronglyTyped is printed for 10.x only: 11.x builds every
// network strongly typed and its trtexec marks the flag deprecated.
func Trtexec(o Options, major int) (args, notes []string, err error) {
	if err := o.Validate(); err != nil {
		return nil, nil, err
	}
	if err := o.CheckVersion(major); err != nil {
		return nil, nil, err
	}
	args = []string{"trtexec", "--onnx=" + o.Model, "--saveEngine=" + o.Output, "--skipInference"}
	if len(o.Shapes) > 0 {
		var min, opt, max []string
		for _, s := range o.Shapes {
			n := trtexecName(s.Name)
			min = append(min, n+":"+formatDims(s.Min))
			opt = append(opt, n+":"+formatDims(s.Opt))
			max = append(max, n+":"+formatDims(s.Max))
		}
		args = append(args, "--minShapes="+strings.Join(min, ","), "--optShapes="+strings.Join(opt, ","), "--maxShapes="+strings.Join(max, ","))
	}
	if len(o.Profiles) > 0 {
		notes = append(notes, fmt.Sprintf("trtexec builds one optimisation profile: the command has --shapes (profile 0) only; "+
			"the %d --profile set(s) need optimctl build-trt", len(o.Profiles)))
	}
	if o.Workspace > 0 {
		args = append(args, "--memPoolSize=workspace:"+trtexecSize(o.Workspace))
	}
	if o.TimingCache != "" {
		args = append(args, "--timingCacheFile="+o.TimingCache)
	}
	if o.FP16 {
		args = append(args, "--fp16")
	}
	if o.INT8 {
		args = append(args, "--int8")
		switch {
		case o.CalibCache != "" && o.Calib == "":
			args = append(args, "--calib="+o.CalibCache)
		case o.Calib != "":
			cache := o.CalibCache
			if cache == "" {
				cache = "CACHE"
			}
			notes = append(notes, fmt.Sprintf("trtexec cannot calibrate from data (%s); write a cache first with "+
				"`optimctl calibrate %s --calib %s --format tensorrt -o %s` and pass it as --calib=%s", o.Calib, o.Model, o.Calib, cache, cache))
		default:
			notes = append(notes, "--int8 without --calib or --calib-cache: the model's own Q/DQ scales are used")
		}
	}
	if o.FP8 {
		args = append(args, "--fp8")
	}
	if o.StronglyTyped && major < 11 {
		args = append(args, "--stronglyTyped")
	}
	if o.SparseWeights {
		args = append(args, "--sparsity=enable")
	}
	if o.Refit {
		args = append(args, "--refit")
	}
	if o.VersionCompatible {
		args = append(args, "--versionCompatible")
	}
	return args, notes, nil
}

// trtexecName quotes an input name the way trtexec's shape parser expects when it holds
// the separators ':' or ','.
func trtexecName(n string) string {
	if strings.ContainsAny(n, ":,") {
		return "'" + n + "'"
	}
	return n
}

// trtexecSize writes bytes with the largest exact base-2 suffix trtexec knows (G, M, K, B).
func trtexecSize(b int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if b%u.size == 0 {
			return fmt.Sprintf("%d%s", b/u.size, u.suffix)
		}
	}
	return fmt.Sprintf("%dB", b)
}

// ShellJoin quotes arguments for a POSIX shell: plain words stay as they are, anything else
// is single-quoted, an embedded quote closed, escaped and reopened.
func ShellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	plain := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("_-./:=,+@%", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
