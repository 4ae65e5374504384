package runtime

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// The session's inputs and outputs come from the ONNX graph itself rather than from a
// second, throw-away ONNX Runtime session (onnxruntime_go's only way to list them):
// decoding aliases the model bytes and costs well under a millisecond even for
// hundreds of megabytes, and the graph also holds the symbolic dimension names that
// onnxruntime_go does not pass on. ONNX Runtime is asked only for the type of an
// ExtraOutputs tensor that the graph leaves untyped.

// ioSpec is a graph input or output as the session sees it.
type ioSpec struct {
	tensor.Spec
	typed  bool   // element type known
	tensor bool   // a tensor (not a sequence, map or optional); meaningful when typed
	kind   string // "sequence", "map", ... for non-tensors, for error messages
}

// specFromType converts a ValueInfo's type. A nil Shape means the rank is unknown; a
// scalar has an empty, non-nil Shape.
func specFromType(name string, tp *onnxpb.TypeProto) ioSpec {
	s := ioSpec{Spec: tensor.Spec{Name: name}}
	if tp == nil || tp.GetValue() == nil {
		return s
	}
	tt := tp.GetTensorType()
	if tt == nil {
		s.typed = true
		s.kind = typeKind(tp)
		return s
	}
	s.typed, s.tensor = true, true
	s.DType = tensor.DType(tt.GetElemType())
	if tt.Shape == nil {
		return s
	}
	s.Shape = make([]int64, len(tt.Shape.Dim))
	named := false
	names := make([]string, len(tt.Shape.Dim))
	for i, d := range tt.Shape.Dim {
		s.Shape[i] = -1
		switch v := d.GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			if v.DimValue >= 0 {
				s.Shape[i] = v.DimValue
			}
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			names[i] = strings.Clone(v.DimParam)
			named = named || v.DimParam != ""
		}
	}
	if named {
		s.DimNames = names
	}
	return s
}

func typeKind(tp *onnxpb.TypeProto) string {
	switch {
	case tp.GetSequenceType() != nil:
		return "sequence"
	case tp.GetMapType() != nil:
		return "map"
	case tp.GetOptionalType() != nil:
		return "optional"
	case tp.GetSparseTensorType() != nil:
		return "sparse tensor"
	case tp.GetOpaqueType() != nil:
		return "opaque"
	}
	return "unknown"
}

// graphIO lists the model's feedable inputs (graph inputs that no initializer backs,
// as ONNX Runtime counts them) and its outputs followed by the requested extra outputs.
// It appends the extra outputs to the graph, untyped unless value_info (or an input or
// initializer of that name) gives the type: ONNX Runtime infers the type of an untyped
// graph output itself.
func graphIO(m *onnxpb.ModelProto, extra []string) (inputs, outputs []ioSpec, err error) {
	g := m.GetGraph()
	if g == nil {
		return nil, nil, fmt.Errorf("model has no graph")
	}
	inits := make(map[string]*onnxpb.TensorProto, len(g.Initializer))
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	for _, vi := range g.Input {
		if _, ok := inits[vi.GetName()]; ok {
			continue
		}
		inputs = append(inputs, specFromType(strings.Clone(vi.GetName()), vi.GetType()))
	}
	seen := make(map[string]bool)
	for _, vi := range g.Output {
		seen[vi.GetName()] = true
		outputs = append(outputs, specFromType(strings.Clone(vi.GetName()), vi.GetType()))
	}
	if len(extra) == 0 {
		return inputs, outputs, nil
	}
	known := make(map[string]*onnxpb.TypeProto)
	produced := make(map[string]bool)
	for _, vi := range g.Input {
		known[vi.GetName()] = vi.GetType()
		produced[vi.GetName()] = true
	}
	for _, vi := range g.ValueInfo {
		if vi.GetType() != nil {
			known[vi.GetName()] = vi.GetType()
		}
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			produced[o] = true
		}
	}
	for _, name := range extra {
		if seen[name] {
			continue
		}
		seen[name] = true
		tp := known[name]
		if init, ok := inits[name]; ok {
			tp = initializerType(init)
			produced[name] = true
		}
		if !produced[name] || name == "" {
			return nil, nil, fmt.Errorf("extra output %q: no tensor of that name in the main graph (tensors inside If/Loop/Scan bodies cannot be exposed)", name)
		}
		vi := &onnxpb.ValueInfoProto{Name: proto.String(name)}
		if tp.GetTensorType() != nil {
			vi.Type = tp
		}
		g.Output = append(g.Output, vi)
		outputs = append(outputs, specFromType(name, vi.Type))
	}
	return inputs, outputs, nil
}

func initializerType(t *onnxpb.TensorProto) *onnxpb.TypeProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range t.Dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{
			Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
		ElemType: proto.Int32(t.GetDataType()), Shape: shape}}}
}

// widenTo is the element type a dynamically shaped output is fetched as when
// onnxruntime_go cannot hand it back directly (see fetchPlan): a Cast added to the graph
// converts it exactly, and Run narrows it back.
var widenTo = map[tensor.DType]tensor.DType{
	tensor.Float16:  tensor.Float32,
	tensor.BFloat16: tensor.Float32,
	tensor.Int4:     tensor.Int8,
	tensor.Uint4:    tensor.Uint8,
}

// addWidening appends Cast(name -> to) and its result as a graph output, returning the
// new tensor's name.
func addWidening(m *onnxpb.ModelProto, name string, to tensor.DType, shape *onnxpb.TensorShapeProto) string {
	g := m.Graph
	taken := make(map[string]bool)
	for _, n := range g.Node {
		for _, o := range n.Output {
			taken[o] = true
		}
	}
	for _, vi := range g.Input {
		taken[vi.GetName()] = true
	}
	for _, t := range g.Initializer {
		taken[t.GetName()] = true
	}
	wide := name + "__optimctl_" + to.String()
	for i := 2; taken[wide]; i++ {
		wide = fmt.Sprintf("%s__optimctl_%s_%d", name, to, i)
	}
	g.Node = append(g.Node, &onnxpb.NodeProto{
		Name:   proto.String(wide),
		OpType: proto.String("Cast"),
		Domain: proto.String(""),
		Input:  []string{name},
		Output: []string{wide},
		Attribute: []*onnxpb.AttributeProto{{
			Name: proto.String("to"),
			Type: onnxpb.AttributeProto_INT.Enum(),
			I:    proto.Int64(int64(to)),
		}},
	})
	g.Output = append(g.Output, &onnxpb.ValueInfoProto{
		Name: proto.String(wide),
		Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{
			ElemType: proto.Int32(int32(to)), Shape: shape}}},
	})
	return wide
}

// outputShapeProto finds the declared shape of graph output name (nil when absent).
func outputShapeProto(m *onnxpb.ModelProto, name string) *onnxpb.TensorShapeProto {
	for _, vi := range m.Graph.Output {
		if vi.GetName() == name {
			return vi.GetType().GetTensorType().GetShape()
		}
	}
	return nil
}
