//go:build trtfake

package trt

// The trtfake tag links fake_shim.c instead of shim.cc and TensorRT: the plumbing tests
// run the Go side of the shim (cgo.go) against it, without a GPU.

// #cgo CFLAGS: -std=gnu11 -Wall
// int otrt_fake_live(void);
import "C"

// fakeLive counts the fake shim's networks, results and staging buffers not yet freed.
func fakeLive() int { return int(C.otrt_fake_live()) }
