package calibration

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// firstError opens data and reads it through, returning the first error from either.
func firstError(data string, ins []tensor.Spec, opts Options) error {
	s, err := Open(data, ins, opts)
	if err != nil {
		return err
	}
	defer s.Close()
	for {
		if _, err := s.Next(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

func TestDataErrors(t *testing.T) {
	dir := t.TempDir()
	p := func(name string) string { return filepath.Join(dir, name) }
	x := spec("x", tensor.Float32, -1, 2, 3)
	ids := spec("ids", tensor.Int64, -1, 5)

	var ocr [3][48][192]float32
	var f64 [2][2]float64
	var big [2][1]int64
	big[1][0] = 1 << 40
	var short [5][5]int64
	good := writeNPZ(t, p("good.npz"), array{key: "x", val: fixtureX(6)})

	// Corrupt copies of good files.
	raw, _ := os.ReadFile(good)
	crc := bytes.Clone(raw)
	crc[bytes.Index(crc, []byte("}"))+30]++ // a data byte of the stored member
	os.WriteFile(p("crc.npz"), crc, 0o644)
	os.WriteFile(p("garbage.npz"), []byte("this is not a zip file at all"), 0o644)
	npyRaw, _ := os.ReadFile(writeNPY(t, p("full.npy"), array{val: fixtureX(6)}))
	os.WriteFile(p("cut.npy"), npyRaw[:len(npyRaw)-10], 0o644)
	fortran := bytes.Replace(npyRaw, []byte("'fortran_order': False"), []byte("'fortran_order': True "), 1)
	os.WriteFile(p("fortran.npy"), fortran, 0o644)
	os.WriteFile(p("data.csv"), []byte("1,2"), 0o644)
	os.Mkdir(p("mixed"), 0o755)
	writeNPZ(t, p("mixed/a.npz"), array{key: "x", val: fixtureX(6)})
	os.WriteFile(p("mixed/b.png"), []byte{}, 0o644)
	os.Mkdir(p("ranks"), 0o755)
	writeNPZ(t, p("ranks/a.npz"), array{key: "x", val: fixtureX(6)})
	var rank4 [2][1][2][3]float32
	writeNPZ(t, p("ranks/b.npz"), array{key: "x", val: &rank4})

	cases := []struct {
		name string
		data string
		ins  []tensor.Spec
		opts Options
		want string // the whole message, or a distinctive part after the file name
	}{
		{"missing input", good, []tensor.Spec{x, ids}, Options{},
			`good.npz: no array for input "ids" (keys: x)`},
		{"unknown key", writeNPZ(t, p("extra.npz"), array{key: "x", val: fixtureX(6)}, array{key: "y", val: fixtureIDs()}), []tensor.Spec{x}, Options{},
			`extra.npz: key "y" is not a model input (inputs: x)`},
		{"dtype mismatch", writeNPZ(t, p("dt.npz"), array{key: "ids", val: &f64}), []tensor.Spec{spec("ids", tensor.Int64, -1, 2)}, Options{},
			`dt.npz: input "ids": dtype float64 cannot feed a int64 input; save the data as int64`},
		{"rank mismatch", writeNPZ(t, p("data.npz"), array{key: "x", val: &ocr}),
			[]tensor.Spec{{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 3, 48, 192}, DimNames: []string{"N"}}}, Options{},
			`data.npz: input "x": shape [3,48,192] has rank 3, model wants 4 ([N,3,48,192]); axis 0 of the array counts samples`},
		{"static dim mismatch", good, []tensor.Spec{spec("x", tensor.Float32, -1, 2, 4)}, Options{},
			`good.npz: input "x": shape [6,2,3] gives samples of [1,2,3], model wants [?,2,4] (dimension 2 is 3, want 4)`},
		{"sample counts differ", writeNPZ(t, p("counts.npz"), array{key: "x", val: fixtureX(6)}, array{key: "ids", val: &short}), []tensor.Spec{x, ids}, Options{},
			`counts.npz: arrays disagree on the number of samples: "x" has 6, "ids" has 5`},
		{"not a zip", p("garbage.npz"), []tensor.Spec{x}, Options{},
			`garbage.npz: not a readable .npz: zip: not a valid zip file`},
		{"checksum", p("crc.npz"), []tensor.Spec{x}, Options{},
			`crc.npz: array "x": checksum mismatch (corrupt file)`},
		{"truncated npy", p("cut.npy"), []tensor.Spec{x}, Options{},
			`cut.npy: array "x": sample 5: truncated data (unexpected end of file)`},
		{"fortran order", p("fortran.npy"), []tensor.Spec{x}, Options{},
			`fortran.npy: array "x": Fortran-ordered array; save it with np.ascontiguousarray`},
		{"npy for two inputs", p("full.npy"), []tensor.Spec{x, ids}, Options{},
			`full.npy: a .npy file holds one array, but the model has 2 inputs (x, ids); use an .npz keyed by input name`},
		{"int64 overflow into int32", writeNPZ(t, p("big.npz"), array{key: "n", val: &big}), []tensor.Spec{spec("n", tensor.Int32, -1, 1)}, Options{},
			`big.npz: input "n": sample 1: element 0 does not fit in int32`},
		{"fixed batch vs Batch", good, []tensor.Spec{spec("x", tensor.Float32, 4, 2, 3)}, Options{Batch: 2},
			`good.npz: input "x" has a fixed batch dimension of 4 ([4,2,3]), but batches hold 2 samples; set Batch to 4`},
		{"preprocess on arrays", good, []tensor.Spec{x}, Options{Preprocess: "size=224"},
			`good.npz: preprocessing applies to images, not to .npz arrays`},
		{"unknown format", p("data.csv"), []tensor.Spec{x}, Options{},
			`data.csv: unknown data format ".csv"`},
		{"missing path", p("nope.npz"), []tensor.Spec{x}, Options{},
			`nope.npz: no such file or directory`},
		{"mixed folder", p("mixed"), []tensor.Spec{x}, Options{},
			`mixed: folder mixes .npz and image files`},
		{"ranks differ across files", p("ranks"), []tensor.Spec{spec("x", tensor.Float32, -1, 2, 3)}, Options{},
			`b.npz: input "x": array rank differs from a.npz ([2,1,2,3] against [6,2,3])`},
		{"shape for unknown input", good, []tensor.Spec{x}, Options{Shapes: map[string][]int64{"y": {1}}},
			`--shape y: not a model input (inputs: x)`},
		{"shape rank", good, []tensor.Spec{x}, Options{Shapes: map[string][]int64{"x": {1, 2}}},
			`--shape x=1,2: rank 2, model input "x" has rank 3 ([?,2,3])`},
		{"shape contradicts model", good, []tensor.Spec{x}, Options{Shapes: map[string][]int64{"x": {1, 2, 4}}},
			`--shape x=1,2,4: dimension 2 is fixed to 3 in the model ([?,2,3])`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := firstError(c.data, c.ins, c.opts)
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
}

func TestParseShapes(t *testing.T) {
	got, err := ParseShapes([]string{"input_ids=1,128", "pixel=values=2, 3"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || len(got["input_ids"]) != 2 || got["input_ids"][1] != 128 || got["pixel=values"][1] != 3 {
		t.Errorf("ParseShapes = %v", got)
	}
	for _, bad := range [][]string{{"x"}, {"=1"}, {"x="}, {"x=1,a"}, {"x=-1"}, {"x=1", "x=2"}} {
		if _, err := ParseShapes(bad); err == nil {
			t.Errorf("ParseShapes(%q): no error", bad)
		}
	}
}

func TestReadLabels(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "labels.txt")
	os.WriteFile(ok, []byte("3\n\n 1 \n-2\n0"), 0o644)
	got, err := ReadLabels(ok)
	if err != nil || len(got) != 4 || got[0] != 3 || got[1] != 1 || got[2] != -2 || got[3] != 0 {
		t.Fatalf("ReadLabels = %v, %v", got, err)
	}
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("1\n2\n\ncat\n"), 0o644)
	if _, err := ReadLabels(bad); err == nil || !strings.Contains(err.Error(), `bad.txt:4: "cat" is not an integer label`) {
		t.Errorf("error = %v", err)
	}
}
