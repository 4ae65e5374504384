package safetensors

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// writeRaw writes a file from a literal header (not padded) and data buffer.
func writeRaw(t *testing.T, dir, name, hdr string, buf []byte) string {
	t.Helper()
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(hdr)))
	b = append(b, hdr...)
	b = append(b, buf...)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// pattern returns n bytes that differ per tensor and per position.
func pattern(n int64, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = seed + byte(i*7)
	}
	return b
}

func TestRoundTripAllDTypes(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "all.safetensors")
	// [2 4] = 8 elements fills whole bytes for every dtype, F4 and F6 included.
	shape := []int64{2, 4}
	want := map[string][]byte{}
	w, err := NewWriter(p, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	for i, dt := range DTypes() {
		size, err := ByteSize(dt, shape)
		if err != nil {
			t.Fatal(err)
		}
		name := "t." + strings.ToLower(dt)
		want[name] = pattern(size, byte(i))
		if err := w.Add(name, dt, shape, want[name]); err != nil {
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
	// Widest alignment first, then name; F6/F4/BOOL last, as the reference orders its enum.
	wantOrder := []struct {
		dtype string
		size  int64
	}{
		{"U64", 64}, {"I64", 64}, {"F64", 64}, {"C64", 64}, {"F32", 32}, {"U32", 32}, {"I32", 32},
		{"BF16", 16}, {"F16", 16}, {"U16", 16}, {"I16", 16},
		{"F8_E5M2FNUZ", 8}, {"F8_E4M3FNUZ", 8}, {"F8_E8M0", 8}, {"F8_E4M3", 8}, {"F8_E5M2", 8},
		{"I8", 8}, {"U8", 8}, {"F6_E3M2", 6}, {"F6_E2M3", 6}, {"F4", 4}, {"BOOL", 8},
	}
	names := f.Names()
	if len(names) != len(wantOrder) {
		t.Fatalf("got %d tensors, want %d", len(names), len(wantOrder))
	}
	// The header is padded so the data buffer starts 8-byte aligned.
	hdrLen := int64(binary.LittleEndian.Uint64(readPrefix(t, p)))
	if hdrLen%8 != 0 {
		t.Errorf("header length %d is not a multiple of 8", hdrLen)
	}
	off := 8 + hdrLen
	for i, wo := range wantOrder {
		name := "t." + strings.ToLower(wo.dtype)
		if names[i] != name {
			t.Errorf("Names()[%d] = %q, want %q", i, names[i], name)
		}
		ti, ok := f.Tensor(name)
		if !ok {
			t.Fatalf("tensor %q missing", name)
		}
		wantTI := TensorInfo{Name: name, DType: wo.dtype, Shape: shape, Offset: off, Size: wo.size, File: p}
		if !equalInfo(ti, wantTI) {
			t.Errorf("Tensor(%q) = %+v, want %+v", name, ti, wantTI)
		}
		if got := f.Data(name); string(got) != string(want[name]) {
			t.Errorf("Data(%q) = %x, want %x", name, got, want[name])
		}
		off += wo.size
	}
	if st, _ := os.Stat(p); st.Size() != off {
		t.Errorf("file is %d bytes, want %d", st.Size(), off)
	}
	if md := f.Metadata(); len(md) != 1 || md["format"] != "pt" {
		t.Errorf("Metadata() = %v", md)
	}
}

func readPrefix(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b[:8]
}

func equalInfo(a, b TensorInfo) bool {
	return a.Name == b.Name && a.DType == b.DType && slices.Equal(a.Shape, b.Shape) &&
		a.Offset == b.Offset && a.Size == b.Size && a.File == b.File
}

// The reference's own serializer tests pin these bytes.
func TestWriterGolden(t *testing.T) {
	f32 := []byte{0, 0, 0, 0, 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40, 0, 0, 0x80, 0x40, 0, 0, 0xa0, 0x40}
	tests := []struct {
		name   string
		md     map[string]string
		tensor string
		shape  []int64
		data   []byte
		want   string // header after the length prefix, padding included
	}{
		{"one tensor", nil, "attn.0", []int64{1, 2, 3}, f32,
			`{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}`},
		{"padded", nil, "attn0", []int64{1, 1, 2, 3}, f32,
			`{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       `},
		{"empty", nil, "", nil, nil, `{}      `},
		{"metadata only", map[string]string{"framework": "pt"}, "", nil, nil,
			`{"__metadata__":{"framework":"pt"}}     `},
		{"empty metadata", map[string]string{}, "", nil, nil, `{"__metadata__":{}}     `},
		{"escapes", map[string]string{"k": "\"\\/\b\f\n\r\t\x01\x1f\x7f<>&é\u2028"}, "", nil, nil,
			`{"__metadata__":{"k":"\"\\/\b\f\n\r\t\u0001\u001f` + "\x7f<>&é\u2028" + `"}}   `},
		{"scalar", nil, "s", []int64{}, []byte{1, 2, 3, 4},
			`{"s":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}   `},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "g.safetensors")
			w, err := NewWriter(p, tc.md)
			if err != nil {
				t.Fatal(err)
			}
			if tc.tensor != "" {
				if err := w.Add(tc.tensor, "F32", tc.shape, tc.data); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			want := binary.LittleEndian.AppendUint64(nil, uint64(len(tc.want)))
			want = append(append(want, tc.want...), tc.data...)
			if string(got) != string(want) {
				t.Errorf("file =\n%q\nwant\n%q", got, want)
			}
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if md := f.Metadata(); (md == nil) != (tc.md == nil) || len(md) != len(tc.md) {
				t.Errorf("Metadata() = %#v, want %#v", md, tc.md)
			}
			for k, v := range tc.md {
				if f.Metadata()[k] != v {
					t.Errorf("Metadata()[%q] = %q, want %q", k, f.Metadata()[k], v)
				}
			}
		})
	}
}

