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
	"io"
	"io/fs"
	"os"
	"runtime/cgo"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// The Go constants must equal shim.h's: any difference is an out-of-range constant index,
// so a drift between the two fails the build instead of mis-setting a builder flag.
var (
	_ = [1]int{}[C.OTRT_FLAG_FP16-flagFP16]
	_ = [1]int{}[C.OTRT_FLAG_INT8-flagINT8]
	_ = [1]int{}[C.OTRT_FLAG_FP8-flagFP8]
	_ = [1]int{}[C.OTRT_FLAG_STRONGLY_TYPED-flagStronglyTyped]
	_ = [1]int{}[C.OTRT_FLAG_SPARSE_WEIGHTS-flagSparseWeights]
	_ = [1]int{}[C.OTRT_FLAG_REFIT-flagRefit]
	_ = [1]int{}[C.OTRT_FLAG_VERSION_COMPATIBLE-flagVersionCompatible]
	_ = [1]int{}[C.OTRT_FLAG_CALIBRATE-flagCalibrate]
	_ = [1]int{}[C.OTRT_MAX_DIMS-maxDims]
	_ = [1]int{}[C.OTRT_LOG_VERBOSE-SeverityVerbose]
)

// Available reports whether this binary can build engines.
const Available = true

// msgCap is the size of the message buffer every shim call writes its one-line error into.
const msgCap = 4096

// buildMu runs one build at a time: TensorRT's logger is process-wide, and the shim routes
// it to the one open network.
var buildMu sync.Mutex

// cLive counts C allocations made by this package and not yet freed; the plumbing tests
// assert it returns to zero.
var cLive atomic.Int64

// cmem collects the C allocations of one build and frees them together, so that every
// return path releases them.
type cmem struct{ ptrs []unsafe.Pointer }

func (m *cmem) alloc(n int) unsafe.Pointer {
	p := C.calloc(1, C.size_t(n))
	if p == nil {
		panic("trt: out of C memory")
	}
	m.ptrs = append(m.ptrs, p)
	cLive.Add(1)
	return p
}

func (m *cmem) bytes(b []byte) unsafe.Pointer {
	p := m.alloc(len(b) + 1)
	copy(unsafe.Slice((*byte)(p), len(b)), b)
	return p
}

func (m *cmem) cstring(s string) *C.char { return (*C.char)(m.bytes([]byte(s))) }

func (m *cmem) free() {
	for _, p := range m.ptrs {
		C.free(p)
		cLive.Add(-1)
	}
	m.ptrs = nil
}

// LibraryVersion is the loaded libnvinfer's version (major·10000 + minor·100 + patch). A
// library of another major than the headers the shim was compiled with is an error: enum
// values differ between majors (e.g. BuilderFlag::kVERSION_COMPATIBLE).
func LibraryVersion() (int, error) {
	lib, hdr := int(C.otrt_library_version()), int(C.otrt_header_version())
	if lib/10000 != hdr/10000 {
		return lib, fmt.Errorf("libnvinfer %s does not match the TensorRT %s headers this optimctl was built with; rebuild against the installed TensorRT",
			VersionString(lib), VersionString(hdr))
	}
	return lib, nil
}

// openCalibration opens --calib data; the plumbing tests replace it to inject failures.
var openCalibration = calibration.Open

// buildCtx is the state the shim's callbacks reach through a cgo.Handle.
type buildCtx struct {
	ctx     context.Context
	o       *Options
	version int
	mem     cmem // C memory alive until Build returns (message buffer, options, cache read)

	mu       sync.Mutex // callbacks may come from TensorRT's threads
	err      error      // first failure inside a callback: it explains the shim's status best
	parse    []NodeError
	src      calibration.Source
	batches  int
	cacheIn  []byte // calibration cache handed to TensorRT (cache-only INT8)
	cacheOut []byte // calibration cache TensorRT produced
}

func (b *buildCtx) fail(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil {
		b.err = err
	}
}

