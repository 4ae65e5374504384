package recipe

import (
	"testing"

	"github.com/optimctl/optimctl/pkg/int4"
)

// TestInt4TargetTensorRTDecode: a quantize step {mode: int4, target: tensorrt} decodes into
// pkg/int4's options (format qdq after validation) and writes an ONNX model, like
// `quantize --mode int4 --target tensorrt`; format qdq alone does too.
func TestInt4TargetTensorRTDecode(t *testing.T) {
	for _, text := range []string{
		"model: m.onnx\nsteps:\n  - quantize: {mode: int4, target: tensorrt, group_size: 64}\n",
		"model: m.onnx\nsteps:\n  - quantize: {mode: int4, format: qdq, group_size: 64}\n",
	} {
		r, err := ParseBytes([]byte(text), "r.yaml")
		if err != nil {
			t.Fatal(err)
		}
		o, err := kinds["quantize"].decode(&r.Steps[0].opts, "r.yaml")
		if err != nil {
			t.Fatal(err)
		}
		q, ok := o.(*int4Step)
		if !ok || q.GroupSize != 64 {
			t.Fatalf("decoded %T %+v", o, o)
		}
		if ext, model := kinds["quantize"].output(o); ext != ".onnx" || !model {
			t.Fatalf("%q: output %q %v", text, ext, model)
		}
		c := q.Options
		if err := c.Validate(); err != nil || c.Format != int4.FormatQDQ {
			t.Fatalf("%q: validated format %q (%v)", text, c.Format, err)
		}
	}
	r, err := ParseBytes([]byte("model: m.onnx\nsteps:\n  - quantize: {mode: int4, target: tensorrt, format: awq}\n"), "r.yaml")
	if err == nil {
		_, err = kinds["quantize"].decode(&r.Steps[0].opts, "r.yaml")
		if err == nil {
			err = kinds["quantize"].check(&int4Step{Options: int4.Options{Target: "tensorrt", Format: int4.FormatAWQ}})
		}
	}
	if err == nil {
		t.Fatal("target tensorrt with format awq accepted")
	}
}
