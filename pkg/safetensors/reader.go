package safetensors

import (
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"os"

	"github.com/optimctl/optimctl/pkg/fsutil"
)

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name  string
	DType string  // safetensors spelling: "F32", "BF16", "F8_E4M3", ...
	Shape []int64 // empty for a scalar
	// Offset is the position of the first data byte from the start of the file (not of the
	// data buffer), so it can go straight into an ONNX external-data reference.
	Offset int64
	Size   int64  // bytes
	File   string // path of the file that holds the tensor
}

// File is an open safetensors file. Its methods are safe for concurrent use until Close.
type File struct {
	path     string
	data     []byte // the whole file, mapped read-only
	tensors  []TensorInfo
	index    map[string]int
	metadata map[string]string
}

// Open maps path and validates its header. Only the header is read: tensor bytes are not
// touched until Data is called, so opening a large file is cheap in time and memory.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return openFile(f, path)
}

// openFile does the work of Open on an already opened file; name is used in errors.
// The mapping outlives f, so the caller may close f as soon as this returns.
func openFile(f *os.File, name string) (*File, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file", name)
	}
	size := st.Size()
	fail := func(e *HeaderError) error { e.File = name; return e }
	if size < 8 {
		return nil, fail(headerErr("", "file is %d bytes, too short for the 8-byte header length", size))
	}
	var prefix [8]byte
	if _, err := f.ReadAt(prefix[:], 0); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	n := binary.LittleEndian.Uint64(prefix[:])
	if n > MaxHeaderSize {
		return nil, fail(headerErr("", "header length %d exceeds the %d-byte limit", n, MaxHeaderSize))
	}
	if n > uint64(size-8) {
		return nil, fail(headerErr("", "header length %d exceeds the %d bytes after the length prefix (truncated file?)", n, size-8))
	}
	hdr := make([]byte, n)
	if _, err := f.ReadAt(hdr, 8); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	dataStart := 8 + int64(n)
	h, err := parseHeader(hdr, size-dataStart)
	if err != nil {
		if he, ok := err.(*HeaderError); ok {
			return nil, fail(he)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	data, err := fsutil.MapShared(f, size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	sf := &File{path: name, data: data, tensors: h.tensors, index: make(map[string]int, len(h.tensors)), metadata: h.metadata}
	for i := range sf.tensors {
		t := &sf.tensors[i]
		t.Offset += dataStart
		t.File = name
		sf.index[t.Name] = i
	}
	return sf, nil
}

// Path is the path the file was opened with.
func (f *File) Path() string { return f.path }

// Names lists the tensors in file order (by data offset).
func (f *File) Names() []string {
	out := make([]string, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t.Name
	}
	return out
}

// Tensors describes every tensor, in file order.
func (f *File) Tensors() []TensorInfo {
	out := make([]TensorInfo, len(f.tensors))
	for i, t := range f.tensors {
		out[i] = t
		out[i].Shape = cloneShape(t.Shape)
	}
	return out
}

// Tensor describes the named tensor. The returned Shape is the caller's to keep or change.
func (f *File) Tensor(name string) (TensorInfo, bool) {
	i, ok := f.index[name]
	if !ok {
		return TensorInfo{}, false
	}
	t := f.tensors[i]
	t.Shape = cloneShape(t.Shape)
	return t, true
}

// Data returns the named tensor's bytes (little-endian, row-major) without copying: the slice
// points into the read-only mapping, so writing to it crashes the program, and it is valid
// only until Close. Nil when there is no such tensor or the file is closed.
func (f *File) Data(name string) []byte {
	i, ok := f.index[name]
	if !ok || f.data == nil {
		return nil
	}
	t := f.tensors[i]
	return f.data[t.Offset : t.Offset+t.Size : t.Offset+t.Size]
}

// Metadata returns a copy of the header's "__metadata__"; nil when the header has none.
func (f *File) Metadata() map[string]string { return maps.Clone(f.metadata) }

// Close unmaps the file; every slice returned by Data becomes invalid. Close is idempotent.
func (f *File) Close() error {
	if f.data == nil {
		return nil
	}
	d := f.data
	f.data = nil
	if err := fsutil.Unmap(d); err != nil {
		return fmt.Errorf("%s: %w", f.path, err)
	}
	return nil
}

func cloneShape(s []int64) []int64 {
	if s == nil {
		return []int64{}
	}
	return append([]int64{}, s...)
}
