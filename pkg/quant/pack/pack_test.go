package pack

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/x448/float16"
)

const guard = 16 // guard elements on each side of every output slice

// Guarded outputs: the slice handed to the packer has its capacity running into the trailing
// guard, so a write past the end through append or re-slicing lands in the guard and is
// caught, as is any write before the start.
type guardedBytes struct{ buf []byte }

func newGuardedBytes(n int) (guardedBytes, []byte) {
	g := guardedBytes{make([]byte, n+2*guard)}
	for i := range g.buf {
		g.buf[i] = 0xAA
	}
	return g, g.buf[guard : guard+n]
}

func (g guardedBytes) check(t *testing.T, what string) {
	t.Helper()
	n := len(g.buf) - 2*guard
	for i := 0; i < guard; i++ {
		if g.buf[i] != 0xAA || g.buf[guard+n+i] != 0xAA {
			t.Fatalf("%s: guard byte overwritten (before: %#x, after: %#x at %d)", what, g.buf[i], g.buf[guard+n+i], i)
		}
	}
}

type guardedWords struct{ buf []int32 }

const guardWord = int32(-0x55555556) // 0xAAAAAAAA

func newGuardedWords(n int) (guardedWords, []int32) {
	g := guardedWords{make([]int32, n+2*guard)}
	for i := range g.buf {
		g.buf[i] = guardWord
	}
	return g, g.buf[guard : guard+n]
}

func (g guardedWords) check(t *testing.T, what string) {
	t.Helper()
	n := len(g.buf) - 2*guard
	for i := 0; i < guard; i++ {
		if g.buf[i] != guardWord || g.buf[guard+n+i] != guardWord {
			t.Fatalf("%s: guard word overwritten", what)
		}
	}
}

type guardedFloats struct{ buf []float32 }

func newGuardedFloats(n int) (guardedFloats, []float32) {
	g := guardedFloats{make([]float32, n+2*guard)}
	for i := range g.buf {
		g.buf[i] = float32(math.NaN())
	}
	return g, g.buf[guard : guard+n]
}

func (g guardedFloats) check(t *testing.T, what string) {
	t.Helper()
	n := len(g.buf) - 2*guard
	for i := 0; i < guard; i++ {
		if !math.IsNaN(float64(g.buf[i])) || !math.IsNaN(float64(g.buf[guard+n+i])) {
			t.Fatalf("%s: NaN guard overwritten", what)
		}
	}
}

// goldenCodes is the hand-checkable pattern of the golden tests: code[n, k] = (n + k) mod 16,
// so row n counts up from n.
func goldenCodes(n, k int) []uint8 {
	c := make([]uint8, n*k)
	for r := 0; r < n; r++ {
		for j := 0; j < k; j++ {
			c[r*k+j] = uint8((r + j) % 16)
		}
	}
	return c
}

