//go:build trtfake

package main

// Plumbing test of the CLI with a TensorRT engine, against the fake shim
// (pkg/trt/fake_shim.c), whose "engine" copies x to y: validate compares it with the ONNX
// model y = 2·x, bench times it.

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
	"google.golang.org/protobuf/proto"
)

func TestPlumbingCLIEngine(t *testing.T) {
	dir := t.TempDir()
	vi := func(name string) *onnxpb.ValueInfoProto {
		shape := &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{
			{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}},
			{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 4}}}}
		return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(tensor.Float32)), Shape: shape}}}}
	}
	b, _ := proto.Marshal(&onnxpb.ModelProto{IrVersion: proto.Int64(8), OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnxpb.GraphProto{Name: proto.String("double"),
			Node:  []*onnxpb.NodeProto{{OpType: proto.String("Mul"), Name: proto.String("mul"), Input: []string{"x", "two"}, Output: []string{"y"}}},
			Input: []*onnxpb.ValueInfoProto{vi("x")}, Output: []*onnxpb.ValueInfoProto{vi("y")},
			Initializer: []*onnxpb.TensorProto{onnx.FromTensor("two", tensor.FromFloat32([]int64{}, []float32{2}))}}})
	model, plan := filepath.Join(dir, "double.onnx"), filepath.Join(dir, "double.plan")
	os.WriteFile(model, b, 0o644)
	os.WriteFile(plan, []byte("fake-plan 1\nio x in 1 -1x4\nio y out 1 -1x4\n"), 0o644)

	code, stdout, stderr := optimctl(t, "validate", model, plan, "--data", "random:4", "--shape", "x=2,4", "--min-cosine", "0.999", "--json")
	if code != 0 {
		t.Fatalf("validate: exit %d: %s", code, stderr)
	}
	var v struct {
		Samples  int               `json:"samples"`
		Runtimes map[string]string `json:"runtimes"`
		Outputs  []struct {
			Name      string  `json:"name"`
			CosineMin float64 `json:"cosine_min"`
			SNR       float64 `json:"snr_db"`
		} `json:"outputs"`
		GPUMs  map[string]map[string]float64 `json:"gpu_ms"`
		Passed bool                          `json:"passed"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatal(err)
	}
	if v.Samples != 4 || !v.Passed || v.Runtimes["candidate"] != "tensorrt" || v.Runtimes["reference"] != "onnxruntime" ||
		len(v.Outputs) != 1 || math.Abs(v.Outputs[0].SNR-10*math.Log10(4)) > 1e-4 || v.GPUMs["candidate"]["p50"] != 0.5 {
		t.Fatalf("validate report %+v", v)
	}
	// A gate the engine misses exits 3 with the report still printed.
	if code, _, _ := optimctl(t, "validate", model, plan, "--data", "random:4", "--shape", "x=2,4", "--min-snr", "10"); code != 3 {
		t.Fatalf("--min-snr 10: exit %d, want 3", code)
	}

	code, stdout, stderr = optimctl(t, "bench", plan, "--shape", "x=1,4", "--batch", "1,8", "--iterations", "5", "--json")
	if code != 0 {
		t.Fatalf("bench: exit %d: %s", code, stderr)
	}
	var r struct {
		EP      string `json:"ep"`
		Runtime string `json:"runtime"`
		Results []struct {
			Batch      int                `json:"batch"`
			Iterations int                `json:"iterations"`
			GPUMs      map[string]float64 `json:"gpu_ms"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.EP != "tensorrt" || r.Runtime != "tensorrt" || len(r.Results) != 2 || r.Results[1].Batch != 8 || r.Results[1].Iterations != 5 || r.Results[1].GPUMs["p99"] != 0.5 {
		t.Fatalf("bench report %+v", r)
	}
}
