package trt

import (
	"fmt"
	"strings"
)

// Flag bits of otrt_build_options.flags (OTRT_FLAG_* in shim.h). cgo.go fails to compile if
// any differs from the C enum.
const (
	flagFP16              uint32 = 1 << 0
	flagINT8              uint32 = 1 << 1
	flagFP8               uint32 = 1 << 2
	flagStronglyTyped     uint32 = 1 << 3
	flagSparseWeights     uint32 = 1 << 4
	flagRefit             uint32 = 1 << 5
	flagVersionCompatible uint32 = 1 << 6
	flagCalibrate         uint32 = 1 << 7
)

// flagNames name the bits in reports, in bit order.
var flagNames = []struct {
	bit  uint32
	name string
}{
	{flagFP16, "fp16"}, {flagINT8, "int8"}, {flagFP8, "fp8"}, {flagStronglyTyped, "strongly_typed"},
	{flagSparseWeights, "sparse_weights"}, {flagRefit, "refit"}, {flagVersionCompatible, "version_compatible"},
	{flagCalibrate, "calibrate"},
}

// wireProfile is otrt_profile_input in Go types: fixed arrays, unused entries zero.
type wireProfile struct {
	name          string
	nbDims        int32
	index         int32 // optimisation profile number; entries come grouped 0, 1, ...
	min, opt, max [maxDims]int64
}

// wireOptions is otrt_build_options in Go types, field for field. Building it is pure Go
// (tested without cgo); cgo.go only copies it into C memory.
type wireOptions struct {
	flags       uint32
	workspace   uint64
	profile     []wireProfile
	timingCache []byte
}

// marshalOptions flattens the options and the resolved profiles for the shim.
func marshalOptions(o *Options, profiles [][]ShapeSpec, timingCache []byte) (wireOptions, error) {
	w := wireOptions{workspace: uint64(o.Workspace), timingCache: timingCache}
	for _, f := range []struct {
		on  bool
		bit uint32
	}{
		{o.FP16, flagFP16}, {o.INT8, flagINT8}, {o.FP8, flagFP8}, {o.StronglyTyped, flagStronglyTyped},
		{o.SparseWeights, flagSparseWeights}, {o.Refit, flagRefit}, {o.VersionCompatible, flagVersionCompatible},
		{o.INT8 && (o.Calib != "" || o.CalibCache != ""), flagCalibrate},
	} {
		if f.on {
			w.flags |= f.bit
		}
	}
	for k, profile := range profiles {
		for _, s := range profile {
			if err := s.Validate(); err != nil {
				return wireOptions{}, err
			}
			if strings.IndexByte(s.Name, 0) >= 0 {
				return wireOptions{}, fmt.Errorf("input %q: a NUL byte cannot cross into C", s.Name)
			}
			p := wireProfile{name: s.Name, nbDims: int32(len(s.Min)), index: int32(k)}
			copy(p.min[:], s.Min)
			copy(p.opt[:], s.Opt)
			copy(p.max[:], s.Max)
			w.profile = append(w.profile, p)
		}
	}
	return w, nil
}

// flagList names the set bits, for the report.
func flagList(flags uint32) []string {
	out := []string{}
	for _, f := range flagNames {
		if flags&f.bit != 0 {
			out = append(out, f.name)
		}
	}
	return out
}
