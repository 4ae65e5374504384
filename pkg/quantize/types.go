package quantize

import (
	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// valueTypes is the element type and shape of every value of the main graph.
type valueTypes map[string]tensor.Spec

// probeTypes asks ONNX Runtime for the type of every value (see calibration.TensorTypes):
// the quantizer must know which tensors are float to calibrate, quantize or convert them,
// and value_info rarely says.
func probeTypes(model []byte, rt runtime.Options) (valueTypes, error) {
	vt, err := calibration.TensorTypes(model, rt)
	return valueTypes(vt), err
}

// isFloat32 reports whether a value is known to be float32.
func (vt valueTypes) isFloat32(name string) bool {
	s, ok := vt[name]
	return ok && s.DType == tensor.Float32
}

// ranks returns the rank of every value whose rank is known.
func (vt valueTypes) ranks() map[string]int {
	r := map[string]int{}
	for k, s := range vt {
		if s.Shape != nil {
			r[k] = len(s.Shape)
		}
	}
	return r
}
