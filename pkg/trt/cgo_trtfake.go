//go:build trtfake

package trt

// The trtfake tag links fake_shim.c instead of shim.cc and TensorRT: the plumbing tests
// run the Go side of the shim (cgo.go) against it, without a GPU.

// #cgo CFLAGS: -std=gnu11 -Wall
// int otrt_fake_live(void);
import "C"

// fakeLive counts the fake shim's networks, results and staging buffers not yet freed.
func fakeLive() int { return int(C.otrt_fake_live()) }

// FakeLive is, in the trtfake build only, what the fake shim and the Go side still hold
// (networks, results, engines, buffers, C allocations): the plumbing tests of the packages
// that run engines (validate, bench) assert it is 0 after closing them.
func FakeLive() int { return fakeLive() + int(cLive.Load()) }
