// Package onnx reads, checks, edits and writes ONNX models losslessly. It wraps the generated
// protobuf types (package onnxpb) with what every pass needs: loading from a path or bytes with
// external data resolved safely, typed access to initializers whatever their storage, graph
// indexes and topological order, and deterministic saving inline or with external data.
package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
)

// Model is a decoded ONNX model. Byte and string fields of Proto alias one heap buffer holding
// the file (decoding copies nothing, and the garbage collector keeps the buffer alive for as
// long as any name or tensor refers to it). External data files are mapped copy-on-write:
// slices from TensorData stay valid until Close, and edits never reach an input file.
type Model struct {
	Proto *onnxpb.ModelProto
	// Path is the file the model came from ("" for bytes); Dir resolves external data.
	Path string
	Dir  string

	external map[string]*fsutil.Mapping // by cleaned relative location
}

// LoadError is a load failure that names the file and, when known, the node or tensor.
type LoadError struct {
	File string
	Err  error
}

func (e *LoadError) Error() string {
	if e.File == "" {
		return e.Err.Error()
	}
	return e.File + ": " + e.Err.Error()
}
func (e *LoadError) Unwrap() error { return e.Err }

// Load decodes the model at path, resolves and checks its external data, and checks the
// graph's structure (every input defined, no cycles).
func Load(path string) (*Model, error) {
	// Reading into the heap costs one copy at disk speed and keeps every aliased string safe;
	// a mapping would let a name outlive an unmapped file.
	b, err := os.ReadFile(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, &LoadError{File: path, Err: pe.Err}
		}
		return nil, &LoadError{File: path, Err: err}
	}
	return decode(b, path, filepath.Dir(path))
}

// LoadBytes decodes a model held in memory; dir resolves external data ("" refuses any).
// b must not change while the model is in use.
func LoadBytes(b []byte, dir string) (*Model, error) {
	return decode(b, "", dir)
}

func decode(b []byte, path, dir string) (*Model, error) {
	name := path
	if name == "" {
		name = "model"
	}
	if len(b) == 0 {
		return nil, &LoadError{File: name, Err: errors.New("empty file, not an ONNX model")}
	}
	p := &onnxpb.ModelProto{}
	if err := p.UnmarshalVTUnsafe(b); err != nil {
		return nil, &LoadError{File: name, Err: fmt.Errorf("not a valid ONNX protobuf (truncated or corrupt): %v", err)}
	}
	if p.Graph == nil {
		return nil, &LoadError{File: name, Err: errors.New("no graph: not an ONNX model")}
	}
	m := &Model{Proto: p, Path: path, Dir: dir, external: map[string]*fsutil.Mapping{}}
	if err := m.checkExternal(); err != nil {
		m.Close()
		return nil, &LoadError{File: name, Err: err}
	}
	if err := Check(p.Graph); err != nil {
		m.Close()
		return nil, &LoadError{File: name, Err: err}
	}
	return m, nil
}

// Close releases the mapped external-data files; tensor data from them becomes invalid.
func (m *Model) Close() error {
	var first error
	for k, mp := range m.external {
		if err := mp.Close(); err != nil && first == nil {
			first = err
		}
		delete(m.external, k)
	}
	return first
}

// Graph is shorthand for m.Proto.Graph.
func (m *Model) Graph() *onnxpb.GraphProto { return m.Proto.Graph }

// Opset returns the imported version of an operator-set domain ("" and "ai.onnx" are the
// same), or 0 when it is not imported.
func (m *Model) Opset(domain string) int64 {
	return OpsetOf(m.Proto.OpsetImport, domain)
}

// OpsetOf looks a domain up in an opset_import list.
func OpsetOf(imports []*onnxpb.OperatorSetIdProto, domain string) int64 {
	if domain == "ai.onnx" {
		domain = ""
	}
	for _, o := range imports {
		d := o.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		if d == domain {
			return o.GetVersion()
		}
	}
	return 0
}
