// Package calibration reads the sample data that validation, calibration and benchmarking
// feed to a model: .npz/.npy arrays, ONNX test-data folders, image folders and seeded
// random data. Every reader streams: memory stays at about one sample however many
// samples the data holds, because calibration sets and validation sets can be far larger
// than RAM. Every sample is checked against the model's input signature, and every error
// names the file and the input, so a mismatch is found before a runtime session fails.
package calibration

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// Sample maps a model input name to the value to feed. Inputs with a batch axis carry one
// sample along axis 0 (shape [1,...]), or Options.Batch samples when batching is requested.
type Sample map[string]*tensor.Tensor

// Source streams samples. Callers loop on Next until io.EOF; Reset starts over, because
// validation runs two models over the same data and histogram calibration takes two passes.
// Each Next returns newly allocated tensors that the caller may keep. A Source is meant for
// one goroutine at a time.
type Source interface {
	// Next returns the next sample, or io.EOF after the last one.
	Next() (Sample, error)
	// Len is the number of samples Next will return (batches when batching), or -1 if unknown.
	Len() int
	// Reset starts again from the first sample; the sequence is identical every time.
	Reset() error
	// Close releases open files. It is safe to call more than once.
	Close() error
}

// WithExpected is implemented by sources that carry reference outputs (ONNX test-data
// folders with output_*.pb). Validation asserts it to compare against stored references.
type WithExpected interface {
	// Expected returns the reference outputs of the sample last returned by Next, keyed by
	// output name (see Options.Outputs), or nil when that sample has none.
	Expected() map[string]*tensor.Tensor
}

// Options tune how data becomes samples. The zero value is valid.
type Options struct {
	// Preprocess is the image pipeline in its flag form (see ParsePreprocess). It applies to
	// image data only; other data with a Preprocess is an error rather than silently raw.
	Preprocess string
	// Shapes fills dynamic dimensions of the model inputs (from --shape NAME=d0,d1,...).
	Shapes map[string][]int64
	// Seed drives random:N data; the same seed gives byte-identical samples.
	Seed uint64
	// Limit caps the number of samples read (0: all).
	Limit int
	// Batch stacks this many samples along axis 0; the last partial batch is kept unless an
	// input has a fixed batch dimension, which a short batch could not be fed to.
	// 0 means the model's fixed batch size if it has one, else 1.
	Batch int
	// Outputs are the model's output names in order; they key the reference outputs of
	// output_*.pb files that carry no name (otherwise the key is "output_<i>").
	Outputs []string
}

// Open opens data described by spec for a model with the given inputs:
//
//	data.npz            keys = input names, axis 0 = samples
//	folder/             *.npz (or *.npy) files concatenated in name order, images, or an
//	                    ONNX test-data folder (test_data_set_*/input_*.pb)
//	data.npy            one array for a single-input model, axis 0 = samples
//	image.png           one image
//	random:N[:LO:HI]    N seeded random samples (floats in [LO,HI), default [0,1))
//
// Options.Shapes first fill dynamic dimensions; every sample is then checked against the
// result. An array with the input's rank is read row by row and each row fed as [1,...]
// (the input's axis 0 is its batch axis); an array with one axis more feeds rows as they are.
func Open(spec string, inputs []tensor.Spec, opts Options) (Source, error) {
	if len(inputs) == 0 {
		return nil, fmt.Errorf("%s: the model has no inputs to feed", spec)
	}
	if opts.Limit < 0 || opts.Batch < 0 {
		return nil, fmt.Errorf("%s: Limit and Batch must not be negative", spec)
	}
	ins, err := resolveInputs(inputs, opts.Shapes)
	if err != nil {
		return nil, err
	}
	var pp *Preprocess
	if opts.Preprocess != "" {
		p, err := ParsePreprocess(opts.Preprocess)
		if err != nil {
			return nil, err
		}
		pp = &p
	}
	src, err := openKind(spec, ins, pp, opts)
	if err != nil {
		return nil, err
	}
	s, err := wrap(src, ins, opts)
	if err != nil {
		src.close()
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	return s, nil
}

func openKind(spec string, ins []tensor.Spec, pp *Preprocess, opts Options) (inner, error) {
	noPre := func(kind string) error {
		if pp != nil {
			return fmt.Errorf("%s: preprocessing applies to images, not to %s", spec, kind)
		}
		return nil
	}
	if strings.HasPrefix(spec, "random:") {
		if err := noPre("random data"); err != nil {
			return nil, err
		}
		return openRandom(spec, ins, opts.Seed)
	}
	st, err := os.Stat(spec)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("data %s: %w", spec, err)
	}
	if !st.IsDir() {
		switch ext := strings.ToLower(filepath.Ext(spec)); {
		case ext == ".npz" || ext == ".npy":
			if err := noPre(ext + " arrays"); err != nil {
				return nil, err
			}
			return openArrays(spec, []string{spec}, ins)
		case isImage(spec):
			return openImages(spec, []string{spec}, ins, pp)
		default:
			return nil, fmt.Errorf("%s: unknown data format %q (want .npz, .npy, an image, a folder, or random:N)", spec, ext)
		}
	}
	if sets, err := onnxDataSets(spec); err != nil {
		return nil, err
	} else if sets != nil {
		if err := noPre("ONNX test data"); err != nil {
			return nil, err
		}
		return openONNXData(spec, sets, ins, opts.Outputs)
	}
	ents, err := os.ReadDir(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", spec, err)
	}
	var arrays, images, kinds []string
	for _, e := range ents {
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		p := filepath.Join(spec, e.Name())
		switch ext := strings.ToLower(filepath.Ext(p)); {
		case ext == ".npz" || ext == ".npy":
			arrays = append(arrays, p)
			kinds = appendOnce(kinds, ext)
		case isImage(p):
			images = append(images, p)
			kinds = appendOnce(kinds, "image")
		}
	}
	switch {
	case len(kinds) > 1:
		// A mixed folder is almost always a mistake (a stray export beside the real data).
		return nil, fmt.Errorf("%s: folder mixes %s files; keep one kind of data per folder", spec, strings.Join(kinds, " and "))
	case len(arrays) > 0:
		if err := noPre("arrays"); err != nil {
			return nil, err
		}
		sort.Strings(arrays)
		return openArrays(spec, arrays, ins)
	case len(images) > 0:
		sort.Strings(images)
		return openImages(spec, images, ins, pp)
	}
	return nil, fmt.Errorf("%s: no data found (want *.npz, *.npy, images, or test_data_set_*/input_*.pb)", spec)
}

