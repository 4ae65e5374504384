package prune

import (
	"fmt"
	"math"
	"path"
	"strconv"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
	"google.golang.org/protobuf/proto"
)

// graph is the model being pruned, with its constants by name. Every method reads weights
// through it, so a Constant node and an initializer look the same to them.
type graph struct {
	m       *onnx.Model
	g       *onnxpb.GraphProto
	inits   map[string]int // initializer name → index in g.Initializer
	inputs  map[string]int // graph input name → index in g.Input
	outputs map[string]bool
	// oldIR: before IR version 4 every initializer had to be listed as a graph input too,
	// so such an input is still a constant (and a new initializer needs an input entry).
	oldIR bool
	names map[string]bool // every value and initializer name, for fresh names
	opset int64
}

func newGraph(m *onnx.Model) *graph { return newGraphOn(m, m.Proto.Graph) }

// newGraphOn works on g, a graph of m or a view of it; m resolves tensor data and opsets.
func newGraphOn(m *onnx.Model, g *onnxpb.GraphProto) *graph {
	gr := &graph{m: m, g: g, oldIR: m.Proto.GetIrVersion() < 4, opset: m.Opset("")}
	gr.reindex()
	return gr
}

func (gr *graph) reindex() {
	gr.inits = map[string]int{}
	gr.inputs = map[string]int{}
	gr.outputs = map[string]bool{}
	gr.names = map[string]bool{}
	for i, t := range gr.g.Initializer {
		gr.inits[t.GetName()] = i
		gr.names[t.GetName()] = true
	}
	for i, v := range gr.g.Input {
		gr.inputs[v.GetName()] = i
		gr.names[v.GetName()] = true
	}
	for _, v := range gr.g.Output {
		gr.outputs[v.GetName()] = true
	}
	for _, n := range gr.g.Node {
		for _, o := range n.Output {
			gr.names[o] = true
		}
	}
}

// constant returns the initializer called name when its value cannot change at run time
// (an initializer that is also a graph input is only a default, from IR version 4 on).
func (gr *graph) constant(name string) *onnxpb.TensorProto {
	i, ok := gr.inits[name]
	if !ok || name == "" {
		return nil
	}
	if _, isInput := gr.inputs[name]; isInput && !gr.oldIR {
		return nil
	}
	return gr.g.Initializer[i]
}

// ints reads a constant integer tensor (shape, axes, pads) as int64s.
func (gr *graph) ints(name string) ([]int64, bool) {
	t := gr.constant(name)
	if t == nil {
		return nil, false
	}
	v, err := gr.m.ToTensor(t)
	if err != nil {
		return nil, false
	}
	f, err := v.AsFloat64()
	if err != nil {
		return nil, false
	}
	out := make([]int64, len(f))
	for i, x := range f {
		out[i] = int64(x)
	}
	return out, true
}

// floats reads a constant tensor as float32s (a new slice).
func (gr *graph) floats(t *onnxpb.TensorProto) ([]float32, error) {
	return gr.m.Float32s(t)
}

// fresh returns a name no value or initializer has yet, derived from base.
func (gr *graph) fresh(base string) string {
	name := base
	for i := 1; gr.names[name]; i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	gr.names[name] = true
	return name
}

// addInitializer appends t; before IR version 4 it is declared as a graph input as well.
func (gr *graph) addInitializer(t *onnxpb.TensorProto) {
	gr.inits[t.GetName()] = len(gr.g.Initializer)
	gr.g.Initializer = append(gr.g.Initializer, t)
	gr.names[t.GetName()] = true
	if gr.oldIR {
		gr.inputs[t.GetName()] = len(gr.g.Input)
		gr.g.Input = append(gr.g.Input, valueInfoFor(t))
	}
}

// setInitializer replaces the initializer of the same name (keeping its place) and keeps a
// graph input that declares it in step with the new shape.
func (gr *graph) setInitializer(t *onnxpb.TensorProto) {
	i, ok := gr.inits[t.GetName()]
	if !ok {
		gr.addInitializer(t)
		return
	}
	gr.g.Initializer[i] = t
	if j, ok := gr.inputs[t.GetName()]; ok {
		gr.g.Input[j] = valueInfoFor(t)
	}
}