func TestMatMulNBitsGolden(t *testing.T) {
	const n, k, bits, block = 8, 16, 4, 16
	codes := goldenCodes(n, k)
	bLen, zpLen, err := MatMulNBitsSizes(n, k, bits, block)
	if err != nil || bLen != 64 || zpLen != 8 {
		t.Fatalf("sizes %d %d %v, want 64 8", bLen, zpLen, err)
	}
	gb, b := newGuardedBytes(bLen)
	if err := PackMatMulNBits(b, nil, codes, nil, n, k, bits, block); err != nil {
		t.Fatal(err)
	}
	gb.check(t, "B")
	// Byte i of row n is code[2i] | code[2i+1] << 4 (low bits first along K).
	want := []byte{
		0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, // row 0: 0, 1, …, 15
		0x21, 0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f, // row 1: 1, 2, …, 15, 0
		0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x10,
		0x43, 0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f, 0x21,
		0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe, 0x10, 0x32,
		0x65, 0x87, 0xa9, 0xcb, 0xed, 0x0f, 0x21, 0x43,
		0x76, 0x98, 0xba, 0xdc, 0xfe, 0x10, 0x32, 0x54,
		0x87, 0xa9, 0xcb, 0xed, 0x0f, 0x21, 0x43, 0x65,
	}
	for i := range want {
		if b[i] != want[i] {
			t.Fatalf("B[%d] = %#02x, want %#02x", i, b[i], want[i])
		}
	}

	// K = 40 in blocks of 16: 3 blocks, the last padded with its zero point; the zero points
	// of a row take 2 bytes, the unused high nibble holding the default 8 (as ORT writes it).
	zeros := []uint8{7, 8, 6, 6, 6, 5}
	codes = make([]uint8, 2*40)
	for i := range codes {
		codes[i] = 3
	}
	bLen, zpLen, _ = MatMulNBitsSizes(2, 40, 4, 16)
	gb, b = newGuardedBytes(bLen)
	gz, zp := newGuardedBytes(zpLen)
	if err := PackMatMulNBits(b, zp, codes, zeros, 2, 40, 4, 16); err != nil {
		t.Fatal(err)
	}
	gb.check(t, "B")
	gz.check(t, "zero_points")
	if want := []byte{0x87, 0x86, 0x66, 0x85}; string(zp) != string(want) {
		t.Errorf("zero_points % x, want % x", zp, want)
	}
	// Row 0, block 2: 8 real codes (3) then 8 pads (6, the block's zero point).
	if got := b[16:24]; string(got) != string([]byte{0x33, 0x33, 0x33, 0x33, 0x66, 0x66, 0x66, 0x66}) {
		t.Errorf("padded block % x", got)
	}
	if got := b[24+16 : 24+24]; string(got) != string([]byte{0x33, 0x33, 0x33, 0x33, 0x55, 0x55, 0x55, 0x55}) {
		t.Errorf("row 1 padded block % x", got)
	}
}

