package textdata

import (
	"path/filepath"
	"testing"
)

func TestNPYHeader(t *testing.T) {
	b := NPYInt64([]int{2, 3}, []int64{1, 2, 3, 4, 5, 6})
	hdr := len(b) - 48
	if hdr%64 != 0 || string(b[:8]) != "\x93NUMPY\x01\x00" || b[hdr-1] != '\n' || int(b[8])+10 != hdr {
		t.Fatalf("header: %q", b[:hdr])
	}
	if err := WriteNPZ(filepath.Join(t.TempDir(), "x.npz"), Array{"a", []int{2, 3}, []int64{1, 2, 3, 4, 5, 6}}); err != nil {
		t.Fatal(err)
	}
}

func TestSentences(t *testing.T) {
	got := Sentences("Call me Ishmael. Some years ago—never mind how long! Why? e.g.x")
	want := []string{"Call me Ishmael.", "Some years ago—never mind how long!", "Why?"}
	if len(got) != len(want) {
		t.Fatalf("%q", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("%q", got)
		}
	}
}
