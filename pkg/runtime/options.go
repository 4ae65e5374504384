package runtime

import (
	"fmt"
	"strings"

	ort "github.com/yalue/onnxruntime_go"
)

// Execution providers accepted in Options.ExecutionProvider.
const (
	ProviderCPU      = "cpu"
	ProviderCUDA     = "cuda"
	ProviderTensorRT = "tensorrt"
)

// OptLevel is ONNX Runtime's graph optimisation level. It is a string so that flags and
// recipe files carry it as written ("basic", "all").
//
// The zero value means OptBasic, not ONNX Runtime's own default (all): basic rewrites
// (constant folding, redundant-node removal) keep the model's arithmetic, while the
// extended and all levels fuse and substitute kernels (e.g. DequantizeLinear+MatMul into
// MatMulNBits) and so move outputs. Validation compares numbers, so it must pin a level
// and report it (Session.OptLevel); a benchmark asks for OptAll explicitly.
type OptLevel string

// Graph optimisation levels.
const (
	OptDisabled OptLevel = "disabled"
	OptBasic    OptLevel = "basic"
	OptExtended OptLevel = "extended"
	OptAll      OptLevel = "all"
)

// Effective resolves the zero value to the level actually used.
func (l OptLevel) Effective() OptLevel {
	if l == "" {
		return OptBasic
	}
	return l
}

// ParseOptLevel accepts the four level names ("" means basic).
func ParseOptLevel(s string) (OptLevel, error) {
	l := OptLevel(strings.ToLower(strings.TrimSpace(s))).Effective()
	if _, err := l.ort(); err != nil {
		return "", err
	}
	return l, nil
}

func (l OptLevel) ort() (ort.GraphOptimizationLevel, error) {
	switch l.Effective() {
	case OptDisabled:
		return ort.GraphOptimizationLevelDisableAll, nil
	case OptBasic:
		return ort.GraphOptimizationLevelEnableBasic, nil
	case OptExtended:
		return ort.GraphOptimizationLevelEnableExtended, nil
	case OptAll:
		return ort.GraphOptimizationLevelEnableAll, nil
	}
	return 0, fmt.Errorf("unknown graph optimisation level %q (want disabled, basic, extended or all)", string(l))
}

// Options configure a Session. The zero value is a CPU session at OptBasic with
// ONNX Runtime's default thread counts.
type Options struct {
	// ExecutionProvider is "cpu" (default), "cuda" or "tensorrt" (TensorRT with CUDA
	// as the fallback for nodes TensorRT does not take).
	ExecutionProvider string `yaml:"ep"`
	// IntraOpThreads and InterOpThreads size ONNX Runtime's thread pools; 0 keeps its
	// default (one intra-op thread per physical core).
	IntraOpThreads int `yaml:"threads"`
	InterOpThreads int `yaml:"inter_op_threads"`
	// GraphOptLevel: see OptLevel; "" means basic.
	GraphOptLevel OptLevel `yaml:"graph_opt"`
	// ExternalDataDir is where a model given as bytes finds its external-data files
	// (TensorProto.external_data locations are relative to it). A model opened from a
	// file resolves them beside the file.
	ExternalDataDir string `yaml:"-"`
	// ExtraOutputs names intermediate tensors of the main graph to return from Run as
	// well, e.g. for per-layer comparison. They are appended to graph.output, which can
	// stop ONNX Runtime fusing across them at the extended and all levels.
	ExtraOutputs []string `yaml:"-"`
	// NoSpinning stops ONNX Runtime's intra-op threads from busy-waiting for more work
	// after each parallel section (session config session.intra_op.allow_spinning=0).
	// Callers that do work of their own between runs, such as calibration, get those
	// cycles back; a latency benchmark wants the default.
	NoSpinning bool `yaml:"-"`
	// DeterministicCompute asks kernels with a faster non-deterministic variant (mostly
	// CUDA reductions and convolutions) for the deterministic one.
	DeterministicCompute bool `yaml:"deterministic"`
}

// ReproducibleThreads is the intra-op thread count of sessions whose results are written
// into an output (calibration ranges, captured activations, sensitivity and fallback
// decisions). ONNX Runtime splits some kernels' work (pooling and reduction sums, some
// convolutions) by thread count, so their results differ in the last bits from one count to
// another, and its default count follows the machine's cores: with a fixed count, the same
// inputs and flags give the same bytes on every machine. 4 costs ~3 % on a 2-core machine.
const ReproducibleThreads = 4

