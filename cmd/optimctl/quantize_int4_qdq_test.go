package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/testassets"
)

// TestQuantizeInt4TensorRT: `quantize --mode int4 --target tensorrt` writes the blocked
// int4 DequantizeLinear form (MatMul kept, no MatMulNBits, opset 21); --format qdq is the
// same; other formats with --target tensorrt are usage errors.
func TestQuantizeInt4TensorRT(t *testing.T) {
	m := testassets.Path(t, "models/minilm/model.onnx")
	out := filepath.Join(t.TempDir(), "m4.onnx")
	code, stdout, stderr := optimctl(t, "quantize", m, "-o", out, "--mode", "int4", "--target", "tensorrt", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r struct {
		Format    string `json:"format"`
		Symmetric bool   `json:"symmetric"`
		GroupSize int    `json:"group_size"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.Format != "qdq" || !r.Symmetric || r.GroupSize != 128 {
		t.Fatalf("report %+v (%v)", r, err)
	}
	code, stdout, _ = optimctl(t, "inspect", out, "--json")
	var ins struct {
		Opset   int64          `json:"opset"`
		OpTypes map[string]int `json:"op_types"`
	}
	json.Unmarshal([]byte(stdout), &ins)
	if code != 0 || ins.Opset != 21 || ins.OpTypes["DequantizeLinear"] != 36 || ins.OpTypes["MatMul"] != 48 || ins.OpTypes["com.microsoft::MatMulNBits"] != 0 {
		t.Fatalf("after int4 --target tensorrt: opset %d, op types %v", ins.Opset, ins.OpTypes)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--target", "tensorrt", "--format", "gptq"}, 2, "format qdq"},
		{[]string{"--target", "cuda"}, 2, "ort or tensorrt"},
		{[]string{"--target", "tensorrt", "--symmetric=false"}, 1, "symmetric only"},
	} {
		args := append([]string{"quantize", m, "-o", filepath.Join(t.TempDir(), "x.onnx"), "--mode", "int4"}, c.args...)
		code, _, stderr := optimctl(t, args...)
		if code != c.code || !strings.HasPrefix(stderr, "optimctl: ") || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d with %q", c.args, code, stderr, c.code, c.want)
		}
	}
}
