package onnx

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
)

// ExternalRef is a parsed TensorProto.external_data entry.
type ExternalRef struct {
	Location string // as written in the model, relative to the model's folder
	Offset   int64
	Length   int64 // -1 when absent: the rest of the file
}

// IsExternal reports whether the tensor's data lives in a separate file.
func IsExternal(t *onnxpb.TensorProto) bool {
	return t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL
}

// ParseExternal reads the location/offset/length keys of an external tensor.
func ParseExternal(t *onnxpb.TensorProto) (ExternalRef, error) {
	r := ExternalRef{Length: -1}
	for _, kv := range t.ExternalData {
		v := kv.GetValue()
		switch kv.GetKey() {
		case "location":
			r.Location = v
		case "offset", "length":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				return r, fmt.Errorf("tensor %q: external_data %s=%q is not a non-negative integer", t.GetName(), kv.GetKey(), v)
			}
			if kv.GetKey() == "offset" {
				r.Offset = n
			} else {
				r.Length = n
			}
		}
	}
	if r.Location == "" {
		return r, fmt.Errorf("tensor %q: external data without a location", t.GetName())
	}
	return r, nil
}

// ResolveExternalPath joins a location to the model folder, refusing absolute paths and
// paths that leave the folder (also through symbolic links), as ONNX's own checker does.
func ResolveExternalPath(dir, location string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("external data %q: the model was given as bytes without a folder", location)
	}
	loc := filepath.FromSlash(strings.ReplaceAll(location, "\\", "/"))
	if filepath.IsAbs(loc) || strings.HasPrefix(location, "/") || filepath.VolumeName(loc) != "" {
		return "", fmt.Errorf("external data location %q is absolute; it must be relative to the model's folder", location)
	}
	if !filepath.IsLocal(loc) {
		return "", fmt.Errorf("external data location %q escapes the model's folder", location)
	}
	p := filepath.Join(dir, loc)
	// A symbolic link inside the folder may still point outside it.
	if real, err := filepath.EvalSymlinks(p); err == nil {
		rdir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			return "", err
		}
		rel, err := filepath.Rel(rdir, real)
		if err != nil || !filepath.IsLocal(rel) {
			return "", fmt.Errorf("external data location %q resolves outside the model's folder", location)
		}
	}
	return p, nil
}

// externalBytes returns the bytes of an external tensor, mapping its file once.
func (m *Model) externalBytes(t *onnxpb.TensorProto) ([]byte, error) {
	ref, err := ParseExternal(t)
	if err != nil {
		return nil, err
	}
	p, err := ResolveExternalPath(m.Dir, ref.Location)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.GetName(), err)
	}
	key := filepath.Clean(p)
	mp := m.external[key]
	if mp == nil {
		mp, err = fsutil.Map(p)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("tensor %q: external data file %q not found beside the model", t.GetName(), ref.Location)
			}
			return nil, fmt.Errorf("tensor %q: external data: %w", t.GetName(), err)
		}
		if m.external == nil {
			m.external = map[string]*fsutil.Mapping{}
		}
		m.external[key] = mp
	}
	size := int64(len(mp.Data))
	end := size
	if ref.Length >= 0 {
		end = ref.Offset + ref.Length
	}
	if ref.Offset > size || end > size || end < ref.Offset {
		return nil, fmt.Errorf("tensor %q: external data [%d, %d) is outside %q (%d bytes)", t.GetName(), ref.Offset, end, ref.Location, size)
	}
	return mp.Data[ref.Offset:end:end], nil
}

// checkExternal resolves every external tensor up front so that a bad reference fails the
// load with the tensor's name rather than a later pass.
func (m *Model) checkExternal() error {
	var err error
	WalkTensors(m.Proto, func(t *onnxpb.TensorProto) bool {
		if !IsExternal(t) {
			return true
		}
		var b []byte
		if b, err = m.externalBytes(t); err != nil {
			return false
		}
		if want, ok := rawSize(t); ok && int64(len(b)) != want {
			err = fmt.Errorf("tensor %q: external data has %d bytes, %s%v needs %d", t.GetName(), len(b), dtypeName(t.GetDataType()), t.Dims, want)
			return false
		}
		return true
	})
	return err
}

// WalkTensors calls fn for every dense tensor in the model: initializers, sparse initializer
// parts, and tensor attributes of nodes in the graph, its subgraphs and model functions.
// fn returns false to stop.
func WalkTensors(p *onnxpb.ModelProto, fn func(*onnxpb.TensorProto) bool) {
	var walkGraph func(g *onnxpb.GraphProto) bool
	var walkNodes func(nodes []*onnxpb.NodeProto) bool
	walkAttr := func(a *onnxpb.AttributeProto) bool {
		if a.T != nil && !fn(a.T) {
			return false
		}
		for _, t := range a.Tensors {
			if !fn(t) {
				return false
			}
		}
		if st := a.SparseTensor; st != nil {
			if (st.Values != nil && !fn(st.Values)) || (st.Indices != nil && !fn(st.Indices)) {
				return false
			}
		}
		for _, st := range a.SparseTensors {
			if (st.Values != nil && !fn(st.Values)) || (st.Indices != nil && !fn(st.Indices)) {
				return false
			}
		}
		if a.G != nil && !walkGraph(a.G) {
			return false
		}
		for _, g := range a.Graphs {
			if !walkGraph(g) {
				return false
			}
		}
		return true
	}
	walkNodes = func(nodes []*onnxpb.NodeProto) bool {
		for _, n := range nodes {
			for _, a := range n.Attribute {
				if !walkAttr(a) {
					return false
				}
			}
		}
		return true
	}
	walkGraph = func(g *onnxpb.GraphProto) bool {
		if g == nil {
			return true
		}
		for _, t := range g.Initializer {
			if !fn(t) {
				return false
			}
		}
		for _, st := range g.SparseInitializer {
			if (st.Values != nil && !fn(st.Values)) || (st.Indices != nil && !fn(st.Indices)) {
				return false
			}
		}
		return walkNodes(g.Node)
	}
	if !walkGraph(p.Graph) {
		return
	}
	for _, ti := range p.TrainingInfo {
		if !walkGraph(ti.Initialization) || !walkGraph(ti.Algorithm) {
			return
		}
	}
	for _, f := range p.Functions {
		if !walkNodes(f.Node) {
			return
		}
		for _, a := range f.AttributeProto {
			if !walkAttr(a) {
				return
			}
		}
	}
}
