package safetensors

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"
)

// Conventional file names in a Hugging Face model folder.
const (
	IndexFileName  = "model.safetensors.index.json" // sharded: {"metadata": {...}, "weight_map": {tensor: shard}}
	SingleFileName = "model.safetensors"
)

// Checkpoint presents the tensors of one file or of every shard of a sharded checkpoint as
// one set. Its methods are safe for concurrent use until Close.
//
// The index and the shards must agree exactly: a tensor that the weight_map assigns to a shard
// that does not hold it is an error, and so is a tensor in a shard that the weight_map does not
// assign to that shard (including one stored in two shards). A disagreement means the index
// and the shards come from different saves, and silently picking one would hide that.
// The index's "total_size" is reported by IndexMetadata but not checked: writers disagree
// about what it counts.
type Checkpoint struct {
	index     string // path of the index file; "" for a single file
	files     []*File
	owner     map[string]*File
	names     []string
	indexMeta map[string]string
}

// OpenDir opens the sharded checkpoint whose index is dir/model.safetensors.index.json.
func OpenDir(dir string) (*Checkpoint, error) {
	return OpenIndex(filepath.Join(dir, IndexFileName))
}

// OpenIndex opens a sharded checkpoint from its index file; shards are looked up beside it.
// A shard path must name a file inside that folder: absolute paths, ".." and symbolic links
// that lead outside are refused, so a downloaded index cannot make us map arbitrary files.
func OpenIndex(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > MaxHeaderSize {
		return nil, fmt.Errorf("%s: index of %d bytes exceeds the %d-byte limit", path, st.Size(), MaxHeaderSize)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	weightMap, meta, err := parseIndex(raw)
	if err != nil {
		if he, ok := err.(*HeaderError); ok {
			he.File = path
			return nil, he
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	tensorNames := slices.Sorted(maps.Keys(weightMap))
	for _, name := range tensorNames {
		if s := weightMap[name]; !filepath.IsLocal(filepath.FromSlash(s)) {
			return nil, &HeaderError{File: path, Tensor: name,
				Msg: fmt.Sprintf("shard path %q is not a relative path inside the checkpoint folder", s)}
		}
	}
	dir := filepath.Dir(path)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()

	c := &Checkpoint{index: path, owner: make(map[string]*File, len(weightMap)), indexMeta: meta}
	fail := func(err error) (*Checkpoint, error) { c.Close(); return nil, err }
	for _, shard := range slices.Sorted(maps.Keys(setOf(weightMap))) {
		shardPath := filepath.Join(dir, filepath.FromSlash(shard))
		f, err := root.Open(filepath.FromSlash(shard))
		if err != nil {
			return fail(fmt.Errorf("%s: shard %q: %w", path, shard, err))
		}
		sf, err := openFile(f, shardPath)
		f.Close()
		if err != nil {
			return fail(err)
		}
		c.files = append(c.files, sf)
		for _, t := range sf.tensors {
			switch want, listed := weightMap[t.Name]; {
			case !listed:
				return fail(&HeaderError{File: shardPath, Tensor: t.Name, Msg: fmt.Sprintf("not listed in the weight_map of %s", path)})
			case want != shard:
				return fail(&HeaderError{File: shardPath, Tensor: t.Name, Msg: fmt.Sprintf("the weight_map of %s puts it in %q, not here", path, want)})
			}
			c.owner[t.Name] = sf
		}
	}
	for _, name := range tensorNames {
		if c.owner[name] == nil {
			return fail(&HeaderError{File: path, Tensor: name, Msg: fmt.Sprintf("weight_map puts it in %q, which does not hold it", weightMap[name])})
		}
	}
	c.names = tensorNames
	return c, nil
}

func setOf(m map[string]string) map[string]struct{} {
	s := make(map[string]struct{})
	for _, v := range m {
		s[v] = struct{}{}
	}
	return s
}

// parseIndex reads {"metadata": {...}, "weight_map": {tensor: shard}}. Metadata values that
// are not strings (total_size is a number) are kept as their JSON text. Other keys are ignored.
func parseIndex(raw []byte) (weightMap, meta map[string]string, err error) {
	if !utf8.Valid(raw) {
		return nil, nil, headerErr("", "index is not valid UTF-8")
	}
	s := &jsonScanner{b: raw}
	seen := make(map[string]bool)
	err = s.object(func(key string) error {
		if seen[key] {
			return headerErr("", "index has two %q entries", key)
		}
		seen[key] = true
		switch key {
		case "weight_map":
			if s.peek() != '{' {
				v, err := s.raw()
				if err != nil {
					return err
				}
				return headerErr("", "weight_map must be an object, got %s", clip(v))
			}
			weightMap = make(map[string]string)
			return s.object(func(name string) error {
				if _, dup := weightMap[name]; dup {
					return headerErr(name, "listed twice in the weight_map")
				}
				v, raw, ok, err := s.stringValue()
				if err != nil {
					return err
				}
				if !ok {
					return headerErr(name, "weight_map value must be a file name, got %s", clip(raw))
				}
				weightMap[name] = v
				return nil
			})
		case "metadata":
			if s.peek() != '{' {
				v, err := s.raw()
				if err != nil || string(v) == "null" {
					return err
				}
				return headerErr("", "index metadata must be an object, got %s", clip(v))
			}
			meta = make(map[string]string)
			return s.object(func(k string) error {
				v, raw, ok, err := s.stringValue()
				if ok {
					meta[k] = v
				} else {
					meta[k] = string(raw)
				}
				return err
			})
		}
		return s.skip()
	})
	if err == nil && !s.atEnd() {
		err = s.fail("unexpected %q after the JSON object", clip(s.b[s.pos:]))
	}
	if se, ok := err.(*jsonSyntaxError); ok {
		return nil, nil, headerErr("", "index is not valid JSON: %v", se)
	}
	if err != nil {
		return nil, nil, err
	}
	if len(weightMap) == 0 {
		return nil, nil, headerErr("", "index has no weight_map entries")
	}
	return weightMap, meta, nil
}

// OpenAny opens whatever a user points at: a .safetensors file, an index file, or a folder
// holding model.safetensors.index.json, model.safetensors, exactly one *.safetensors.index.json,
// or exactly one *.safetensors, tried in that order.
func OpenAny(path string) (*Checkpoint, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.IsDir() {
		if strings.HasSuffix(path, ".index.json") {
			return OpenIndex(path)
		}
		return openSingle(path)
	}
	if fileExists(filepath.Join(path, IndexFileName)) {
		return OpenDir(path)
	}
	if fileExists(filepath.Join(path, SingleFileName)) {
		return openSingle(filepath.Join(path, SingleFileName))
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var indexes, files []string
	for _, e := range entries {
		switch name := e.Name(); {
		case !e.Type().IsRegular() && e.Type()&os.ModeSymlink == 0:
		case strings.HasSuffix(name, ".safetensors.index.json"):
			indexes = append(indexes, name)
		case strings.HasSuffix(name, ".safetensors"):
			files = append(files, name)
		}
	}
	if len(indexes) == 1 {
		return OpenIndex(filepath.Join(path, indexes[0]))
	}
	if len(indexes) == 0 && len(files) == 1 {
		return openSingle(filepath.Join(path, files[0]))
	}
	found := append(indexes, files...)
	if len(found) == 0 {
		return nil, fmt.Errorf("%s: no %s, %s or other .safetensors file", path, IndexFileName, SingleFileName)
	}
	return nil, fmt.Errorf("%s: no %s or %s, and several candidates (%s); name one", path, IndexFileName, SingleFileName, strings.Join(found, ", "))
}

func openSingle(path string) (*Checkpoint, error) {
	f, err := Open(path)
	if err != nil {
		return nil, err
	}
	c := &Checkpoint{files: []*File{f}, owner: make(map[string]*File, len(f.tensors))}
	for _, t := range f.tensors {
		c.owner[t.Name] = f
		c.names = append(c.names, t.Name)
	}
	slices.Sort(c.names)
	return c, nil
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// Names lists every tensor, sorted by name.
func (c *Checkpoint) Names() []string { return slices.Clone(c.names) }

// Tensor describes the named tensor; TensorInfo.File says which shard holds it.
func (c *Checkpoint) Tensor(name string) (TensorInfo, bool) {
	f := c.owner[name]
	if f == nil {
		return TensorInfo{}, false
	}
	return f.Tensor(name)
}

// Data returns the named tensor's bytes without copying; see File.Data.
func (c *Checkpoint) Data(name string) []byte {
	f := c.owner[name]
	if f == nil {
		return nil
	}
	return f.Data(name)
}

// Metadata merges the "__metadata__" of every shard (usually {"format": "pt"} in each); where
// shards disagree on a key, the first shard in name order wins. Nil when no shard has any.
func (c *Checkpoint) Metadata() map[string]string {
	var out map[string]string
	for _, f := range c.files {
		for k, v := range f.metadata {
			if out == nil {
				out = make(map[string]string)
			}
			if _, ok := out[k]; !ok {
				out[k] = v
			}
		}
	}
	return out
}

// IndexMetadata is the index's "metadata" object, non-string values (such as total_size) as
// their JSON text. Nil for a single file or an index without metadata.
func (c *Checkpoint) IndexMetadata() map[string]string { return maps.Clone(c.indexMeta) }

// IndexPath is the path of the index file; "" when the checkpoint is a single file.
func (c *Checkpoint) IndexPath() string { return c.index }

// Files lists the paths of the files behind the checkpoint, sorted.
func (c *Checkpoint) Files() []string {
	out := make([]string, len(c.files))
	for i, f := range c.files {
		out[i] = f.path
	}
	return out
}

// Close unmaps every file; slices returned by Data become invalid.
func (c *Checkpoint) Close() error {
	var errs []error
	for _, f := range c.files {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}