// ortMatMulNBits is ONNX Runtime 1.32.0's quantize_matmul_4bits (the C++ quantizer behind
// MatMulNBitsQuantizer, asymmetric) applied once to ortWeightBits: K = 40, N = 3, block 16.
// Reproducing its bytes checks both our RTN and our packing against the tool that reads the
// format. (ORT's quantizer rounds half away from zero after multiplying by 1/scale, ours
// half to even after dividing, like torch; the weights, standard normals from numpy, hit no
// tie, so the codes agree.)
var (
	ortWeightBits = []uint32{ // [K, N] float32 bits, as ORT takes the weight
		0xbfb63fe6, 0x3fa1c1db, 0xbf5ee3b0, 0xbe84b25b, 0xbd9a4d97, 0xbf3daa9e,
		0xbfaf13d5, 0x3f261dd7, 0x3eb8dc9c, 0xbff9f76b, 0x40163bf6, 0x3f77ef6a,
		0xbf426733, 0x3f66f677, 0xbeef147d, 0xbd789593, 0x3f49f1b4, 0xbfa0da80,
		0x3f136b66, 0x3fb311be, 0x3fa94110, 0xbe997215, 0x3f6725b9, 0xbfcf9006,
		0xbe21fc5e, 0x3ee622c2, 0xbfabfb1f, 0xbda74bd3, 0x3fdcc447, 0x40278fed,
		0x3f470127, 0x3f54214e, 0xbf758042, 0xbf9acd3c, 0xbfb4c5fc, 0x3f0aa2d0,
		0x3f407f1a, 0xbf28a484, 0xbf9d4539, 0x3e83de9d, 0x3ea034d0, 0xbe05f380,
		0x3fa28ecf, 0xbdbe631a, 0xbd877a1e, 0xbf8dd9f9, 0x3e0b3846, 0x3fac6d0b,
		0x3d7a7227, 0x3d913bad, 0x3ede07f8, 0x3e8e1257, 0x3f07be9f, 0x3f09668c,
		0x3f1e4c30, 0xbf4b8644, 0x3e999da8, 0xbfcd2553, 0x3e8899db, 0xbfa17ce3,
		0xbd91f66e, 0x3ef2b6a5, 0xbed467b6, 0x3dc81f97, 0xbfd1f936, 0xbf5b7550,
		0x3f30333c, 0xbf93c7a0, 0x3f26840c, 0xbfb1b5c7, 0xbf684a37, 0xbf8c36e5,
		0x3bea266f, 0x3f08cbd0, 0xbf886c64, 0xbe39d3fd, 0x3fcf9c1e, 0xbea28132,
		0xbf50d940, 0x3ec5edaf, 0xbe65019a, 0xbf33a202, 0xbfe5d9ee, 0x3f517dca,
		0xbf122f36, 0x3a4debb2, 0xbf882572, 0x3fa69e95, 0x3f3f749a, 0x3f7b1aaf,
		0xbde22331, 0x3eef9305, 0x3f63fed5, 0x3f82f1f9, 0x3e9ff0b7, 0xbd7d8fc5,
		0xbeb80db7, 0xbf3fa722, 0xbf7729a0, 0x3eb85676, 0xbe7a6bfb, 0xbfff783b,
		0xbe1ef93b, 0x3f882b9c, 0xbe8ce34a, 0xbfed3a1d, 0xbdfea6fb, 0x3f48f417,
		0x3e4ed8b8, 0xbedb2c93, 0x3fec94bb, 0x3ff331a8, 0xbdc99311, 0x3f503df6,
		0x3ec8f506, 0x3f480ca4, 0x3fba04cd, 0x3f51f7b6, 0x3db39edc, 0xbf274c25,
	}
	ortMatMulNBitsB = []byte{
		0x82, 0x03, 0x95, 0x8c, 0x98, 0x3d, 0xac, 0x4f, 0x98, 0x0b, 0x98, 0x1c, 0x78, 0x44, 0xf5, 0xd7,
		0x86, 0x06, 0xf8, 0xa9, 0x77, 0x77, 0x77, 0x77, 0x6b, 0xf9, 0x9a, 0xac, 0xd8, 0x09, 0x73, 0x76,
		0xa8, 0x95, 0x1a, 0x43, 0xfa, 0x0a, 0xb8, 0x9a, 0x40, 0x5f, 0x52, 0x7c, 0x66, 0x66, 0x66, 0x66,
		0x33, 0x97, 0x24, 0x0b, 0xf1, 0x83, 0x62, 0xb6, 0xcb, 0x0a, 0x25, 0x1c, 0x61, 0xd7, 0xf1, 0x8e,
		0x04, 0xb7, 0xbf, 0x5e, 0x88, 0x88, 0x88, 0x88,
	}
	ortMatMulNBitsZP     = []byte{0x89, 0x87, 0x86, 0x86, 0x86, 0x88}
	ortMatMulNBitsScales = []uint32{
		0x3e5c0352, 0x3e46465a, 0x3e801cbd, 0x3e8054c6, 0x3e695006, 0x3df77696, 0x3e90b76f, 0x3e191685, 0x3e8336a8,
	}
)

func TestMatMulNBitsMatchesORT(t *testing.T) {
	const n, k, block = 3, 40, 16
	wKN := make([]float32, len(ortWeightBits))
	for i, b := range ortWeightBits {
		wKN[i] = math.Float32frombits(b)
	}
	g, err := quant.QuantizeRTN(quant.FromKN(wKN, k, n), n, k, quant.GroupOptions{Bits: 4, GroupSize: block})
	if err != nil {
		t.Fatal(err)
	}
	bLen, zpLen, _ := MatMulNBitsSizes(n, k, 4, block)
	b, zp := make([]byte, bLen), make([]byte, zpLen)
	if err := PackMatMulNBits(b, zp, g.Codes, g.Zeros, n, k, 4, block); err != nil {
		t.Fatal(err)
	}
	for i := range b {
		if b[i] != ortMatMulNBitsB[i] {
			t.Fatalf("B[%d] = %#02x, ORT %#02x", i, b[i], ortMatMulNBitsB[i])
		}
	}
	if string(zp) != string(ortMatMulNBitsZP) {
		t.Errorf("zero_points % x, ORT % x", zp, ortMatMulNBitsZP)
	}
	for i, s := range g.Scales {
		if math.Float32bits(s) != ortMatMulNBitsScales[i] {
			t.Errorf("scale %d: %v, ORT %v", i, s, math.Float32frombits(ortMatMulNBitsScales[i]))
		}
	}
}

