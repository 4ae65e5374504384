package trt

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// maxDims is Dims64::MAX_DIMS of TensorRT 10 and 11 (OTRT_MAX_DIMS in shim.h).
const maxDims = 8

// ShapeSpec is one --shapes NAME:MIN/OPT/MAX: the range of dimensions an engine accepts for
// a dynamic input, and the dimensions TensorRT tunes its kernels for (Opt).
type ShapeSpec struct {
	Name          string
	Min, Opt, Max []int64
}

// ParseShapeSpec reads NAME:MIN/OPT/MAX with dimensions written 1x3x224x224, or NAME:DIMS
// for a fixed shape. The name ends at the last ':', so names such as "input:0" work.
func ParseShapeSpec(s string) (ShapeSpec, error) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 {
		return ShapeSpec{}, fmt.Errorf("--shapes %q: want NAME:MIN/OPT/MAX, e.g. images:1x3x224x224/8x3x224x224/32x3x224x224", s)
	}
	spec := ShapeSpec{Name: s[:i]}
	parts := strings.Split(s[i+1:], "/")
	if len(parts) != 1 && len(parts) != 3 {
		return ShapeSpec{}, fmt.Errorf("--shapes %q: want MIN/OPT/MAX (three shapes) or one fixed shape after the name", s)
	}
	var dims [3][]int64
	for k, p := range parts {
		d, err := parseDims(p)
		if err != nil {
			return ShapeSpec{}, fmt.Errorf("--shapes %q: %w", s, err)
		}
		dims[k] = d
	}
	if len(parts) == 1 {
		dims[1], dims[2] = dims[0], dims[0]
	}
	spec.Min, spec.Opt, spec.Max = dims[0], dims[1], dims[2]
	if err := spec.Validate(); err != nil {
		return ShapeSpec{}, err
	}
	return spec, nil
}

// parseDims reads 1x3x224x224.
func parseDims(s string) ([]int64, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("empty shape")
	}
	var out []int64
	for _, f := range strings.Split(s, "x") {
		v, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
		if err != nil || v < 0 {
			return nil, fmt.Errorf("dimension %q in %q is not a non-negative integer", f, s)
		}
		out = append(out, v)
	}
	return out, nil
}

// formatDims writes 1x3x224x224; dynamic dimensions as -1.
func formatDims(d []int64) string {
	parts := make([]string, len(d))
	for i, v := range d {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, "x")
}

// String is the flag form, NAME:MIN/OPT/MAX.
func (s ShapeSpec) String() string {
	return s.Name + ":" + formatDims(s.Min) + "/" + formatDims(s.Opt) + "/" + formatDims(s.Max)
}

// Validate checks equal ranks, at most 8 dimensions, and min ≤ opt ≤ max in every dimension.
func (s ShapeSpec) Validate() error {
	if s.Name == "" {
		return fmt.Errorf("--shapes %s: no input name", s)
	}
	if len(s.Min) != len(s.Opt) || len(s.Opt) != len(s.Max) {
		return fmt.Errorf("--shapes %s: min, opt and max have different ranks (%d, %d, %d)", s, len(s.Min), len(s.Opt), len(s.Max))
	}
	if len(s.Min) == 0 || len(s.Min) > maxDims {
		return fmt.Errorf("--shapes %s: rank %d; TensorRT takes 1 to %d dimensions", s, len(s.Min), maxDims)
	}
	for d := range s.Min {
		if s.Min[d] < 0 || s.Min[d] > s.Opt[d] || s.Opt[d] > s.Max[d] {
			return fmt.Errorf("--shapes %s: dimension %d must satisfy 0 <= min <= opt <= max (%d, %d, %d)", s, d, s.Min[d], s.Opt[d], s.Max[d])
		}
	}
	return nil
}

// Input is a network input as TensorRT's parser created it.
type Input struct {
	Name        string
	DType       tensor.DType
	Dims        []int64 // -1 for dynamic dimensions
	ShapeTensor bool    // the input holds a shape; its profile needs values, not dims
}

func (in Input) dynamic() bool {
	for _, d := range in.Dims {
		if d < 0 {
			return true
		}
	}
	return false
}

