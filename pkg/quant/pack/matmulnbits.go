package pack

import "fmt"

// MatMulNBits (domain com.microsoft) computes Y = A · dequant(B)ᵀ with, as ONNX Runtime
// reads its inputs (K inputs, N outputs, kBlocks = ceil(K / block_size)):
//
//	B            uint8 [N, kBlocks, block_size·bits/8]: the codes of row n, block b, are
//	             k = b·block_size + j, code j in bits [j·bits, (j+1)·bits) of the block's
//	             bytes counted from the least significant bit of the first byte (low bits
//	             first along K: for 4 bits, byte i = code[2i] | code[2i+1] << 4).
//	scales       [N, kBlocks], A's float type: exactly quant's [N, G] scales.
//	zero_points  uint8 [N, ceil(kBlocks·bits/8)], packed like B along the blocks of a row;
//	             the bits after the last block are filled with the default zero point, as
//	             ORT's own quantizer leaves them. When the input is absent every zero point
//	             is 2^(bits−1) (8 for 4 bits), unlike DequantizeLinear's default of 0.
//	dequant      (code − zero_point) · scale
//
// K need not be a multiple of block_size: B still holds whole blocks, and the codes past K
// are the block's zero point, so they dequantize to exactly 0 (what ORT's quantizer gets by
// padding the float weight with zeros). g_idx is deprecated: act-order weights must be
// stored with K reordered. The block size is a power of two ≥ 16; this package packs the
// bit widths whose codes do not straddle bytes: 2, 4 and 8.
const (
	MatMulNBitsDomain   = "com.microsoft"
	MatMulNBitsOp       = "MatMulNBits"
	matMulNBitsMinBlock = 16
)

// MatMulNBitsDefaultZero is the zero point MatMulNBits assumes when zero_points is absent.
func MatMulNBitsDefaultZero(bits int) uint8 { return uint8(1) << (bits - 1) }

// MatMulNBitsSizes returns the byte lengths of B and of the packed zero_points.
func MatMulNBitsSizes(n, k, bits, blockSize int) (bLen, zpLen int, err error) {
	if n <= 0 || k <= 0 {
		return 0, 0, fmt.Errorf("matmulnbits: N=%d, K=%d: must be positive", n, k)
	}
	if bits != 2 && bits != 4 && bits != 8 {
		return 0, 0, fmt.Errorf("matmulnbits: %d bits: only 2, 4 and 8 are supported", bits)
	}
	if blockSize < matMulNBitsMinBlock || blockSize&(blockSize-1) != 0 {
		return 0, 0, fmt.Errorf("matmulnbits: block size %d: must be a power of two ≥ 16", blockSize)
	}
	kBlocks := (k + blockSize - 1) / blockSize
	return n * kBlocks * blockSize * bits / 8, n * ((kBlocks*bits + 7) / 8), nil
}

// PackMatMulNBits packs codes [N, K] into b, and zeros [N, kBlocks] into zp. Pass nil
// zeros and zp to omit zero_points (symmetric weights whose zero point is the default);
// with zeros, the padding codes past K take each block's zero point.
func PackMatMulNBits(b, zp []byte, codes, zeros []uint8, n, k, bits, blockSize int) error {
	bLen, zpLen, err := MatMulNBitsSizes(n, k, bits, blockSize)
	if err != nil {
		return err
	}
	kBlocks := (k + blockSize - 1) / blockSize
	if err := checkLen("matmulnbits: B", len(b), bLen); err != nil {
		return err
	}
	if err := checkLen("matmulnbits: codes", len(codes), n*k); err != nil {
		return err
	}
	if err := checkCodes("matmulnbits: codes", codes, bits); err != nil {
		return err
	}
	if (zeros == nil) != (zp == nil) {
		return fmt.Errorf("matmulnbits: zero points and their packed buffer must be given together")
	}
	if zeros != nil {
		if err := checkLen("matmulnbits: zero_points", len(zp), zpLen); err != nil {
			return err
		}
		if err := checkLen("matmulnbits: zeros", len(zeros), n*kBlocks); err != nil {
			return err
		}
		if err := checkCodes("matmulnbits: zeros", zeros, bits); err != nil {
			return err
		}
	}
	def := MatMulNBitsDefaultZero(bits)
	rowBytes := kBlocks * blockSize * bits / 8
	for r := 0; r < n; r++ {
		row := b[r*rowBytes : (r+1)*rowBytes]
		clear(row)
		src := codes[r*k : (r+1)*k]
		for j := 0; j < kBlocks*blockSize; j++ {
			c := def
			switch {
			case j < k:
				c = src[j]
			case zeros != nil:
				c = zeros[r*kBlocks+j/blockSize]
			}
			putBits(row, j, bits, c)
		}
		if zeros != nil {
			zr := zp[r*(zpLen/n) : (r+1)*(zpLen/n)]
			clear(zr)
			for j := 0; j < len(zr)*8/bits; j++ {
				c := def
				if j < kBlocks {
					c = zeros[r*kBlocks+j]
				}
				putBits(zr, j, bits, c)
			}
		}
	}
	return nil
}

// UnpackMatMulNBits is the inverse of PackMatMulNBits: codes [N, K] (padding dropped) and,
// when zeros is not nil, zero points [N, kBlocks] — the defaults when zp is nil.
func UnpackMatMulNBits(codes, zeros []uint8, b, zp []byte, n, k, bits, blockSize int) error {
	bLen, zpLen, err := MatMulNBitsSizes(n, k, bits, blockSize)
	if err != nil {
		return err
	}
	kBlocks := (k + blockSize - 1) / blockSize
	if err := checkLen("matmulnbits: B", len(b), bLen); err != nil {
		return err
	}
	if err := checkLen("matmulnbits: codes", len(codes), n*k); err != nil {
		return err
	}
	if zp != nil {
		if err := checkLen("matmulnbits: zero_points", len(zp), zpLen); err != nil {
			return err
		}
	}
	if zeros != nil {
		if err := checkLen("matmulnbits: zeros", len(zeros), n*kBlocks); err != nil {
			return err
		}
	}
	rowBytes := kBlocks * blockSize * bits / 8
	for r := 0; r < n; r++ {
		row := b[r*rowBytes : (r+1)*rowBytes]
		for j := 0; j < k; j++ {
			codes[r*k+j] = getBits(row, j, bits)
		}
		if zeros == nil {
			continue
		}
		for j := 0; j < kBlocks; j++ {
			if zp == nil {
				zeros[r*kBlocks+j] = MatMulNBitsDefaultZero(bits)
				continue
			}
			zeros[r*kBlocks+j] = getBits(zp[r*(zpLen/n):(r+1)*(zpLen/n)], j, bits)
		}
	}
	return nil
}

// putBits ORs value into field j of width bits (bits divides 8), low bits first.
func putBits(buf []byte, j, bits int, v uint8) {
	per := 8 / bits
	buf[j/per] |= v << (uint(j%per) * uint(bits))
}

func getBits(buf []byte, j, bits int) uint8 {
	per := 8 / bits
	return buf[j/per] >> (uint(j%per) * uint(bits)) & uint8(1<<bits-1)
}
