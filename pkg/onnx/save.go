package onnx

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
)

// MaxInlineBytes is the largest model written as a single protobuf. Protobuf messages are
// limited to 2 GiB and ONNX Runtime refuses a bigger one even when Go can encode it, so
// larger models are saved with external data.
const MaxInlineBytes = 2<<30 - 64<<20

// maxInline is MaxInlineBytes, lowered by tests.
var maxInline int64 = MaxInlineBytes

// SaveOptions controls where tensor data goes.
type SaveOptions struct {
	// ExternalData forces external data even for a small model.
	ExternalData bool
	// ExternalFile names the data file, relative to the model's folder
	// (default: the model's file name + ".data").
	ExternalFile string
	// MinExternalBytes keeps smaller tensors inline when writing external data (default 1024).
	MinExternalBytes int64
}

// externalAlign aligns large external tensors to pages so runtimes can map them directly.
const (
	externalAlignLarge = 4096
	externalAlignSmall = 64
	largeTensor        = 1 << 20
)

// savedState is a tensor's storage fields before a save rewrote them.
type savedState struct {
	t   *onnxpb.TensorProto
	raw []byte
	loc *onnxpb.TensorProto_DataLocation
	ext []*onnxpb.StringStringEntryProto
	f   []float32
	i32 []int32
	i64 []int64
	d   []float64
	u64 []uint64
}

// Save writes the model to path atomically. Tensors stored externally in the source are
// read from it, so the output never depends on the input's data files; the in-memory
// model is left as it was. Output is deterministic: the same model and options give the same bytes.
func (m *Model) Save(path string, opt SaveOptions) error {
	if m.Path != "" {
		if err := fsutil.CheckNotSame(m.Path, path); err != nil {
			return err
		}
	}
	if opt.MinExternalBytes == 0 {
		opt.MinExternalBytes = 1024
	}
	inlineSize, err := m.inlineSize()
	if err != nil {
		return err
	}
	if !opt.ExternalData && inlineSize <= maxInline {
		b, err := m.MarshalInline()
		if err != nil {
			return err
		}
		return fsutil.WriteFileAtomic(path, b)
	}
	return m.saveExternal(path, opt)
}

// inlineSize is the encoded size the model would have with every tensor inline.
func (m *Model) inlineSize() (int64, error) {
	size := int64(m.Proto.SizeVT())
	var err error
	WalkTensors(m.Proto, func(t *onnxpb.TensorProto) bool {
		if IsExternal(t) {
			var b []byte
			if b, err = m.externalBytes(t); err != nil {
				return false
			}
			size += int64(len(b)) + 16
		}
		return true
	})
	return size, err
}

// MarshalInline encodes the model as one protobuf with all tensor data inline.
func (m *Model) MarshalInline() ([]byte, error) {
	var states []*savedState
	defer restore(&states)
	var err error
	WalkTensors(m.Proto, func(t *onnxpb.TensorProto) bool {
		if !IsExternal(t) {
			return true
		}
		var b []byte
		if b, err = m.externalBytes(t); err != nil {
			return false
		}
		states = append(states, stash(t))
		t.RawData, t.DataLocation, t.ExternalData = b, nil, nil
		return true
	})
	if err != nil {
		return nil, err
	}
	return m.Proto.MarshalVT()
}

func stash(t *onnxpb.TensorProto) *savedState {
	return &savedState{t: t, raw: t.RawData, loc: t.DataLocation, ext: t.ExternalData,
		f: t.FloatData, i32: t.Int32Data, i64: t.Int64Data, d: t.DoubleData, u64: t.Uint64Data}
}

// restore puts tensors back as they were before a save rewrote their storage fields.
func restore(states *[]*savedState) {
	for _, s := range *states {
		s.t.RawData, s.t.DataLocation, s.t.ExternalData = s.raw, s.loc, s.ext
		s.t.FloatData, s.t.Int32Data, s.t.Int64Data, s.t.DoubleData, s.t.Uint64Data = s.f, s.i32, s.i64, s.d, s.u64
	}
	*states = nil
}

func (m *Model) saveExternal(path string, opt SaveOptions) error {
	extName := opt.ExternalFile
	if extName == "" {
		extName = filepath.Base(path) + ".data"
	}
	if !filepath.IsLocal(extName) {
		return fmt.Errorf("external data file %q must be relative to the model's folder", extName)
	}
	extPath := filepath.Join(filepath.Dir(path), extName)
	if m.Path != "" {
		// The source's own data file may be read while we write: never write over it.
		if err := fsutil.CheckNotSame(m.Path, extPath); err != nil {
			return err
		}
	}
	var states []*savedState
	defer restore(&states)
	type chunk struct {
		data   []byte
		offset int64
	}
	var chunks []chunk
	var offset int64
	var err error
	ext := onnxpb.TensorProto_EXTERNAL
	WalkTensors(m.Proto, func(t *onnxpb.TensorProto) bool {
		if tensorDType(t) == "string" {
			return true
		}
		var b []byte
		if b, err = m.TensorData(t); err != nil {
			return false
		}
		if int64(len(b)) < opt.MinExternalBytes {
			if IsExternal(t) {
				states = append(states, stash(t))
				t.RawData, t.DataLocation, t.ExternalData = b, nil, nil
			}
			return true
		}
		align := int64(externalAlignSmall)
		if len(b) >= largeTensor {
			align = externalAlignLarge
		}
		offset = (offset + align - 1) / align * align
		chunks = append(chunks, chunk{b, offset})
		states = append(states, stash(t))
		t.FloatData, t.Int32Data, t.Int64Data, t.DoubleData, t.Uint64Data = nil, nil, nil, nil, nil
		t.RawData = nil
		t.DataLocation = &ext
		t.ExternalData = []*onnxpb.StringStringEntryProto{
			kv("location", filepath.ToSlash(extName)),
			kv("offset", strconv.FormatInt(offset, 10)),
			kv("length", strconv.FormatInt(int64(len(b)), 10)),
		}
		offset += int64(len(b))
		return true
	})
	if err != nil {
		return err
	}
	body, err := m.Proto.MarshalVT()
	if err != nil {
		return err
	}
	if err := fsutil.WriteAtomic(extPath, func(w io.Writer) error {
		bw := bufio.NewWriterSize(w, 1<<20)
		var pos int64
		for _, c := range chunks {
			if pad := c.offset - pos; pad > 0 {
				if _, err := bw.Write(make([]byte, pad)); err != nil {
					return err
				}
			}
			if _, err := bw.Write(c.data); err != nil {
				return err
			}
			pos = c.offset + int64(len(c.data))
		}
		return bw.Flush()
	}); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, body); err != nil {
		os.Remove(extPath)
		return err
	}
	return nil
}

func kv(k, v string) *onnxpb.StringStringEntryProto {
	return &onnxpb.StringStringEntryProto{Key: &k, Value: &v}
}

func tensorDType(t *onnxpb.TensorProto) string { return dtypeName(t.GetDataType()) }
