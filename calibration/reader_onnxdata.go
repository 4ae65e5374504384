package calibration

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// onnxData reads ONNX test-data folders: each test_data_set_<k>/ holds input_<i>.pb (one
// serialized TensorProto per model input) and optionally output_<i>.pb, the reference
// outputs that validation compares against. One data set is one sample, fed exactly as
// stored (it already has its batch dimension), so Batch must be 1.
type onnxData struct {
	name    string
	sets    []string
	ins     []tensor.Spec
	outputs []string
	i       int
	exp     map[string]*tensor.Tensor
}

// readTensorFile decodes one TensorProto file and its stored name. A file that is really a
// SequenceProto or OptionalProto (ONNX stores those under the same names) decodes into
// garbage fields; a decoder panic on it becomes an error naming the file.
func readTensorFile(path string) (t *tensor.Tensor, name string, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("not a readable TensorProto (decoder failed: %v)", r)
		}
	}()
	return onnx.ReadTensorFile(path)
}

// onnxDataSets returns the data-set folders under dir in numeric order: its
// test_data_set_* subfolders, or dir itself when it holds input_*.pb directly.
// It returns nil when dir is not ONNX test data.
func onnxDataSets(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	var sets []string
	direct := false
	for _, e := range ents {
		switch {
		case e.IsDir() && strings.HasPrefix(e.Name(), "test_data_set_"):
			sets = append(sets, filepath.Join(dir, e.Name()))
		case !e.IsDir() && strings.HasPrefix(e.Name(), "input_") && strings.HasSuffix(e.Name(), ".pb"):
			direct = true
		}
	}
	if len(sets) == 0 && direct {
		return []string{dir}, nil
	}
	sortNumeric(sets, "test_data_set_", "")
	return sets, nil
}

// sortNumeric orders names by the integer between prefix and suffix in their base names,
// so input_10 follows input_9; names without one sort after, by name.
func sortNumeric(paths []string, prefix, suffix string) {
	num := func(p string) int {
		s := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(p), prefix), suffix)
		n, err := strconv.Atoi(s)
		if err != nil {
			return int(^uint(0) >> 1)
		}
		return n
	}
	sort.SliceStable(paths, func(a, b int) bool {
		na, nb := num(paths[a]), num(paths[b])
		if na != nb {
			return na < nb
		}
		return paths[a] < paths[b]
	})
}

func openONNXData(name string, sets []string, ins []tensor.Spec, outputs []string) (*onnxData, error) {
	d := &onnxData{name: name, sets: sets, ins: ins, outputs: outputs}
	// Read the first set now so a wrong folder fails at Open, not mid-run.
	if _, _, err := d.next(); err != nil {
		return nil, err
	}
	d.reset()
	return d, nil
}

func listPB(dir, prefix string) ([]string, error) {
	paths, err := filepath.Glob(filepath.Join(dir, prefix+"*.pb"))
	if err != nil {
		return nil, err
	}
	sortNumeric(paths, prefix, ".pb")
	return paths, nil
}

func (d *onnxData) next() (Sample, string, error) {
	d.exp = nil
	if d.i >= len(d.sets) {
		return nil, "", io.EOF
	}
	dir := d.sets[d.i]
	files, err := listPB(dir, "input_")
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, "", fmt.Errorf("%s: no input_*.pb files", dir)
	}
	specs := map[string]tensor.Spec{}
	for _, in := range d.ins {
		specs[in.Name] = in
	}
	smp := Sample{}
	for i, p := range files {
		t, name, err := readTensorFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", p, stripPathPrefix(err, p))
		}
		if name == "" {
			if i >= len(d.ins) {
				return nil, "", fmt.Errorf("%s: tensor %d has no name and the model has only %d inputs (%s)", p, i, len(d.ins), inputNames(d.ins))
			}
			name = d.ins[i].Name
		}
		in, ok := specs[name]
		if !ok {
			return nil, "", fmt.Errorf("%s: tensor %q is not a model input (inputs: %s)", p, name, inputNames(d.ins))
		}
		if _, dup := smp[name]; dup {
			return nil, "", fmt.Errorf("%s: input %q given twice in %s", p, name, dir)
		}
		if t, err = fitTensor(p, in, t); err != nil {
			return nil, "", err
		}
		smp[name] = t
	}
	for _, in := range d.ins {
		if _, ok := smp[in.Name]; !ok {
			return nil, "", fmt.Errorf("%s: no input_*.pb for input %q", dir, in.Name)
		}
	}
	outs, err := listPB(dir, "output_")
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", dir, err)
	}
	for i, p := range outs {
		t, name, err := readTensorFile(p)
		if err != nil {
			return nil, "", fmt.Errorf("%s: %w", p, stripPathPrefix(err, p))
		}
		if name == "" {
			name = "output_" + strconv.Itoa(i)
			if i < len(d.outputs) {
				name = d.outputs[i]
			}
		}
		if d.exp == nil {
			d.exp = map[string]*tensor.Tensor{}
		}
		d.exp[name] = t
	}
	d.i++
	return smp, dir, nil
}

// stripPathPrefix drops a leading "path: " that the decoder may already have added, so
// the path is named once.
func stripPathPrefix(err error, path string) error {
	if s := err.Error(); strings.HasPrefix(s, path+": ") {
		return fmt.Errorf("%s", strings.TrimPrefix(s, path+": "))
	}
	return err
}

// fitTensor checks a stored tensor against the input spec, converting the dtype where
// allowed; the whole shape is compared since the tensor is fed as is.
func fitTensor(where string, in tensor.Spec, t *tensor.Tensor) (*tensor.Tensor, error) {
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("%s: input %q: %v", where, in.Name, err)
	}
	if len(t.Shape) != len(in.Shape) {
		return nil, fmt.Errorf("%s: input %q: shape %s has rank %d, model wants %d (%s)",
			where, in.Name, formatShape(t.Shape), len(t.Shape), len(in.Shape), formatSpec(in))
	}
	for d, v := range t.Shape {
		if in.Shape[d] >= 0 && in.Shape[d] != v {
			return nil, fmt.Errorf("%s: input %q: shape %s does not fit the model's %s (dimension %d is %d, want %d)",
				where, in.Name, formatShape(t.Shape), formatSpec(in), d, v, in.Shape[d])
		}
	}
	if t.DType == in.DType {
		return t, nil
	}
	if !convertible(t.DType, in.DType) {
		return nil, dtypeError(where, in.Name, t.DType, in.DType)
	}
	data, err := convertData(t.DType, in.DType, t.Data)
	if err != nil {
		return nil, fmt.Errorf("%s: input %q: %v", where, in.Name, err)
	}
	return &tensor.Tensor{DType: in.DType, Shape: t.Shape, Data: data}, nil
}

func (d *onnxData) expected() map[string]*tensor.Tensor { return d.exp }
func (d *onnxData) count() int                          { return len(d.sets) }
func (d *onnxData) batchAxes() map[string]bool          { return nil }
func (d *onnxData) reset() error                        { d.i, d.exp = 0, nil; return nil }
func (d *onnxData) close() error                        { return nil }
