package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"

	"github.com/x448/float16"
)

// GGUF (llama.cpp's model file, version 3), as far as this converter needs it:
//
//	magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata count,
//	metadata: string key, uint32 type, value (strings: uint64 length + bytes; arrays:
//	uint32 element type, uint64 count, elements),
//	tensor infos: string name, uint32 n_dims, uint64 dims[n_dims] (dims[0] varies fastest),
//	uint32 ggml type, uint64 offset into the data section,
//	data section at the next multiple of general.alignment (default 32).
//
// Block formats (32 weights per block):
//
//	Q4_1 (type 3): float16 d, float16 m, 16 bytes: weight j < 16 is the low nibble of byte j,
//	               weight j ≥ 16 the high nibble of byte j−16; w = d·q + m
//	Q8_0 (type 8): float16 d, 32 int8 q; w = d·q
const (
	ggmlF32  = 0
	ggmlF16  = 1
	ggmlQ4_1 = 3
	ggmlQ8_0 = 8
	qk       = 32
)

type ggufTensor struct {
	name   string
	dims   []uint64
	typ    uint32
	offset uint64
}

type gguf struct {
	meta    map[string]any
	tensors map[string]*ggufTensor
	data    []byte // the data section
}

type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) need(n int) []byte {
	if r.err != nil || r.off+n > len(r.b) {
		r.err = io.ErrUnexpectedEOF
		return make([]byte, n)
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u32() uint32 { return binary.LittleEndian.Uint32(r.need(4)) }
func (r *reader) u64() uint64 { return binary.LittleEndian.Uint64(r.need(8)) }
func (r *reader) str() string { return string(r.need(int(r.u64()))) }

func (r *reader) value(t uint32) any {
	switch t {
	case 0, 1, 7: // uint8, int8, bool
		return int64(r.need(1)[0])
	case 2, 3: // uint16, int16
		return int64(binary.LittleEndian.Uint16(r.need(2)))
	case 4:
		return int64(r.u32())
	case 5:
		return int64(int32(r.u32()))
	case 6:
		return float64(math.Float32frombits(r.u32()))
	case 8:
		return r.str()
	case 9:
		et, n := r.u32(), r.u64()
		out := make([]any, 0, min(n, 1<<20))
		for i := uint64(0); i < n && r.err == nil; i++ {
			out = append(out, r.value(et))
		}
		return out
	case 10, 11:
		return int64(r.u64())
	case 12:
		return math.Float64frombits(r.u64())
	}
	r.err = fmt.Errorf("unknown metadata type %d", t)
	return nil
}

func readGGUF(path string) (*gguf, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &reader{b: b}
	if string(r.need(4)) != "GGUF" {
		return nil, errors.New("not a GGUF file")
	}
	if v := r.u32(); v != 3 {
		return nil, fmt.Errorf("GGUF version %d, want 3", v)
	}
	nt, nkv := r.u64(), r.u64()
	g := &gguf{meta: map[string]any{}, tensors: map[string]*ggufTensor{}}
	for i := uint64(0); i < nkv && r.err == nil; i++ {
		k := r.str()
		g.meta[k] = r.value(r.u32())
	}
	for i := uint64(0); i < nt && r.err == nil; i++ {
		t := &ggufTensor{name: r.str()}
		nd := r.u32()
		for j := uint32(0); j < nd; j++ {
			t.dims = append(t.dims, r.u64())
		}
		t.typ, t.offset = r.u32(), r.u64()
		g.tensors[t.name] = t
	}
	if r.err != nil {
		return nil, fmt.Errorf("%s: %w", path, r.err)
	}
	align := 32
	if a, ok := g.meta["general.alignment"].(int64); ok {
		align = int(a)
	}
	start := (r.off + align - 1) / align * align
	g.data = b[start:]
	return g, nil
}

// float32s dequantizes a tensor; the result is row-major with dims reversed (GGUF dims[0]
// varies fastest), i.e. [dims[n-1], …, dims[0]].
func (g *gguf) float32s(name string) ([]float32, []int64, error) {
	t := g.tensors[name]
	if t == nil {
		return nil, nil, fmt.Errorf("no tensor %q", name)
	}
	n := uint64(1)
	shape := make([]int64, len(t.dims))
	for i, d := range t.dims {
		n *= d
		shape[len(t.dims)-1-i] = int64(d)
	}
	out := make([]float32, n)
	src := g.data[t.offset:]
	switch t.typ {
	case ggmlF32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case ggmlF16:
		for i := range out {
			out[i] = float16.Frombits(binary.LittleEndian.Uint16(src[2*i:])).Float32()
		}
	case ggmlQ4_1:
		const blk = 4 + qk/2
		for b := 0; b < int(n)/qk; b++ {
			p := src[b*blk:]
			d := float16.Frombits(binary.LittleEndian.Uint16(p)).Float32()
			m := float16.Frombits(binary.LittleEndian.Uint16(p[2:])).Float32()
			for j := 0; j < qk/2; j++ {
				q := p[4+j]
				out[b*qk+j] = d*float32(q&0xF) + m
				out[b*qk+j+qk/2] = d*float32(q>>4) + m
			}
		}
	case ggmlQ8_0:
		const blk = 2 + qk
		for b := 0; b < int(n)/qk; b++ {
			p := src[b*blk:]
			d := float16.Frombits(binary.LittleEndian.Uint16(p)).Float32()
			for j := 0; j < qk; j++ {
				out[b*qk+j] = d * float32(int8(p[2+j]))
			}
		}
	default:
		return nil, nil, fmt.Errorf("tensor %q: ggml type %d not supported", name, t.typ)
	}
	return out, shape, nil
}

func (g *gguf) int(key string) (int, error) {
	v, ok := g.meta[key].(int64)
	if !ok {
		return 0, fmt.Errorf("metadata %q missing", key)
	}
	return int(v), nil
}

func (g *gguf) float(key string) (float64, error) {
	v, ok := g.meta[key].(float64)
	if !ok {
		return 0, fmt.Errorf("metadata %q missing", key)
	}
	return v, nil
}

func (g *gguf) strings(key string) ([]string, error) {
	v, ok := g.meta[key].([]any)
	if !ok {
		return nil, fmt.Errorf("metadata %q missing", key)
	}
	out := make([]string, len(v))
	for i, x := range v {
		s, ok := x.(string)
		if !ok {
			return nil, fmt.Errorf("metadata %q: element %d is not a string", key, i)
		}
		out[i] = s
	}
	return out, nil
}
