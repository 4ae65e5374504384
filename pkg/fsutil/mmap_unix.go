//go:build unix

package fsutil

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Mapping is a private (copy-on-write) memory map of a whole file: reading it touches only
// the pages read, and writes through it never reach the file, so code that edits a decoded
// tensor in place cannot modify an input.
type Mapping struct {
	Data []byte
}

// Map maps path; an empty file gives an empty, valid Mapping.
func Map(path string) (*Mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", path)
	}
	if st.Size() == 0 {
		return &Mapping{}, nil
	}
	if int64(int(st.Size())) != st.Size() {
		return nil, fmt.Errorf("%s: file too large to map", path)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
	if err != nil {
		return nil, fmt.Errorf("%s: mmap: %w", path, err)
	}
	return &Mapping{Data: b}, nil
}

// Close unmaps the file; every slice into Data becomes invalid.
func (m *Mapping) Close() error {
	if m == nil || m.Data == nil {
		return nil
	}
	err := unix.Munmap(m.Data)
	m.Data = nil
	return err
}
