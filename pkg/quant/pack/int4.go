package pack

import "fmt"

// ONNX INT4 and UINT4 tensors (opset ≥ 21; TensorRT's weight-only INT4) store two values per
// byte, the first (lower flat index) in the low nibble: byte i = v[2i] & 0xF | v[2i+1] << 4.
// An odd count leaves the last high nibble 0. INT4 nibbles are two's complement, −8..7.
const int4Min, int4Max = -8, 7

// Int4Bytes is the byte length of n packed 4-bit values.
func Int4Bytes(n int) int { return (n + 1) / 2 }

// PackInt4 packs signed values in [−8, 7] into dst (Int4Bytes(len(vals)) bytes).
func PackInt4(dst []byte, vals []int8) error {
	if err := checkLen("int4: packed", len(dst), Int4Bytes(len(vals))); err != nil {
		return err
	}
	for i, v := range vals {
		if v < int4Min || v > int4Max {
			return fmt.Errorf("int4: value %d at index %d is outside [-8, 7]", v, i)
		}
	}
	for i := range dst {
		b := byte(vals[2*i]) & 0xF
		if 2*i+1 < len(vals) {
			b |= byte(vals[2*i+1]) << 4
		}
		dst[i] = b
	}
	return nil
}

// UnpackInt4 unpacks len(dst) signed values, sign-extending each nibble.
func UnpackInt4(dst []int8, src []byte) error {
	if err := checkLen("int4: packed", len(src), Int4Bytes(len(dst))); err != nil {
		return err
	}
	for i := range dst {
		nib := src[i/2] >> (4 * uint(i%2)) & 0xF
		dst[i] = int8(nib<<4) >> 4
	}
	return nil
}

// PackUint4 packs unsigned values in [0, 15] into dst (Int4Bytes(len(vals)) bytes).
func PackUint4(dst []byte, vals []uint8) error {
	if err := checkLen("uint4: packed", len(dst), Int4Bytes(len(vals))); err != nil {
		return err
	}
	if err := checkCodes("uint4", vals, 4); err != nil {
		return err
	}
	for i := range dst {
		b := vals[2*i]
		if 2*i+1 < len(vals) {
			b |= vals[2*i+1] << 4
		}
		dst[i] = b
	}
	return nil
}

// UnpackUint4 unpacks len(dst) unsigned values.
func UnpackUint4(dst []uint8, src []byte) error {
	if err := checkLen("uint4: packed", len(src), Int4Bytes(len(dst))); err != nil {
		return err
	}
	for i := range dst {
		dst[i] = src[i/2] >> (4 * uint(i%2)) & 0xF
	}
	return nil
}
