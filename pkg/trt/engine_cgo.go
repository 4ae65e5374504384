//go:build tensorrt || trtfake

package trt

/*
#include <stdlib.h>
#include "shim.h"
*/
import "C"

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/cgo"
	"sync"
	"time"
	"unsafe"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// Engine is a deserialized TensorRT engine with its execution context and device buffers,
// for benchmarking and validating a .plan. It is meant for one goroutine at a time (calls
// are serialised) and must be closed: it holds GPU memory and TensorRT's process-wide logger.
type Engine struct {
	mu     sync.Mutex
	path   string
	e      *C.otrt_engine
	h      cgo.Handle
	mem    cmem
	msg    *C.char
	io     []IO
	cnames map[string]*C.char // C copies of the io names, made once
	outs   []C.otrt_tensor    // outputs at the shapes of the last Run
}

// LoadEngine deserializes the engine at path. The engine must come from the same TensorRT
// version and GPU model (TensorRT refuses others, and the error says so).
func LoadEngine(path string, o EngineOptions) (*Engine, error) {
	if _, err := LibraryVersion(); err != nil {
		return nil, err
	}
	plan, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b := &buildCtx{ctx: context.Background(), o: &Options{Model: path, Log: o.Log, LogSeverity: o.LogSeverity}}
	en := &Engine{path: path, h: cgo.NewHandle(b)}
	en.msg = (*C.char)(en.mem.alloc(msgCap))
	cplan := en.mem.bytes(plan)
	st := C.otrt_engine_load(cplan, C.uint64_t(len(plan)), C.uintptr_t(en.h), C.int32_t(o.LogSeverity), &en.e, en.msg, msgCap)
	if st != C.OTRT_OK {
		err := fmt.Errorf("%s: loading the engine: %s", path, C.GoString(en.msg))
		en.release()
		return nil, err
	}
	for i := 0; i < int(C.otrt_engine_nb_io(en.e)); i++ {
		var io C.otrt_io
		if C.otrt_engine_io(en.e, C.int32_t(i), &io) == C.OTRT_OK {
			en.io = append(en.io, IO{Name: C.GoString(io.name), Input: io.is_input != 0, DType: tensor.DType(io.dtype), Dims: int64s(io.dims[:io.nb_dims])})
		}
	}
	en.cnames = map[string]*C.char{}
	for _, io := range en.io {
		en.cnames[io.Name] = en.mem.cstring(io.Name)
	}
	return en, nil
}

// IO lists the engine's inputs and outputs in TensorRT's order.
func (e *Engine) IO() []IO { return e.io }

// Run feeds one set of inputs (by name, in the engine's element types) and returns the
// outputs and the GPU time of the run. Input memory is pinned, not copied, on the way in.
func (e *Engine) Run(in map[string]*tensor.Tensor) (map[string]*tensor.Tensor, time.Duration, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.e == nil {
		return nil, 0, errors.New("trt: Run on a closed engine")
	}
	var pin runtime.Pinner
	defer pin.Unpin()
	var ins []C.otrt_tensor
	nout := 0
	for _, io := range e.io {
		if !io.Input {
			nout++
			continue
		}
		t, ok := in[io.Name]
		if !ok || t == nil {
			return nil, 0, fmt.Errorf("%s: no value for input %q", e.path, io.Name)
		}
		if len(t.Shape) > maxDims {
			return nil, 0, fmt.Errorf("%s: input %q has %d dimensions", e.path, io.Name, len(t.Shape))
		}
		ct := C.otrt_tensor{name: e.cnames[io.Name], dtype: C.int32_t(t.DType), nb_dims: C.int32_t(len(t.Shape)), size: C.uint64_t(len(t.Data))}
		for i, d := range t.Shape {
			ct.dims[i] = C.int64_t(d)
		}
		if len(t.Data) > 0 {
			pin.Pin(&t.Data[0])
			ct.host = unsafe.Pointer(&t.Data[0])
		}
		ins = append(ins, ct)
	}
	e.outs = make([]C.otrt_tensor, nout)
	var inp, outp *C.otrt_tensor
	if len(ins) > 0 {
		inp = &ins[0]
	}
	if nout > 0 {
		outp = &e.outs[0]
	}
	if st := C.otrt_engine_set_inputs(e.e, C.int32_t(len(ins)), inp, C.int32_t(nout), outp, e.msg, msgCap); st != C.OTRT_OK {
		return nil, 0, fmt.Errorf("%s: %s", e.path, C.GoString(e.msg))
	}
	// The output buffers below are Go memory pinned for this call only: no pointer to them
	// may stay in e.outs, which Time passes to C later.
	defer func() {
		for k := range e.outs {
			e.outs[k].host = nil
		}
	}()
	out := map[string]*tensor.Tensor{}
	for k := range e.outs {
		o := &e.outs[k]
		t := &tensor.Tensor{DType: tensor.DType(o.dtype), Shape: int64s(o.dims[:o.nb_dims]), Data: make([]byte, int(o.size))}
		if len(t.Data) > 0 {
			pin.Pin(&t.Data[0])
			o.host = unsafe.Pointer(&t.Data[0])
		}
		out[C.GoString(o.name)] = t
	}
	var ms C.double
	if st := C.otrt_engine_execute(e.e, C.int32_t(nout), outp, 1, &ms, e.msg, msgCap); st != C.OTRT_OK {
		return nil, 0, fmt.Errorf("%s: %s", e.path, C.GoString(e.msg))
	}
	return out, time.Duration(float64(ms) * float64(time.Millisecond)), nil
}

// Time runs the engine `runs` times on the inputs of the last Run, without copying
// outputs back, and returns the GPU time of each run (for latency percentiles).
func (e *Engine) Time(runs int) ([]time.Duration, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.e == nil || e.outs == nil {
		return nil, errors.New("trt: Time needs an open engine and a Run first")
	}
	var outp *C.otrt_tensor
	if len(e.outs) > 0 {
		outp = &e.outs[0]
	}
	out := make([]time.Duration, 0, runs)
	for i := 0; i < runs; i++ {
		var ms C.double
		if st := C.otrt_engine_execute(e.e, C.int32_t(len(e.outs)), outp, 0, &ms, e.msg, msgCap); st != C.OTRT_OK {
			return out, fmt.Errorf("%s: run %d: %s", e.path, i+1, C.GoString(e.msg))
		}
		out = append(out, time.Duration(float64(ms)*float64(time.Millisecond)))
	}
	return out, nil
}

// Close frees the engine, its GPU memory and its C memory. It is safe to call twice.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.release()
	return nil
}

func (e *Engine) release() {
	if e.e != nil {
		C.otrt_engine_free(e.e)
		e.e = nil
	}
	if e.h != 0 {
		e.h.Delete()
		e.h = 0
	}
	e.mem.free()
	e.outs = nil
}
