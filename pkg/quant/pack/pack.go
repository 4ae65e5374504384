// Package pack turns group-quantized weights into the exact byte layouts that other tools
// read — ONNX Runtime's MatMulNBits, GPTQ and AWQ checkpoints, ONNX INT4 tensors — and back.
// Each layout is stated once, in the comment beside its constants, and pinned by a golden
// test.
//
// Every function takes and returns the one orientation package quant uses, whatever the
// format stores:
//   - codes: unsigned, [N, K] row-major (N outputs × K inputs), each below 2^bits;
//   - per-group scales and zero points: [N, G] row-major, G groups along K.
//
// Packers write into caller-provided slices of exactly the size the *Sizes functions give
// (so that callers can pack straight into a tensor's buffer), and return an error rather
// than write a code that does not fit its field.
package pack

import (
	"fmt"

	"github.com/x448/float16"
)

// checkCodes returns an error when a code does not fit in bits (it would spill into its
// neighbour's field).
func checkCodes(what string, codes []uint8, bits int) error {
	limit := uint8(1<<bits - 1)
	for i, c := range codes {
		if c > limit {
			return fmt.Errorf("%s: value %d at index %d does not fit in %d bits", what, c, i, bits)
		}
	}
	return nil
}

func checkLen(what string, got, want int) error {
	if got != want {
		return fmt.Errorf("%s has %d elements, want %d", what, got, want)
	}
	return nil
}

// ScalesToFP16T converts per-group scales [N, G] (float32) to the [G, N] float16 table of
// GPTQ and AWQ checkpoints (IEEE binary16 bits, rounded to nearest even). Scales beyond
// float16's range become ±Inf and tiny ones subnormal or 0: check before writing a model.
func ScalesToFP16T(dst []uint16, scales []float32, n, groups int) error {
	if err := checkLen("fp16 scales", len(dst), n*groups); err != nil {
		return err
	}
	if err := checkLen("scales", len(scales), n*groups); err != nil {
		return err
	}
	for r := 0; r < n; r++ {
		for g := 0; g < groups; g++ {
			dst[g*n+r] = float16.Fromfloat32(scales[r*groups+g]).Bits()
		}
	}
	return nil
}

// ScalesFromFP16T is the inverse of ScalesToFP16T: [G, N] float16 bits → [N, G] float32.
func ScalesFromFP16T(dst []float32, src []uint16, n, groups int) error {
	if err := checkLen("scales", len(dst), n*groups); err != nil {
		return err
	}
	if err := checkLen("fp16 scales", len(src), n*groups); err != nil {
		return err
	}
	for g := 0; g < groups; g++ {
		for r := 0; r < n; r++ {
			dst[r*groups+g] = float16.Frombits(src[g*n+r]).Float32()
		}
	}
	return nil
}