func appendOnce(s []string, v string) []string {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// resolveInputs applies Shapes to the input specs: given dimensions replace dynamic ones and
// must agree with static ones, so every later check runs against the shape that will be fed.
func resolveInputs(inputs []tensor.Spec, shapes map[string][]int64) ([]tensor.Spec, error) {
	out := make([]tensor.Spec, len(inputs))
	known := map[string]bool{}
	for i, in := range inputs {
		known[in.Name] = true
		out[i] = in
		out[i].Shape = append([]int64(nil), in.Shape...)
		dims, ok := shapes[in.Name]
		if !ok {
			continue
		}
		if len(dims) != len(in.Shape) {
			return nil, fmt.Errorf("--shape %s=%s: rank %d, model input %q has rank %d (%s)",
				in.Name, joinDims(dims), len(dims), in.Name, len(in.Shape), formatSpec(in))
		}
		for d, v := range dims {
			if v < 0 {
				return nil, fmt.Errorf("--shape %s=%s: dimension %d is negative", in.Name, joinDims(dims), d)
			}
			if in.Shape[d] >= 0 && in.Shape[d] != v {
				return nil, fmt.Errorf("--shape %s=%s: dimension %d is fixed to %d in the model (%s)",
					in.Name, joinDims(dims), d, in.Shape[d], formatSpec(in))
			}
			out[i].Shape[d] = v
		}
	}
	for name := range shapes {
		if !known[name] {
			return nil, fmt.Errorf("--shape %s: not a model input (inputs: %s)", name, inputNames(inputs))
		}
	}
	return out, nil
}

// ParseShapes parses repeated --shape NAME=d0,d1,... flags. The name is split at the last
// '=', so input names containing '=' or ':' still work.
func ParseShapes(flags []string) (map[string][]int64, error) {
	out := map[string][]int64{}
	for _, f := range flags {
		i := strings.LastIndexByte(f, '=')
		if i <= 0 {
			return nil, fmt.Errorf("--shape %q: want NAME=d0,d1,...", f)
		}
		name, list := f[:i], f[i+1:]
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--shape %q: input %q given twice", f, name)
		}
		if strings.TrimSpace(list) == "" {
			return nil, fmt.Errorf("--shape %q: no dimensions", f)
		}
		var dims []int64
		for _, s := range strings.Split(list, ",") {
			v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil || v < 0 {
				return nil, fmt.Errorf("--shape %q: dimension %q is not a non-negative integer", f, s)
			}
			dims = append(dims, v)
		}
		out[name] = dims
	}
	return out, nil
}

// formatSpec prints a spec's shape as [N,3,224,224]: dynamic dimensions show their
// symbolic name, or "?" when they have none.
func formatSpec(s tensor.Spec) string {
	parts := make([]string, len(s.Shape))
	for i, d := range s.Shape {
		switch {
		case d >= 0:
			parts[i] = strconv.FormatInt(d, 10)
		case i < len(s.DimNames) && s.DimNames[i] != "":
			parts[i] = s.DimNames[i]
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func formatShape(shape []int64) string { return "[" + joinDims(shape) + "]" }

func joinDims(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = strconv.FormatInt(d, 10)
	}
	return strings.Join(parts, ",")
}

func inputNames(inputs []tensor.Spec) string {
	names := make([]string, len(inputs))
	for i, in := range inputs {
		names[i] = in.Name
	}
	return strings.Join(names, ", ")
}
