package trt

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/fsutil"
)

// ErrNotBuilt is what Build returns in a binary built without the tensorrt tag.
var ErrNotBuilt = errors.New("this optimctl was built without TensorRT support; rebuild with `make build TAGS=tensorrt TENSORRT_ROOT=/path/to/TensorRT`")

// Severity is a TensorRT log severity, numbered as ILogger::Severity (lower is more severe).
type Severity int32

// Log severities.
const (
	SeverityInternalError Severity = 0
	SeverityError         Severity = 1
	SeverityWarning       Severity = 2
	SeverityInfo          Severity = 3
	SeverityVerbose       Severity = 4
)

var severityNames = [...]string{"internal_error", "error", "warning", "info", "verbose"}

func (s Severity) String() string {
	if s >= 0 && int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("severity(%d)", int32(s))
}

// ParseSeverity reads error, warning, info or verbose.
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("TensorRT log level %q: want error, warning, info or verbose", s)
}

// Options describe one engine build. The same struct drives Build and Trtexec, so the
// printed trtexec command line cannot drift from what optimctl builds.
type Options struct {
	Model  string // ONNX model; external data beside it is found by TensorRT's parser
	Output string // engine (.plan), written atomically

	// Weakly-typed precision flags (implicit quantization). TensorRT 10 only: 11 removed
	// them, and a model must be quantized explicitly (Q/DQ, FP16 weights) beforehand.
	FP16, INT8, FP8 bool
	// StronglyTyped creates the network strongly typed on TensorRT 10: precisions come from
	// the model (Q/DQ, casts), not from flags. Every TensorRT 11 network is strongly typed.
	StronglyTyped bool

	// Calib is INT8 calibration data (any calibration.Open spec: .npz, folders, images with
	// Preprocess, random:N), fed to TensorRT's entropy calibrator batch by batch.
	Calib      string
	Preprocess string
	CalibLimit int // at most this many samples (0: all)
	// CalibCache is a TensorRT calibration cache: read instead of calibrating when Calib is
	// empty, written with the new scales when Calib is given.
	CalibCache string

	Shapes []ShapeSpec // optimisation profile for dynamic inputs
	// Profiles are further optimisation profiles (Shapes is profile 0), each with its own
	// specs for the dynamic inputs; an engine picks, per run, the first whose range holds
	// the input shapes.
	Profiles      [][]ShapeSpec
	Workspace     int64  // workspace memory-pool limit in bytes; 0 = TensorRT's default
	TimingCache   string // loaded when it exists, saved after a successful build
	SparseWeights bool   // let TensorRT pick 2:4 sparse kernels for weights that have the pattern
	Refit         bool   // engine weights can be refitted later
	// VersionCompatible makes the engine loadable by later TensorRT versions of the same major.
	VersionCompatible bool

	// LogSeverity is the most verbose TensorRT log severity passed to Log.
	LogSeverity Severity
	// Log receives TensorRT's log lines (nil: dropped). It may be called from TensorRT's threads.
	Log func(Severity, string)
	// Progress, if set, is told when a build phase starts (name, parent, steps).
	Progress func(phase, parent string, steps int)
}

// Validate checks what does not depend on the TensorRT version.
func (o *Options) Validate() error {
	if o.Model == "" {
		return errors.New("no model given")
	}
	if o.Output == "" {
		return errors.New("no engine output given (-o)")
	}
	if err := fsutil.CheckNotSame(o.Model, o.Output); err != nil {
		return err
	}
	if (o.Calib != "" || o.CalibCache != "") && !o.INT8 {
		return errors.New("--calib and --calib-cache give INT8 scales: add --int8")
	}
	if (o.Preprocess != "" || o.CalibLimit != 0) && o.Calib == "" {
		return errors.New("--preprocess and --calib-limit apply to --calib data")
	}
	if o.CalibLimit < 0 {
		return fmt.Errorf("--calib-limit %d: must not be negative", o.CalibLimit)
	}
	if o.StronglyTyped && (o.FP16 || o.INT8 || o.FP8) {
		return errors.New("--strongly-typed takes precisions from the model: drop --fp16/--int8/--fp8")
	}
	if o.Workspace < 0 {
		return fmt.Errorf("--workspace %d: must not be negative", o.Workspace)
	}
	seen := map[string]bool{}
	for _, s := range o.Shapes {
		if err := s.Validate(); err != nil {
			return err
		}
		if seen[s.Name] {
			return fmt.Errorf("--shapes: input %q given twice", s.Name)
		}
		seen[s.Name] = true
	}
	for k, p := range o.Profiles {
		if len(p) == 0 {
			return fmt.Errorf("--profile %d: no shapes", k+1)
		}
		seen := map[string]bool{}
		for _, s := range p {
			if err := s.Validate(); err != nil {
				return fmt.Errorf("--profile %d: %w", k+1, err)
			}
			if seen[s.Name] {
				return fmt.Errorf("--profile %d: input %q given twice", k+1, s.Name)
			}
			seen[s.Name] = true
		}
	}
	return nil
}