func TestGPTQGolden(t *testing.T) {
	const n, k, bits = 8, 16, 4
	codes := goldenCodes(n, k)
	qwLen, _, err := GPTQSizes(n, k, 1, bits)
	if err != nil || qwLen != 16 {
		t.Fatalf("qweight words %d %v, want 16", qwLen, err)
	}
	g, qw := newGuardedWords(qwLen)
	if err := PackGPTQQweight(qw, codes, n, k, bits); err != nil {
		t.Fatal(err)
	}
	g.check(t, "qweight")
	// qweight [K/8 = 2, N = 8]: word (i, n) holds k = 8i..8i+7 of output n, k = 8i in the
	// lowest nibble; output n's codes count up from n.
	want := []uint32{
		0x76543210, 0x87654321, 0x98765432, 0xa9876543, 0xba987654, 0xcba98765, 0xdcba9876, 0xedcba987,
		0xfedcba98, 0x0fedcba9, 0x10fedcba, 0x210fedcb, 0x3210fedc, 0x43210fed, 0x543210fe, 0x6543210f,
	}
	for i := range want {
		if uint32(qw[i]) != want[i] {
			t.Fatalf("qweight[%d] = %#08x, want %#08x", i, uint32(qw[i]), want[i])
		}
	}
	// qzeros [G = 2, N/8 = 1]: group 0 zero points 0..7, group 1 all 8 (symmetric).
	zeros := make([]uint8, n*2)
	for r := 0; r < n; r++ {
		zeros[r*2], zeros[r*2+1] = uint8(r), 8
	}
	for _, c := range []struct {
		v1   bool
		want [2]uint32
	}{
		{false, [2]uint32{0x76543210, 0x88888888}},
		{true, [2]uint32{0x6543210f, 0x77777777}}, // z − 1; 0 − 1 wraps to 0xf
	} {
		gz, qz := newGuardedWords(2)
		if err := PackGPTQQzeros(qz, zeros, n, 2, bits, c.v1); err != nil {
			t.Fatal(err)
		}
		gz.check(t, "qzeros")
		if uint32(qz[0]) != c.want[0] || uint32(qz[1]) != c.want[1] {
			t.Errorf("v1=%v: qzeros %#08x %#08x, want %#08x %#08x", c.v1, uint32(qz[0]), uint32(qz[1]), c.want[0], c.want[1])
		}
		back := make([]uint8, len(zeros))
		if err := UnpackGPTQQzeros(back, qz, n, 2, bits, c.v1); err != nil {
			t.Fatal(err)
		}
		if string(back) != string(zeros) {
			t.Errorf("v1=%v: zeros round trip %v, want %v", c.v1, back, zeros)
		}
	}
}

