package quant

import (
	"fmt"
	"math"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
)

func TestToE4M3FNHandComputed(t *testing.T) {
	nan := float32(math.NaN())
	cases := []struct {
		v    float32
		want byte
		why  string
	}{
		{0, 0x00, "zero"},
		{float32(math.Copysign(0, -1)), 0x80, "negative zero keeps its sign"},
		{1, 0x38, "exponent 7 = bias, mantissa 0"},
		{-1, 0xb8, "sign bit"},
		{0.3, 0x2a, "0.3 = 1.2·2^-2: 9.6 eighths of 2^-2 → 10 → mantissa 2 (0.3125)"},
		{1.0625, 0x38, "halfway between 1 (m 0) and 1.125 (m 1): ties to even m 0"},
		{1.1875, 0x3a, "halfway between 1.125 (m 1) and 1.25 (m 2): ties to even m 2"},
		{1.07, 0x39, "just above the 1.0625 tie rounds up"},
		{15.5, 0x58, "halfway between 15 (0x57, m 7) and 16 (0x58): carries into the exponent"},
		{240, 0x77, "1.875·2^7"},
		{256, 0x78, "2^8: exponent 15, mantissa 0"},
		{416, 0x7d, "1.625·2^8"},
		{432, 0x7e, "halfway between 416 (m 5) and 448 (m 6): ties to even 448"},
		{448, 0x7e, "largest finite"},
		{449, 0x7e, "saturates"},
		{464, 0x7e, "would tie to 480 (no such value: 0x7f is NaN): saturates"},
		{1e9, 0x7e, "saturates"},
		{-500, 0xfe, "saturates to -448"},
		{float32(math.Inf(1)), 0x7e, "infinity saturates (saturate=1)"},
		{float32(math.Inf(-1)), 0xfe, "-infinity saturates"},
		{0x1p-6, 0x08, "smallest normal"},
		{0x1p-9, 0x01, "smallest subnormal"},
		{7 * 0x1p-9, 0x07, "largest subnormal"},
		{7.5 * 0x1p-9, 0x08, "halfway between the largest subnormal and the smallest normal: even 8"},
		{0x1p-10, 0x00, "half the smallest subnormal: ties to even zero"},
		{-0x1p-10, 0x80, "negative half the smallest subnormal: -0"},
		{0x1.01p-10, 0x01, "just above that half rounds up"},
		{3 * 0x1p-10, 0x02, "halfway between codes 1 and 2: even 2"},
		{0x1p-30, 0x00, "underflow"},
		{math.SmallestNonzeroFloat32, 0x00, "float32 subnormal underflows"},
		{nan, 0x7f, "NaN"},
	}
	for _, c := range cases {
		if got := ToE4M3FN(c.v); got != c.want {
			t.Errorf("ToE4M3FN(%g) = %#02x, want %#02x (%s)", c.v, got, c.want, c.why)
		}
	}
	negNaN := math.Float32frombits(0xffc00000)
	if got := ToE4M3FN(negNaN); got != 0xff {
		t.Errorf("ToE4M3FN(-NaN) = %#02x, want 0xff", got)
	}
}

// Every finite code survives decode → encode, and every midpoint between neighbouring
// codes rounds to the one with the even mantissa (the code's lowest bit), while the
// float32 values either side of it round to the nearer code.
func TestToE4M3FNExhaustive(t *testing.T) {
	for b := 0; b < 256; b++ {
		if b&0x7f == 0x7f {
			continue
		}
		v := tensor.E4M3FNToFloat32(byte(b))
		if got := ToE4M3FN(v); got != byte(b) {
			t.Errorf("round trip %#02x (%g) → %#02x", b, v, got)
		}
	}
	for k := 0; k < 0x7e; k++ {
		lo, hi := tensor.E4M3FNToFloat32(byte(k)), tensor.E4M3FNToFloat32(byte(k+1))
		mid := (lo + hi) / 2 // exact: neighbours differ by a power of two ≥ 2^-9
		even := byte(k)
		if k%2 == 1 {
			even = byte(k + 1)
		}
		if got := ToE4M3FN(mid); got != even {
			t.Errorf("midpoint %g of %#02x/%#02x → %#02x, want %#02x", mid, k, k+1, got, even)
		}
		if got := ToE4M3FN(math.Nextafter32(mid, 0)); got != byte(k) {
			t.Errorf("below midpoint %g → %#02x, want %#02x", mid, got, k)
		}
		if got := ToE4M3FN(math.Nextafter32(mid, 1000)); got != byte(k+1) {
			t.Errorf("above midpoint %g → %#02x, want %#02x", mid, got, k+1)
		}
		if got := ToE4M3FN(-mid); got != 0x80|even {
			t.Errorf("negative midpoint %g → %#02x, want %#02x", -mid, got, 0x80|even)
		}
	}
}

func TestE4M3Scales(t *testing.T) {
	if s := E4M3Scale(4.48); s != float32(4.48)/448 {
		t.Errorf("scale(4.48) = %g, want %g", s, float32(4.48)/448)
	}
	for _, a := range []float32{0, float32(math.NaN()), float32(math.Inf(1)), 1e-40} {
		if s := E4M3Scale(a); s != 1 {
			t.Errorf("scale(%g) = %g, want 1", a, s)
		}
	}
	// [2, 3] per channel on axis 0 and 1; infinities are ignored for the range.
	w := []float32{1, -2, 0.5, -4.48, 0, float32(math.Inf(1))}
	s0, err := E4M3ScalesPerChannel(w, []int{2, 3}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if s0[0] != float32(2)/448 || s0[1] != float32(4.48)/448 {
		t.Errorf("axis 0 scales %v", s0)
	}
	s1, err := E4M3ScalesPerChannel(w, []int{2, 3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s1[0] != float32(4.48)/448 || s1[1] != float32(2)/448 || s1[2] != float32(0.5)/448 {
		t.Errorf("axis 1 scales %v", s1)
	}
	q := make([]byte, len(w)+1) // one guard byte
	q[len(w)] = 0xa5
	if err := QuantizeE4M3FNPerChannel(q, w, []int{2, 3}, 0, s0); err != nil {
		t.Fatal(err)
	}
	// channel 0: 1/(2/448) = 224 → 0x76 (1.75·2^7), -2 → -448, 0.5 → 112 (0x6e);
	// channel 1: -4.48 → -448, 0 → 0, +inf → 448.
	want := []byte{0x76, 0xfe, 0x6e, 0xfe, 0x00, 0x7e, 0xa5}
	for i := range want {
		if q[i] != want[i] {
			t.Errorf("q[%d] = %#02x, want %#02x (all %x)", i, q[i], want[i], q)
		}
	}
	if _, err := E4M3ScalesPerChannel(w, []int{4, 2}, 2); err == nil {
		t.Error("axis out of range accepted")
	}
	if err := QuantizeE4M3FNPerChannel(q, w, []int{3, 3}, 0, s0); err == nil {
		t.Error("wrong shape accepted")
	}
}

func BenchmarkQuantizeE4M3FN(b *testing.B) {
	for _, n := range []int{1 << 10, 1 << 16, 1 << 20} {
		src := make([]float32, n)
		for i := range src {
			src[i] = float32(i%977-488) * 0.37
		}
		dst := make([]byte, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(4 * n))
			for b.Loop() {
				QuantizeE4M3FN(dst, src, 0.4)
			}
		})
	}
}
