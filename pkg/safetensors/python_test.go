package safetensors

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// These tests hold the package to the official Python library (the Rust reference underneath)
// when python3 can import safetensors and numpy; they skip otherwise.

// pyGen writes reference files into sys.argv[1]. TensorSpec (safetensors >= 0.7) lets it emit
// dtypes numpy has no type for; with an older library only the numpy files are made.
const pyGen = `
import sys, os, ctypes
import numpy as np
from safetensors.numpy import save_file
out = sys.argv[1]

def arr(dt, shape, k):
    n = int(np.prod(shape)) if len(shape) else 1
    return (np.arange(n, dtype=np.int64) * (k + 3) % 251).astype(dt).reshape(shape)

ts = {
    "model.embed.weight": arr(np.float32, (3, 4), 1),
    "h.0.attn.bias": arr(np.float16, (5,), 2),
    "scale": arr(np.float64, (), 3),
    "q.int8": arr(np.int8, (2, 3), 4), "q.uint8": arr(np.uint8, (7,), 5),
    "i16": arr(np.int16, (3,), 6), "u16": arr(np.uint16, (3,), 7),
    "i32": arr(np.int32, (2, 2), 8), "u32": arr(np.uint32, (1,), 9),
    "i64": arr(np.int64, (3,), 10), "u64": arr(np.uint64, (2,), 11),
    "mask": arr(np.bool_, (3,), 12), "empty": np.zeros((0, 3), np.float32),
    "unicodé \"name\"\n": arr(np.uint8, (1,), 13),
}
save_file(ts, os.path.join(out, "np_meta.safetensors"), metadata={"format": "np"})
save_file({k: v for k, v in list(ts.items())[:4]}, os.path.join(out, "np_nometa.safetensors"))
save_file({"x": arr(np.float32, (2,), 1)}, os.path.join(out, "np_escapes.safetensors"),
          metadata={"k": "\"\\/\b\f\n\r\t\x01\x1f\x7f<>&\u00e9\u2028"})
save_file({}, os.path.join(out, "np_empty.safetensors"))

try:
    from safetensors import TensorSpec, serialize_file
except ImportError:
    sys.exit(0)
names = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
         "float16", "float32", "float64", "bfloat16", "float8_e4m3fn", "float8_e4m3fnuz",
         "float8_e5m2", "float8_e5m2fnuz", "float8_e8m0fnu", "float4_e2m1fn_x2", "complex64"]
size = {"bool": 1, "int8": 1, "uint8": 1, "int16": 2, "uint16": 2, "int32": 4, "uint32": 4,
        "int64": 8, "uint64": 8, "float16": 2, "float32": 4, "float64": 8, "bfloat16": 2,
        "complex64": 8, "float4_e2m1fn_x2": 1}
keep = []
specs = {}
for i, dt in enumerate(names):
    shape = [2, 3]
    n = 6 * size.get(dt, 1)
    buf = ctypes.create_string_buffer(bytes((j * 37 + i) % 256 for j in range(n)), n)
    keep.append(buf)
    specs["t.%s" % dt] = TensorSpec(dtype=dt, shape=shape, data_ptr=ctypes.addressof(buf), data_len=n)
serialize_file(specs, os.path.join(out, "raw_all.safetensors"), metadata={"format": "pt"})
`

// pyCheck reads a file with the reference and prints [name, dtype, shape, sha256] per tensor.
const pyCheck = `
import sys, json, hashlib
from safetensors import deserialize
with open(sys.argv[1], "rb") as f:
    ts = deserialize(f.read())
print(json.dumps(sorted([n, t["dtype"], list(t["shape"]), hashlib.sha256(bytes(t["data"])).hexdigest()] for n, t in ts)))
`

func python(t *testing.T) string {
	t.Helper()
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	if out, err := exec.Command(py, "-c", "import safetensors, numpy").CombinedOutput(); err != nil {
		lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
		t.Skipf("python3 cannot import safetensors and numpy: %s", lines[len(lines)-1])
	}
	return py
}

// A file written by the Python library, read and written again here, is byte-for-byte the same.
func TestPythonRewriteIdentical(t *testing.T) {
	py := python(t)
	dir := t.TempDir()
	if out, err := exec.Command(py, "-c", pyGen, dir).CombinedOutput(); err != nil {
		t.Fatalf("python: %v\n%s", err, out)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) < 4 {
		t.Fatalf("python wrote %d files", len(ents))
	}
	for _, e := range ents {
		t.Run(e.Name(), func(t *testing.T) {
			src := filepath.Join(dir, e.Name())
			f, err := Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dst := filepath.Join(t.TempDir(), e.Name())
			if err := WriteFile(dst, f.Metadata(), f); err != nil {
				t.Fatal(err)
			}
			a, _ := os.ReadFile(src)
			b, _ := os.ReadFile(dst)
			if !bytes.Equal(a, b) {
				n := 8 + int(min(binary.LittleEndian.Uint64(a), 1<<20))
				t.Errorf("rewrite differs (%d vs %d bytes)\nreference header: %q\nour header:       %q", len(a), len(b), a[8:min(n, len(a))], b[8:min(n, len(b))])
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "raw_all.safetensors")); err != nil {
		t.Log("safetensors has no TensorSpec: F8/BF16/F4/C64 not covered against the reference")
	}
}

// The reference accepts what we write, every dtype it knows, with the same names, shapes and bytes.
func TestPythonReadsOurFile(t *testing.T) {
	py := python(t)
	p := filepath.Join(t.TempDir(), "ours.safetensors")
	w, err := NewWriter(p, map[string]string{"format": "pt", "note": "written by optimctl"})
	if err != nil {
		t.Fatal(err)
	}
	var want [][4]any
	for i, dt := range DTypes() {
		shape := []int64{2, 4}
		size, _ := ByteSize(dt, shape)
		data := pattern(size, byte(i))
		if err := w.Add("t."+dt, dt, shape, data); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		want = append(want, [4]any{"t." + dt, dt, []any{2.0, 4.0}, hex.EncodeToString(sum[:])})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, "-c", pyCheck, p).Output()
	if err != nil {
		t.Fatalf("reference rejects our file: %v %s", err, errOut(err))
	}
	var got [][4]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	slices.SortFunc(want, func(a, b [4]any) int { return compareStr(a[0].(string), b[0].(string)) })
	gj, _ := json.Marshal(got)
	wj, _ := json.Marshal(want)
	if !bytes.Equal(gj, wj) {
		t.Errorf("reference reads\n%s\nwant\n%s", gj, wj)
	}
}

func compareStr(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func errOut(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return ""
}