// guard turns a panic in a callback into an error: a panic must not unwind through C.
func (b *buildCtx) guard(what string) {
	if r := recover(); r != nil {
		b.fail(fmt.Errorf("%s: internal error: %v", what, r))
	}
}

// lookup finds the build a callback belongs to, or nil for a handle already deleted (a
// TensorRT thread logging late): such a callback is dropped rather than crashing the process.
func lookup(ctx C.uintptr_t) (b *buildCtx) {
	defer func() {
		if recover() != nil {
			b = nil
		}
	}()
	return cgo.Handle(ctx).Value().(*buildCtx)
}

// Build parses the model with TensorRT's ONNX parser, builds the engine for the options
// and writes it atomically to o.Output (and the timing and calibration caches when asked).
func Build(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	version, err := LibraryVersion()
	if err != nil {
		return nil, err
	}
	if err := o.CheckVersion(version / 10000); err != nil {
		return nil, err
	}
	if _, err := os.Stat(o.Model); err != nil {
		return nil, err
	}
	start := time.Now()
	b := &buildCtx{ctx: ctx, o: &o, version: version}
	if o.INT8 && o.Calib == "" && o.CalibCache != "" {
		if b.cacheIn, err = readCalibrationCache(o.CalibCache, version); err != nil {
			return nil, err
		}
	}
	var timing []byte
	if o.TimingCache != "" {
		timing, err = os.ReadFile(o.TimingCache)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("timing cache: %w", err)
		}
	}

	buildMu.Lock()
	defer buildMu.Unlock()
	h := cgo.NewHandle(b)
	defer h.Delete()
	defer b.mem.free()
	msg := (*C.char)(b.mem.alloc(msgCap))

	var net *C.otrt_network
	st := C.otrt_parse(b.mem.cstring(o.Model), C.uintptr_t(h), C.int32_t(o.LogSeverity), C.int32_t(boolInt(o.StronglyTyped)), &net, msg, msgCap)
	if st != C.OTRT_OK {
		return nil, b.error(st, msg, "parsing")
	}
	defer C.otrt_network_free(net)

	inputs := networkInputs(net)
	profiles, err := ResolveProfiles(inputs, o.Shapes, o.Profiles)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", o.Model, err)
	}
	var profile []ShapeSpec // profile 0: calibration runs at its opt shapes
	if len(profiles) > 0 {
		profile = profiles[0]
	}
	if o.INT8 && o.Calib != "" {
		src, err := openCalibration(o.Calib, calibrationSpecs(inputs, profile), calibration.Options{Preprocess: o.Preprocess, Limit: o.CalibLimit})
		if err != nil {
			return nil, err
		}
		defer src.Close()
		b.src = src
	}
	w, err := marshalOptions(&o, profiles, timing)
	if err != nil {
		return nil, err
	}
	var res *C.otrt_result
	st = C.otrt_build(net, b.mem.options(w), &res, msg, msgCap)
	if st != C.OTRT_OK {
		return nil, b.error(st, msg, "building the engine")
	}
	defer C.otrt_result_free(res)
	if b.err != nil { // a callback failed but TensorRT finished anyway: the engine is not trusted
		return nil, fmt.Errorf("%s: %w", o.Model, b.err)
	}

	var p unsafe.Pointer
	var n C.uint64_t
	C.otrt_result_engine(res, &p, &n)
	if err := fsutil.WriteFileAtomic(o.Output, unsafe.Slice((*byte)(p), int(n))); err != nil {
		return nil, err
	}
	rep := &Report{Input: o.Model, Output: o.Output, TensorRTVersion: VersionString(version), SizeBytes: int64(n),
		Flags: flagList(w.flags), Inputs: reportInputs(inputs, profile), CalibrationBatches: b.batches}
	if len(profiles) > 1 {
		for _, p := range profiles {
			specs := make([]string, len(p))
			for i, s := range p {
				specs[i] = s.String()
			}
			rep.Profiles = append(rep.Profiles, specs)
		}
	}
	if o.TimingCache != "" {
		C.otrt_result_timing_cache(res, &p, &n)
		if n > 0 {
			if err := fsutil.WriteFileAtomic(o.TimingCache, unsafe.Slice((*byte)(p), int(n))); err != nil {
				return nil, err
			}
			rep.TimingCache = o.TimingCache
		}
	}
	switch {
	case b.cacheIn != nil:
		rep.CalibrationCache = o.CalibCache
	case o.CalibCache != "" && len(b.cacheOut) > 0:
		warn := func(s string) { o.log(SeverityWarning, s) }
		if err := writeCalibrationCache(o.CalibCache, b.cacheOut, version, warn); err != nil {
			return nil, err
		}
		rep.CalibrationCache = o.CalibCache
	}
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// error turns a shim status into the most telling Go error: a callback's own error first
// (it names the data or cache at fault), then the parser's errors, then the shim's message.
func (b *buildCtx) error(st C.int, msg *C.char, phase string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return fmt.Errorf("%s: %w", b.o.Model, b.err)
	}
	if st == C.OTRT_ERR_PARSE && len(b.parse) > 0 {
		return &ParseError{Model: b.o.Model, Errors: b.parse}
	}
	if st == C.OTRT_ERR_CANCELED && b.ctx.Err() != nil {
		return fmt.Errorf("%s: %s: %w", b.o.Model, phase, b.ctx.Err())
	}
	return fmt.Errorf("%s: %s with TensorRT %s: %s", b.o.Model, phase, VersionString(b.version), C.GoString(msg))
}

