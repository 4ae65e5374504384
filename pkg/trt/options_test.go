package trt

import (
	"path/filepath"
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	base := Options{Model: "m.onnx", Output: "m.plan"}
	cases := []struct {
		name string
		mod  func(*Options)
		want string // "" = valid
	}{
		{"minimal", func(o *Options) {}, ""},
		{"no model", func(o *Options) { o.Model = "" }, "no model"},
		{"no output", func(o *Options) { o.Output = "" }, "-o"},
		{"output is input", func(o *Options) { o.Output = o.Model }, "same file"},
		{"calib without int8", func(o *Options) { o.Calib = "random:4" }, "add --int8"},
		{"cache without int8", func(o *Options) { o.CalibCache = "c.cache" }, "add --int8"},
		{"int8 with data", func(o *Options) { o.INT8, o.Calib = true, "random:4" }, ""},
		{"int8 alone (Q/DQ scales)", func(o *Options) { o.INT8 = true }, ""},
		{"preprocess without data", func(o *Options) { o.INT8, o.CalibCache, o.Preprocess = true, "c", "size=8" }, "apply to --calib"},
		{"negative limit", func(o *Options) { o.INT8, o.Calib, o.CalibLimit = true, "random:4", -1 }, "negative"},
		{"strongly typed with fp16", func(o *Options) { o.StronglyTyped, o.FP16 = true, true }, "--strongly-typed"},
		{"negative workspace", func(o *Options) { o.Workspace = -1 }, "negative"},
		{"duplicate shapes", func(o *Options) {
			s := ShapeSpec{Name: "x", Min: []int64{1}, Opt: []int64{1}, Max: []int64{1}}
			o.Shapes = []ShapeSpec{s, s}
		}, "twice"},
		{"bad shape", func(o *Options) {
			o.Shapes = []ShapeSpec{{Name: "x", Min: []int64{2}, Opt: []int64{1}, Max: []int64{3}}}
		}, "min <= opt <= max"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			o := base
			c.mod(&o)
			err := o.Validate()
			if c.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want it to mention %q", err, c.want)
			}
		})
	}
}

func TestValidateRefusesOutputOverInputPath(t *testing.T) {
	dir := t.TempDir()
	o := Options{Model: filepath.Join(dir, "m.onnx"), Output: filepath.Join(dir, ".", "m.onnx")}
	if err := o.Validate(); err == nil {
		t.Fatal("writing the engine over the model was accepted")
	}
}

func TestCheckVersion(t *testing.T) {
	q := Options{Model: "m", Output: "e", INT8: true, CalibCache: "c"}
	if err := q.CheckVersion(10); err != nil {
		t.Fatalf("10.x: %v", err)
	}
	err := q.CheckVersion(11)
	if err == nil {
		t.Fatal("11.x accepted --int8")
	}
	for _, want := range []string{"--int8, --calib-cache", "TensorRT 11", "optimctl quantize", "--target tensorrt", "--mode fp16"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("11.x error %q does not mention %q", err, want)
		}
	}
	for _, o := range []Options{{FP16: true}, {FP8: true}} {
		if o.CheckVersion(11) == nil {
			t.Errorf("11.x accepted %+v", o)
		}
	}
	plain := Options{StronglyTyped: true, SparseWeights: true, Refit: true, VersionCompatible: true}
	if err := plain.CheckVersion(11); err != nil {
		t.Errorf("11.x refused options it has: %v", err)
	}
	if (&Options{}).CheckVersion(8) == nil || (&Options{}).CheckVersion(12) == nil {
		t.Error("TensorRT 8 or 12 accepted")
	}
}

func TestParseSize(t *testing.T) {
	good := map[string]int64{
		"4GiB": 4 << 30, "4G": 4 << 30, "4g": 4 << 30, "512MiB": 512 << 20, "512M": 512 << 20,
		"1024": 1024 << 20, "1.5G": 3 << 29, "64K": 64 << 10, "64KiB": 64 << 10, "100B": 100, "0": 0,
		" 2 GiB ": 2 << 30, "1T": 1 << 40, "0.25M": 1 << 18,
	}
	for in, want := range good {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GiB", "-1G", "4GB", "4MB", "4 parsecs", "1e3M", "1..5G", "99999999999T"} {
		if v, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, v)
		}
	}
	if _, err := ParseSize("4GB"); err == nil || !strings.Contains(err.Error(), "4GiB") && !strings.Contains(err.Error(), "GiB") {
		t.Errorf("4GB error %v should suggest GiB", err)
	}
}

func TestSeverity(t *testing.T) {
	for s := SeverityInternalError; s <= SeverityVerbose; s++ {
		got, err := ParseSeverity(s.String())
		if err != nil || got != s {
			t.Errorf("ParseSeverity(%q) = %v, %v", s.String(), got, err)
		}
	}
	if _, err := ParseSeverity("loud"); err == nil {
		t.Error("ParseSeverity(loud) accepted")
	}
	if Severity(9).String() != "severity(9)" {
		t.Error(Severity(9).String())
	}
}

func TestVersionString(t *testing.T) {
	for v, want := range map[int]string{101600: "10.16.0", 110100: "11.1.0", 101303: "10.13.3", 100900: "10.9.0"} {
		if got := VersionString(v); got != want {
			t.Errorf("VersionString(%d) = %q, want %q", v, got, want)
		}
	}
}