// removeUnused drops the named initializers (and their graph-input entries) that no node
// and no graph output reads any more.
func (gr *graph) removeUnused(names map[string]bool) {
	if len(names) == 0 {
		return
	}
	used := map[string]bool{}
	ix := onnx.NewIndex(gr.g)
	for name := range ix.Consumers {
		used[name] = true
	}
	for _, o := range gr.g.Output {
		used[o.GetName()] = true
	}
	var inits []*onnxpb.TensorProto
	for _, t := range gr.g.Initializer {
		if names[t.GetName()] && !used[t.GetName()] {
			continue
		}
		inits = append(inits, t)
	}
	var inputs []*onnxpb.ValueInfoProto
	for _, v := range gr.g.Input {
		if _, isInit := gr.inits[v.GetName()]; isInit && names[v.GetName()] && !used[v.GetName()] {
			continue
		}
		inputs = append(inputs, v)
	}
	gr.g.Initializer, gr.g.Input = inits, inputs
	gr.reindex()
}

func valueInfoFor(t *onnxpb.TensorProto) *onnxpb.ValueInfoProto {
	shape := &onnxpb.TensorShapeProto{}
	for _, d := range t.Dims {
		shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(t.GetName()), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(t.GetDataType()), Shape: shape}}}}
}

// newTensor builds an initializer holding raw little-endian data.
func newTensor(name string, dt tensor.DType, dims []int64, raw []byte) *onnxpb.TensorProto {
	return &onnxpb.TensorProto{Name: proto.String(name), DataType: proto.Int32(int32(dt)),
		Dims: append([]int64{}, dims...), RawData: raw}
}

// materializeConstants turns Constant nodes and ConstantOfShape nodes of constant shape into
// initializers, so weights held in nodes (PaddlePaddle exports, the ONNX "light" models) can
// be read, zeroed and sliced like any other. It returns how many nodes it replaced.
func (gr *graph) materializeConstants() (int, error) {
	var keep []*onnxpb.NodeProto
	converted := 0
	for _, n := range gr.g.Node {
		t, err := gr.constantValue(n)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", onnx.NodeLabel(n), err)
		}
		if t == nil {
			keep = append(keep, n)
			continue
		}
		gr.addInitializer(t)
		converted++
	}
	gr.g.Node = keep
	gr.reindex()
	return converted, nil
}

// maxMaterialize bounds the bytes one ConstantOfShape may expand to (a corrupt or absurd
// shape must not exhaust memory); larger fills stay nodes.
const maxMaterialize = 1 << 30

// constantValue is the tensor a Constant or ConstantOfShape node produces, or nil when the
// node is neither or its value is not known without running the graph.
func (gr *graph) constantValue(n *onnxpb.NodeProto) (*onnxpb.TensorProto, error) {
	if d := n.GetDomain(); (d != "" && d != "ai.onnx") || len(n.Output) != 1 {
		return nil, nil
	}
	out := n.Output[0]
	switch n.GetOpType() {
	case "Constant":
		if len(n.Attribute) != 1 {
			return nil, nil
		}
		a := n.Attribute[0]
		switch a.GetName() {
		case "value":
			if a.T == nil || a.T.GetDataType() == int32(tensor.String) {
				return nil, nil
			}
			b, err := gr.m.TensorData(a.T)
			if err != nil {
				return nil, err
			}
			return newTensor(out, tensor.DType(a.T.GetDataType()), a.T.Dims, b), nil
		case "value_float":
			return onnx.FromTensor(out, tensor.FromFloat32(nil, []float32{a.GetF()})), nil
		case "value_floats":
			return onnx.FromTensor(out, tensor.FromFloat32([]int64{int64(len(a.Floats))}, a.Floats)), nil
		case "value_int":
			return onnx.FromTensor(out, tensor.FromInt64(nil, []int64{a.GetI()})), nil
		case "value_ints":
			return onnx.FromTensor(out, tensor.FromInt64([]int64{int64(len(a.Ints))}, a.Ints)), nil
		}
	case "ConstantOfShape":
		if len(n.Input) != 1 {
			return nil, nil
		}
		dims, ok := gr.ints(n.Input[0])
		if !ok {
			return nil, nil
		}
		count := tensor.NumElements(dims)
		dt, fill := tensor.Float32, []byte{0, 0, 0, 0}
		for _, a := range n.Attribute {
			if a.GetName() == "value" && a.T != nil {
				b, err := gr.m.TensorData(a.T)
				if err != nil {
					return nil, err
				}
				dt, fill = tensor.DType(a.T.GetDataType()), b
			}
		}
		if count < 0 || dt.Bits()%8 != 0 || len(fill) != dt.Bits()/8 || count*int64(len(fill)) > maxMaterialize {
			return nil, nil
		}
		raw := make([]byte, count*int64(len(fill)))
		for i := 0; i < len(raw); i += len(fill) {
			copy(raw[i:], fill)
		}
		return newTensor(out, dt, dims, raw), nil
	}
	return nil, nil
}

