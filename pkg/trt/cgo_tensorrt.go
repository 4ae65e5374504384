//go:build tensorrt && !trtfake

package trt

// Linking against TensorRT: the include and library folders come from the environment
// (CGO_CPPFLAGS / CGO_LDFLAGS; `make build TAGS=tensorrt TENSORRT_ROOT=…` sets them), so the
// source names no install path. libcudart is for the calibrator's device buffers.

// #cgo CXXFLAGS: -std=c++17
// #cgo LDFLAGS: -lnvinfer -lnvonnxparser -lcudart
import "C"
