package trt

import "github.com/optimctl/optimctl/pkg/tensor"

// IO is an input or output of a serialized engine.
type IO struct {
	Name  string
	Input bool
	DType tensor.DType
	Dims  []int64 // -1 for dimensions chosen at run time (within the engine's profile)
}

// EngineOptions tune LoadEngine.
type EngineOptions struct {
	LogSeverity Severity               // most verbose TensorRT log severity passed to Log
	Log         func(Severity, string) // nil: dropped
}