// options copies the wire options into C memory owned by the build.
func (m *cmem) options(w wireOptions) *C.otrt_build_options {
	o := (*C.otrt_build_options)(m.alloc(int(unsafe.Sizeof(C.otrt_build_options{}))))
	o.flags = C.uint32_t(w.flags)
	o.workspace_bytes = C.uint64_t(w.workspace)
	if len(w.profile) > 0 {
		ps := unsafe.Slice((*C.otrt_profile_input)(m.alloc(len(w.profile)*int(unsafe.Sizeof(C.otrt_profile_input{})))), len(w.profile))
		for i, p := range w.profile {
			ps[i].name = m.cstring(p.name)
			ps[i].nb_dims = C.int32_t(p.nbDims)
			ps[i].profile = C.int32_t(p.index)
			for k := 0; k < maxDims; k++ {
				ps[i].min[k], ps[i].opt[k], ps[i].max[k] = C.int64_t(p.min[k]), C.int64_t(p.opt[k]), C.int64_t(p.max[k])
			}
		}
		o.profile = &ps[0]
		o.nb_profile = C.int32_t(len(w.profile))
	}
	if len(w.timingCache) > 0 {
		o.timing_cache = m.bytes(w.timingCache)
		o.timing_cache_size = C.uint64_t(len(w.timingCache))
	}
	return o
}

func networkInputs(net *C.otrt_network) []Input {
	n := int(C.otrt_network_nb_inputs(net))
	out := make([]Input, 0, n)
	for i := 0; i < n; i++ {
		var in C.otrt_input
		if C.otrt_network_input(net, C.int32_t(i), &in) != C.OTRT_OK {
			continue
		}
		out = append(out, Input{Name: C.GoString(in.name), DType: tensor.DType(in.dtype), Dims: int64s(in.dims[:in.nb_dims]), ShapeTensor: in.is_shape_tensor != 0})
	}
	return out
}

func reportInputs(inputs []Input, profile []ShapeSpec) []ReportInput {
	out := make([]ReportInput, len(inputs))
	for i, in := range inputs {
		out[i] = ReportInput{Name: in.Name, DType: in.DType.String(), Dims: in.Dims}
		for _, p := range profile {
			if p.Name == in.Name {
				out[i].Min, out[i].Opt, out[i].Max = p.Min, p.Opt, p.Max
			}
		}
	}
	return out
}

