package safetensors

import (
	"encoding/json"
	"errors"
	"math"
	"slices"
	"testing"
)

// fuzzBufLens are the data-buffer lengths each input is parsed against; the seed corpus in
// testdata/fuzz/FuzzHeader holds headers that tile 0, 16 and 1024 bytes exactly.
var fuzzBufLens = []int64{0, 16, 1024, math.MaxInt64}

// FuzzHeader feeds arbitrary bytes to the header parser. It must never panic, must fail only
// with *HeaderError, and what it accepts must satisfy the layout invariants and survive being
// encoded and parsed again unchanged.
func FuzzHeader(f *testing.F) {
	f.Add([]byte(`{"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]}}`))
	f.Fuzz(func(t *testing.T, hdr []byte) {
		for _, bufLen := range fuzzBufLens {
			h, err := parseHeader(hdr, bufLen)
			if err != nil {
				var he *HeaderError
				if !errors.As(err, &he) {
					t.Fatalf("error %v is a %T, not a *HeaderError", err, err)
				}
				continue
			}
			checkLayout(t, h, bufLen)
			// encoding/json as an oracle for the hand-written scanner: what we accept is
			// valid JSON, and every name and metadata entry decodes the same way.
			var ref map[string]json.RawMessage
			if !json.Valid(hdr) || json.Unmarshal(hdr, &ref) != nil {
				t.Fatalf("accepted invalid JSON %q", hdr)
			}
			for _, ti := range h.tensors {
				if _, ok := ref[ti.Name]; !ok {
					t.Fatalf("name %q is not a key of the header per encoding/json", ti.Name)
				}
			}
			if h.metadata != nil {
				var md map[string]string
				if err := json.Unmarshal(ref[metadataKey], &md); err != nil || len(md) != len(h.metadata) {
					t.Fatalf("metadata %v, encoding/json gives %v, %v", h.metadata, md, err)
				}
				for k, v := range md {
					if h.metadata[k] != v {
						t.Fatalf("metadata[%q] = %q, encoding/json gives %q", k, h.metadata[k], v)
					}
				}
			}
			enc := encodeHeader(h.metadata, h.tensors)
			if len(enc)%8 != 0 {
				t.Fatalf("encoded header is %d bytes, not 8-aligned", len(enc))
			}
			h2, err := parseHeader(enc, bufLen)
			if err != nil {
				t.Fatalf("re-encoded header rejected: %v\n%q", err, enc)
			}
			if !slices.EqualFunc(h.tensors, h2.tensors, equalInfo) || len(h.metadata) != len(h2.metadata) || (h.metadata == nil) != (h2.metadata == nil) {
				t.Fatalf("round trip changed the header:\n%+v %v\n%+v %v", h.tensors, h.metadata, h2.tensors, h2.metadata)
			}
			for k, v := range h.metadata {
				if h2.metadata[k] != v {
					t.Fatalf("round trip changed metadata %q: %q -> %q", k, v, h2.metadata[k])
				}
			}
		}
	})
}

// checkLayout asserts what Open promises about an accepted header.
func checkLayout(t *testing.T, h *header, bufLen int64) {
	t.Helper()
	var pos int64
	seen := map[string]bool{}
	for _, ti := range h.tensors {
		if ti.Name == "" || ti.Name == metadataKey || seen[ti.Name] {
			t.Fatalf("bad or repeated name %q", ti.Name)
		}
		seen[ti.Name] = true
		if ti.Offset != pos {
			t.Fatalf("tensor %q at %d, want %d", ti.Name, ti.Offset, pos)
		}
		size, err := ByteSize(ti.DType, ti.Shape)
		if err != nil || size != ti.Size {
			t.Fatalf("tensor %q: size %d, ByteSize %d, %v", ti.Name, ti.Size, size, err)
		}
		pos += ti.Size
	}
	if pos != bufLen {
		t.Fatalf("tensors cover %d of %d bytes", pos, bufLen)
	}
}
