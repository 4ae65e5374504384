package safetensors

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type testTensor struct {
	name, dtype string
	shape       []int64
}

// shardTensors: with a 100-byte limit, greedy packing in name order gives
// [a b] (100 bytes), [c], [d] (160 bytes, over the limit, alone), [e].
var shardTensors = []testTensor{
	{"e", "U8", []int64{50}}, {"d", "I64", []int64{4, 5}}, {"c", "U8", []int64{30}},
	{"b", "F32", []int64{10}}, {"a", "U8", []int64{60}},
}

func writeSharded(t *testing.T, dir string, max int64) map[string][]byte {
	t.Helper()
	w, err := NewShardedWriter(dir, max, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for i, tt := range shardTensors {
		size, _ := ByteSize(tt.dtype, tt.shape)
		want[tt.name] = pattern(size, byte(i*31))
		if err := w.AddReader(tt.name, tt.dtype, tt.shape, bytes.NewReader(want[tt.name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

func TestShardedRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ckpt") // created by Close
	want := writeSharded(t, dir, 100)

	ents, _ := os.ReadDir(dir)
	var files []string
	for _, e := range ents {
		files = append(files, e.Name())
	}
	wantFiles := []string{
		"model-00001-of-00004.safetensors", "model-00002-of-00004.safetensors",
		"model-00003-of-00004.safetensors", "model-00004-of-00004.safetensors",
		"model.safetensors.index.json",
	}
	if !slices.Equal(files, wantFiles) {
		t.Fatalf("folder = %q, want %q", files, wantFiles)
	}
	idx, _ := os.ReadFile(filepath.Join(dir, IndexFileName))
	wantIdx := `{
  "metadata": {
    "total_size": 340
  },
  "weight_map": {
    "a": "model-00001-of-00004.safetensors",
    "b": "model-00001-of-00004.safetensors",
    "c": "model-00002-of-00004.safetensors",
    "d": "model-00003-of-00004.safetensors",
    "e": "model-00004-of-00004.safetensors"
  }
}
`
	if string(idx) != wantIdx {
		t.Errorf("index =\n%s\nwant\n%s", idx, wantIdx)
	}

	for _, open := range []struct {
		name string
		fn   func() (*Checkpoint, error)
	}{
		{"OpenDir", func() (*Checkpoint, error) { return OpenDir(dir) }},
		{"OpenIndex", func() (*Checkpoint, error) { return OpenIndex(filepath.Join(dir, IndexFileName)) }},
		{"OpenAny dir", func() (*Checkpoint, error) { return OpenAny(dir) }},
		{"OpenAny index", func() (*Checkpoint, error) { return OpenAny(filepath.Join(dir, IndexFileName)) }},
	} {
		t.Run(open.name, func(t *testing.T) {
			c, err := open.fn()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.Names(); !slices.Equal(got, []string{"a", "b", "c", "d", "e"}) {
				t.Errorf("Names() = %q", got)
			}
			for _, tt := range shardTensors {
				ti, ok := c.Tensor(tt.name)
				if !ok || ti.DType != tt.dtype || !slices.Equal(ti.Shape, tt.shape) {
					t.Errorf("Tensor(%q) = %+v, %v", tt.name, ti, ok)
				}
				if !bytes.Equal(c.Data(tt.name), want[tt.name]) {
					t.Errorf("Data(%q) differs", tt.name)
				}
			}
			if ti, _ := c.Tensor("d"); ti.File != filepath.Join(dir, "model-00003-of-00004.safetensors") || ti.Offset != 8+96 {
				t.Errorf("Tensor(d) in %s at %d, want shard 3 at 104", ti.File, ti.Offset)
			}
			if md := c.Metadata(); len(md) != 1 || md["format"] != "pt" {
				t.Errorf("Metadata() = %v", md)
			}
			if im := c.IndexMetadata(); len(im) != 1 || im["total_size"] != "340" {
				t.Errorf("IndexMetadata() = %v", im)
			}
			if len(c.Files()) != 4 {
				t.Errorf("Files() = %q", c.Files())
			}
			if _, ok := c.Tensor("zz"); ok || c.Data("zz") != nil {
				t.Error("missing tensor found")
			}
		})
	}

	// Resharding from the checkpoint into one file and back gives the same shards.
	c, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	single := filepath.Join(t.TempDir(), "model.safetensors")
	if err := WriteFile(single, c.Metadata(), c); err != nil {
		t.Fatal(err)
	}
	f, err := OpenAny(single)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	again := filepath.Join(t.TempDir(), "again")
	if err := WriteSharded(again, 100, f.Metadata(), f); err != nil {
		t.Fatal(err)
	}
	for _, name := range wantFiles {
		a, _ := os.ReadFile(filepath.Join(dir, name))
		b, _ := os.ReadFile(filepath.Join(again, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs after a round trip through one file", name)
		}
	}
}

func TestShardedWriterErrors(t *testing.T) {
	if _, err := NewShardedWriter(t.TempDir(), 0, nil); err == nil || !strings.HasSuffix(err.Error(), "shard size 0 must be positive") {
		t.Errorf("NewShardedWriter(0) = %v", err)
	}
	dir := t.TempDir()
	w, _ := NewShardedWriter(dir, 10, nil)
	if err := w.Close(); err == nil || err.Error() != dir+": no tensors to write" {
		t.Errorf("empty Close = %v", err)
	}
	// A failing reader in the last shard removes the shards already written.
	w, _ = NewShardedWriter(dir, 10, nil)
	w.Add("a", "U8", []int64{10}, make([]byte, 10))
	w.AddReader("b", "U8", []int64{10}, &errReader{n: 3})
	if err := w.Close(); err == nil || !strings.Contains(err.Error(), `tensor "b": disk on fire`) {
		t.Errorf("Close = %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("folder holds %d entries after a failed write", len(ents))
	}
}

// writeShard writes a small shard holding the named U8[2] tensors.
func writeShard(t *testing.T, path string, names ...string) {
	t.Helper()
	os.MkdirAll(filepath.Dir(path), 0o755)
	w, err := NewWriter(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := w.Add(n, "U8", []int64{2}, []byte{1, 2}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenIndexRejects(t *testing.T) {
	root := t.TempDir()
	outside := filepath.Join(root, "outside.safetensors")
	writeShard(t, outside, "a")
	tests := []struct {
		name   string
		index  string
		shards map[string][]string // shard file -> tensors
		link   bool                // add link.safetensors -> ../outside.safetensors
		file   string              // "" = the index; else shard file name
		tensor string
		msg    string // exact HeaderError.Msg; or, with plain, a substring of Error()
		plain  bool
	}{
		{name: "absolute", index: `{"weight_map":{"a":"` + outside + `"}}`, tensor: "a",
			msg: `shard path "` + outside + `" is not a relative path inside the checkpoint folder`},
		{name: "dotdot", index: `{"weight_map":{"a":"../outside.safetensors"}}`, tensor: "a",
			msg: `shard path "../outside.safetensors" is not a relative path inside the checkpoint folder`},
		{name: "inner dotdot", index: `{"weight_map":{"a":"sub/../../outside.safetensors"}}`, tensor: "a",
			msg: `shard path "sub/../../outside.safetensors" is not a relative path inside the checkpoint folder`},
		{name: "empty path", index: `{"weight_map":{"a":""}}`, tensor: "a",
			msg: `shard path "" is not a relative path inside the checkpoint folder`},
		{name: "symlink out", index: `{"weight_map":{"a":"link.safetensors"}}`, link: true, plain: true,
			msg: `shard "link.safetensors": openat link.safetensors: path escapes from parent`},
		{name: "missing from shard", index: `{"weight_map":{"a":"s1.safetensors","zz":"s1.safetensors"}}`,
			shards: map[string][]string{"s1.safetensors": {"a"}}, tensor: "zz",
			msg: `weight_map puts it in "s1.safetensors", which does not hold it`},
		{name: "not in map", index: `{"weight_map":{"a":"s1.safetensors"}}`,
			shards: map[string][]string{"s1.safetensors": {"a", "b"}}, file: "s1.safetensors", tensor: "b",
			msg: `not listed in the weight_map of INDEX`},
		{name: "in two shards", index: `{"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}}`,
			shards: map[string][]string{"s1.safetensors": {"a", "b"}, "s2.safetensors": {"b"}}, file: "s1.safetensors", tensor: "b",
			msg: `the weight_map of INDEX puts it in "s2.safetensors", not here`},
		{name: "missing shard", index: `{"weight_map":{"a":"gone.safetensors"}}`, plain: true,
			msg: `shard "gone.safetensors": openat gone.safetensors: no such file or directory`},
		{name: "bad shard", index: `{"weight_map":{"a":"s1.safetensors"}}`,
			shards: map[string][]string{"s1.safetensors": nil}, file: "s1.safetensors", msg: "header lists no tensors but the data buffer has 4 bytes"},
		{name: "empty weight_map", index: `{"metadata":{},"weight_map":{}}`, msg: "index has no weight_map entries"},
		{name: "no weight_map", index: `{"metadata":{"total_size":1}}`, msg: "index has no weight_map entries"},
		{name: "duplicate entry", index: `{"weight_map":{"a":"s1.safetensors","a":"s2.safetensors"}}`, tensor: "a",
			msg: "listed twice in the weight_map"},
		{name: "non-string shard", index: `{"weight_map":{"a":3}}`, tensor: "a", msg: "weight_map value must be a file name, got 3"},
		{name: "not json", index: `{"weight_map":`, msg: "index is not valid JSON: unexpected end of input at byte 14"},
		{name: "weight_map not object", index: `{"weight_map":["a"]}`, msg: `weight_map must be an object, got ["a"]`},
		{name: "two weight_maps", index: `{"weight_map":{},"weight_map":{}}`, msg: `index has two "weight_map" entries`},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(root, "c"+string(rune('a'+i)))
			os.MkdirAll(dir, 0o755)
			for s, names := range tc.shards {
				if names == nil {
					os.WriteFile(filepath.Join(dir, s), []byte("\x02\x00\x00\x00\x00\x00\x00\x00{}junk"), 0o644)
					continue
				}
				writeShard(t, filepath.Join(dir, s), names...)
			}
			if tc.link {
				if err := os.Symlink("../outside.safetensors", filepath.Join(dir, "link.safetensors")); err != nil {
					t.Skip(err)
				}
			}
			idx := filepath.Join(dir, IndexFileName)
			os.WriteFile(idx, []byte(tc.index), 0o644)
			c, err := OpenDir(dir)
			if err == nil {
				c.Close()
				t.Fatal("OpenDir succeeded")
			}
			if tc.plain {
				if want := idx + ": " + tc.msg; err.Error() != want {
					t.Errorf("error = %q, want %q", err, want)
				}
				return
			}
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("error %v is not a *HeaderError", err)
			}
			wantFile := idx
			if tc.file != "" {
				wantFile = filepath.Join(dir, tc.file)
			}
			msg := strings.ReplaceAll(tc.msg, "INDEX", idx)
			if he.File != wantFile || he.Tensor != tc.tensor || he.Msg != msg {
				t.Errorf("error = {%q, %q, %q}\nwant    {%q, %q, %q}", he.File, he.Tensor, he.Msg, wantFile, tc.tensor, msg)
			}
		})
	}
}

func TestOpenAny(t *testing.T) {
	root := t.TempDir()
	mk := func(dir string, files ...string) string {
		d := filepath.Join(root, dir)
		os.MkdirAll(d, 0o755)
		for _, f := range files {
			writeShard(t, filepath.Join(d, f), "t."+f)
		}
		return d
	}
	sub := mk("sub", "model-00001-of-00001.safetensors")
	os.WriteFile(filepath.Join(sub, "diffusion_pytorch_model.safetensors.index.json"),
		[]byte(`{"weight_map":{"t.model-00001-of-00001.safetensors":"model-00001-of-00001.safetensors"}}`), 0o644)
	nested := mk("nested", "sub/x.safetensors")
	os.WriteFile(filepath.Join(nested, IndexFileName), []byte(`{"weight_map":{"t.sub/x.safetensors":"sub/x.safetensors"}}`), 0o644)
	tests := []struct {
		path  string
		names []string
		err   string
	}{
		{mk("single", "model.safetensors", "other.safetensors"), []string{"t.model.safetensors"}, ""},
		{mk("lone", "adapter.safetensors"), []string{"t.adapter.safetensors"}, ""},
		{filepath.Join(root, "single", "other.safetensors"), []string{"t.other.safetensors"}, ""},
		{sub, []string{"t.model-00001-of-00001.safetensors"}, ""},
		{nested, []string{"t.sub/x.safetensors"}, ""},
		{mk("two", "a.safetensors", "b.safetensors"), nil,
			filepath.Join(root, "two") + ": no model.safetensors.index.json or model.safetensors, and several candidates (a.safetensors, b.safetensors); name one"},
		{mk("empty"), nil, filepath.Join(root, "empty") + ": no model.safetensors.index.json, model.safetensors or other .safetensors file"},
	}
	for _, tc := range tests {
		c, err := OpenAny(tc.path)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("OpenAny(%s) = %v, want %q", tc.path, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("OpenAny(%s): %v", tc.path, err)
			continue
		}
		if got := c.Names(); !slices.Equal(got, tc.names) {
			t.Errorf("OpenAny(%s).Names() = %q, want %q", tc.path, got, tc.names)
		}
		c.Close()
	}
}