// ResolveProfile turns the --shapes specs into the optimisation profile for the network's
// inputs. Static inputs default to their own dims; a spec for one must agree with them.
// A dynamic input without a spec is an error that says what to pass. The profile is nil
// when every input is static: TensorRT needs none then.
func ResolveProfile(inputs []Input, specs []ShapeSpec) ([]ShapeSpec, error) {
	byName := map[string]ShapeSpec{}
	for _, s := range specs {
		byName[s.Name] = s
	}
	known := map[string]bool{}
	var profile []ShapeSpec
	anyDynamic := false
	for _, in := range inputs {
		known[in.Name] = true
		s, given := byName[in.Name]
		if in.ShapeTensor && (in.dynamic() || given) {
			return nil, fmt.Errorf("input %q is a shape tensor (its values set shapes); build-trt cannot profile it yet, use trtexec", in.Name)
		}
		switch {
		case given:
			if len(s.Min) != len(in.Dims) {
				return nil, fmt.Errorf("--shapes %s: rank %d, but input %q has rank %d (%s)", s, len(s.Min), in.Name, len(in.Dims), formatDims(in.Dims))
			}
			for d, v := range in.Dims {
				if v >= 0 && (s.Min[d] != v || s.Opt[d] != v || s.Max[d] != v) {
					return nil, fmt.Errorf("--shapes %s: dimension %d of input %q is fixed to %d in the model (%s)", s, d, in.Name, v, formatDims(in.Dims))
				}
			}
		case in.dynamic():
			return nil, fmt.Errorf("input %q has dynamic dimensions (%s): give --shapes %s:MIN/OPT/MAX, e.g. %s",
				in.Name, formatDims(in.Dims), in.Name, exampleSpec(in))
		default:
			s = ShapeSpec{Name: in.Name, Min: in.Dims, Opt: in.Dims, Max: in.Dims}
		}
		anyDynamic = anyDynamic || in.dynamic()
		profile = append(profile, s)
	}
	for _, s := range specs {
		if !known[s.Name] {
			names := make([]string, len(inputs))
			for i, in := range inputs {
				names[i] = in.Name
			}
			return nil, fmt.Errorf("--shapes %s: %q is not a network input (inputs: %s)", s, s.Name, strings.Join(names, ", "))
		}
	}
	if !anyDynamic {
		return nil, nil
	}
	return profile, nil
}

// ResolveProfiles resolves profile 0 from --shapes and the further ones from --profile, each
// as ResolveProfile does. It returns nil when every input is static, and refuses further
// profiles then.
func ResolveProfiles(inputs []Input, first []ShapeSpec, more [][]ShapeSpec) ([][]ShapeSpec, error) {
	p0, err := ResolveProfile(inputs, first)
	if err != nil {
		return nil, err
	}
	if p0 == nil {
		if len(more) > 0 {
			return nil, fmt.Errorf("--profile: every input is static, so the engine has one shape and no optimisation profiles")
		}
		return nil, nil
	}
	out := [][]ShapeSpec{p0}
	for k, set := range more {
		p, err := ResolveProfile(inputs, set)
		if err != nil {
			return nil, fmt.Errorf("--profile %d: %w", k+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseProfile reads one --profile: NAME:MIN/OPT/MAX specs separated by commas (so a name
// with a comma can only be given in --shapes, profile 0).
func ParseProfile(s string) ([]ShapeSpec, error) {
	var out []ShapeSpec
	for _, f := range strings.Split(s, ",") {
		spec, err := ParseShapeSpec(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		out = append(out, spec)
	}
	return out, nil
}

// exampleSpec suggests a spec for a dynamic input: batch 1/8/32 on a dynamic first
// dimension, other dynamic dimensions left to the user as D.
func exampleSpec(in Input) string {
	var min, opt, max []string
	for i, d := range in.Dims {
		switch {
		case d >= 0:
			v := strconv.FormatInt(d, 10)
			min, opt, max = append(min, v), append(opt, v), append(max, v)
		case i == 0:
			min, opt, max = append(min, "1"), append(opt, "8"), append(max, "32")
		default:
			min, opt, max = append(min, "D"), append(opt, "D"), append(max, "D")
		}
	}
	return in.Name + ":" + strings.Join(min, "x") + "/" + strings.Join(opt, "x") + "/" + strings.Join(max, "x")
}

// calibrationSpecs are the shapes calibration batches must have: TensorRT calibrates at the
// profile's opt dimensions, or at the static ones.
func calibrationSpecs(inputs []Input, profile []ShapeSpec) []tensor.Spec {
	out := make([]tensor.Spec, len(inputs))
	for i, in := range inputs {
		dims := in.Dims
		for _, p := range profile {
			if p.Name == in.Name {
				dims = p.Opt
			}
		}
		out[i] = tensor.Spec{Name: in.Name, DType: in.DType, Shape: append([]int64(nil), dims...)}
	}
	return out
}