func TestAWQGolden(t *testing.T) {
	const n, k = 8, 16
	codes := goldenCodes(n, k)
	qwLen, qzLen, err := AWQSizes(n, k, 1)
	if err != nil || qwLen != 16 || qzLen != 1 {
		t.Fatalf("sizes %d %d %v", qwLen, qzLen, err)
	}
	g, qw := newGuardedWords(qwLen)
	if err := PackAWQQweight(qw, codes, n, k); err != nil {
		t.Fatal(err)
	}
	g.check(t, "qweight")
	// qweight [K = 16, N/8 = 1]: nibble j of row k holds output [0,2,4,6,1,3,5,7][j], whose
	// code is (that output + k) mod 16: row 0 reads 0,2,4,6,1,3,5,7 from the low nibble up.
	want := []uint32{
		0x75316420, 0x86427531, 0x97538642, 0xa8649753, 0xb975a864, 0xca86b975, 0xdb97ca86, 0xeca8db97,
		0xfdb9eca8, 0x0ecafdb9, 0x1fdb0eca, 0x20ec1fdb, 0x31fd20ec, 0x420e31fd, 0x531f420e, 0x6420531f,
	}
	for i := range want {
		if uint32(qw[i]) != want[i] {
			t.Fatalf("qweight[%d] = %#08x, want %#08x", i, uint32(qw[i]), want[i])
		}
	}
	zeros := []uint8{0, 1, 2, 3, 4, 5, 6, 7} // [N = 8, G = 1]: stored as they are
	gz, qz := newGuardedWords(1)
	if err := PackAWQQzeros(qz, zeros, n, 1); err != nil {
		t.Fatal(err)
	}
	gz.check(t, "qzeros")
	if uint32(qz[0]) != 0x75316420 {
		t.Errorf("qzeros %#08x, want 0x75316420", uint32(qz[0]))
	}
}

func TestInt4Golden(t *testing.T) {
	vals := []int8{-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7, -3}
	g, b := newGuardedBytes(Int4Bytes(len(vals)))
	if err := PackInt4(b, vals); err != nil {
		t.Fatal(err)
	}
	g.check(t, "int4")
	// First value in the low nibble, two's complement; the odd last value leaves 0 on top.
	want := []byte{0x98, 0xba, 0xdc, 0xfe, 0x10, 0x32, 0x54, 0x76, 0x0d}
	if string(b) != string(want) {
		t.Errorf("int4 % x, want % x", b, want)
	}
	back := make([]int8, len(vals))
	if err := UnpackInt4(back, b); err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		if back[i] != vals[i] {
			t.Errorf("int4 round trip [%d] = %d, want %d", i, back[i], vals[i])
		}
	}
	u := []uint8{15, 0, 1, 14, 9}
	ub := make([]byte, 3)
	if err := PackUint4(ub, u); err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x0f, 0xe1, 0x09}; string(ub) != string(want) {
		t.Errorf("uint4 % x, want % x", ub, want)
	}
	if err := PackInt4(make([]byte, 1), []int8{8}); err == nil {
		t.Error("int4 value 8: want an error")
	}
	if err := PackUint4(make([]byte, 1), []uint8{16}); err == nil {
		t.Error("uint4 value 16: want an error")
	}
}

func randomCodes(r *rand.Rand, n, bits int) []uint8 {
	c := make([]uint8, n)
	for i := range c {
		c[i] = uint8(r.IntN(1 << bits))
	}
	return c
}

