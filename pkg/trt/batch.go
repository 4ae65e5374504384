package trt

import (
	"fmt"
	"slices"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// fillInput copies one input of a calibration sample into the shim's staging buffer dst,
// after checking that it is exactly what TensorRT will read there: the network input's
// element type and the calibration shape, dense, len(dst) bytes. A mismatch is an error
// naming the input, never a silent truncation.
func fillInput(s calibration.Sample, name string, dtype tensor.DType, dims []int64, dst []byte) error {
	t, ok := s[name]
	if !ok || t == nil {
		return fmt.Errorf("calibration data has no input %q", name)
	}
	if t.DType != dtype {
		return fmt.Errorf("calibration input %q is %s, the network input is %s", name, t.DType, dtype)
	}
	if !slices.Equal(t.Shape, dims) {
		return fmt.Errorf("calibration input %q has shape %s, TensorRT calibrates at %s (the profile's opt shape)",
			name, formatDims(t.Shape), formatDims(dims))
	}
	if len(t.Data) != len(dst) {
		return fmt.Errorf("calibration input %q holds %d bytes, TensorRT expects %d", name, len(t.Data), len(dst))
	}
	copy(dst, t.Data)
	return nil
}
