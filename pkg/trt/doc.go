// Package trt builds TensorRT engines (.plan files) from ONNX models for TensorRT 10 and 11.
//
// It is the only package of optimctl with C++: a C shim (shim.h) over TensorRT's C++ API,
// compiled only with the `tensorrt` build tag, so that every other build, test and command
// needs nothing of TensorRT. The files are split by what they need:
//
//   - untagged, pure Go, tested everywhere: Options and their checks, --shapes specs and the
//     optimisation profile they resolve to, the equivalent trtexec command line, calibration
//     cache checks, the flattening of options into the C struct the shim reads, and the
//     copy of calibration samples into the shim's buffers;
//   - cgo.go, engine_cgo.go (tags `tensorrt` or `trtfake`): the Go code that calls the shim
//     (Build; LoadEngine and Engine.Run for .plan files) and the callbacks it calls back
//     (log, parser errors, calibration batches and cache, progress);
//   - shim.cc (tag `tensorrt`): the shim over libnvinfer and libnvonnxparser;
//   - fake_shim.c (tag `trtfake`): a stand-in for the shim that echoes what it receives,
//     so the plumbing between Go and C is tested without a GPU or TensorRT;
//   - build_stub.go, engine_stub.go (neither tag): Build and LoadEngine report how to rebuild
//     with TensorRT.
package trt