func TestToTensorDType(t *testing.T) {
	tests := []struct {
		st   string
		want tensor.DType
		ok   bool
	}{
		{"BOOL", tensor.Bool, true}, {"U8", tensor.Uint8, true}, {"I8", tensor.Int8, true},
		{"U16", tensor.Uint16, true}, {"I16", tensor.Int16, true}, {"U32", tensor.Uint32, true},
		{"I32", tensor.Int32, true}, {"U64", tensor.Uint64, true}, {"I64", tensor.Int64, true},
		{"F16", tensor.Float16, true}, {"BF16", tensor.BFloat16, true}, {"F32", tensor.Float32, true},
		{"F64", tensor.Float64, true}, {"C64", tensor.Complex64, true},
		{"F8_E4M3", tensor.Float8E4M3FN, true}, {"F8_E5M2", tensor.Float8E5M2, true},
		{"F8_E4M3FNUZ", tensor.Float8E4M3FNUZ, true}, {"F8_E5M2FNUZ", tensor.Float8E5M2FNUZ, true},
		{"F8_E8M0", tensor.Float8E8M0, true}, {"F4", tensor.Float4E2M1, true},
		{"F6_E2M3", tensor.Undefined, false}, {"F6_E3M2", tensor.Undefined, false},
		{"f32", tensor.Undefined, false}, {"", tensor.Undefined, false},
	}
	for _, tc := range tests {
		got, ok := ToTensorDType(tc.st)
		if got != tc.want || ok != tc.ok {
			t.Errorf("ToTensorDType(%q) = %v, %v; want %v, %v", tc.st, got, ok, tc.want, tc.ok)
		}
		if !tc.ok {
			continue
		}
		back, ok := FromTensorDType(got)
		if back != tc.st || !ok {
			t.Errorf("FromTensorDType(%v) = %q, %v; want %q", got, back, ok, tc.st)
		}
		// Sizes agree with pkg/tensor's for every mapped type.
		n, err := ByteSize(tc.st, []int64{6})
		if err != nil || n != got.ByteSize(6) {
			t.Errorf("ByteSize(%q, [6]) = %d, %v; tensor says %d", tc.st, n, err, got.ByteSize(6))
		}
	}
	for _, d := range []tensor.DType{tensor.Undefined, tensor.String, tensor.Complex128, tensor.Int4, tensor.Uint4, tensor.Int2, tensor.Uint2} {
		if s, ok := FromTensorDType(d); ok {
			t.Errorf("FromTensorDType(%v) = %q, want none", d, s)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		dtype string
		shape []int64
		want  int64
		err   string
	}{
		{"F32", []int64{4, 6}, 96, ""},
		{"F32", []int64{}, 4, ""},
		{"F32", nil, 4, ""},
		{"BF16", []int64{3, 0, 5}, 0, ""},
		{"F4", []int64{2, 3}, 3, ""},
		{"F6_E2M3", []int64{4}, 3, ""},
		{"C64", []int64{2}, 16, ""},
		{"F4", []int64{3}, 0, "F4[3] is 12 bits, not a whole number of bytes"},
		{"F6_E3M2", []int64{1}, 0, "F6_E3M2[1] is 6 bits, not a whole number of bytes"},
		{"F32", []int64{2, -1}, 0, "negative dimension in F32[2 -1]"},
		{"U8", []int64{1 << 32, 1 << 32}, 0, "U8[4294967296 4294967296] has too many elements"},
		{"F64", []int64{1 << 62}, 0, "F64[4611686018427387904] is too large"},
		{"F7", []int64{1}, 0, `unknown dtype "F7" (known: BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64)`},
	}
	for _, tc := range tests {
		got, err := ByteSize(tc.dtype, tc.shape)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ByteSize(%s, %v) error = %v, want %q", tc.dtype, tc.shape, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ByteSize(%s, %v) = %d, %v; want %d", tc.dtype, tc.shape, got, err, tc.want)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	const f32x2 = `"dtype":"F32","shape":[2]`
	tests := []struct {
		name   string
		raw    []byte // whole file, when set; otherwise hdr + buf
		hdr    string
		buf    int
		tensor string
		msg    string
	}{
		{name: "too short", raw: []byte{1, 2, 3}, msg: "file is 3 bytes, too short for the 8-byte header length"},
		{name: "header too long", raw: binary.LittleEndian.AppendUint64(nil, 100_000_001),
			msg: "header length 100000001 exceeds the 100000000-byte limit"},
		{name: "huge length", raw: binary.LittleEndian.AppendUint64(nil, 1<<63),
			msg: "header length 9223372036854775808 exceeds the 100000000-byte limit"},
		{name: "truncated", raw: append(binary.LittleEndian.AppendUint64(nil, 64), `{"a":{}}`...),
			msg: "header length 64 exceeds the 8 bytes after the length prefix (truncated file?)"},
		{name: "bad json", hdr: `{"a":{"dtype":"F32",}}`, msg: "header is not valid JSON: expected a string, found '}' at byte 20"},
		{name: "unterminated json", hdr: `{"a":{"dtype":"F32"`, msg: "header is not valid JSON: unexpected end of input at byte 19"},
		{name: "unterminated string", hdr: `{"a`, msg: "header is not valid JSON: unexpected end of input at byte 3"},
		{name: "lone surrogate", hdr: `{"\ud800":1}`, msg: "header is not valid JSON: lone UTF-16 surrogate in string at byte 8"},
		{name: "bad escape", hdr: `{"\x41":1}`, msg: `header is not valid JSON: invalid escape '\x' in string at byte 2`},
		{name: "raw newline in string", hdr: "{\"a\nb\":1}", msg: "header is not valid JSON: control character 0x0a in string at byte 3"},
		{name: "leading zero", hdr: `{"a":{"dtype":"U8","shape":[01],"data_offsets":[0,1]}}`, msg: "header is not valid JSON: expected ',' or ']', found '1' at byte 29"},
		{name: "bad literal", hdr: `{"__metadata__":nul}`, msg: "header is not valid JSON: expected a value, found 'n' at byte 16"},
		{name: "deep nesting", hdr: `{"a":{"x":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}}`,
			msg: "header is not valid JSON: nesting deeper than 128 at byte 137"},
		{name: "not utf8", hdr: "{\"\xff\":1}", msg: "header is not valid UTF-8"},
		{name: "not an object", hdr: `[1,2]`, msg: "header does not start with '{'"},
		{name: "leading space", hdr: ` {}`, msg: "header does not start with '{'"},
		{name: "trailing garbage", hdr: `{}  x`, msg: `header is not valid JSON: unexpected "x" after the JSON object at byte 4`},
		{name: "two objects", hdr: `{}{}`, msg: `header is not valid JSON: unexpected "{}" after the JSON object at byte 2`},
		{name: "unknown dtype", hdr: `{"x.weight":{"dtype":"F7","shape":[2],"data_offsets":[0,8]}}`, buf: 8, tensor: "x.weight",
			msg: `unknown dtype "F7" (known: BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64)`},
		{name: "lower-case dtype", hdr: `{"x":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}}`, buf: 8, tensor: "x",
			msg: `unknown dtype "f32" (known: BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ, I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64)`},
		{name: "dtype not a string", hdr: `{"x":{"dtype":4,"shape":[2],"data_offsets":[0,8]}}`, buf: 8, tensor: "x", msg: "dtype must be a string, got 4"},
		{name: "size mismatch", hdr: `{"x.weight":{"dtype":"F32","shape":[4,6],"data_offsets":[0,100]}}`, buf: 100, tensor: "x.weight",
			msg: "data_offsets [0 100] hold 100 bytes but F32[4 6] needs 96"},
		{name: "out of range", hdr: `{"x":{` + f32x2 + `,"data_offsets":[0,8]}}`, buf: 4, tensor: "x",
			msg: "data_offsets [0 8] run past the end of the 4-byte data buffer"},
		{name: "reversed", hdr: `{"x":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}}`, buf: 8, tensor: "x",
			msg: "data_offsets [8 0] end before they begin"},
		{name: "overlap", hdr: `{"a":{` + f32x2 + `,"data_offsets":[0,8]},"b":{` + f32x2 + `,"data_offsets":[4,12]}}`, buf: 12, tensor: "b",
			msg: `data_offsets [4 12] overlap tensor "a" [0 8]`},
		{name: "same range", hdr: `{"a":{` + f32x2 + `,"data_offsets":[0,8]},"b":{` + f32x2 + `,"data_offsets":[0,8]}}`, buf: 8, tensor: "b",
			msg: `data_offsets [0 8] overlap tensor "a" [0 8]`},
		{name: "empty tensor inside another", hdr: `{"a":{` + f32x2 + `,"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[0],"data_offsets":[4,4]}}`, buf: 8, tensor: "b",
			msg: `data_offsets [4 4] overlap tensor "a" [0 8]`},
		{name: "hole", hdr: `{"a":{` + f32x2 + `,"data_offsets":[0,8]},"b":{` + f32x2 + `,"data_offsets":[16,24]}}`, buf: 24, tensor: "b",
			msg: `data_offsets [16 24] leave bytes [8 16) after tensor "a" unused`},
		{name: "hole at start", hdr: `{"a":{` + f32x2 + `,"data_offsets":[8,16]}}`, buf: 16, tensor: "a",
			msg: "data_offsets [8 16] leave bytes [0 8) at the start of the data buffer unused"},
		{name: "trailing bytes", hdr: `{"a":{` + f32x2 + `,"data_offsets":[0,8]}}`, buf: 12, tensor: "a",
			msg: "last tensor ends at byte 8 of the 12-byte data buffer; bytes [8 12) are unused"},
		{name: "no tensors but data", hdr: `{}`, buf: 4, msg: "header lists no tensors but the data buffer has 4 bytes"},
		{name: "duplicate", hdr: `{"a":{` + f32x2 + `,"data_offsets":[0,8]},"a":{` + f32x2 + `,"data_offsets":[8,16]}}`, buf: 16, tensor: "a",
			msg: "duplicate tensor name"},
		{name: "duplicate metadata", hdr: `{"__metadata__":{},"__metadata__":{}}`, msg: `header has two "__metadata__" entries`},
		{name: "duplicate field", hdr: `{"a":{` + f32x2 + `,"dtype":"U8","data_offsets":[0,8]}}`, buf: 8, tensor: "a", msg: `duplicate field "dtype"`},
		{name: "empty name", hdr: `{"":{` + f32x2 + `,"data_offsets":[0,8]}}`, buf: 8, msg: "header has a tensor with an empty name"},
		{name: "missing offsets", hdr: `{"a":{` + f32x2 + `}}`, buf: 8, tensor: "a", msg: `entry has no "data_offsets"`},
		{name: "missing shape", hdr: `{"a":{"dtype":"F32","data_offsets":[0,8]}}`, buf: 8, tensor: "a", msg: `entry has no "shape"`},
		{name: "missing dtype", hdr: `{"a":{"shape":[2],"data_offsets":[0,8]}}`, buf: 8, tensor: "a", msg: `entry has no "dtype"`},
		{name: "case-folded key", hdr: `{"a":{"DTYPE":"F32","shape":[2],"data_offsets":[0,8]}}`, buf: 8, tensor: "a", msg: `entry has no "dtype"`},
		{name: "entry not object", hdr: `{"a":[1]}`, tensor: "a", msg: "entry is not a JSON object"},
		{name: "negative dim", hdr: `{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}`, buf: 8, tensor: "a",
			msg: "shape: want an array of non-negative integers, got [-2]"},
		{name: "float dim", hdr: `{"a":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}}`, buf: 8, tensor: "a",
			msg: "shape: want an array of non-negative integers, got [2.0]"},
		{name: "null dim", hdr: `{"a":{"dtype":"F32","shape":[null],"data_offsets":[0,0]}}`, tensor: "a",
			msg: "shape: want an array of non-negative integers, got [null]"},
		{name: "string dim", hdr: `{"a":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}}`, buf: 8, tensor: "a",
			msg: `shape: want an array of non-negative integers, got ["2"]`},
		{name: "null shape", hdr: `{"a":{"dtype":"F32","shape":null,"data_offsets":[0,4]}}`, buf: 4, tensor: "a",
			msg: "shape: want an array of non-negative integers, got null"},
		{name: "dim beyond int64", hdr: `{"a":{"dtype":"F32","shape":[9223372036854775808],"data_offsets":[0,8]}}`, buf: 8, tensor: "a",
			msg: "shape: want an array of non-negative integers, got [9223372036854775808]"},
		{name: "three offsets", hdr: `{"a":{` + f32x2 + `,"data_offsets":[0,8,16]}}`, buf: 8, tensor: "a",
			msg: "data_offsets must be [begin, end], got [0 8 16]"},
		{name: "element overflow", hdr: `{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,8]}}`, buf: 8, tensor: "a",
			msg: "U8[4294967296 4294967296] has too many elements"},
		{name: "partial F4 byte", hdr: `{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]}}`, buf: 2, tensor: "a",
			msg: "F4[3] is 12 bits, not a whole number of bytes"},
		{name: "metadata not strings", hdr: `{"__metadata__":{"n":1}}`, msg: `__metadata__["n"] must be a string, got 1`},
		{name: "metadata not object", hdr: `{"__metadata__":"pt"}`, msg: `__metadata__ must be an object of strings, got "pt"`},
		{name: "metadata duplicate key", hdr: `{"__metadata__":{"a":"1","a":"2"}}`, msg: `__metadata__ has a duplicate key "a"`},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".safetensors")
			if tc.raw != nil {
				if err := os.WriteFile(name, tc.raw, 0o644); err != nil {
					t.Fatal(err)
				}
			} else {
				name = writeRaw(t, dir, filepath.Base(name), tc.hdr, pattern(int64(tc.buf), byte(i)))
			}
			f, err := Open(name)
			if err == nil {
				f.Close()
				t.Fatalf("Open succeeded, want error %q", tc.msg)
			}
			var he *HeaderError
			if !errors.As(err, &he) {
				t.Fatalf("error %v (%T) is not a *HeaderError", err, err)
			}
			if he.File != name || he.Tensor != tc.tensor || he.Msg != tc.msg {
				t.Errorf("error = {File: %q, Tensor: %q, Msg: %q}\nwant    {File: %q, Tensor: %q, Msg: %q}", he.File, he.Tensor, he.Msg, name, tc.tensor, tc.msg)
			}
			want := name + ": " + tc.msg
			if tc.tensor != "" {
				want = name + `: tensor "` + tc.tensor + `": ` + tc.msg
			}
			if err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

func TestOpenAccepts(t *testing.T) {
	tests := []struct {
		name     string
		hdr      string
		buf      int
		names    []string
		metadata map[string]string
	}{
		{"json order is not file order",
			`{"b":{"dtype":"U8","shape":[2],"data_offsets":[2,4]},"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}`, 4, []string{"a", "b"}, nil},
		{"zero-size tensors tie by name",
			`{"z":{"dtype":"F32","shape":[0,3],"data_offsets":[0,0]},"y":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`,
			1, []string{"y", "z", "x"}, nil},
		{"unknown fields ignored", `{"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1],"extra":{"k":[1]}}}`, 1, []string{"a"}, nil},
		{"trailing whitespace", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}} \n\t\r", 1, []string{"a"}, nil},
		{"null metadata", `{"__metadata__":null}`, 0, []string{}, nil},
		{"empty file", `{}`, 0, []string{}, nil},
		{"metadata anywhere", `{"a":{"dtype":"BOOL","shape":[],"data_offsets":[0,1]},"__metadata__":{"x":"1","y":""}}`, 1, []string{"a"}, map[string]string{"x": "1", "y": ""}},
		{"escaped name", `{"a\u00e9\"\n":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1, []string{"aé\"\n"}, nil},
	}
	dir := t.TempDir()
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeRaw(t, dir, strings.ReplaceAll(tc.name, " ", "_"), tc.hdr, pattern(int64(tc.buf), byte(i)))
			f, err := Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if got := f.Names(); !slices.Equal(got, tc.names) {
				t.Errorf("Names() = %q, want %q", got, tc.names)
			}
			md := f.Metadata()
			if len(md) != len(tc.metadata) {
				t.Errorf("Metadata() = %v, want %v", md, tc.metadata)
			}
			for k, v := range tc.metadata {
				if md[k] != v {
					t.Errorf("Metadata()[%q] = %q, want %q", k, md[k], v)
				}
			}
		})
	}
}

func TestDataIsZeroCopy(t *testing.T) {
	p := writeRaw(t, t.TempDir(), "z.safetensors",
		`{"a":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},"b":{"dtype":"U8","shape":[0],"data_offsets":[3,3]}}`, []byte{7, 8, 9})
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := f.Data("a"), f.Data("a")
	if string(d1) != "\x07\x08\x09" || &d1[0] != &d2[0] || cap(d1) != 3 {
		t.Errorf("Data(a) = %v (cap %d); want the same 3-byte window twice", d1, cap(d1))
	}
	if b := f.Data("b"); b == nil || len(b) != 0 {
		t.Errorf("Data(b) = %#v, want empty non-nil", b)
	}
	if f.Data("nope") != nil {
		t.Error("Data of a missing tensor is not nil")
	}
	ti, _ := f.Tensor("a")
	ti.Shape[0] = 99
	if again, _ := f.Tensor("a"); again.Shape[0] != 3 {
		t.Error("Tensor returned a shape that aliases the file's")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if f.Data("a") != nil {
		t.Error("Data after Close is not nil")
	}
}