func TestRoundTrips(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, bits := range []int{2, 4, 8} {
		for _, sh := range []struct{ n, k, block int }{{3, 40, 16}, {5, 128, 32}, {2, 1000, 128}, {1, 17, 64}} {
			kb := (sh.k + sh.block - 1) / sh.block
			codes, zeros := randomCodes(r, sh.n*sh.k, bits), randomCodes(r, sh.n*kb, bits)
			bLen, zpLen, err := MatMulNBitsSizes(sh.n, sh.k, bits, sh.block)
			if err != nil {
				t.Fatal(err)
			}
			gb, b := newGuardedBytes(bLen)
			gz, zp := newGuardedBytes(zpLen)
			if err := PackMatMulNBits(b, zp, codes, zeros, sh.n, sh.k, bits, sh.block); err != nil {
				t.Fatal(err)
			}
			gb.check(t, "B")
			gz.check(t, "zero_points")
			gc, c2 := newGuardedBytes(len(codes))
			gzz, z2 := newGuardedBytes(len(zeros))
			if err := UnpackMatMulNBits(c2, z2, b, zp, sh.n, sh.k, bits, sh.block); err != nil {
				t.Fatal(err)
			}
			gc.check(t, "codes")
			gzz.check(t, "zeros")
			if string(c2) != string(codes) || string(z2) != string(zeros) {
				t.Fatalf("matmulnbits %d bits %+v: round trip differs", bits, sh)
			}
		}
		pf := 32 / bits
		for _, sh := range []struct{ n, k, groups int }{{pf, pf, 1}, {2 * pf, 8 * pf, 4}, {32, 256, 2}} {
			codes, zeros := randomCodes(r, sh.n*sh.k, bits), randomCodes(r, sh.n*sh.groups, bits)
			qwLen, qzLen, err := GPTQSizes(sh.n, sh.k, sh.groups, bits)
			if err != nil {
				t.Fatal(err)
			}
			gw, qw := newGuardedWords(qwLen)
			if err := PackGPTQQweight(qw, codes, sh.n, sh.k, bits); err != nil {
				t.Fatal(err)
			}
			gw.check(t, "qweight")
			back := make([]uint8, len(codes))
			if err := UnpackGPTQQweight(back, qw, sh.n, sh.k, bits); err != nil {
				t.Fatal(err)
			}
			if string(back) != string(codes) {
				t.Fatalf("gptq qweight %d bits %+v: round trip differs", bits, sh)
			}
			for _, v1 := range []bool{false, true} {
				gz, qz := newGuardedWords(qzLen)
				if err := PackGPTQQzeros(qz, zeros, sh.n, sh.groups, bits, v1); err != nil {
					t.Fatal(err)
				}
				gz.check(t, "qzeros")
				bz := make([]uint8, len(zeros))
				if err := UnpackGPTQQzeros(bz, qz, sh.n, sh.groups, bits, v1); err != nil {
					t.Fatal(err)
				}
				if string(bz) != string(zeros) {
					t.Fatalf("gptq qzeros v1=%v %d bits: round trip differs", v1, bits)
				}
			}
		}
	}
	for _, sh := range []struct{ n, k, groups int }{{8, 1, 1}, {64, 96, 3}, {24, 256, 2}} {
		codes, zeros := randomCodes(r, sh.n*sh.k, 4), randomCodes(r, sh.n*sh.groups, 4)
		qwLen, qzLen, _ := AWQSizes(sh.n, sh.k, sh.groups)
		gw, qw := newGuardedWords(qwLen)
		gz, qz := newGuardedWords(qzLen)
		if err := PackAWQQweight(qw, codes, sh.n, sh.k); err != nil {
			t.Fatal(err)
		}
		if err := PackAWQQzeros(qz, zeros, sh.n, sh.groups); err != nil {
			t.Fatal(err)
		}
		gw.check(t, "qweight")
		gz.check(t, "qzeros")
		bc, bz := make([]uint8, len(codes)), make([]uint8, len(zeros))
		if err := UnpackAWQQweight(bc, qw, sh.n, sh.k); err != nil {
			t.Fatal(err)
		}
		if err := UnpackAWQQzeros(bz, qz, sh.n, sh.groups); err != nil {
			t.Fatal(err)
		}
		if string(bc) != string(codes) || string(bz) != string(zeros) {
			t.Fatalf("awq %+v: round trip differs", sh)
		}
	}
	vals := make([]int8, 101)
	for i := range vals {
		vals[i] = int8(r.IntN(16) - 8)
	}
	b := make([]byte, Int4Bytes(len(vals)))
	if err := PackInt4(b, vals); err != nil {
		t.Fatal(err)
	}
	back := make([]int8, len(vals))
	if err := UnpackInt4(back, b); err != nil {
		t.Fatal(err)
	}
	for i := range vals {
		if back[i] != vals[i] {
			t.Fatalf("int4 round trip [%d]: %d, want %d", i, back[i], vals[i])
		}
	}
}

