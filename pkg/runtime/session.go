package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Session is a loaded model. Run may be called from several goroutines at once (ONNX
// Runtime sessions are thread-safe); Close must not race with Run.
type Session struct {
	mu       sync.RWMutex
	sess     *ort.DynamicAdvancedSession
	inputs   []ioSpec
	outputs  []*fetchPlan // graph outputs, then extra outputs, as the caller sees them
	fetched  []*fetchPlan // the subset handed to ONNX Runtime, in fetch order
	inIndex  map[string]int
	outIndex map[string]int
	level    OptLevel
	provider string
}

// fetchMode says how Run obtains an output. onnxruntime_go v1.35 copies an output that
// ONNX Runtime allocated (the only way to get one of unknown shape) correctly only for
// the element types it has Go types for and only when the rank is at least 1; it copies
// one byte per element for float16/bfloat16 and fails, and fails for every scalar.
// So Run gives ONNX Runtime a Go buffer whenever the shape is static, asks for a
// float32/int8 copy (a Cast appended to the graph, exact) of a dynamically shaped
// float16, bfloat16 or int4 output, and lets ONNX Runtime allocate the rest.
type fetchMode int

const (
	fetchPrealloc fetchMode = iota // static shape, rank >= 1: Run passes a pinned Go buffer
	fetchScalar                    // rank 0 of a type onnxruntime_go has a Scalar for
	fetchDynamic                   // ONNX Runtime allocates; onnxruntime_go copies it out
	fetchNone                      // cannot be fetched; reason says why
)

type fetchPlan struct {
	spec      ioSpec       // the output as the caller sees it
	ortName   string       // the tensor actually fetched: spec.Name or its widened copy
	fetchType tensor.DType // element type of ortName
	mode      fetchMode
	reason    string
	// Learned from failed runs (see Session.learn): the declared shape is wrong, or an
	// output of unknown rank is a scalar.
	declaredWrong atomic.Bool
	scalarSeen    atomic.Bool
}

// current is how the output is fetched now, after what earlier runs taught.
func (p *fetchPlan) current() fetchMode {
	switch {
	case p.scalarSeen.Load():
		return fetchScalar
	case p.declaredWrong.Load():
		return fetchDynamic
	}
	return p.mode
}

// NewSession loads a model from its serialized bytes. External-data files are found in
// opts.ExternalDataDir.
func NewSession(model []byte, opts Options) (*Session, error) {
	return newSession(model, "", opts)
}

// NewSessionFromFile loads the model at path; external-data files are found beside it
// unless opts.ExternalDataDir says otherwise.
func NewSessionFromFile(path string, opts Options) (*Session, error) {
	// Mapped, not read: the session needs the graph's inputs and outputs, and ONNX Runtime
	// reads the file itself unless the graph has to be rewritten.
	mf, err := fsutil.Map(path)
	if err != nil {
		return nil, fmt.Errorf("opening model: %w", err)
	}
	defer mf.Close()
	s, err := newSession(mf.Data, path, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

func newSession(model []byte, path string, opts Options) (*Session, error) {
	if err := ensureInit(); err != nil {
		return nil, err
	}
	if len(model) == 0 {
		return nil, errors.New("empty model")
	}
	// External-data files are found in ExternalDataDir, else beside the model file
	// (ONNX Runtime honours the folder setting for file sessions too).
	extDir := opts.ExternalDataDir
	if extDir == "" && path != "" {
		extDir = filepath.Dir(path)
	}
	// Options first: a bad level or a GPU provider missing from the library fails before
	// any work on the model.
	so, err := opts.sessionOptions(extDir)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	// Unsafe decoding aliases model: nothing decoded may outlive this call unless cloned
	// (graphIO clones the names it keeps).
	m := &onnxpb.ModelProto{}
	if err := m.UnmarshalVTUnsafe(model); err != nil {
		return nil, fmt.Errorf("decoding model: %w", err)
	}
	nOut := len(m.GetGraph().GetOutput())
	inputs, outputs, err := graphIO(m, opts.ExtraOutputs)
	if err != nil {
		return nil, err
	}
	rewritten := len(m.Graph.Output) != nOut
	if untyped(outputs) {
		// Fetching needs the element type (see fetchMode); ONNX Runtime infers it.
		// Best effort: without it Run still tries.
		if infos, err := inferOutputs(m, extDir); err == nil {
			fillFromORT(outputs, infos)
		}
	}
	s := &Session{
		inputs:   inputs,
		inIndex:  make(map[string]int),
		outIndex: make(map[string]int),
		level:    opts.GraphOptLevel.Effective(),
		provider: strings.ToLower(opts.ExecutionProvider),
	}
	if s.provider == "" {
		s.provider = ProviderCPU
	}
	for i, in := range inputs {
		s.inIndex[in.Name] = i
	}
	for i, o := range outputs {
		p := planOutput(o)
		if p.fetchType != o.DType {
			p.ortName = addWidening(m, o.Name, p.fetchType, outputShapeProto(m, o.Name))
			rewritten = true
		}
		s.outputs = append(s.outputs, p)
		s.outIndex[o.Name] = i
		if p.mode != fetchNone {
			s.fetched = append(s.fetched, p)
		}
	}

	inNames := make([]string, len(inputs))
	for i, in := range inputs {
		inNames[i] = in.Name
	}
	fetchNames := make([]string, len(s.fetched))
	for i, p := range s.fetched {
		fetchNames[i] = p.ortName
	}
	if path != "" && !rewritten {
		s.sess, err = ort.NewDynamicAdvancedSession(path, inNames, fetchNames, so)
	} else {
		if rewritten {
			if model, err = m.MarshalVT(); err != nil {
				return nil, fmt.Errorf("encoding the rewritten model: %w", err)
			}
		}
		s.sess, err = ort.NewDynamicAdvancedSessionWithONNXData(model, inNames, fetchNames, so)
	}
	if err != nil {
		return nil, fmt.Errorf("creating ONNX Runtime session: %w", err)
	}
	return s, nil
}

// inferOutputs asks ONNX Runtime for the graph's output types through a throw-away
// session. onnxruntime_go can list a session's outputs only for a model it loads itself:
// from bytes with default options (fine, unless initializers live in external files),
// or from a file with options. So a model with external data is written to a temporary
// file (small: its weights are elsewhere) and pointed at its data folder.
func inferOutputs(m *onnxpb.ModelProto, extDir string) ([]ort.InputOutputInfo, error) {
	b, err := m.MarshalVT()
	if err != nil {
		return nil, err
	}
	if !hasExternalData(m) {
		_, infos, err := ort.GetInputOutputInfoWithONNXData(b)
		return infos, err
	}
	f, err := os.CreateTemp("", "optimctl-probe-*.onnx")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	so, err := Options{GraphOptLevel: OptDisabled, IntraOpThreads: 1}.sessionOptions(extDir)
	if err != nil {
		return nil, err
	}
	defer so.Destroy()
	_, infos, err := ort.GetInputOutputInfoWithOptions(f.Name(), so)
	return infos, err
}

func hasExternalData(m *onnxpb.ModelProto) bool {
	for _, t := range m.GetGraph().GetInitializer() {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
			return true
		}
	}
	return false
}

func untyped(outs []ioSpec) bool {
	for _, o := range outs {
		if !o.typed {
			return true
		}
	}
	return false
}

// fillFromORT types the untyped outputs from ONNX Runtime's inferred output info. A
// reported rank of 0 stays "unknown": onnxruntime_go reports unknown ranks that way too.
func fillFromORT(outs []ioSpec, infos []ort.InputOutputInfo) {
	for i := range outs {
		if outs[i].typed {
			continue
		}
		for _, info := range infos {
			if info.Name != outs[i].Name {
				continue
			}
			if info.OrtValueType != ort.ONNXTypeTensor {
				outs[i].typed, outs[i].kind = true, info.OrtValueType.String()
				break
			}
			dt, ok := fromORT(info.DataType)
			if !ok {
				break
			}
			outs[i].typed, outs[i].tensor, outs[i].DType = true, true, dt
			if len(info.Dimensions) > 0 {
				outs[i].Shape = append([]int64(nil), info.Dimensions...)
			}
			break
		}
	}
}

func planOutput(o ioSpec) *fetchPlan {
	p := &fetchPlan{spec: o, ortName: o.Name, fetchType: o.DType, mode: fetchDynamic}
	rank0 := o.Shape != nil && len(o.Shape) == 0
	switch {
	case !o.typed:
		// Unknown type (ONNX Runtime could not be asked): best effort.
	case !o.tensor:
		p.mode, p.reason = fetchNone, o.kind+" outputs are not supported"
	case o.DType == tensor.String:
		if rank0 {
			p.mode, p.reason = fetchNone, "scalar string outputs are not supported by onnxruntime_go"
		}
	case tensor.NumElements(o.Shape) >= 0 && len(o.Shape) > 0 && o.DType.Bits() > 0:
		p.mode = fetchPrealloc
	default:
		if w, ok := widenTo[o.DType]; ok {
			p.fetchType = w
		}
		_, goTyped := scalarTypes[p.fetchType]
		switch {
		case goTyped && rank0:
			p.mode = fetchScalar
		case goTyped:
		case p.fetchType.Bits() == 8 && !rank0:
			// One byte per element: onnxruntime_go's byte copy is right.
		default:
			p.mode, p.reason = fetchNone, fmt.Sprintf("onnxruntime_go cannot return a %s output of shape %s; give it a static shape in graph.output",
				o.DType, formatShape(o.Spec))
		}
	}
	return p
}

// Inputs describes the tensors Run needs: graph inputs that no initializer backs. A
// negative dimension is dynamic (DimNames holds its symbolic name when the model gives
// one); a nil Shape means the rank is unknown, while a scalar has an empty Shape.
func (s *Session) Inputs() []tensor.Spec {
	out := make([]tensor.Spec, len(s.inputs))
	for i, in := range s.inputs {
		out[i] = cloneSpec(in.Spec)
	}
	return out
}

// Outputs describes what Run returns: the graph outputs, then Options.ExtraOutputs.
func (s *Session) Outputs() []tensor.Spec {
	out := make([]tensor.Spec, len(s.outputs))
	for i, p := range s.outputs {
		out[i] = cloneSpec(p.spec.Spec)
	}
	return out
}

// OptLevel is the graph optimisation level the session was built with, for reports.
func (s *Session) OptLevel() OptLevel { return s.level }

// ExecutionProvider is the provider the session was built with ("cpu", "cuda", "tensorrt").
func (s *Session) ExecutionProvider() string { return s.provider }

// Close releases the ONNX Runtime session. It is safe to call twice.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.sess == nil {
		return nil
	}
	err := s.sess.Destroy()
	s.sess = nil
	return err
}

func cloneSpec(s tensor.Spec) tensor.Spec {
	c := s
	if s.Shape != nil {
		c.Shape = append([]int64{}, s.Shape...)
	}
	if s.DimNames != nil {
		c.DimNames = append([]string(nil), s.DimNames...)
	}
	return c
}

// formatShape writes a spec's shape with symbolic names for dynamic dimensions, e.g.
// [batch 3 48 192]; "?" marks an unnamed dynamic dimension.
func formatShape(s tensor.Spec) string {
	if s.Shape == nil {
		return "[unknown rank]"
	}
	parts := make([]string, len(s.Shape))
	for i, d := range s.Shape {
		switch {
		case d >= 0:
			parts[i] = fmt.Sprint(d)
		case i < len(s.DimNames) && s.DimNames[i] != "":
			parts[i] = s.DimNames[i]
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}