// parameters counts the elements of every initializer: the weight count inspect reports.
func (gr *graph) parameters() int64 {
	var n int64
	for _, t := range gr.g.Initializer {
		if e := tensor.NumElements(t.Dims); e > 0 {
			n += e
		}
	}
	return n
}

// ---- attributes ----

func attr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func attrInt(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := attr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

func attrInts(n *onnxpb.NodeProto, name string) ([]int64, bool) {
	if a := attr(n, name); a != nil {
		return a.Ints, true
	}
	return nil, false
}

func setAttrInt(n *onnxpb.NodeProto, name string, v int64) {
	if a := attr(n, name); a != nil {
		a.I = proto.Int64(v)
		return
	}
	t := onnxpb.AttributeProto_INT
	n.Attribute = append(n.Attribute, &onnxpb.AttributeProto{Name: proto.String(name), Type: &t, I: proto.Int64(v)})
}

// input returns the i-th input name of n, "" when absent.
func input(n *onnxpb.NodeProto, i int) string {
	if i < len(n.Input) {
		return n.Input[i]
	}
	return ""
}

// ---- selection by --include / --exclude ----

// matcher decides which nodes and tensors a run may touch. A pattern matches a node name,
// an op type or an initializer name, exactly or as a shell glob ("conv*", "*.w_0").
type matcher struct {
	include, exclude []string
}

func match(patterns []string, names ...string) bool {
	for _, p := range patterns {
		for _, s := range names {
			if s == "" {
				continue
			}
			if p == s {
				return true
			}
			if ok, err := path.Match(p, s); err == nil && ok {
				return true
			}
		}
	}
	return false
}

// allowed: not excluded, and included when an include list is given.
func (mt matcher) allowed(names ...string) bool {
	if match(mt.exclude, names...) {
		return false
	}
	return len(mt.include) == 0 || match(mt.include, names...)
}

// ---- raw tensor data ----

// elemSize is the byte width of one element, 0 for sub-byte and string types that
// pruning cannot address element by element.
func elemSize(dt tensor.DType) int {
	if dt == tensor.String || dt.Bits() == 0 || dt.Bits()%8 != 0 {
		return 0
	}
	return dt.Bits() / 8
}

// sliceAxis keeps the listed indices of one axis of a row-major tensor.
func sliceAxis(b []byte, dims []int64, elem, axis int, keep []int) ([]byte, []int64) {
	outer := int(tensor.NumElements(dims[:axis]))
	d := int(dims[axis])
	inner := int(tensor.NumElements(dims[axis+1:])) * elem
	out := make([]byte, 0, outer*len(keep)*inner)
	for o := 0; o < outer; o++ {
		base := o * d * inner
		for _, k := range keep {
			out = append(out, b[base+k*inner:base+(k+1)*inner]...)
		}
	}
	nd := append([]int64{}, dims...)
	nd[axis] = int64(len(keep))
	return out, nd
}

// absBits orders float magnitudes as integers: for IEEE floats with the sign bit cleared,
// a larger bit pattern is a larger magnitude (NaN sorts above +Inf, so it is never pruned first).
func absBits(v float32) uint32 { return math.Float32bits(v) &^ (1 << 31) }