func TestPackRejects(t *testing.T) {
	if _, _, err := MatMulNBitsSizes(4, 32, 3, 16); err == nil {
		t.Error("3-bit MatMulNBits: want an error")
	}
	if _, _, err := MatMulNBitsSizes(4, 32, 4, 24); err == nil {
		t.Error("block 24: want an error")
	}
	if err := PackMatMulNBits(make([]byte, 8), nil, append(make([]uint8, 15), 16), nil, 1, 16, 4, 16); err == nil {
		t.Error("code 16 in 4 bits: want an error")
	}
	if _, _, err := GPTQSizes(8, 12, 1, 4); err == nil {
		t.Error("GPTQ K=12 with 8 codes a word: want an error")
	}
	if _, _, err := AWQSizes(12, 16, 1); err == nil {
		t.Error("AWQ N=12: want an error")
	}
	if err := PackGPTQQweight(make([]int32, 3), make([]uint8, 32), 8, 4, 8); err == nil {
		t.Error("qweight of the wrong length: want an error")
	}
}

// TestDequantEquivalence packs real quantizer output into every format and evaluates each
// format's published dequantization formula directly on the packed data: all must give the
// floats of quant's own (q − z)·s, bit for bit (with the scales rounded to float16 where the
// format stores float16).
func TestDequantEquivalence(t *testing.T) {
	const n, k, gs = 16, 256, 64
	r := rand.New(rand.NewPCG(3, 4))
	w := make([]float32, n*k)
	for i := range w {
		w[i] = float32(r.NormFloat64() * 0.05)
	}
	x := make([]float32, 64*k)
	for i := range x {
		x[i] = float32(r.NormFloat64() * (1 + float64(i%k%7)))
	}
	h := quant.NewHessian(k)
	if err := h.Add(x, 64); err != nil {
		t.Fatal(err)
	}
	rtn, err := quant.QuantizeRTN(w, n, k, quant.GroupOptions{GroupSize: gs})
	if err != nil {
		t.Fatal(err)
	}
	act, err := quant.GPTQ(w, n, k, h, quant.GPTQOptions{GroupOptions: quant.GroupOptions{GroupSize: gs}, ActOrder: true})
	if err != nil {
		t.Fatal(err)
	}
	if act.GIdx == nil {
		t.Fatal("act-order GPTQ should have a non-trivial g_idx")
	}

	// reference: quant's dequantization, with the scales optionally rounded to float16.
	reference := func(g *quant.GroupQuant, fp16 bool) []float32 {
		c := *g
		c.Scales = append([]float32(nil), g.Scales...)
		if fp16 {
			for i, s := range c.Scales {
				c.Scales[i] = float16.Fromfloat32(s).Float32()
			}
		}
		return c.Dequantize()
	}
	same := func(what string, got, want []float32) {
		t.Helper()
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("%s: element (%d, %d) = %v, want %v", what, i/k, i%k, got[i], want[i])
			}
		}
	}

	// MatMulNBits: (code − zp)·scale with float32 scales [N, kBlocks].
	{
		g := rtn
		bLen, zpLen, _ := MatMulNBitsSizes(n, k, 4, gs)
		b, zp := make([]byte, bLen), make([]byte, zpLen)
		if err := PackMatMulNBits(b, zp, g.Codes, g.Zeros, n, k, 4, gs); err != nil {
			t.Fatal(err)
		}
		kb, blob := (k+gs-1)/gs, gs/2
		got := make([]float32, n*k)
		for row := 0; row < n; row++ {
			for kk := 0; kk < k; kk++ {
				blk := kk / gs
				q := b[(row*kb+blk)*blob+(kk%gs)/2] >> (4 * (kk % 2)) & 0xF
				z := zp[row*(zpLen/n)+blk/2] >> (4 * (blk % 2)) & 0xF
				got[row*k+kk] = float32(int32(q)-int32(z)) * g.Scales[row*kb+blk]
			}
		}
		same("matmulnbits", got, reference(g, false))
	}

	// GPTQ v1 and v2 with act-order g_idx: W[k, n] = s[g_idx[k], n]·(q − z), v1 storing z − 1.
	for _, v1 := range []bool{false, true} {
		g := act.GroupQuant
		ng := g.NumGroups()
		qwLen, qzLen, _ := GPTQSizes(n, k, ng, 4)
		qw, qz, sc := make([]int32, qwLen), make([]int32, qzLen), make([]uint16, n*ng)
		if err := PackGPTQQweight(qw, g.Codes, n, k, 4); err != nil {
			t.Fatal(err)
		}
		if err := PackGPTQQzeros(qz, g.Zeros, n, ng, 4, v1); err != nil {
			t.Fatal(err)
		}
		if err := ScalesToFP16T(sc, g.Scales, n, ng); err != nil {
			t.Fatal(err)
		}
		gidx := g.GroupIndex()
		got := make([]float32, n*k)
		for kk := 0; kk < k; kk++ {
			for col := 0; col < n; col++ {
				gi := int(gidx[kk])
				q := uint32(qw[(kk/8)*n+col]) >> (4 * (kk % 8)) & 0xF
				z := uint32(qz[gi*(n/8)+col/8]) >> (4 * (col % 8)) & 0xF
				if v1 {
					z = (z + 1) & 0xF
				}
				s := float16.Frombits(sc[gi*n+col]).Float32()
				got[col*k+kk] = s * float32(int32(q)-int32(z))
			}
		}
		same("gptq", got, reference(g, true))
	}

	// AWQ: (q − z)·s, both read through the [0, 4, 1, 5, 2, 6, 3, 7] unpack order.
	{
		g := rtn
		ng := g.NumGroups()
		qwLen, qzLen, _ := AWQSizes(n, k, ng)
		qw, qz, sc := make([]int32, qwLen), make([]int32, qzLen), make([]uint16, n*ng)
		if err := PackAWQQweight(qw, g.Codes, n, k); err != nil {
			t.Fatal(err)
		}
		if err := PackAWQQzeros(qz, g.Zeros, n, ng); err != nil {
			t.Fatal(err)
		}
		if err := ScalesToFP16T(sc, g.Scales, n, ng); err != nil {
			t.Fatal(err)
		}
		unpackOrder := [8]int{0, 4, 1, 5, 2, 6, 3, 7}
		got := make([]float32, n*k)
		for kk := 0; kk < k; kk++ {
			for col := 0; col < n; col++ {
				gi := kk / gs
				shift := 4 * unpackOrder[col%8]
				q := uint32(qw[kk*(n/8)+col/8]) >> shift & 0xF
				z := uint32(qz[gi*(n/8)+col/8]) >> shift & 0xF
				s := float16.Frombits(sc[gi*n+col]).Float32()
				got[col*k+kk] = float32(int32(q)-int32(z)) * s
			}
		}
		same("awq", got, reference(g, true))
	}

	// Float16 scales round trip through the [G, N] table.
	gf, back := newGuardedFloats(len(rtn.Scales))
	sc := make([]uint16, len(rtn.Scales))
	if err := ScalesToFP16T(sc, rtn.Scales, n, rtn.NumGroups()); err != nil {
		t.Fatal(err)
	}
	if err := ScalesFromFP16T(back, sc, n, rtn.NumGroups()); err != nil {
		t.Fatal(err)
	}
	gf.check(t, "scales")
	for i, s := range rtn.Scales {
		if back[i] != float16.Fromfloat32(s).Float32() {
			t.Fatalf("scale %d: %v after float16, want %v", i, back[i], float16.Fromfloat32(s).Float32())
		}
	}
}
