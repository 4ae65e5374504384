package tensor

import (
	"math"
	"testing"
)

func TestBF16(t *testing.T) {
	cases := []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80},
		{-2, 0xc000},
		{0, 0},
		{float32(math.Inf(1)), 0x7f80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // exactly half way, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // half way, odd rounds up to even
		{math.Float32frombits(0x3f808001), 0x3f81}, // above half rounds up
		{math.Float32frombits(0x7f7fffff), 0x7f80}, // max float rounds to +Inf
	}
	for _, c := range cases {
		if got := Float32ToBF16(c.in); got != c.want {
			t.Errorf("Float32ToBF16(%x) = %04x, want %04x", math.Float32bits(c.in), got, c.want)
		}
	}
	nan := Float32ToBF16(float32(math.NaN()))
	if !math.IsNaN(float64(BF16ToFloat32(nan))) {
		t.Errorf("NaN became %04x", nan)
	}
	// A NaN whose payload sits only in the low bits must stay NaN, not become Inf.
	if v := BF16ToFloat32(Float32ToBF16(math.Float32frombits(0x7f800001))); !math.IsNaN(float64(v)) {
		t.Errorf("low-payload NaN became %v", v)
	}
}

func TestFloat8(t *testing.T) {
	cases := []struct {
		b    byte
		e4m3 float32
		e5m2 float32
	}{
		{0x00, 0, 0},
		{0x38, 1, 0.5}, // e4m3: exp 7 → 2^0; e5m2: exp 14 → 2^-1
		{0xb8, -1, -0.5},
		{0x7e, 448, float32(math.NaN())}, // e4m3 max finite; e5m2 exponent all ones: NaN
		{0x7b, 0.0, 57344},               // e5m2 max finite
		{0x01, 1.0 / 512, 1.0 / 65536},   // smallest subnormals: 2^-9 and 2^-16
	}
	for _, c := range cases {
		if got := E4M3FNToFloat32(c.b); got != c.e4m3 && c.b != 0x7b {
			t.Errorf("E4M3FN(%02x) = %v, want %v", c.b, got, c.e4m3)
		}
		if got := E5M2ToFloat32(c.b); got != c.e5m2 && !(math.IsNaN(float64(got)) && math.IsNaN(float64(c.e5m2))) {
			t.Errorf("E5M2(%02x) = %v, want %v", c.b, got, c.e5m2)
		}
	}
	if !math.IsNaN(float64(E4M3FNToFloat32(0x7f))) || !math.IsNaN(float64(E4M3FNToFloat32(0xff))) {
		t.Error("e4m3fn 0x7f/0xff must be NaN")
	}
}

func TestAsFloat64AllTypes(t *testing.T) {
	cases := []struct {
		dt   DType
		data []byte
		want []float64
	}{
		{Float32, []byte{0, 0, 0x80, 0x3f}, []float64{1}},
		{Float16, []byte{0x00, 0x3c, 0x00, 0xc0}, []float64{1, -2}},
		{BFloat16, []byte{0x80, 0x3f}, []float64{1}},
		{Int8, []byte{0xff, 0x7f}, []float64{-1, 127}},
		{Uint8, []byte{0xff}, []float64{255}},
		{Int16, []byte{0xfe, 0xff}, []float64{-2}},
		{Uint16, []byte{0xff, 0xff}, []float64{65535}},
		{Int32, []byte{0xff, 0xff, 0xff, 0xff}, []float64{-1}},
		{Uint32, []byte{0xff, 0xff, 0xff, 0xff}, []float64{4294967295}},
		{Int64, []byte{0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, []float64{-2}},
		{Bool, []byte{1, 0}, []float64{1, 0}},
		{Int4, []byte{0x8f, 0x07}, []float64{-1, -8, 7}},
		{Uint4, []byte{0x8f, 0x07}, []float64{15, 8, 7}},
		{Float8E4M3FN, []byte{0x38}, []float64{1}},
	}
	for _, c := range cases {
		shape := []int64{int64(len(c.want))}
		v := &Tensor{DType: c.dt, Shape: shape, Data: c.data}
		got, err := v.AsFloat64()
		if err != nil {
			t.Fatalf("%s: %v", c.dt, err)
		}
		for i := range c.want {
			if got[i] != c.want[i] {
				t.Errorf("%s: element %d = %v, want %v", c.dt, i, got[i], c.want[i])
			}
		}
	}
	if _, err := (&Tensor{DType: Float32, Shape: []int64{2}, Data: make([]byte, 4)}).AsFloat64(); err == nil {
		t.Error("short data accepted")
	}
	if _, err := (&Tensor{DType: Complex64, Shape: []int64{1}, Data: make([]byte, 8)}).AsFloat64(); err == nil {
		t.Error("complex converted to float")
	}
}

func TestNumElementsAndSizes(t *testing.T) {
	if NumElements(nil) != 1 || NumElements([]int64{2, 0, 3}) != 0 || NumElements([]int64{2, -1}) != -1 {
		t.Error("basic NumElements")
	}
	if NumElements([]int64{1 << 40, 1 << 40}) != -1 {
		t.Error("overflowing shape not refused")
	}
	if Int4.ByteSize(3) != 2 || Float32.ByteSize(3) != 12 || Int2.ByteSize(5) != 2 {
		t.Error("ByteSize")
	}
	if d, err := ParseDType("bfloat16"); err != nil || d != BFloat16 {
		t.Error("ParseDType")
	}
}

func TestUnalignedView(t *testing.T) {
	buf := make([]byte, 13)
	v := &Tensor{DType: Float32, Shape: []int64{3}, Data: buf[1:13]}
	v.Data[3] = 0x3f
	v.Data[2] = 0x80
	if f := v.Float32s(); f[0] != 1 {
		t.Fatalf("unaligned view read %v", f[0])
	}
}
