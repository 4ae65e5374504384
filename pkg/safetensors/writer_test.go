package safetensors

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWriterDeterministic(t *testing.T) {
	type tn struct {
		name, dtype string
		shape       []int64
	}
	ts := []tn{{"b", "F16", []int64{3}}, {"a", "F16", []int64{1}}, {"c", "U8", []int64{5}}, {"d", "I64", []int64{2}}, {"a2", "F32", nil}}
	md := map[string]string{"z": "1", "a": "2", "m": "3"}
	write := func(order []int) []byte {
		p := filepath.Join(t.TempDir(), "d.safetensors")
		w, err := NewWriter(p, md)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range order {
			size, _ := ByteSize(ts[i].dtype, ts[i].shape)
			if err := w.Add(ts[i].name, ts[i].dtype, ts[i].shape, pattern(size, byte(i))); err != nil {
				t.Fatal(err)
			}
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := write([]int{0, 1, 2, 3, 4}), write([]int{4, 3, 2, 1, 0})
	if !bytes.Equal(a, b) {
		t.Fatalf("insertion order changed the file:\n%q\n%q", a, b)
	}
	wantHdr := `{"__metadata__":{"a":"2","m":"3","z":"1"},` +
		`"d":{"dtype":"I64","shape":[2],"data_offsets":[0,16]},` +
		`"a2":{"dtype":"F32","shape":[],"data_offsets":[16,20]},` +
		`"a":{"dtype":"F16","shape":[1],"data_offsets":[20,22]},` +
		`"b":{"dtype":"F16","shape":[3],"data_offsets":[22,28]},` +
		`"c":{"dtype":"U8","shape":[5],"data_offsets":[28,33]}}`
	for len(wantHdr)%8 != 0 {
		wantHdr += " "
	}
	if got := string(a[8 : 8+len(wantHdr)]); got != wantHdr {
		t.Errorf("header =\n%s\nwant\n%s", got, wantHdr)
	}
}

func TestWriterAddRejects(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.safetensors")
	w, err := NewWriter(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Add("ok", "U8", []int64{1}, []byte{1}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, dtype string
		shape       []int64
		data        []byte
		want        string
	}{
		{"", "U8", []int64{1}, []byte{1}, p + ": tensor with an empty name"},
		{"__metadata__", "U8", []int64{1}, []byte{1}, p + `: tensor "__metadata__": the name is reserved for metadata`},
		{"bad\xff", "U8", []int64{1}, []byte{1}, p + `: tensor "bad\xff": name is not valid UTF-8`},
		{"ok", "U8", []int64{1}, []byte{1}, p + `: tensor "ok": added twice`},
		{"w", "F32", []int64{4, 6}, make([]byte, 100), p + `: tensor "w": 100 bytes of data, but F32[4 6] needs 96`},
		{"w", "F7", []int64{1}, nil, p + `: tensor "w": unknown dtype "F7" (known: BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64)`},
		{"w", "F32", []int64{-1}, nil, p + `: tensor "w": negative dimension in F32[-1]`},
		{"w", "F4", []int64{1}, nil, p + `: tensor "w": F4[1] is 4 bits, not a whole number of bytes`},
	}
	for _, tc := range tests {
		err := w.Add(tc.name, tc.dtype, tc.shape, tc.data)
		if err == nil || err.Error() != tc.want {
			t.Errorf("Add(%q, %s, %v) = %v, want %q", tc.name, tc.dtype, tc.shape, err, tc.want)
		}
	}
	if err := w.AddReader("r", "U8", []int64{1}, nil); err == nil || err.Error() != p+`: tensor "r": nil reader` {
		t.Errorf("AddReader(nil) = %v", err)
	}
	if _, err := NewWriter(p, map[string]string{"k": "\xff"}); err == nil || err.Error() != p+`: metadata "k": not valid UTF-8` {
		t.Errorf("NewWriter(bad metadata) = %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Add("late", "U8", []int64{1}, []byte{1}); err == nil || err.Error() != p+": writer is closed" {
		t.Errorf("Add after Close = %v", err)
	}
	if err := w.Close(); err == nil || err.Error() != p+": writer is closed" {
		t.Errorf("second Close = %v", err)
	}
}

// errReader fails after n bytes.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n == 0 {
		return 0, errors.New("disk on fire")
	}
	k := min(len(p), r.n)
	r.n -= k
	return k, nil
}

func TestWriterAtomicOnError(t *testing.T) {
	tests := []struct {
		name string
		r    io.Reader
		want string
	}{
		{"short reader", bytes.NewReader(make([]byte, 10)), `tensor "big": reader gave 10 of the 4000 bytes F32[1000] needs`},
		{"failing reader", &errReader{n: 100}, `tensor "big": disk on fire`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "out.safetensors")
			if err := os.WriteFile(p, []byte("previous"), 0o644); err != nil {
				t.Fatal(err)
			}
			w, err := NewWriter(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Add("small", "U8", []int64{2}, []byte{1, 2}); err != nil {
				t.Fatal(err)
			}
			if err := w.AddReader("big", "F32", []int64{1000}, tc.r); err != nil {
				t.Fatal(err)
			}
			err = w.Close()
			if err == nil || err.Error() != p+": "+tc.want {
				t.Errorf("Close() = %v, want %q", err, p+": "+tc.want)
			}
			if b, _ := os.ReadFile(p); string(b) != "previous" {
				t.Errorf("existing output changed to %q", b)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 1 {
				t.Errorf("folder holds %d entries after a failed write, want only the old file", len(ents))
			}
		})
	}
}

func TestWriterStreamsFromReader(t *testing.T) {
	dir := t.TempDir()
	src := pattern(3000, 5)
	p := filepath.Join(dir, "s.safetensors")
	w, err := NewWriter(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two tensors cut from one input with section readers, as a converter would.
	in := bytes.NewReader(src)
	if err := w.AddReader("second", "U16", []int64{500}, io.NewSectionReader(in, 2000, 1000)); err != nil {
		t.Fatal(err)
	}
	if err := w.AddReader("first", "U16", []int64{10, 100}, io.NewSectionReader(in, 0, 3000)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Data("first"); !bytes.Equal(got, src[:2000]) {
		t.Errorf("first = %x..., want %x...", got[:8], src[:8])
	}
	if got := f.Data("second"); !bytes.Equal(got, src[2000:3000]) {
		t.Errorf("second = %x..., want %x...", got[:8], src[2000:2008])
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o644 {
		t.Errorf("mode = %v, want 0644", st.Mode().Perm())
	}
}

// Rewriting a file we read gives the same bytes, via WriteFile and the mapping.
func TestWriteFileRewritesIdentically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.safetensors")
	w, _ := NewWriter(p, map[string]string{"format": "pt"})
	for i, dt := range DTypes() {
		size, _ := ByteSize(dt, []int64{8})
		if err := w.Add("t"+dt, dt, []int64{8}, pattern(size, byte(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	q := filepath.Join(dir, "b.safetensors")
	if err := WriteFile(q, f.Metadata(), f); err != nil {
		t.Fatal(err)
	}
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(q)
	if !bytes.Equal(a, b) {
		t.Errorf("rewrite differs: %d vs %d bytes", len(a), len(b))
	}
}
