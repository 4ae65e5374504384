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

// MapShared maps the first size bytes of f read-only and shared: pages come from the page
// cache on first touch and are never copied, and the kernel may drop them again under memory
// pressure. Writing through the slice faults, so only readers that never edit in place use it.
// The mapping outlives f; release it with Unmap. Truncating the file while it is mapped
// makes later reads fault (SIGBUS), as with any mmap.
func MapShared(f *os.File, size int64) ([]byte, error) {
	if int64(int(size)) != size {
		return nil, fmt.Errorf("file of %d bytes is too large to map on this platform", size)
	}
	if size == 0 {
		return []byte{}, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap: %w", err)
	}
	return b, nil
}

// Unmap releases a slice returned by MapShared.
func Unmap(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return unix.Munmap(b)
}
