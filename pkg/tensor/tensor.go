package tensor

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/x448/float16"
)

// Tensor is a dense tensor. Data holds the elements little-endian and row-major;
// sub-byte types (int4, uint4, ...) are packed low bits first. String tensors keep
// their elements in Strings and leave Data empty.
type Tensor struct {
	DType   DType
	Shape   []int64
	Data    []byte
	Strings []string
}

// Spec describes a named model input or output: element type and shape, where a
// negative dimension is dynamic and DimNames holds its symbolic name when known.
type Spec struct {
	Name     string
	DType    DType
	Shape    []int64
	DimNames []string
}

// Dynamic reports whether any dimension of the spec is unknown.
func (s Spec) Dynamic() bool { return NumElements(s.Shape) < 0 }

// New allocates a zero tensor.
func New(dt DType, shape []int64) *Tensor {
	n := NumElements(shape)
	if n < 0 {
		panic(fmt.Sprintf("tensor.New: dynamic shape %v", shape))
	}
	return &Tensor{DType: dt, Shape: append([]int64(nil), shape...), Data: make([]byte, dt.ByteSize(n))}
}

// FromFloat32 wraps a copy of v as a float32 tensor.
func FromFloat32(shape []int64, v []float32) *Tensor {
	t := New(Float32, shape)
	if int64(len(v)) != NumElements(shape) {
		panic(fmt.Sprintf("tensor.FromFloat32: %d values for shape %v", len(v), shape))
	}
	copy(t.Float32s(), v)
	return t
}

// FromInt64 wraps a copy of v as an int64 tensor.
func FromInt64(shape []int64, v []int64) *Tensor {
	t := New(Int64, shape)
	if int64(len(v)) != NumElements(shape) {
		panic(fmt.Sprintf("tensor.FromInt64: %d values for shape %v", len(v), shape))
	}
	copy(t.Int64s(), v)
	return t
}

// Len is the number of elements.
func (t *Tensor) Len() int64 { return NumElements(t.Shape) }

// Validate checks that Data holds exactly the bytes the type and shape call for.
func (t *Tensor) Validate() error {
	n := t.Len()
	if n < 0 {
		return fmt.Errorf("shape %v has a negative dimension", t.Shape)
	}
	if t.DType == String {
		if int64(len(t.Strings)) != n {
			return fmt.Errorf("shape %v needs %d strings, have %d", t.Shape, n, len(t.Strings))
		}
		return nil
	}
	if !t.DType.Known() {
		return fmt.Errorf("unknown element type %d", int32(t.DType))
	}
	if want := t.DType.ByteSize(n); int64(len(t.Data)) != want {
		return fmt.Errorf("%s%v needs %d bytes, have %d", t.DType, t.Shape, want, len(t.Data))
	}
	return nil
}

// Clone returns a deep copy.
func (t *Tensor) Clone() *Tensor {
	return &Tensor{DType: t.DType, Shape: append([]int64(nil), t.Shape...),
		Data: append([]byte(nil), t.Data...), Strings: append([]string(nil), t.Strings...)}
}

func view[T any](b []byte, size int) []T {
	if len(b) == 0 {
		return nil
	}
	if uintptr(unsafe.Pointer(&b[0]))%uintptr(size) != 0 {
		// Unaligned storage (e.g. a slice into a protobuf buffer): copy to aligned memory.
		c := make([]T, len(b)/size)
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&c[0])), len(b)), b)
		return c
	}
	return unsafe.Slice((*T)(unsafe.Pointer(&b[0])), len(b)/size)
}

// Float32s views Data as float32 (no copy when aligned; the machine is little-endian).
// It panics when the type is not float32.
func (t *Tensor) Float32s() []float32 { t.must(Float32); return view[float32](t.Data, 4) }

// Float64s views Data as float64.
func (t *Tensor) Float64s() []float64 { t.must(Float64); return view[float64](t.Data, 8) }

// Int64s views Data as int64.
func (t *Tensor) Int64s() []int64 { t.must(Int64); return view[int64](t.Data, 8) }

// Int32s views Data as int32.
func (t *Tensor) Int32s() []int32 { t.must(Int32); return view[int32](t.Data, 4) }

// Int8s views Data as int8.
func (t *Tensor) Int8s() []int8 { t.must(Int8); return view[int8](t.Data, 1) }

// Uint16s views Data as raw 16-bit words (float16 and bfloat16 bits, or uint16/int16).
func (t *Tensor) Uint16s() []uint16 { return view[uint16](t.Data, 2) }

func (t *Tensor) must(d DType) {
	if t.DType != d {
		panic(fmt.Sprintf("tensor: %s accessed as %s", t.DType, d))
	}
}

