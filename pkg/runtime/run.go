package runtime

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	goruntime "runtime"
	"slices"
	"strings"
	"unsafe"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/optimctl/optimctl/pkg/tensor"
)

var errClosed = errors.New("session is closed")

// Run feeds inputs (every entry of Inputs, by name) and returns the named outputs, or
// every output including extra outputs when no names are given. Results are Go-owned
// copies; nothing returned refers to ONNX Runtime memory.
//
// Inputs are checked against Inputs before ONNX Runtime sees them, so a missing input,
// a wrong element type, rank or static dimension is reported by name.
func (s *Session) Run(inputs map[string]*tensor.Tensor, outputNames ...string) (map[string]*tensor.Tensor, error) {
	return s.run(inputs, nil, outputNames)
}

// RunReusing is Run that writes outputs into the buffers of reuse (typically the result of
// an earlier run the caller is done with) instead of allocating new ones: an output of
// static shape whose entry in reuse has the same element type and byte size gets that
// entry's Data; every other output is allocated as Run would. The results alias those
// buffers, so a loop that recycles them allocates (and zeroes) nothing per run.
func (s *Session) RunReusing(inputs, reuse map[string]*tensor.Tensor, outputNames ...string) (map[string]*tensor.Tensor, error) {
	return s.run(inputs, reuse, outputNames)
}

func (s *Session) run(inputs, reuse map[string]*tensor.Tensor, outputNames []string) (map[string]*tensor.Tensor, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.sess == nil {
		return nil, errClosed
	}
	want, err := s.selectOutputs(outputNames)
	if err != nil {
		return nil, err
	}
	for name := range inputs {
		if _, ok := s.inIndex[name]; !ok {
			return nil, fmt.Errorf("input %q: the model has no such input (inputs: %s)", name, s.inputNames())
		}
	}
	if len(s.inputs) == 0 || len(s.fetched) == 0 {
		// onnxruntime_go v1.35 indexes the first input and output unconditionally.
		return nil, fmt.Errorf("models with no inputs or no fetchable outputs cannot be run through onnxruntime_go")
	}

	// ONNX Runtime keeps the data pointers of tensors made over Go memory until they are
	// destroyed, so the buffers are pinned for the whole call (cgo's pointer rules);
	// deferred in this order, values are destroyed before the pins are released.
	var pinner goruntime.Pinner
	defer pinner.Unpin()
	var owned []ort.Value
	defer func() {
		for _, v := range owned {
			if !isNil(v) {
				v.Destroy()
			}
		}
	}()

	in := make([]ort.Value, len(s.inputs))
	for i, spec := range s.inputs {
		t, ok := inputs[spec.Name]
		if !ok {
			return nil, fmt.Errorf("input %q (%s %s) is missing", spec.Name, spec.DType, formatShape(spec.Spec))
		}
		if err := checkInput(spec, t); err != nil {
			return nil, fmt.Errorf("input %q: %w", spec.Name, err)
		}
		v, err := newInputValue(t, &pinner)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", spec.Name, err)
		}
		owned = append(owned, v)
		in[i] = v
	}

	var out []ort.Value
	var bufs [][]byte
	var modes []fetchMode
	for attempt := 0; ; attempt++ {
		out, bufs, modes, err = s.outputValues(&pinner, reuse)
		if err != nil {
			return nil, err
		}
		err = s.sess.Run(in, out)
		// Now also holds the outputs ONNX Runtime allocated (onnxruntime_go fills the nil
		// entries). After a failed copy-out, the outputs after the failing one were never
		// handed to Go and cannot be released from here.
		owned = append(owned, out...)
		if err == nil {
			break
		}
		retry, lerr := s.learn(out, modes, err)
		if !retry {
			return nil, lerr
		}
		if attempt >= 2*len(s.fetched) { // each output can teach at most two things
			return nil, fmt.Errorf("running model: %w", err)
		}
	}

	result := make(map[string]*tensor.Tensor, len(want))
	for i, p := range s.fetched {
		if !slices.Contains(want, p) {
			continue
		}
		t, err := collect(out[i], bufs[i], modes[i], p)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", p.spec.Name, err)
		}
		result[p.spec.Name] = t
	}
	return result, nil
}

func (s *Session) selectOutputs(names []string) ([]*fetchPlan, error) {
	var want []*fetchPlan
	if len(names) == 0 {
		want = s.outputs
	} else {
		for _, n := range names {
			i, ok := s.outIndex[n]
			if !ok {
				return nil, fmt.Errorf("output %q: the model has no such output (outputs: %s; intermediate tensors need Options.ExtraOutputs)", n, s.outputNames())
			}
			want = append(want, s.outputs[i])
		}
	}
	for _, p := range want {
		if p.mode == fetchNone {
			return nil, fmt.Errorf("output %q: %s", p.spec.Name, p.reason)
		}
	}
	return want, nil
}

func (s *Session) inputNames() string {
	var n []string
	for _, in := range s.inputs {
		n = append(n, fmt.Sprintf("%q", in.Name))
	}
	return strings.Join(n, ", ")
}

func (s *Session) outputNames() string {
	var n []string
	for _, p := range s.outputs {
		n = append(n, fmt.Sprintf("%q", p.spec.Name))
	}
	return strings.Join(n, ", ")
}

