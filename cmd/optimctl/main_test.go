package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// optimctl runs the CLI in-process and returns exit code, stdout and stderr.
func optimctl(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

const clsPreprocess = "resize=48x192,mean=0.5/0.5/0.5,std=0.5/0.5/0.5"

func TestInspectJSONKeys(t *testing.T) {
	m := testassets.Path(t, testassets.OCRClassifier)
	code, out, stderr := optimctl(t, "inspect", m, "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("stdout is not one JSON object: %v", err)
	}
	for _, k := range []string{"format", "opset", "nodes", "op_types", "parameters", "size_bytes", "initializers", "inputs", "outputs"} {
		if _, ok := r[k]; !ok {
			t.Errorf("report lacks key %q", k)
		}
	}
	if r["nodes"].(float64) != 471 {
		t.Errorf("nodes = %v", r["nodes"])
	}
}

func TestBadInputExitCodes(t *testing.T) {
	dir := t.TempDir()
	m := testassets.Path(t, testassets.OCRClassifier)
	good, _ := os.ReadFile(m)
	trunc := filepath.Join(dir, "trunc.onnx")
	os.WriteFile(trunc, good[:len(good)/3], 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"inspect", trunc}, 1, trunc + ": not a valid ONNX protobuf"},
		{[]string{"inspect", filepath.Join(dir, "missing.onnx")}, 1, "missing.onnx"},
		{[]string{"inspect"}, 2, "needs 1 argument"},
		{[]string{"inspect", m, "--no-such-flag"}, 2, "unknown flag"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"validate", m, m, "--data", "random:2", "--shape", "x=1,3,48"}, 1, `input "x"`},
		{[]string{"validate", m, trunc, "--data", "random:1", "--shape", "x=1,3,48,192"}, 1, "trunc.onnx"},
		{[]string{"bench", m, "--batch", "0"}, 2, "--batch"},
	}
	for _, c := range cases {
		code, stdout, stderr := optimctl(t, c.args...)
		if code != c.code {
			t.Errorf("%v: exit %d, want %d (stderr %q)", c.args, code, c.code, stderr)
			continue
		}
		lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "optimctl: ") || !strings.Contains(lines[0], c.want) {
			t.Errorf("%v: stderr %q, want one line `optimctl: …%s…`", c.args, stderr, c.want)
		}
		if stdout != "" {
			t.Errorf("%v: stdout %q on failure", c.args, stdout)
		}
	}
}

