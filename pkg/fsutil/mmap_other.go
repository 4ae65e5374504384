//go:build !unix

package fsutil

import (
	"fmt"
	"io"
	"os"
)

// Mapping holds a whole file in memory where mmap is unavailable.
type Mapping struct {
	Data []byte
}

// Map reads path into memory.
func Map(path string) (*Mapping, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return &Mapping{Data: b}, nil
}

// Close releases the data.
func (m *Mapping) Close() error { m.Data = nil; return nil }

// MapShared reads the first size bytes of f where mmap is unavailable: correct, but it costs
// the file's size in memory and time.
func MapShared(f *os.File, size int64) ([]byte, error) {
	if int64(int(size)) != size {
		return nil, fmt.Errorf("file of %d bytes is too large to read on this platform", size)
	}
	b := make([]byte, size)
	if _, err := f.ReadAt(b, 0); err != nil && err != io.EOF {
		return nil, err
	}
	return b, nil
}

// Unmap releases a slice returned by MapShared.
func Unmap([]byte) error { return nil }
