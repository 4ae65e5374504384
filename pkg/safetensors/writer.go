package safetensors

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/optimctl/optimctl/pkg/fsutil"
)

// Writer builds one safetensors file. Add and AddReader only record a tensor; Close sorts,
// writes the header, then streams each tensor's bytes, so memory holds the header and one
// copy buffer, never the model.
//
// Tensor order is the reference writer's: by dtype alignment, widest first, then by name.
// Every tensor then starts aligned to its element size, and a file written by the Python
// library, read and written again here, comes out byte for byte the same (metadata keys are
// written sorted; the reference writes them in hash order).
//
// The output appears atomically: Close writes a temp file in the destination folder, syncs it
// and renames it over path. On any error the temp file is removed and path is untouched.
type Writer struct {
	path string
	set  tensorSet
	done bool
}

// NewWriter starts a file at path with the given "__metadata__" (nil for none; an empty
// non-nil map writes an empty object). Nothing is created until Close.
func NewWriter(path string, metadata map[string]string) (*Writer, error) {
	set, err := newTensorSet(metadata)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &Writer{path: path, set: set}, nil
}

// Add records a tensor whose bytes are in memory. data is not copied: it must stay unchanged
// until Close returns. len(data) must be what dtype and shape need.
func (w *Writer) Add(name, dtype string, shape []int64, data []byte) error {
	if w.done {
		return fmt.Errorf("%s: writer is closed", w.path)
	}
	if err := w.set.add(name, dtype, shape, data, nil); err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	return nil
}

// AddReader records a tensor whose bytes Close will read from r: exactly the number of bytes
// dtype and shape need (ByteSize), in one pass, in the file's tensor order. r must stay valid
// until Close; an io.SectionReader over an input file keeps memory flat for any tensor size.
func (w *Writer) AddReader(name, dtype string, shape []int64, r io.Reader) error {
	if w.done {
		return fmt.Errorf("%s: writer is closed", w.path)
	}
	if r == nil {
		return fmt.Errorf("%s: tensor %q: nil reader", w.path, name)
	}
	if err := w.set.add(name, dtype, shape, nil, r); err != nil {
		return fmt.Errorf("%s: %w", w.path, err)
	}
	return nil
}

// Close writes the file. It may be called once; the writer drops its references to the
// tensors' data either way.
func (w *Writer) Close() error {
	if w.done {
		return fmt.Errorf("%s: writer is closed", w.path)
	}
	w.done = true
	entries := w.set.entries
	w.set.entries = nil
	return writeFile(w.path, w.set.metadata, entries)
}

// tensorSet collects and checks the tensors of a writer.
type tensorSet struct {
	metadata map[string]string
	entries  []entry
	names    map[string]struct{}
}

type entry struct {
	info TensorInfo
	rank int
	data []byte
	r    io.Reader
}

func newTensorSet(md map[string]string) (tensorSet, error) {
	for k, v := range md {
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return tensorSet{}, fmt.Errorf("metadata %q: not valid UTF-8", k)
		}
	}
	return tensorSet{metadata: maps.Clone(md), names: make(map[string]struct{})}, nil
}

func (s *tensorSet) add(name, dtype string, shape []int64, data []byte, r io.Reader) error {
	switch {
	case name == "":
		return errors.New("tensor with an empty name")
	case name == metadataKey:
		return fmt.Errorf("tensor %q: the name is reserved for metadata", name)
	case !utf8.ValidString(name):
		return fmt.Errorf("tensor %q: name is not valid UTF-8", name)
	}
	if _, dup := s.names[name]; dup {
		return fmt.Errorf("tensor %q: added twice", name)
	}
	size, err := ByteSize(dtype, shape)
	if err != nil {
		return fmt.Errorf("tensor %q: %w", name, err)
	}
	if r == nil && int64(len(data)) != size {
		return fmt.Errorf("tensor %q: %d bytes of data, but %s needs %d", name, len(data), formatShape(dtype, shape), size)
	}
	s.names[name] = struct{}{}
	s.entries = append(s.entries, entry{
		info: TensorInfo{Name: name, DType: dtype, Shape: slices.Clone(shape), Size: size},
		rank: dtypes[dtype].rank,
		data: data,
		r:    r,
	})
	return nil
}