// perturbed writes a copy of the classifier with one convolution's weights scaled, a
// stand-in for a broken optimisation.
func perturbed(t *testing.T, dir string, scale float32) string {
	m, err := onnx.Load(testassets.Path(t, testassets.OCRClassifier))
	if err != nil {
		t.Fatal(err)
	}
	done := false
	for _, n := range m.Graph().Node {
		if n.GetOpType() != "Constant" || n.Output[0] != "conv2d_52.w_0" {
			continue
		}
		a := n.Attribute[0]
		v, err := m.Float32s(a.T)
		if err != nil {
			t.Fatal(err)
		}
		for i := range v {
			v[i] *= scale
		}
		a.T = onnx.FromTensor(a.T.GetName(), tensor.FromFloat32(a.T.Dims, v))
		done = true
	}
	if !done {
		t.Fatal("conv2d_52.w_0 not found")
	}
	out := filepath.Join(dir, "perturbed.onnx")
	if err := m.Save(out, onnx.SaveOptions{}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestValidateGates(t *testing.T) {
	m := testassets.Path(t, testassets.OCRClassifier)
	images := testassets.Path(t, testassets.Images)
	dir := t.TempDir()
	common := []string{"--data", images, "--shape", "x=1,3,48,192", "--preprocess", clsPreprocess, "--json"}

	// The model against itself is exact.
	code, out, stderr := optimctl(t, append([]string{"validate", m, m, "--min-cosine", "0.999999", "--max-abs-err", "0"}, common...)...)
	if code != 0 {
		t.Fatalf("self-validation exit %d: %s", code, stderr)
	}
	var r struct {
		Samples       int      `json:"samples"`
		Passed        bool     `json:"passed"`
		FailedGates   []string `json:"failed_gates"`
		Top1Agreement float64  `json:"top1_agreement"`
		Outputs       []struct {
			Name      string  `json:"name"`
			MaxAbsErr float64 `json:"max_abs_err"`
			CosineMin float64 `json:"cosine_min"`
			SNR       float64 `json:"snr_db"`
		} `json:"outputs"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatal(err)
	}
	if r.Samples != 30 || !r.Passed || r.Top1Agreement != 1 || r.Outputs[0].MaxAbsErr != 0 || r.Outputs[0].CosineMin != 1 {
		t.Fatalf("self-validation report %+v", r)
	}

	// A copy with one layer's weights tripled fails the cosine gate: exit 3, gate named,
	// the Markdown report still written.
	bad := perturbed(t, dir, 3)
	md := filepath.Join(dir, "report.md")
	code, out, stderr = optimctl(t, append([]string{"validate", m, bad, "--min-cosine", "0.9999", "--report", md}, common...)...)
	if code != 3 {
		t.Fatalf("perturbed model: exit %d, want 3 (stderr %q)", code, stderr)
	}
	json.Unmarshal([]byte(out), &r)
	if r.Passed || len(r.FailedGates) != 1 || !strings.Contains(r.FailedGates[0], `min-cosine: output "softmax_0.tmp_0"`) {
		t.Fatalf("failed gates %q", r.FailedGates)
	}
	if r.Outputs[0].CosineMin >= 0.9999 || r.Outputs[0].MaxAbsErr == 0 {
		t.Fatalf("perturbation not measured: %+v", r.Outputs[0])
	}
	if !strings.Contains(stderr, "validation gate failed: min-cosine") {
		t.Fatalf("stderr %q", stderr)
	}
	b, err := os.ReadFile(md)
	if err != nil || !strings.Contains(string(b), "❌ failed") || !strings.Contains(string(b), "min-cosine") {
		t.Fatalf("markdown report: %v\n%s", err, b)
	}
}

// TestOutputsAtomicAndInputSafe covers the commands that write models: the input is never
// overwritten, a usage error exits 2, a failure leaves no output, success writes the file.
func TestOutputsAtomicAndInputSafe(t *testing.T) {
	m := testassets.Path(t, testassets.OCRClassifier)
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "cls.onnx")
	b, _ := os.ReadFile(m)
	os.WriteFile(copyPath, b, 0o644)
	bad := filepath.Join(dir, "bad.onnx")
	os.WriteFile(bad, b[:1000], 0o644)
	out := filepath.Join(dir, "out.onnx")
	cases := []struct {
		args []string
		code int
	}{
		{[]string{"optimize", copyPath, "-o", copyPath}, 1},
		{[]string{"prune", copyPath, "-o", copyPath, "--method", "magnitude", "--sparsity", "0.5"}, 1},
		{[]string{"optimize", copyPath}, 2},
		{[]string{"prune", copyPath, "-o", out, "--method", "nonsense", "--sparsity", "0.5"}, 2},
		{[]string{"optimize", bad, "-o", out}, 1},
		{[]string{"prune", bad, "-o", out, "--method", "2:4"}, 1},
	}
	for _, c := range cases {
		code, _, stderr := optimctl(t, c.args...)
		if code != c.code || !strings.HasPrefix(stderr, "optimctl: ") || strings.Count(stderr, "\n") != 1 {
			t.Errorf("%v: exit %d (want %d), stderr %q", c.args, code, c.code, stderr)
		}
		if _, err := os.Stat(out); err == nil {
			t.Fatalf("%v: output written by a failed command", c.args)
		}
	}
	if after, _ := os.ReadFile(copyPath); !bytes.Equal(after, b) {
		t.Fatal("the input model was modified")
	}
	for _, args := range [][]string{
		{"optimize", copyPath, "-o", out, "--json"},
		{"prune", copyPath, "-o", out, "--method", "magnitude", "--sparsity", "0.5", "--json"},
	} {
		code, stdout, stderr := optimctl(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, stderr)
		}
		var r struct {
			NodesBefore int   `json:"nodes_before"`
			NodesAfter  int   `json:"nodes_after"`
			SizeAfter   int64 `json:"size_after"`
		}
		if err := json.Unmarshal([]byte(stdout), &r); err != nil || r.NodesBefore != 471 || r.SizeAfter == 0 {
			t.Fatalf("%v: report %s (%v)", args, stdout, err)
		}
		if st, err := os.Stat(out); err != nil || st.Size() != r.SizeAfter {
			t.Fatalf("%v: output %v, size_after %d", args, err, r.SizeAfter)
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if strings.Contains(e.Name(), ".tmp") {
				t.Fatalf("temp file %s left behind", e.Name())
			}
		}
		os.Remove(out)
	}
}

func TestQuantizeInt4Mode(t *testing.T) {
	m := testassets.Path(t, "models/minilm/model.onnx")
	out := filepath.Join(t.TempDir(), "m4.onnx")
	code, stdout, stderr := optimctl(t, "quantize", m, "-o", out, "--mode", "int4", "--algo", "rtn", "--group-size", "32", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var r map[string]any
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	code, stdout, _ = optimctl(t, "inspect", out, "--json")
	var ins struct {
		OpTypes map[string]int `json:"op_types"`
	}
	json.Unmarshal([]byte(stdout), &ins)
	if code != 0 || ins.OpTypes["com.microsoft::MatMulNBits"] != 36 {
		t.Fatalf("op types after int4: %v", ins.OpTypes)
	}
	if code, _, stderr := optimctl(t, "quantize", m, "-o", out, "--mode", "int4", "--algo", "nonsense"); code != 2 {
		t.Fatalf("bad --algo: exit %d (%s)", code, stderr)
	}
}
