package int4

import (
	"encoding/binary"
	"fmt"

	"github.com/optimctl/optimctl/pkg/quant/pack"
	"github.com/optimctl/optimctl/pkg/safetensors"
)

// DequantizeLinear reads the quantized Linear prefix (prefix.qweight, .qzeros, .scales and,
// for GPTQ, .g_idx) of a GPTQ or AWQ checkpoint written in layout format, and returns the
// float weight it stands for, [N, K] (nn.Linear's orientation), computed exactly as the
// formats define it: GPTQ W[k,n] = scales[g_idx[k], n]·(q − z), z = stored + 1 for
// checkpoint_format "gptq" (masked to the field width, as AutoGPTQ's torch kernel does);
// AWQ W[k,n] = scales[k/group, n]·(q − z).
func DequantizeLinear(ck *safetensors.Checkpoint, prefix string, format Format, bits int, checkpointFormat string) ([]float32, int, int, error) {
	get := func(suffix, dtype string) ([]byte, []int64, error) {
		name := prefix + suffix
		info, ok := ck.Tensor(name)
		if !ok {
			return nil, nil, fmt.Errorf("no tensor %q", name)
		}
		if info.DType != dtype {
			return nil, nil, fmt.Errorf("tensor %q is %s, want %s", name, info.DType, dtype)
		}
		return ck.Data(name), info.Shape, nil
	}
	qwB, qwShape, err := get(".qweight", "I32")
	if err != nil {
		return nil, 0, 0, err
	}
	qzB, qzShape, err := get(".qzeros", "I32")
	if err != nil {
		return nil, 0, 0, err
	}
	scB, scShape, err := get(".scales", "F16")
	if err != nil {
		return nil, 0, 0, err
	}
	if len(qwShape) != 2 || len(qzShape) != 2 || len(scShape) != 2 {
		return nil, 0, 0, fmt.Errorf("%s: qweight, qzeros and scales must be 2-D", prefix)
	}
	groups, n := int(scShape[0]), int(scShape[1])
	scales := make([]float32, n*groups)
	if err := pack.ScalesFromFP16T(scales, u16s(scB), n, groups); err != nil {
		return nil, 0, 0, err
	}
	var k int
	codes, zeros := []uint8(nil), make([]uint8, n*groups)
	var gidx []int32
	switch format {
	case FormatAWQ:
		k = int(qwShape[0])
		codes = make([]uint8, n*k)
		if err := pack.UnpackAWQQweight(codes, i32s(qwB), n, k); err != nil {
			return nil, 0, 0, err
		}
		if err := pack.UnpackAWQQzeros(zeros, i32s(qzB), n, groups); err != nil {
			return nil, 0, 0, err
		}
	case FormatGPTQ:
		k = int(qwShape[0]) * (32 / bits)
		codes = make([]uint8, n*k)
		if err := pack.UnpackGPTQQweight(codes, i32s(qwB), n, k, bits); err != nil {
			return nil, 0, 0, err
		}
		if err := pack.UnpackGPTQQzeros(zeros, i32s(qzB), n, groups, bits, checkpointFormat != pack.GPTQFormatV2); err != nil {
			return nil, 0, 0, err
		}
		gB, _, err := get(".g_idx", "I32")
		if err != nil {
			return nil, 0, 0, err
		}
		gidx = i32s(gB)
		if len(gidx) != k {
			return nil, 0, 0, fmt.Errorf("%s: g_idx has %d entries, want K = %d", prefix, len(gidx), k)
		}
	default:
		return nil, 0, 0, fmt.Errorf("format %q has no packed Linear layout", format)
	}
	w := make([]float32, n*k)
	gs := k / groups
	for r := 0; r < n; r++ {
		for c := 0; c < k; c++ {
			g := c / gs
			if gidx != nil {
				g = int(gidx[c])
			}
			if g < 0 || g >= groups {
				return nil, 0, 0, fmt.Errorf("%s: g_idx[%d] = %d is outside [0, %d)", prefix, c, g, groups)
			}
			w[r*k+c] = float32(int32(codes[r*k+c])-int32(zeros[r*groups+g])) * scales[r*groups+g]
		}
	}
	return w, n, k, nil
}

func i32s(b []byte) []int32 {
	out := make([]int32, len(b)/4)
	for i := range out {
		out[i] = int32(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

func u16s(b []byte) []uint16 {
	out := make([]uint16, len(b)/2)
	for i := range out {
		out[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return out
}
