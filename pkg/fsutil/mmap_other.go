//go:build !unix

package fsutil

import "os"

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