// AsFloat64 converts every element of a numeric or boolean tensor to float64
// (complex types are refused). Used by validation and statistics, which must
// treat every output type alike.
func (t *Tensor) AsFloat64() ([]float64, error) {
	n := int(t.Len())
	out := make([]float64, n)
	if err := t.convert(n, func(i int, v float64) { out[i] = v }); err != nil {
		return nil, err
	}
	return out, nil
}

// AsFloat32 is AsFloat64 to float32; float32 input is copied.
func (t *Tensor) AsFloat32() ([]float32, error) {
	n := int(t.Len())
	out := make([]float32, n)
	if t.DType == Float32 {
		copy(out, t.Float32s())
		return out, nil
	}
	if err := t.convert(n, func(i int, v float64) { out[i] = float32(v) }); err != nil {
		return nil, err
	}
	return out, nil
}

func (t *Tensor) convert(n int, set func(int, float64)) error {
	if err := t.Validate(); err != nil {
		return err
	}
	b := t.Data
	le := binary.LittleEndian
	switch t.DType {
	case Float32:
		for i, v := range t.Float32s() {
			set(i, float64(v))
		}
	case Float64:
		for i, v := range t.Float64s() {
			set(i, v)
		}
	case Float16:
		for i := 0; i < n; i++ {
			set(i, float64(float16.Frombits(le.Uint16(b[2*i:])).Float32()))
		}
	case BFloat16:
		for i := 0; i < n; i++ {
			set(i, float64(BF16ToFloat32(le.Uint16(b[2*i:]))))
		}
	case Float8E4M3FN:
		for i := 0; i < n; i++ {
			set(i, float64(E4M3FNToFloat32(b[i])))
		}
	case Float8E5M2:
		for i := 0; i < n; i++ {
			set(i, float64(E5M2ToFloat32(b[i])))
		}
	case Uint8, Bool:
		for i := 0; i < n; i++ {
			set(i, float64(b[i]))
		}
	case Int8:
		for i := 0; i < n; i++ {
			set(i, float64(int8(b[i])))
		}
	case Uint16:
		for i := 0; i < n; i++ {
			set(i, float64(le.Uint16(b[2*i:])))
		}
	case Int16:
		for i := 0; i < n; i++ {
			set(i, float64(int16(le.Uint16(b[2*i:]))))
		}
	case Int32:
		for i := 0; i < n; i++ {
			set(i, float64(int32(le.Uint32(b[4*i:]))))
		}
	case Uint32:
		for i := 0; i < n; i++ {
			set(i, float64(le.Uint32(b[4*i:])))
		}
	case Int64:
		for i := 0; i < n; i++ {
			set(i, float64(int64(le.Uint64(b[8*i:]))))
		}
	case Uint64:
		for i := 0; i < n; i++ {
			set(i, float64(le.Uint64(b[8*i:])))
		}
	case Int4, Uint4:
		for i := 0; i < n; i++ {
			set(i, float64(Nibble(b, i, t.DType == Int4)))
		}
	default:
		return fmt.Errorf("cannot convert %s to float", t.DType)
	}
	return nil
}

// Nibble reads 4-bit element i (low nibble first), sign-extended when signed.
func Nibble(b []byte, i int, signed bool) int8 {
	v := b[i/2]
	if i%2 == 1 {
		v >>= 4
	}
	v &= 0x0f
	if signed && v >= 8 {
		return int8(v) - 16
	}
	return int8(v)
}

// BF16ToFloat32 widens bfloat16 bits exactly.
func BF16ToFloat32(h uint16) float32 { return math.Float32frombits(uint32(h) << 16) }

// Float32ToBF16 rounds to nearest even; NaN stays a quiet NaN with its sign.
func Float32ToBF16(f float32) uint16 {
	u := math.Float32bits(f)
	if u&0x7fffffff > 0x7f800000 { // NaN: keep sign, force a quiet payload bit
		return uint16(u>>16) | 0x0040
	}
	u += 0x7fff + (u>>16)&1
	return uint16(u >> 16)
}

// E4M3FNToFloat32 decodes float8 e4m3fn (bias 7, no infinities, 0x7f/0xff are NaN).
func E4M3FNToFloat32(b byte) float32 {
	sign := float32(1)
	if b&0x80 != 0 {
		sign = -1
	}
	e := int(b>>3) & 0xf
	m := float32(b & 7)
	switch {
	case e == 0xf && b&7 == 7:
		return float32(math.NaN())
	case e == 0:
		return sign * m / 8 * float32(math.Ldexp(1, -6))
	default:
		return sign * (1 + m/8) * float32(math.Ldexp(1, e-7))
	}
}

// E5M2ToFloat32 decodes float8 e5m2 (IEEE-like, bias 15): exactly the top byte of a float16.
func E5M2ToFloat32(b byte) float32 { return float16.Frombits(uint16(b) << 8).Float32() }