// writeFile writes entries (in any order) as one safetensors file, atomically.
func writeFile(path string, md map[string]string, entries []entry) error {
	entries = slices.Clone(entries)
	slices.SortFunc(entries, func(a, b entry) int {
		if a.rank != b.rank {
			return b.rank - a.rank
		}
		return strings.Compare(a.info.Name, b.info.Name)
	})
	infos := make([]TensorInfo, len(entries))
	var off int64
	for i := range entries {
		entries[i].info.Offset = off
		off += entries[i].info.Size
		infos[i] = entries[i].info
	}
	hdr := encodeHeader(md, infos)

	return fsutil.WriteAtomic(path, func(f io.Writer) error {
		bw := bufio.NewWriterSize(f, 1<<20)
		var prefix [8]byte
		binary.LittleEndian.PutUint64(prefix[:], uint64(len(hdr)))
		bw.Write(prefix[:])
		bw.Write(hdr)
		for _, e := range entries {
			if e.r == nil {
				if _, err := bw.Write(e.data); err != nil {
					return fmt.Errorf("%s: %w", path, err)
				}
				continue
			}
			n, err := io.Copy(bw, io.LimitReader(e.r, e.info.Size))
			if err != nil {
				return fmt.Errorf("%s: tensor %q: %w", path, e.info.Name, err)
			}
			if n != e.info.Size {
				return fmt.Errorf("%s: tensor %q: reader gave %d of the %d bytes %s needs",
					path, e.info.Name, n, e.info.Size, formatShape(e.info.DType, e.info.Shape))
			}
		}
		if err := bw.Flush(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return nil
	})
}

// ShardedWriter builds a sharded checkpoint: model-00001-of-0000N.safetensors files of at most
// maxShardBytes of tensor data each (a larger tensor gets a shard of its own) and
// model.safetensors.index.json, even when N is 1, so OpenDir always works on the result.
//
// Tensors are packed into shards greedily in name order, so the split is deterministic; each
// shard is laid out like a Writer's file and carries the same metadata. Each file appears
// atomically and the index is written last. On error the shards already written by this call
// are removed. Replacing a checkpoint in place is atomic per file only, so write into a fresh
// folder; shards of an earlier, larger checkpoint in the folder are left alone.
type ShardedWriter struct {
	dir  string
	max  int64
	set  tensorSet
	done bool
}

// NewShardedWriter starts a sharded checkpoint in dir (created if missing at Close).
func NewShardedWriter(dir string, maxShardBytes int64, metadata map[string]string) (*ShardedWriter, error) {
	if maxShardBytes <= 0 {
		return nil, fmt.Errorf("%s: shard size %d must be positive", dir, maxShardBytes)
	}
	set, err := newTensorSet(metadata)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	return &ShardedWriter{dir: dir, max: maxShardBytes, set: set}, nil
}

// Add is Writer.Add for a sharded checkpoint.
func (w *ShardedWriter) Add(name, dtype string, shape []int64, data []byte) error {
	if w.done {
		return fmt.Errorf("%s: writer is closed", w.dir)
	}
	if err := w.set.add(name, dtype, shape, data, nil); err != nil {
		return fmt.Errorf("%s: %w", w.dir, err)
	}
	return nil
}

// AddReader is Writer.AddReader for a sharded checkpoint.
func (w *ShardedWriter) AddReader(name, dtype string, shape []int64, r io.Reader) error {
	if w.done {
		return fmt.Errorf("%s: writer is closed", w.dir)
	}
	if r == nil {
		return fmt.Errorf("%s: tensor %q: nil reader", w.dir, name)
	}
	if err := w.set.add(name, dtype, shape, nil, r); err != nil {
		return fmt.Errorf("%s: %w", w.dir, err)
	}
	return nil
}

// Close writes the shards and the index.
func (w *ShardedWriter) Close() (err error) {
	if w.done {
		return fmt.Errorf("%s: writer is closed", w.dir)
	}
	w.done = true
	entries := slices.Clone(w.set.entries)
	w.set.entries = nil
	if len(entries) == 0 {
		return fmt.Errorf("%s: no tensors to write", w.dir)
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.info.Name, b.info.Name) })
	var shards [][]entry
	var cur, total int64
	for _, e := range entries {
		if len(shards) == 0 || (cur+e.info.Size > w.max && cur > 0) {
			shards = append(shards, nil)
			cur = 0
		}
		shards[len(shards)-1] = append(shards[len(shards)-1], e)
		cur += e.info.Size
		total += e.info.Size
	}
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return err
	}
	var written []string
	defer func() {
		if err != nil {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	weightMap := make(map[string]string, len(entries))
	for i, shard := range shards {
		name := fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, len(shards))
		p := filepath.Join(w.dir, name)
		if err := writeFile(p, w.set.metadata, shard); err != nil {
			return err
		}
		written = append(written, p)
		for _, e := range shard {
			weightMap[e.info.Name] = name
		}
	}
	// Like the Hugging Face writers: two-space indent, sorted keys, trailing newline.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(struct {
		Metadata  map[string]int64  `json:"metadata"`
		WeightMap map[string]string `json:"weight_map"`
	}{map[string]int64{"total_size": total}, weightMap}); err != nil {
		return fmt.Errorf("%s: %w", w.dir, err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(w.dir, IndexFileName), buf.Bytes())
}

// Source is anything the copy helpers can read tensors from: *File and *Checkpoint.
type Source interface {
	Names() []string
	Tensor(name string) (TensorInfo, bool)
	Data(name string) []byte
}

// WriteFile copies every tensor of src into one file at path, laid out as Writer lays it out.
// The bytes go straight from src's mapping to the output: no copy of the model is held.
func WriteFile(path string, metadata map[string]string, src Source) error {
	w, err := NewWriter(path, metadata)
	if err != nil {
		return err
	}
	if err := addAll(w.Add, src); err != nil {
		return err
	}
	return w.Close()
}

// WriteSharded copies every tensor of src into a sharded checkpoint in dir; see ShardedWriter.
func WriteSharded(dir string, maxShardBytes int64, metadata map[string]string, src Source) error {
	w, err := NewShardedWriter(dir, maxShardBytes, metadata)
	if err != nil {
		return err
	}
	if err := addAll(w.Add, src); err != nil {
		return err
	}
	return w.Close()
}

func addAll(add func(string, string, []int64, []byte) error, src Source) error {
	for _, name := range src.Names() {
		t, ok := src.Tensor(name)
		if !ok {
			return fmt.Errorf("tensor %q: listed by the source but not found", name)
		}
		if err := add(name, t.DType, t.Shape, src.Data(name)); err != nil {
			return err
		}
	}
	return nil
}
