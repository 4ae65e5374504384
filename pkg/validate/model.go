package validate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/trt"
)

// Model is what validate and bench run: an ONNX model in an ONNX Runtime session, or a
// serialized TensorRT engine (.plan) in a binary built with the tensorrt tag. Both are fed
// and read the same way, so accuracy and latency are measured alike.
type Model interface {
	// Inputs and Outputs describe the tensors Run takes and returns (-1 for dynamic dims).
	Inputs() []tensor.Spec
	Outputs() []tensor.Spec
	// Run runs the model once, from host tensors to host tensors.
	Run(in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error)
	// Runtime names what runs the model, for reports: "onnxruntime" or "tensorrt".
	Runtime() string
	Close() error
}

// Runtimes named by Model.Runtime.
const (
	RuntimeORT      = "onnxruntime"
	RuntimeTensorRT = "tensorrt"
)

// ModelOptions configure OpenModel.
type ModelOptions struct {
	// Runtime configures ONNX Runtime sessions; an engine ignores it.
	Runtime runtime.Options
	// Engine configures loading a TensorRT engine (its log).
	Engine trt.EngineOptions
}

// IsEngine reports whether path names a serialized TensorRT engine: a .plan or .engine file.
func IsEngine(path string) bool {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".plan", ".engine":
		return true
	}
	return false
}

// OpenModel opens path: a TensorRT engine when IsEngine(path), else an ONNX model in ONNX
// Runtime. A GPU execution provider is checked against the library first, so that a
// library without it fails with one line that says what it offers.
func OpenModel(path string, o ModelOptions) (Model, error) {
	if IsEngine(path) {
		return openEngine(path, o.Engine)
	}
	if err := runtime.CheckProvider(o.Runtime.ExecutionProvider); err != nil {
		return nil, err
	}
	s, err := runtime.NewSessionFromFile(path, o.Runtime)
	if err != nil {
		return nil, err
	}
	return ortModel{s}, nil
}

// ortModel adapts runtime.Session to Model.
type ortModel struct{ *runtime.Session }

func (m ortModel) Run(in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	return m.Session.Run(in)
}

func (ortModel) Runtime() string { return RuntimeORT }

// engineModel adapts trt.Engine to Model; it keeps the GPU time of the last run.
type engineModel struct {
	*trt.Engine
	gpu time.Duration
}

func openEngine(path string, o trt.EngineOptions) (Model, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, err
	}
	e, err := trt.LoadEngine(path, o)
	if errors.Is(err, trt.ErrNotBuilt) {
		return nil, fmt.Errorf("%s: running a TensorRT engine: %w", path, err)
	}
	if err != nil {
		return nil, err // names the file already
	}
	return &engineModel{Engine: e}, nil
}

func (m *engineModel) specs(input bool) []tensor.Spec {
	var out []tensor.Spec
	for _, io := range m.IO() {
		if io.Input == input {
			out = append(out, tensor.Spec{Name: io.Name, DType: io.DType, Shape: append([]int64(nil), io.Dims...)})
		}
	}
	return out
}

func (m *engineModel) Inputs() []tensor.Spec  { return m.specs(true) }
func (m *engineModel) Outputs() []tensor.Spec { return m.specs(false) }
func (*engineModel) Runtime() string          { return RuntimeTensorRT }

func (m *engineModel) Run(in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, error) {
	out, gpu, err := m.Engine.Run(in)
	m.gpu = gpu
	return out, err
}

// GPUTime is the GPU time of the engine's last run (CUDA events around the enqueue), the
// part of Run's wall time spent computing on the device.
func (m *engineModel) GPUTime() time.Duration { return m.gpu }

// GPUTimer is implemented by models that time their runs on the GPU (TensorRT engines).
type GPUTimer interface {
	GPUTime() time.Duration
}