// ONNX Runtime's two messages for a preallocated output of the wrong shape: checked
// against its inferred shape before the run, or against the computed one during it.
var wrongOutputShape = regexp.MustCompile(`invalid dimensions for output: (\S+) for the following|output OrtValue provided for output '([^']*)'`)

// learn looks at a failed Run for the two mistakes a second attempt avoids, records the
// finding on the output's plan so that later runs get it right first time, and says
// whether to retry (otherwise it returns the error to report):
//   - a declared static shape that ONNX Runtime did not compute (it names the output):
//     fetch that output dynamically from now on;
//   - an output of unknown rank that is a scalar, which onnxruntime_go's copy-out
//     rejects ("The shape has no dimensions"): fetch it as a scalar from now on.
func (s *Session) learn(out []ort.Value, modes []fetchMode, err error) (bool, error) {
	msg := err.Error()
	if m := wrongOutputShape.FindStringSubmatch(msg); m != nil {
		name := m[1] + m[2]
		for i, p := range s.fetched {
			if p.ortName != name || modes[i] == fetchDynamic {
				continue
			}
			if !dynamicCapable(p.fetchType) {
				return false, fmt.Errorf("output %q: ONNX Runtime computed a shape other than the declared %s, and onnxruntime_go cannot return a %s output of undeclared shape; fix graph.output: %w",
					p.spec.Name, formatShape(p.spec.Spec), p.spec.DType, err)
			}
			p.declaredWrong.Store(true)
			p.scalarSeen.Store(false)
			return true, nil
		}
	}
	if strings.Contains(msg, "Error creating tensor from ort") {
		// onnxruntime_go copies allocated outputs in order and stops at the failing one.
		for i, p := range s.fetched {
			if modes[i] != fetchDynamic || !isNil(out[i]) {
				continue
			}
			if scalarTypes[p.fetchType] && strings.Contains(msg, "no dimensions") {
				p.scalarSeen.Store(true)
				return true, nil
			}
			return false, fmt.Errorf("output %q: onnxruntime_go could not return it; give it a type and shape in the model: %w", p.spec.Name, err)
		}
	}
	return false, fmt.Errorf("running model: %w", err)
}

// dynamicCapable: onnxruntime_go copies an ONNX Runtime-allocated output of this type
// correctly (Go-typed elements, or one byte per element).
func dynamicCapable(dt tensor.DType) bool { return scalarTypes[dt] || dt.Bits() == 8 }

// outputValues prepares one value per fetched output: a pinned Go buffer for a static
// shape, a scalar, or nil for ONNX Runtime to allocate. bufs[i] is the buffer of a
// preallocated output; modes[i] is how output i is fetched in this attempt.
func (s *Session) outputValues(pinner *goruntime.Pinner, reuse map[string]*tensor.Tensor) ([]ort.Value, [][]byte, []fetchMode, error) {
	out := make([]ort.Value, len(s.fetched))
	bufs := make([][]byte, len(s.fetched))
	modes := make([]fetchMode, len(s.fetched))
	for i, p := range s.fetched {
		var err error
		modes[i] = p.current()
		switch modes[i] {
		case fetchPrealloc:
			n := p.spec.DType.ByteSize(tensor.NumElements(p.spec.Shape))
			if r := reuse[p.spec.Name]; r != nil && r.DType == p.fetchType && int64(len(r.Data)) == n && n > 0 &&
				uintptr(unsafe.Pointer(&r.Data[0]))%elemAlign(p.fetchType) == 0 {
				bufs[i] = r.Data
			} else {
				bufs[i] = alignedBytes(int(n))
			}
			out[i], err = customTensor(p.spec.Shape, bufs[i], p.fetchType, pinner)
		case fetchScalar:
			out[i], err = newScalar(p.fetchType, nil)
		}
		if err != nil {
			for _, v := range out[:i] {
				if !isNil(v) {
					v.Destroy()
				}
			}
			return nil, nil, nil, fmt.Errorf("output %q: allocating: %w", p.spec.Name, err)
		}
	}
	return out, bufs, modes, nil
}

// checkInput compares a tensor with the model's declaration of that input.
func checkInput(spec ioSpec, t *tensor.Tensor) error {
	if t == nil {
		return errors.New("tensor is nil")
	}
	if spec.typed && !spec.tensor {
		return fmt.Errorf("is a %s input; only tensor inputs are supported", spec.kind)
	}
	if spec.typed && t.DType != spec.DType {
		return fmt.Errorf("element type %s, model wants %s", t.DType, spec.DType)
	}
	if spec.Shape != nil {
		if len(t.Shape) != len(spec.Shape) {
			return fmt.Errorf("shape %v has rank %d, model wants rank %d %s", t.Shape, len(t.Shape), len(spec.Shape), formatShape(spec.Spec))
		}
		for i, d := range spec.Shape {
			if d >= 0 && t.Shape[i] != d {
				return fmt.Errorf("shape %v: dimension %d is %d, model wants %d %s", t.Shape, i, t.Shape[i], d, formatShape(spec.Spec))
			}
		}
	}
	return t.Validate()
}

// isNil also catches the typed nil pointer onnxruntime_go stores in an output slot whose
// copy-out failed.
func isNil(v ort.Value) bool {
	return v == nil || reflect.ValueOf(v).IsNil()
}
