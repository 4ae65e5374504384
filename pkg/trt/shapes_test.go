package trt

import (
	"reflect"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
)

func TestParseShapeSpec(t *testing.T) {
	cases := map[string]ShapeSpec{
		"images:1x3x224x224/8x3x224x224/32x3x224x224": {Name: "images", Min: []int64{1, 3, 224, 224}, Opt: []int64{8, 3, 224, 224}, Max: []int64{32, 3, 224, 224}},
		"x:4x16":             {Name: "x", Min: []int64{4, 16}, Opt: []int64{4, 16}, Max: []int64{4, 16}},
		"input:0:1/2/3":      {Name: "input:0", Min: []int64{1}, Opt: []int64{2}, Max: []int64{3}},
		"ids:1x0/1x64/1x512": {Name: "ids", Min: []int64{1, 0}, Opt: []int64{1, 64}, Max: []int64{1, 512}},
	}
	for in, want := range cases {
		got, err := ParseShapeSpec(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseShapeSpec(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"images":              "NAME:MIN/OPT/MAX",
		":1x3":                "NAME:MIN/OPT/MAX",
		"x:1x3/2x3":           "three shapes",
		"x:1x3/2x3/3x3/4x3":   "three shapes",
		"x:":                  "empty shape",
		"x:1xax3":             "not a non-negative integer",
		"x:1x-3":              "not a non-negative integer",
		"x:1x3/1x3x4/1x3":     "different ranks",
		"x:8x3/1x3/16x3":      "min <= opt <= max",
		"x:1x3/8x3/4x3":       "min <= opt <= max",
		"x:1x1x1x1x1x1x1x1x1": "1 to 8 dimensions",
		"x:1x3/2x3//":         "three shapes",
	}
	for in, want := range bad {
		_, err := ParseShapeSpec(in)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseShapeSpec(%q) error %v, want %q", in, err, want)
		}
	}
}

func TestShapeSpecStringRoundTrip(t *testing.T) {
	for _, s := range []string{"images:1x3x224x224/8x3x224x224/32x3x224x224", "in:0:1/2/3"} {
		p, err := ParseShapeSpec(s)
		if err != nil || p.String() != s {
			t.Errorf("%q → %q, %v", s, p.String(), err)
		}
	}
}

func spec(s string) ShapeSpec {
	p, err := ParseShapeSpec(s)
	if err != nil {
		panic(err)
	}
	return p
}

func TestResolveProfile(t *testing.T) {
	dyn := Input{Name: "images", DType: tensor.Float32, Dims: []int64{-1, 3, 224, 224}}
	static := Input{Name: "scale", DType: tensor.Float32, Dims: []int64{1, 1}}

	// All static, no specs: no profile at all.
	p, err := ResolveProfile([]Input{static}, nil)
	if err != nil || p != nil {
		t.Fatalf("static network: profile %v, %v; want none", p, err)
	}
	// A spec that repeats a static input's dims is accepted, and still no profile is needed.
	if p, err = ResolveProfile([]Input{static}, []ShapeSpec{spec("scale:1x1")}); err != nil || p != nil {
		t.Fatalf("static network with spec: %v, %v", p, err)
	}
	// Dynamic input with a spec; the static input defaults to its own dims.
	p, err = ResolveProfile([]Input{dyn, static}, []ShapeSpec{spec("images:1x3x224x224/8x3x224x224/32x3x224x224")})
	if err != nil {
		t.Fatal(err)
	}
	want := []ShapeSpec{spec("images:1x3x224x224/8x3x224x224/32x3x224x224"), spec("scale:1x1/1x1/1x1")}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("profile %v, want %v", p, want)
	}

	errs := []struct {
		inputs []Input
		specs  []ShapeSpec
		want   []string
	}{
		{[]Input{dyn}, nil, []string{`input "images" has dynamic dimensions (-1x3x224x224)`, "--shapes images:MIN/OPT/MAX, e.g. images:1x3x224x224/8x3x224x224/32x3x224x224"}},
		{[]Input{dyn}, []ShapeSpec{spec("images:1x3x224/1x3x224/1x3x224")}, []string{"rank 3", "rank 4"}},
		{[]Input{dyn}, []ShapeSpec{spec("images:1x4x224x224/1x4x224x224/1x4x224x224")}, []string{"dimension 1", "fixed to 3"}},
		{[]Input{dyn}, []ShapeSpec{spec("images:1x3x224x224/2x3x224x224/4x3x224x224"), spec("imgs:1/1/1")}, []string{`"imgs" is not a network input`, "inputs: images"}},
		{[]Input{{Name: "shape", DType: tensor.Int64, Dims: []int64{-1}, ShapeTensor: true}}, nil, []string{"shape tensor"}},
		{[]Input{{Name: "hw", DType: tensor.Float32, Dims: []int64{1, -1, -1}}}, nil, []string{"hw:1xDxD/1xDxD/1xDxD"}},
	}
	for _, c := range errs {
		_, err := ResolveProfile(c.inputs, c.specs)
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("ResolveProfile(%v, %v) error %v, want %q", c.inputs, c.specs, err, w)
			}
		}
	}
}

func TestCalibrationSpecs(t *testing.T) {
	ins := []Input{{Name: "a", DType: tensor.Float32, Dims: []int64{-1, 3}}, {Name: "b", DType: tensor.Int64, Dims: []int64{1, 2}}}
	got := calibrationSpecs(ins, []ShapeSpec{spec("a:1x3/4x3/8x3")})
	want := []tensor.Spec{{Name: "a", DType: tensor.Float32, Shape: []int64{4, 3}}, {Name: "b", DType: tensor.Int64, Shape: []int64{1, 2}}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("calibration specs %v, want %v (opt dims, static dims)", got, want)
	}
}
