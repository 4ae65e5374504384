package main

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"fmt"
	"strings"
	"time"

	"github.com/optimctl/optimctl/pkg/fsutil"
)

// npyInt64 encodes a C-order int64 array as a .npy (format 1.0): the magic "\x93NUMPY",
// version 1.0, a little-endian uint16 header length, then a Python dict literal padded with
// spaces and a final newline so that the data starts on a 64-byte boundary.
func npyInt64(shape []int, v []int64) []byte {
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

type npyArray struct {
	name  string
	shape []int
	data  []int64
}

// writeNPZ stores the arrays uncompressed (as numpy.savez does) with a fixed timestamp, so
// the file is byte-for-byte reproducible.
func writeNPZ(path string, arrays ...npyArray) error {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, a := range arrays {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: a.name + ".npy", Method: zip.Store,
			Modified: time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err != nil {
			return err
		}
		if _, err := w.Write(npyInt64(a.shape, a.data)); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, buf.Bytes())
}