func int64s(d []C.int64_t) []int64 {
	out := make([]int64, len(d))
	for i, v := range d {
		out[i] = int64(v)
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (o *Options) log(s Severity, msg string) {
	if o.Log != nil && s <= o.LogSeverity {
		o.Log(s, msg)
	}
}

// logMu serialises Log calls, which TensorRT may make from several threads.
var logMu sync.Mutex

//export otrt_go_log
func otrt_go_log(ctx C.uintptr_t, severity C.int32_t, msg *C.char) {
	b := lookup(ctx)
	if b == nil {
		return
	}
	defer b.guard("log")
	logMu.Lock()
	defer logMu.Unlock()
	b.o.log(Severity(severity), C.GoString(msg))
}

//export otrt_go_parser_error
func otrt_go_parser_error(ctx C.uintptr_t, code, node C.int32_t, name, op, desc *C.char) {
	b := lookup(ctx)
	if b == nil {
		return
	}
	defer b.guard("parser error")
	b.mu.Lock()
	defer b.mu.Unlock()
	b.parse = append(b.parse, NodeError{Code: int(code), Node: int(node), Name: C.GoString(name), Op: C.GoString(op), Desc: C.GoString(desc)})
}

//export otrt_go_get_batch
func otrt_go_get_batch(ctx C.uintptr_t, nb C.int32_t, ts *C.otrt_tensor) (ret C.int) {
	b := lookup(ctx)
	ret = -1
	if b == nil {
		return -1
	}
	defer b.guard("calibration batch")
	if err := b.ctx.Err(); err != nil {
		b.fail(fmt.Errorf("calibration: %w", err))
		return -1
	}
	if b.src == nil {
		b.fail(fmt.Errorf("TensorRT did not accept calibration cache %s and asked for calibration data: give --calib DATA", b.o.CalibCache))
		return -1
	}
	smp, err := b.src.Next()
	if err == io.EOF {
		return 0
	}
	if err != nil {
		b.fail(fmt.Errorf("calibration data %s: %w", b.o.Calib, err))
		return -1
	}
	for _, t := range unsafe.Slice(ts, int(nb)) {
		dst := unsafe.Slice((*byte)(t.host), int(t.size))
		if err := fillInput(smp, C.GoString(t.name), tensor.DType(t.dtype), int64s(t.dims[:t.nb_dims]), dst); err != nil {
			b.fail(fmt.Errorf("%s (batch %d): %w", b.o.Calib, b.batches+1, err))
			return -1
		}
	}
	b.mu.Lock()
	b.batches++
	b.mu.Unlock()
	return 1
}

//export otrt_go_read_calib_cache
func otrt_go_read_calib_cache(ctx C.uintptr_t, data *unsafe.Pointer, size *C.uint64_t) (ret C.int) {
	b := lookup(ctx)
	ret = -1
	if b == nil {
		return -1
	}
	defer b.guard("calibration cache read")
	*data, *size = nil, 0
	if b.cacheIn != nil { // read and checked by Build before the build started
		b.mu.Lock()
		*data = b.mem.bytes(b.cacheIn)
		b.mu.Unlock()
		*size = C.uint64_t(len(b.cacheIn))
	}
	return 0
}

//export otrt_go_write_calib_cache
func otrt_go_write_calib_cache(ctx C.uintptr_t, data unsafe.Pointer, size C.uint64_t) (ret C.int) {
	b := lookup(ctx)
	ret = -1
	if b == nil {
		return -1
	}
	defer b.guard("calibration cache write")
	b.mu.Lock()
	b.cacheOut = C.GoBytes(data, C.int(size))
	b.mu.Unlock()
	return 0
}

//export otrt_go_progress
func otrt_go_progress(ctx C.uintptr_t, event C.int32_t, phase, parent *C.char, steps C.int32_t) (ret C.int) {
	b := lookup(ctx)
	if b == nil {
		return 0
	}
	defer b.guard("progress")
	if b.ctx.Err() != nil {
		return 0
	}
	if event == C.OTRT_PHASE_START && b.o.Progress != nil {
		b.o.Progress(C.GoString(phase), C.GoString(parent), int(steps))
	}
	return 1
}