// Reproducible returns o with IntraOpThreads set to ReproducibleThreads when the caller left
// it at 0 (ONNX Runtime's machine-dependent default), and spinning off, since the callers
// that need it do work of their own between runs.
func (o Options) Reproducible() Options {
	if o.IntraOpThreads == 0 {
		o.IntraOpThreads = ReproducibleThreads
	}
	o.NoSpinning = true
	return o
}

// sessionOptions builds ONNX Runtime's options; the caller destroys them.
func (o Options) sessionOptions(externalDir string) (*ort.SessionOptions, error) {
	level, err := o.GraphOptLevel.ort()
	if err != nil {
		return nil, err
	}
	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("creating session options: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			so.Destroy()
		}
	}()
	if err := so.SetGraphOptimizationLevel(level); err != nil {
		return nil, fmt.Errorf("setting graph optimisation level %s: %w", o.GraphOptLevel.Effective(), err)
	}
	if o.IntraOpThreads < 0 || o.InterOpThreads < 0 {
		return nil, fmt.Errorf("thread counts must not be negative (intra-op %d, inter-op %d)", o.IntraOpThreads, o.InterOpThreads)
	}
	if o.IntraOpThreads > 0 {
		if err := so.SetIntraOpNumThreads(o.IntraOpThreads); err != nil {
			return nil, fmt.Errorf("setting intra-op threads: %w", err)
		}
	}
	if o.InterOpThreads > 0 {
		if err := so.SetInterOpNumThreads(o.InterOpThreads); err != nil {
			return nil, fmt.Errorf("setting inter-op threads: %w", err)
		}
	}
	if externalDir != "" {
		if err := so.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", externalDir); err != nil {
			return nil, fmt.Errorf("setting external data folder: %w", err)
		}
	}
	if o.NoSpinning {
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return nil, fmt.Errorf("disabling thread spinning: %w", err)
		}
	}
	if o.DeterministicCompute {
		if err := so.AddSessionConfigEntry("session.use_deterministic_compute", "1"); err != nil {
			return nil, fmt.Errorf("requesting deterministic compute: %w", err)
		}
	}
	if err := appendProvider(so, o.ExecutionProvider); err != nil {
		return nil, err
	}
	ok = true
	return so, nil
}

// appendProvider adds the GPU provider. ONNX Runtime loads the provider libraries at
// append time, so a CPU-only library fails here, before any model is read.
func appendProvider(so *ort.SessionOptions, provider string) error {
	switch strings.ToLower(provider) {
	case "", ProviderCPU:
		return nil
	case ProviderCUDA:
		return appendCUDA(so, ProviderCUDA)
	case ProviderTensorRT:
		trt, err := ort.NewTensorRTProviderOptions()
		if err != nil {
			return providerError(ProviderTensorRT, err)
		}
		defer trt.Destroy()
		if err := so.AppendExecutionProviderTensorRT(trt); err != nil {
			return providerError(ProviderTensorRT, err)
		}
		return appendCUDA(so, ProviderTensorRT)
	}
	return fmt.Errorf("unknown execution provider %q (want cpu, cuda or tensorrt)", provider)
}

func appendCUDA(so *ort.SessionOptions, asked string) error {
	cuda, err := ort.NewCUDAProviderOptions()
	if err != nil {
		return providerError(asked, err)
	}
	defer cuda.Destroy()
	if err := so.AppendExecutionProviderCUDA(cuda); err != nil {
		return providerError(asked, err)
	}
	return nil
}

func providerError(provider string, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "Failed to load") || strings.Contains(msg, "providers_shared") {
		return fmt.Errorf("execution provider %s: %w: %s (ONNX Runtime %s) cannot load its provider libraries (%s); "+
			"point optimctl at a GPU build of ONNX Runtime 1.%d or newer with --ort-lib or $%s, with libonnxruntime_providers_shared.so "+
			"and libonnxruntime_providers_cuda.so (and libonnxruntime_providers_tensorrt.so for tensorrt) beside it, and CUDA/cuDNN (and TensorRT) installed",
			provider, ErrCPUOnly, LibraryPath(), Version(), msg, minMinorVersion, EnvLibrary)
	}
	return fmt.Errorf("execution provider %s: %w", provider, err)
}
