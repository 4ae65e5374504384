//go:build !tensorrt && !trtfake

package trt

import (
	"time"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// Engine is a loaded TensorRT engine; without the tensorrt tag none can be loaded.
type Engine struct{}

// LoadEngine needs the tensorrt build tag.
func LoadEngine(path string, o EngineOptions) (*Engine, error) { return nil, ErrNotBuilt }

// IO lists the engine's inputs and outputs.
func (e *Engine) IO() []IO { return nil }

// Run needs the tensorrt build tag.
func (e *Engine) Run(in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, time.Duration, error) {
	return nil, 0, ErrNotBuilt
}

// Time needs the tensorrt build tag.
func (e *Engine) Time(runs int) ([]time.Duration, error) { return nil, ErrNotBuilt }

// Close releases nothing.
func (e *Engine) Close() error { return nil }
