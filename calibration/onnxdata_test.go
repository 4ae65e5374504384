package calibration

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

func writePB(t testing.TB, path, name string, v *tensor.Tensor) {
	t.Helper()
	b, err := onnx.FromTensor(name, v).MarshalVT()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestONNXTestData(t *testing.T) {
	dir := t.TempDir()
	// Sets 0, 1, 2, 10 must come in numeric order. Inputs are unnamed (mapped by position)
	// except set 1's, whose names reverse the file order. Outputs: one named, one not.
	for _, k := range []int{0, 1, 2, 10} {
		set := filepath.Join(dir, "test_data_set_"+strconv.Itoa(k))
		a := tensor.FromFloat32([]int64{1, 2}, []float32{float32(k), float32(k) + 0.5})
		b := tensor.FromInt64([]int64{3}, []int64{int64(k), 1, 2})
		if k == 1 {
			writePB(t, filepath.Join(set, "input_0.pb"), "b", b)
			writePB(t, filepath.Join(set, "input_1.pb"), "a", a)
		} else {
			writePB(t, filepath.Join(set, "input_0.pb"), "", a)
			writePB(t, filepath.Join(set, "input_1.pb"), "", b)
		}
		writePB(t, filepath.Join(set, "output_0.pb"), "y", tensor.FromFloat32([]int64{1}, []float32{float32(10 * k)}))
		writePB(t, filepath.Join(set, "output_1.pb"), "", tensor.FromFloat32([]int64{1}, []float32{-1}))
	}
	ins := []tensor.Spec{spec("a", tensor.Float32, -1, 2), spec("b", tensor.Int32, 3)} // b converts int64 → int32
	src := open(t, dir, ins, Options{Outputs: []string{"y", "z"}})
	we, ok := src.(WithExpected)
	if !ok {
		t.Fatal("ONNX test data does not implement WithExpected")
	}
	if src.Len() != 4 {
		t.Errorf("Len = %d", src.Len())
	}
	for pass := 0; pass < 2; pass++ {
		for i, k := range []int{0, 1, 2, 10} {
			s, err := src.Next()
			if err != nil {
				t.Fatal(err)
			}
			if a := s["a"].Float32s(); !equalF32(a, []float32{float32(k), float32(k) + 0.5}) {
				t.Errorf("set %d a = %v", k, a)
			}
			if b := s["b"]; b.DType != tensor.Int32 || !reflect.DeepEqual(b.Int32s(), []int32{int32(k), 1, 2}) {
				t.Errorf("set %d b = %s %v", k, b.DType, b.Int32s())
			}
			exp := we.Expected()
			if len(exp) != 2 || exp["y"].Float32s()[0] != float32(10*k) || exp["z"].Float32s()[0] != -1 {
				t.Errorf("sample %d expected = %v", i, exp)
			}
		}
		if _, err := src.Next(); err == nil {
			t.Error("no EOF after the last set")
		}
		src.Reset()
	}

	// Arrays and images have no references: the assertion must fail for them.
	if _, ok := open(t, "random:1", ins[:1], Options{}).(WithExpected); ok {
		t.Error("random data claims reference outputs")
	}

	// Errors name the file and the input.
	bad := t.TempDir()
	writePB(t, filepath.Join(bad, "test_data_set_0", "input_0.pb"), "c", tensor.FromFloat32([]int64{1, 2}, []float32{1, 2}))
	shape := t.TempDir()
	writePB(t, filepath.Join(shape, "input_0.pb"), "", tensor.FromFloat32([]int64{1, 3}, []float32{1, 2, 3}))
	writePB(t, filepath.Join(shape, "input_1.pb"), "", tensor.FromInt64([]int64{3}, []int64{1, 2, 3}))
	missing := t.TempDir()
	writePB(t, filepath.Join(missing, "test_data_set_0", "input_0.pb"), "", tensor.FromFloat32([]int64{1, 2}, []float32{1, 2}))
	corrupt := t.TempDir()
	os.WriteFile(filepath.Join(corrupt, "input_0.pb"), []byte{0xff, 0xff, 0xff}, 0o644)
	for _, c := range []struct {
		data string
		opts Options
		want string
	}{
		{bad, Options{}, `test_data_set_0/input_0.pb: tensor "c" is not a model input (inputs: a, b)`},
		{shape, Options{}, `input_0.pb: input "a": shape [1,3] does not fit the model's [?,2] (dimension 1 is 3, want 2)`},
		{missing, Options{}, `test_data_set_0: no input_*.pb for input "b"`},
		{corrupt, Options{}, `input_0.pb: not a serialized TensorProto`},
		{dir, Options{Batch: 2}, `ONNX test data is fed as stored, one data set per run; Batch 2 is not possible`},
		{dir, Options{Preprocess: "size=4"}, `preprocessing applies to images, not to ONNX test data`},
	} {
		err := firstError(c.data, ins, c.opts)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("error\n  %v\nwant it to contain\n  %s", err, c.want)
		}
	}
}

// TestONNXNodeTestData reads the real test data of ONNX's node tests against each model's
// own signature and compares with decoding the files directly.
func TestONNXNodeTestData(t *testing.T) {
	root := testassets.Path(t, testassets.ONNXNodeTests)
	dirs, _ := filepath.Glob(filepath.Join(root, "test_*"))
	sort.Strings(dirs)
	read, skipped := 0, 0
	for _, d := range dirs {
		m, err := onnx.Load(filepath.Join(d, "model.onnx"))
		if err != nil {
			skipped++
			continue
		}
		ins := m.InputSpecs()
		var outs []string
		typed := len(ins) > 0
		for _, o := range m.OutputSpecs() {
			outs = append(outs, o.Name)
			typed = typed && o.DType != tensor.Undefined
		}
		m.Close()
		for _, in := range ins {
			typed = typed && in.DType != tensor.Undefined && in.Shape != nil
		}
		if !typed { // sequence/optional values, or no input at all
			skipped++
			continue
		}
		src, err := Open(d, ins, Options{Outputs: outs})
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(d), err)
			continue
		}
		s, err := src.Next()
		if err != nil {
			t.Errorf("%s: %v", filepath.Base(d), err)
			src.Close()
			continue
		}
		for i, in := range ins {
			want, _, err := onnx.ReadTensorFile(filepath.Join(d, "test_data_set_0", "input_"+strconv.Itoa(i)+".pb"))
			if err != nil || want.DType != in.DType {
				continue // converted or named differently; covered above
			}
			if !bytes.Equal(s[in.Name].Data, want.Data) || !reflect.DeepEqual(s[in.Name].Strings, want.Strings) {
				t.Errorf("%s: input %q differs from the file", filepath.Base(d), in.Name)
			}
		}
		exp := src.(WithExpected).Expected()
		for _, o := range outs {
			if _, ok := exp[o]; !ok && len(exp) == len(outs) {
				t.Errorf("%s: no reference for output %q (have %d)", filepath.Base(d), o, len(exp))
			}
		}
		src.Close()
		read++
	}
	t.Logf("read %d node-test folders, skipped %d without plain tensor inputs and outputs", read, skipped)
	if read < 100 {
		t.Errorf("only %d folders read", read)
	}
}
