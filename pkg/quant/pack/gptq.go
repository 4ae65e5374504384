package pack

import "fmt"

// GPTQ checkpoints (AutoGPTQ / GPTQModel, read by vLLM, exllama, Marlin) store each Linear
// in the [in=K, out=N] orientation, with pf = 32/bits codes per int32 word:
//
//	qweight  int32 [K/pf, N]: word (i, n) holds the codes of k = i·pf + j, j = 0..pf−1,
//	         code j in bits [j·bits, (j+1)·bits) (packed along K).
//	qzeros   int32 [G, N/pf]: word (g, i) holds the zero points of n = i·pf + j, same bit
//	         positions (packed along N).
//	scales   float16 [G, N] (ScalesToFP16T).
//	g_idx    int32 [K]: the group of input k (k / group_size unless desc_act).
//	dequant  W[k, n] = scales[g_idx[k], n] · (q − z)
//
// checkpoint_format "gptq" (v1) stores z − 1 in qzeros: the original kernels add 1 back,
// so symmetric 4-bit zeros (8) read 0x77777777. A zero point of 0 becomes −1, which we
// store as 2^bits − 1 in its field: readers that mask (z_stored + 1) & (2^bits − 1), as
// AutoGPTQ's torch path does, recover 0; readers that do not get 2^bits, so v1 cannot
// carry a zero point of 0 faithfully — prefer v2 for asymmetric weights.
// "gptq_v2" stores z as it is. Reading a v2 checkpoint as v1 shifts every zero point by one.
//
// Supported widths are those that tile a 32-bit word: 2, 4 and 8 bits (3-bit GPTQ uses a
// different, cross-word layout).
const (
	GPTQFormatV1 = "gptq"
	GPTQFormatV2 = "gptq_v2"
)

func gptqPerWord(bits int) (int, error) {
	if bits != 2 && bits != 4 && bits != 8 {
		return 0, fmt.Errorf("gptq: %d bits: only 2, 4 and 8 are supported", bits)
	}
	return 32 / bits, nil
}

// GPTQSizes returns the int32 word counts of qweight ([K/pf, N]) and qzeros ([G, N/pf]).
// K and N must be multiples of pf = 32/bits.
func GPTQSizes(n, k, groups, bits int) (qweight, qzeros int, err error) {
	pf, err := gptqPerWord(bits)
	if err != nil {
		return 0, 0, err
	}
	if n <= 0 || k <= 0 || groups <= 0 || k%pf != 0 || n%pf != 0 {
		return 0, 0, fmt.Errorf("gptq: N=%d, K=%d, %d groups: N and K must be positive multiples of %d", n, k, groups, pf)
	}
	return k / pf * n, groups * n / pf, nil
}

// PackGPTQQweight packs codes [N, K] into qweight [K/pf, N].
func PackGPTQQweight(dst []int32, codes []uint8, n, k, bits int) error {
	size, _, err := GPTQSizes(n, k, 1, bits)
	if err != nil {
		return err
	}
	if err := checkLen("gptq: qweight", len(dst), size); err != nil {
		return err
	}
	if err := checkLen("gptq: codes", len(codes), n*k); err != nil {
		return err
	}
	if err := checkCodes("gptq: codes", codes, bits); err != nil {
		return err
	}
	pf := 32 / bits
	for i := 0; i < k/pf; i++ {
		for c := 0; c < n; c++ {
			var word uint32
			for j := 0; j < pf; j++ {
				word |= uint32(codes[c*k+i*pf+j]) << (j * bits)
			}
			dst[i*n+c] = int32(word)
		}
	}
	return nil
}

// UnpackGPTQQweight is the inverse of PackGPTQQweight.
func UnpackGPTQQweight(codes []uint8, src []int32, n, k, bits int) error {
	size, _, err := GPTQSizes(n, k, 1, bits)
	if err != nil {
		return err
	}
	if err := checkLen("gptq: qweight", len(src), size); err != nil {
		return err
	}
	if err := checkLen("gptq: codes", len(codes), n*k); err != nil {
		return err
	}
	pf, mask := 32/bits, uint32(1)<<bits-1
	for i := 0; i < k/pf; i++ {
		for c := 0; c < n; c++ {
			word := uint32(src[i*n+c])
			for j := 0; j < pf; j++ {
				codes[c*k+i*pf+j] = uint8(word >> (j * bits) & mask)
			}
		}
	}
	return nil
}

// PackGPTQQzeros packs zero points [N, G] into qzeros [G, N/pf]; v1 stores z − 1 (see above).
func PackGPTQQzeros(dst []int32, zeros []uint8, n, groups, bits int, v1 bool) error {
	pf, err := gptqPerWord(bits)
	if err != nil {
		return err
	}
	if n <= 0 || groups <= 0 || n%pf != 0 {
		return fmt.Errorf("gptq: N=%d, %d groups: N must be a positive multiple of %d", n, groups, pf)
	}
	if err := checkLen("gptq: qzeros", len(dst), groups*n/pf); err != nil {
		return err
	}
	if err := checkLen("gptq: zeros", len(zeros), n*groups); err != nil {
		return err
	}
	if err := checkCodes("gptq: zeros", zeros, bits); err != nil {
		return err
	}
	mask := uint32(1)<<bits - 1
	for g := 0; g < groups; g++ {
		for i := 0; i < n/pf; i++ {
			var word uint32
			for j := 0; j < pf; j++ {
				z := uint32(zeros[(i*pf+j)*groups+g])
				if v1 {
					z = (z - 1) & mask
				}
				word |= z << (j * bits)
			}
			dst[g*(n/pf)+i] = int32(word)
		}
	}
	return nil
}

// UnpackGPTQQzeros is the inverse of PackGPTQQzeros: v1 adds 1 back, modulo 2^bits.
func UnpackGPTQQzeros(zeros []uint8, src []int32, n, groups, bits int, v1 bool) error {
	pf, err := gptqPerWord(bits)
	if err != nil {
		return err
	}
	if n <= 0 || groups <= 0 || n%pf != 0 {
		return fmt.Errorf("gptq: N=%d, %d groups: N must be a positive multiple of %d", n, groups, pf)
	}
	if err := checkLen("gptq: qzeros", len(src), groups*n/pf); err != nil {
		return err
	}
	if err := checkLen("gptq: zeros", len(zeros), n*groups); err != nil {
		return err
	}
	mask := uint32(1)<<bits - 1
	for g := 0; g < groups; g++ {
		for i := 0; i < n/pf; i++ {
			word := uint32(src[g*(n/pf)+i])
			for j := 0; j < pf; j++ {
				z := word >> (j * bits) & mask
				if v1 {
					z = (z + 1) & mask
				}
				zeros[(i*pf+j)*groups+g] = uint8(z)
			}
		}
	}
	return nil
}