// implicitFlags names the options that need TensorRT 10's implicit quantization.
func (o *Options) implicitFlags() []string {
	var f []string
	for _, c := range []struct {
		on   bool
		name string
	}{{o.FP16, "--fp16"}, {o.INT8, "--int8"}, {o.FP8, "--fp8"}, {o.Calib != "", "--calib"}, {o.CalibCache != "", "--calib-cache"}} {
		if c.on {
			f = append(f, c.name)
		}
	}
	return f
}

// CheckVersion checks the options against a TensorRT major version (10 or 11).
func (o *Options) CheckVersion(major int) error {
	switch {
	case major == 10:
		return nil
	case major == 11:
		if f := o.implicitFlags(); len(f) > 0 {
			return fmt.Errorf("%s: TensorRT %d removed builder precision flags and INT8 calibration (implicit quantization); "+
				"quantize the model explicitly first, `optimctl quantize MODEL -o MODEL.int8.onnx --mode static --target tensorrt --calib DATA` "+
				"(or `--mode fp16`), then build that model without these flags", strings.Join(f, ", "), major)
		}
		return nil
	default:
		return fmt.Errorf("TensorRT %d: optimctl supports TensorRT 10 and 11", major)
	}
}

// sizeUnits are the suffixes --workspace accepts; all base-2, as trtexec's --memPoolSize.
var sizeUnits = map[string]int64{
	"b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40,
}

// ParseSize reads a memory size: 4GiB, 512MiB, 1.5G, 64K, 1024B. A bare number is MiB, as
// in trtexec. KB/MB/GB are refused because they are ambiguous (base 10 or base 2).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := t, "m"
	if i >= 0 {
		num, unit = strings.TrimSpace(t[:i]), strings.ToLower(strings.TrimSpace(t[i:]))
	}
	mul, ok := sizeUnits[unit]
	if !ok {
		if unit == "kb" || unit == "mb" || unit == "gb" || unit == "tb" {
			return 0, fmt.Errorf("size %q: write %s%siB (base 2) to avoid the KB/MB/GB ambiguity", s, num, strings.ToUpper(unit[:1]))
		}
		return 0, fmt.Errorf("size %q: want a number with B, K(iB), M(iB), G(iB) or T(iB); a bare number is MiB", s)
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" || v < 0 {
		return 0, fmt.Errorf("size %q: %q is not a non-negative number", s, num)
	}
	b := v * float64(mul)
	if b >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return int64(b), nil
}

// Report is the --json report of build-trt.
type Report struct {
	Input           string        `json:"input"`
	Output          string        `json:"output"`
	TensorRTVersion string        `json:"tensorrt_version"`
	SizeBytes       int64         `json:"size_bytes"`
	Seconds         float64       `json:"seconds"`
	Flags           []string      `json:"flags"` // builder options in effect: fp16, int8, sparse_weights, ...
	Inputs          []ReportInput `json:"inputs"`
	// CalibrationBatches counts the batches fed to the calibrator (0 when scales came from a cache).
	CalibrationBatches int    `json:"calibration_batches,omitempty"`
	CalibrationCache   string `json:"calibration_cache,omitempty"`
	// Profiles lists every optimisation profile as NAME:MIN/OPT/MAX specs when there are
	// several (inputs' min/opt/max are profile 0's).
	Profiles    [][]string `json:"profiles,omitempty"`
	TimingCache string     `json:"timing_cache,omitempty"`
}

// ReportInput is a network input and the shapes the engine was built for.
type ReportInput struct {
	Name  string  `json:"name"`
	DType string  `json:"dtype"`
	Dims  []int64 `json:"dims"` // -1 for dynamic dimensions
	Min   []int64 `json:"min,omitempty"`
	Opt   []int64 `json:"opt,omitempty"`
	Max   []int64 `json:"max,omitempty"`
}

// VersionString turns major·10000 + minor·100 + patch into "10.16.0".
func VersionString(v int) string {
	return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
}
