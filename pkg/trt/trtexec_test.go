package trt

import (
	"reflect"
	"strings"
	"testing"
)

func TestTrtexecTensorRT10(t *testing.T) {
	o := Options{
		Model: "resnet.onnx", Output: "resnet.plan", FP16: true, INT8: true, CalibCache: "resnet.cache",
		Shapes:    []ShapeSpec{spec("images:1x3x224x224/8x3x224x224/32x3x224x224"), spec("mask:1x1/8x1/32x1")},
		Workspace: 4 << 30, TimingCache: "timing.cache", SparseWeights: true, Refit: true, VersionCompatible: true,
	}
	args, notes, err := Trtexec(o, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := "trtexec --onnx=resnet.onnx --saveEngine=resnet.plan --skipInference " +
		"--minShapes=images:1x3x224x224,mask:1x1 --optShapes=images:8x3x224x224,mask:8x1 --maxShapes=images:32x3x224x224,mask:32x1 " +
		"--memPoolSize=workspace:4G --timingCacheFile=timing.cache --fp16 --int8 --calib=resnet.cache " +
		"--sparsity=enable --refit --versionCompatible"
	if got := ShellJoin(args); got != want {
		t.Fatalf("trtexec line\n got %s\nwant %s", got, want)
	}
	if len(notes) != 0 {
		t.Fatalf("unexpected notes %v", notes)
	}
}

func TestTrtexecTensorRT11(t *testing.T) {
	o := Options{Model: "m.int8.onnx", Output: "m.plan", StronglyTyped: true, Workspace: 1536 << 20}
	args, _, err := Trtexec(o, 11)
	if err != nil {
		t.Fatal(err)
	}
	// 11.x: every network is strongly typed and trtexec 11.1 marks --stronglyTyped a deprecated no-op.
	want := []string{"trtexec", "--onnx=m.int8.onnx", "--saveEngine=m.plan", "--skipInference", "--memPoolSize=workspace:1536M"}
	if !reflect.DeepEqual(args, want) {
		t.Fatalf("args %q, want %q", args, want)
	}
	args10, _, _ := Trtexec(o, 10)
	if args10[len(args10)-1] != "--stronglyTyped" {
		t.Fatalf("10.x args %q lack --stronglyTyped", args10)
	}
	o = Options{Model: "m.onnx", Output: "m.plan", INT8: true, CalibCache: "c"}
	if _, _, err := Trtexec(o, 11); err == nil || !strings.Contains(err.Error(), "optimctl quantize") {
		t.Fatalf("11.x --int8: %v", err)
	}
}

func TestTrtexecCalibrationFromDataIsANote(t *testing.T) {
	o := Options{Model: "m.onnx", Output: "m.plan", INT8: true, Calib: "calib.npz", CalibCache: "m.cache"}
	args, notes, err := Trtexec(o, 10)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(args, " "), "--calib") {
		t.Fatalf("args %q pass data to trtexec's --calib, which reads a cache", args)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "optimctl calibrate m.onnx --calib calib.npz --format tensorrt -o m.cache") {
		t.Fatalf("notes %q", notes)
	}
	o.Calib, o.CalibCache = "", ""
	if _, notes, _ = Trtexec(o, 10); len(notes) != 1 || !strings.Contains(notes[0], "Q/DQ") {
		t.Fatalf("--int8 alone: notes %q", notes)
	}
}

func TestTrtexecQuoting(t *testing.T) {
	o := Options{Model: "my model.onnx", Output: "out.plan", Shapes: []ShapeSpec{spec("input:0:1x3/2x3/4x3")}, Workspace: 1000}
	args, _, err := Trtexec(o, 10)
	if err != nil {
		t.Fatal(err)
	}
	got := ShellJoin(args)
	for _, want := range []string{
		`'--onnx=my model.onnx'`,
		`'--minShapes='\''input:0'\'':1x3'`, // trtexec wants 'input:0'; the shell needs the quotes escaped
		`--memPoolSize=workspace:1000B`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%s\nlacks %s", got, want)
		}
	}
}

func TestTrtexecSize(t *testing.T) {
	for b, want := range map[int64]string{1 << 30: "1G", 3 << 29: "1536M", 1 << 20: "1M", 4096: "4K", 1000: "1000B"} {
		if got := trtexecSize(b); got != want {
			t.Errorf("trtexecSize(%d) = %s, want %s", b, got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{"": "''", "plain-1.0/x:y=z,w": "plain-1.0/x:y=z,w", "a b": "'a b'", "it's": `'it'\''s'`, "$HOME": "'$HOME'"} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

// trtexec builds one profile: further --profile sets leave the command as for --shapes and
// add a note.
func TestTrtexecSeveralProfilesIsANote(t *testing.T) {
	o := Options{Model: "m.onnx", Output: "m.plan", Shapes: []ShapeSpec{spec("x:1x4/2x4/4x4")},
		Profiles: [][]ShapeSpec{{spec("x:8x4/16x4/32x4")}}}
	args, notes, err := Trtexec(o, 11)
	if err != nil {
		t.Fatal(err)
	}
	want := "trtexec --onnx=m.onnx --saveEngine=m.plan --skipInference --minShapes=x:1x4 --optShapes=x:2x4 --maxShapes=x:4x4"
	if ShellJoin(args) != want || len(notes) != 1 || !strings.Contains(notes[0], "the 1 --profile set(s) need optimctl build-trt") {
		t.Fatalf("%s\n%v", ShellJoin(args), notes)
	}
}

func TestParseProfile(t *testing.T) {
	p, err := ParseProfile("images:8x3x4x4/16x3x4x4/32x3x4x4, mask:8x1/16x1/32x1")
	if err != nil || len(p) != 2 || p[1].String() != "mask:8x1/16x1/32x1" || p[0].Name != "images" {
		t.Fatalf("%v, %v", p, err)
	}
	if _, err := ParseProfile("images:8x3/4x3/32x3"); err == nil {
		t.Fatal("min > opt accepted")
	}
	o := Options{Model: "m.onnx", Output: "m.plan", Profiles: [][]ShapeSpec{{spec("x:1x4"), spec("x:2x4")}}}
	if err := o.Validate(); err == nil || err.Error() != `--profile 1: input "x" given twice` {
		t.Fatalf("duplicate input in a profile: %v", err)
	}
}
