package pack

import "fmt"

// AWQ checkpoints, AutoAWQ's "gemm" version (4 bits only), store each Linear in the
// [in=K, out=N] orientation, 8 codes per int32 word, packed along N in an interleaved order:
//
//	qweight  int32 [K, N/8]: word (k, i), nibble j (bits [4j, 4j+4)) holds the code of
//	         n = 8i + awqOrder[j], awqOrder = [0, 2, 4, 6, 1, 3, 5, 7]; reading back,
//	         output 8i + m sits in nibble awqReverse[m], awqReverse = [0, 4, 1, 5, 2, 6, 3, 7].
//	qzeros   int32 [G, N/8]: the zero points, same order, stored as they are (no −1).
//	scales   float16 [G, N] (ScalesToFP16T). No g_idx: groups are always k / group_size.
//	dequant  W[k, n] = (q − z) · s
var (
	awqOrder   = [8]int{0, 2, 4, 6, 1, 3, 5, 7}
	awqReverse = [8]int{0, 4, 1, 5, 2, 6, 3, 7}
)

const awqBits = 4

// AWQSizes returns the int32 word counts of qweight ([K, N/8]) and qzeros ([G, N/8]).
func AWQSizes(n, k, groups int) (qweight, qzeros int, err error) {
	if n <= 0 || k <= 0 || groups <= 0 || n%8 != 0 {
		return 0, 0, fmt.Errorf("awq: N=%d, K=%d, %d groups: N must be a positive multiple of 8", n, k, groups)
	}
	return k * n / 8, groups * n / 8, nil
}

// packAWQRows packs rows of a [rows, N] table, given by at(row, n), into words [rows, N/8].
func packAWQRows(dst []int32, rows, n int, at func(row, col int) uint8) {
	for r := 0; r < rows; r++ {
		for i := 0; i < n/8; i++ {
			var word uint32
			for j, m := range awqOrder {
				word |= uint32(at(r, 8*i+m)) << (awqBits * j)
			}
			dst[r*(n/8)+i] = int32(word)
		}
	}
}

func unpackAWQRows(src []int32, rows, n int, set func(row, col int, v uint8)) {
	for r := 0; r < rows; r++ {
		for i := 0; i < n/8; i++ {
			word := uint32(src[r*(n/8)+i])
			for m, j := range awqReverse {
				set(r, 8*i+m, uint8(word>>(awqBits*j)&0xF))
			}
		}
	}
}

// PackAWQQweight packs 4-bit codes [N, K] into qweight [K, N/8].
func PackAWQQweight(dst []int32, codes []uint8, n, k int) error {
	size, _, err := AWQSizes(n, k, 1)
	if err != nil {
		return err
	}
	if err := checkLen("awq: qweight", len(dst), size); err != nil {
		return err
	}
	if err := checkLen("awq: codes", len(codes), n*k); err != nil {
		return err
	}
	if err := checkCodes("awq: codes", codes, awqBits); err != nil {
		return err
	}
	packAWQRows(dst, k, n, func(kk, nn int) uint8 { return codes[nn*k+kk] })
	return nil
}

// UnpackAWQQweight is the inverse of PackAWQQweight.
func UnpackAWQQweight(codes []uint8, src []int32, n, k int) error {
	size, _, err := AWQSizes(n, k, 1)
	if err != nil {
		return err
	}
	if err := checkLen("awq: qweight", len(src), size); err != nil {
		return err
	}
	if err := checkLen("awq: codes", len(codes), n*k); err != nil {
		return err
	}
	unpackAWQRows(src, k, n, func(kk, nn int, v uint8) { codes[nn*k+kk] = v })
	return nil
}

// PackAWQQzeros packs zero points [N, G] into qzeros [G, N/8].
func PackAWQQzeros(dst []int32, zeros []uint8, n, groups int) error {
	_, size, err := AWQSizes(n, 1, groups)
	if err != nil {
		return err
	}
	if err := checkLen("awq: qzeros", len(dst), size); err != nil {
		return err
	}
	if err := checkLen("awq: zeros", len(zeros), n*groups); err != nil {
		return err
	}
	if err := checkCodes("awq: zeros", zeros, awqBits); err != nil {
		return err
	}
	packAWQRows(dst, groups, n, func(g, nn int) uint8 { return zeros[nn*groups+g] })
	return nil
}

// UnpackAWQQzeros is the inverse of PackAWQQzeros.
func UnpackAWQQzeros(zeros []uint8, src []int32, n, groups int) error {
	_, size, err := AWQSizes(n, 1, groups)
	if err != nil {
		return err
	}
	if err := checkLen("awq: qzeros", len(src), size); err != nil {
		return err
	}
	if err := checkLen("awq: zeros", len(zeros), n*groups); err != nil {
		return err
	}
	unpackAWQRows(src, groups, n, func(g, nn int, v uint8) { zeros[nn*groups+g] = v })
	return nil
}
