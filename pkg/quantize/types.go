package quantize

import (
	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// valueTypes is the element type and shape of every value of the main graph.
type valueTypes map[string]tensor.Spec

// probeTypes finds the element type (and shape, where known) of every value: the
// quantizer must know which tensors are float to calibrate, quantize or convert them, and
// value_info rarely says. pkg/shape's inference answers in Go; only when it leaves a node
// output untyped (an operator it has no rule for) is ONNX Runtime asked, through a
// session that exposes every value (calibration.TensorTypes), which costs the memory and
// time of building one.
func probeTypes(m *onnx.Model, model []byte, shapes map[string][]int64, rt runtime.Options) (valueTypes, error) {
	vt := valueTypes{}
	for _, v := range m.Proto.Graph.Input {
		s := onnx.ValueSpec(v)
		vt[s.Name] = s
	}
	for _, t := range m.Proto.Graph.Initializer {
		vt[t.GetName()] = tensor.Spec{Name: t.GetName(), DType: tensor.DType(t.GetDataType()), Shape: append([]int64{}, t.Dims...)}
	}
	complete := false
	if res, err := shape.Analyze(m, shape.Options{InputShapes: shapes}); err == nil {
		complete = true
		for _, n := range m.Proto.Graph.Node {
			for _, o := range n.Output {
				if o == "" {
					continue
				}
				info := res.Info(o)
				if info == nil || info.DType == tensor.Undefined {
					complete = false
					continue
				}
				vt[o] = info.Spec(o)
			}
		}
	}
	if complete {
		return vt, nil
	}
	if model == nil {
		b, err := m.MarshalInline()
		if err != nil {
			return nil, err
		}
		model = b
	}
	ort, err := calibration.TensorTypes(model, rt)
	if err != nil {
		return nil, err
	}
	for k, s := range ort {
		if _, ok := vt[k]; !ok || vt[k].DType == tensor.Undefined {
			vt[k] = s
		}
	}
	return vt, nil
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
