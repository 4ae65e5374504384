// Package shape infers element types and shapes of every value in an ONNX graph, carrying
// symbolic dimensions (dim_param names) through where the operator allows it. Passes need it
// to decide what is legal (a Reshape is a no-op only when the shapes agree, a MatMul becomes a
// Gemm only in 2-D) and to fold shape arithmetic: small integer tensors computed from shapes
// (Shape → Gather → Unsqueeze → Concat → Reshape) are tracked element by element, so a
// Reshape target built from static dimensions is known even in a model with a dynamic batch.
//
// Inference never fails on an unknown operator: its outputs stay unknown (or take the type
// the model's own value_info declares) and inference goes on downstream.
package shape

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Dim is one dimension: a known size, a symbolic name, or unknown.
type Dim struct {
	Value int64  // the size when >= 0; -1 when not known
	Param string // symbolic name when Value < 0 ("" = unknown)
}

// Known returns a dimension of size v.
func Known(v int64) Dim { return Dim{Value: v} }

// Sym returns a symbolic dimension.
func Sym(name string) Dim { return Dim{Value: -1, Param: name} }

// Unknown is a dimension nothing is known about.
var Unknown = Dim{Value: -1}

// IsKnown reports whether the size is known.
func (d Dim) IsKnown() bool { return d.Value >= 0 }

// Same reports whether two dimensions are certainly equal: the same size, or the same
// symbolic name (ONNX treats equal dim_params within a model as equal sizes).
func (d Dim) Same(o Dim) bool {
	if d.IsKnown() || o.IsKnown() {
		return d.Value == o.Value
	}
	return d.Param != "" && d.Param == o.Param
}

// String prints the size, the symbolic name, or "?".
func (d Dim) String() string {
	switch {
	case d.IsKnown():
		return strconv.FormatInt(d.Value, 10)
	case d.Param != "":
		return d.Param
	}
	return "?"
}

// Info is what inference knows about one value.
type Info struct {
	DType  tensor.DType // Undefined when not known
	Ranked bool         // whether the rank (len(Dims)) is known
	Dims   []Dim
}

// Rank is the number of dimensions, or -1 when unknown.
func (i *Info) Rank() int {
	if i == nil || !i.Ranked {
		return -1
	}
	return len(i.Dims)
}

// Static returns the shape when every dimension is known.
func (i *Info) Static() ([]int64, bool) {
	if i == nil || !i.Ranked {
		return nil, false
	}
	s := make([]int64, len(i.Dims))
	for k, d := range i.Dims {
		if !d.IsKnown() {
			return nil, false
		}
		s[k] = d.Value
	}
	return s, true
}

// Spec converts to a tensor.Spec: unknown dims are -1 (named in DimNames), unknown rank is a nil Shape.
func (i *Info) Spec(name string) tensor.Spec {
	s := tensor.Spec{Name: name}
	if i == nil {
		return s
	}
	s.DType = i.DType
	if !i.Ranked {
		return s
	}
	s.Shape = make([]int64, len(i.Dims))
	named := false
	names := make([]string, len(i.Dims))
	for k, d := range i.Dims {
		s.Shape[k] = d.Value
		names[k] = d.Param
		named = named || d.Param != ""
	}
	if named {
		s.DimNames = names
	}
	return s
}

// String prints e.g. "float32[N,3,224,224]" ("[?]" for unknown rank).
func (i *Info) String() string {
	if i == nil {
		return "unknown"
	}
	if !i.Ranked {
		return i.DType.String() + "[?]"
	}
	parts := make([]string, len(i.Dims))
	for k, d := range i.Dims {
		parts[k] = d.String()
	}
	return i.DType.String() + "[" + strings.Join(parts, ",") + "]"
}

// ranked builds an Info of known rank.
func ranked(dt tensor.DType, dims []Dim) *Info { return &Info{DType: dt, Ranked: true, Dims: dims} }

// StaticInfo builds an Info with every dimension known.
func StaticInfo(dt tensor.DType, shape []int64) *Info {
	d := make([]Dim, len(shape))
	for k, v := range shape {
		d[k] = Known(v)
	}
	return ranked(dt, d)
}

// Result holds what inference found about one graph.
type Result struct {
	Opset int64 // default-domain opset the rules were applied with
	infos map[string]*Info
	// values are the elements of small integer tensors (rank 0 or 1), each known,
	// symbolic (a dimension of some tensor) or unknown.
	values map[string][]Elem
	// consts are fully known tensors: initializers that cannot be overridden and outputs of
	// Constant nodes.
	consts map[string]*tensor.Tensor
	order  []string // node outputs in graph order, for deterministic value_info
}

// Info returns what is known about a value (nil when nothing is).
func (r *Result) Info(name string) *Info { return r.infos[name] }

// Values returns the elements of a small integer tensor as far as they are known.
func (r *Result) Values(name string) ([]Elem, bool) {
	v, ok := r.values[name]
	return v, ok
}

// KnownInts returns the elements of a small integer tensor when all of them are known.
func (r *Result) KnownInts(name string) ([]int64, bool) {
	v, ok := r.values[name]
	if !ok {
		return nil, false
	}
	out := make([]int64, len(v))
	for i, e := range v {
		if !e.Known {
			return nil, false
		}
		out[i] = e.V
	}
	return out, true
}

// Const returns the value of a constant (non-overridable initializer or Constant output).
func (r *Result) Const(name string) *tensor.Tensor { return r.consts[name] }

// Options tune inference.
type Options struct {
	// InputShapes fixes the dimensions of graph inputs (-1 keeps a dimension as declared).
	InputShapes map[string][]int64
	// Consts supplies values of tensors the caller has already computed (e.g. folded
	// constants not yet written back); they are treated like initializers.
	Consts map[string]*tensor.Tensor
}

// maxValueElems bounds the integer tensors whose elements are tracked.
const maxValueElems = 64

// Analyze runs inference over the main graph of m. Only malformed input shapes are errors.
func Analyze(m *onnx.Model, opt Options) (*Result, error) {
	g := m.Graph()
	r := &Result{Opset: m.Opset(""), infos: map[string]*Info{}, values: map[string][]Elem{}, consts: map[string]*tensor.Tensor{}}
	if r.Opset == 0 {
		r.Opset = 1
	}
	overridable := overridableInits(m)
	for _, t := range g.Initializer {
		name := t.GetName()
		r.infos[name] = StaticInfo(tensor.DType(t.GetDataType()), t.Dims)
		if overridable[name] {
			continue
		}
		if v, err := m.ToTensor(t); err == nil {
			r.setConst(name, v)
		}
	}
	for name, v := range opt.Consts {
		r.infos[name] = StaticInfo(v.DType, v.Shape)
		r.setConst(name, v)
	}
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = true
	}
	for _, vi := range g.Input {
		name := vi.GetName()
		if inits[name] && !overridable[name] {
			continue
		}
		info := FromValueInfo(vi)
		if s, ok := opt.InputShapes[name]; ok {
			if info == nil {
				info = &Info{}
			}
			if info.Ranked && len(info.Dims) != len(s) {
				return nil, fmt.Errorf("input %q has rank %d, --shape gives %d dimensions", name, len(info.Dims), len(s))
			}
			dims := make([]Dim, len(s))
			for k, v := range s {
				switch {
				case v >= 0:
					dims[k] = Known(v)
				case info.Ranked:
					dims[k] = info.Dims[k]
				default:
					dims[k] = Unknown
				}
			}
			info = ranked(info.DType, dims)
		}
		if info != nil {
			r.infos[name] = info
		}
	}
	for _, name := range onnx.SortedKeys(opt.InputShapes) {
		found := false
		for _, vi := range g.Input {
			found = found || vi.GetName() == name
		}
		if !found {
			return nil, fmt.Errorf("--shape names %q, which is not an input of the model", name)
		}
	}
	declared := map[string]*Info{}
	for _, vi := range g.ValueInfo {
		if i := FromValueInfo(vi); i != nil {
			declared[vi.GetName()] = i
		}
	}
	for _, vi := range g.Output {
		if i := FromValueInfo(vi); i != nil {
			declared[vi.GetName()] = i
		}
	}
	order, err := onnx.TopoOrder(g)
	if err != nil {
		return nil, err
	}
	for _, idx := range order {
		n := g.Node[idx]
		c := &nodeCtx{r: r, n: n, opset: r.Opset}
		if d := n.GetDomain(); d == "" || d == "ai.onnx" {
			if rule, ok := rules[n.GetOpType()]; ok {
				c.run(rule)
			}
		}
		for _, o := range n.Output {
			if o == "" {
				continue
			}
			r.order = append(r.order, o)
			r.infos[o] = merge(r.infos[o], declared[o])
		}
	}
	return r, nil
}

// run applies a rule, treating a panic from malformed attributes as "unknown" rather than
// failing the whole inference: the model's own checker is the place for such errors.
func (c *nodeCtx) run(rule func(*nodeCtx)) {
	defer func() {
		if recover() != nil {
			for _, o := range c.n.Output {
				delete(c.r.infos, o)
				delete(c.r.values, o)
			}
		}
	}()
	rule(c)
}

// merge combines an inferred Info with one declared in the model, preferring known facts.
func merge(inferred, declared *Info) *Info {
	if inferred == nil {
		return declared
	}
	if declared == nil {
		return inferred
	}
	out := *inferred
	if out.DType == tensor.Undefined {
		out.DType = declared.DType
	}
	if !out.Ranked && declared.Ranked {
		out.Ranked, out.Dims = true, declared.Dims
	} else if out.Ranked && declared.Ranked && len(out.Dims) == len(declared.Dims) {
		dims := append([]Dim(nil), out.Dims...)
		for k, d := range dims {
			if !d.IsKnown() && (declared.Dims[k].IsKnown() || d.Param == "") {
				dims[k] = declared.Dims[k]
			}
		}
		out.Dims = dims
	}
	return &out
}

// overridableInits are initializers that are also graph inputs in a model of IR version 4
// or later: the caller may feed another value, so they are not constants. Before IR 4 every
// initializer had to be listed as an input, and runtimes (ONNX Runtime among them) treat
// them as constants.
func overridableInits(m *onnx.Model) map[string]bool {
	out := map[string]bool{}
	if m.Proto.GetIrVersion() < 4 {
		return out
	}
	inits := map[string]bool{}
	for _, t := range m.Graph().Initializer {
		inits[t.GetName()] = true
	}
	for _, vi := range m.Graph().Input {
		if inits[vi.GetName()] {
			out[vi.GetName()] = true
		}
	}
	return out
}

// Overridable reports which initializers of m may be replaced at run time (see
// overridableInits); passes must not treat them as constants.
func Overridable(m *onnx.Model) map[string]bool { return overridableInits(m) }

func (r *Result) setConst(name string, v *tensor.Tensor) {
	r.consts[name] = v
	if vals, ok := constValues(v); ok {
		r.values[name] = vals
	}
}

// constValues lists the elements of a small integer tensor.
func constValues(v *tensor.Tensor) ([]Elem, bool) {
	if len(v.Shape) > 1 || v.Len() > maxValueElems {
		return nil, false
	}
	switch v.DType {
	case tensor.Int64, tensor.Int32, tensor.Int16, tensor.Int8, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Bool:
	default:
		return nil, false
	}
	f, err := v.AsFloat64()
	if err != nil {
		return nil, false
	}
	out := make([]Elem, len(f))
	for i, x := range f {
		out[i] = KnownElem(int64(x))
	}
	if v.DType == tensor.Int64 {
		for i, x := range v.Int64s() { // exact beyond 2^53
			out[i] = KnownElem(x)
		}
	}
	return out, true
}

// Elem is one element of a tracked integer tensor: a known value, or equal to a symbolic
// dimension, or unknown.
type Elem struct {
	V     int64
	Known bool
	Param string // when !Known: the dimension name the element equals ("" = unknown)
}

// KnownElem is an element of value v.
func KnownElem(v int64) Elem { return Elem{V: v, Known: true} }

// DimElem is the element holding the size of dimension d.
func DimElem(d Dim) Elem {
	if d.IsKnown() {
		return KnownElem(d.Value)
	}
	return Elem{Param: d.Param}
}

// Dim converts an element used as a size (negative known values become unknown).
func (e Elem) Dim() Dim {
	if e.Known {
		if e.V >= 0 {
			return Known(e.V)
		}
		return Unknown
	}
	return Dim{Value: -1, Param: e.Param}
}

// FromValueInfo converts a tensor-typed ValueInfoProto (nil for other types or no type).
func FromValueInfo(vi *onnxpb.ValueInfoProto) *Info {
	tt := vi.GetType().GetTensorType()
	if tt == nil {
		return nil
	}
	info := &Info{DType: tensor.DType(tt.GetElemType())}
	if tt.Shape == nil {
		return info
	}
	info.Ranked = true
	info.Dims = make([]Dim, len(tt.Shape.Dim))
	for k, d := range tt.Shape.Dim {
		switch v := d.GetValue().(type) {
		case *onnxpb.TensorShapeProto_Dimension_DimValue:
			if v.DimValue >= 0 {
				info.Dims[k] = Known(v.DimValue)
			} else {
				info.Dims[k] = Unknown
			}
		case *onnxpb.TensorShapeProto_Dimension_DimParam:
			info.Dims[k] = Sym(v.DimParam)
		default:
			info.Dims[k] = Unknown
		}
	}
	return info
}

// TypeProto converts an Info to the ONNX type (nil when the element type is unknown).
func (i *Info) TypeProto() *onnxpb.TypeProto {
	if i == nil || i.DType == tensor.Undefined {
		return nil
	}
	dt := int32(i.DType)
	tt := &onnxpb.TypeProto_Tensor{ElemType: &dt}
	if i.Ranked {
		tt.Shape = &onnxpb.TensorShapeProto{Dim: make([]*onnxpb.TensorShapeProto_Dimension, len(i.Dims))}
		for k, d := range i.Dims {
			dim := &onnxpb.TensorShapeProto_Dimension{}
			switch {
			case d.IsKnown():
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.Value}
			case d.Param != "":
				dim.Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}
			}
			tt.Shape.Dim[k] = dim
		}
	}
	return &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: tt}}
}

// Infer runs inference with the given input shapes, rewrites graph.value_info with what it
// found for every node output that is not a graph output (in graph order, so the bytes are
// deterministic) and returns a spec for every value it typed.
func Infer(m *onnx.Model, inputShapes map[string][]int64) (map[string]tensor.Spec, error) {
	r, err := Analyze(m, Options{InputShapes: inputShapes})
	if err != nil {
		return nil, err
	}
	r.WriteValueInfo(m.Graph())
	out := make(map[string]tensor.Spec, len(r.infos))
	for name, info := range r.infos {
		if info != nil && info.DType != tensor.Undefined {
			out[name] = info.Spec(name)
		}
	}
	return out, nil
}

// WriteValueInfo replaces g.value_info with the inferred types of node outputs that are not
// graph outputs. Entries the model declared for values inference could not type are kept.
func (r *Result) WriteValueInfo(g *onnxpb.GraphProto) {
	outputs := map[string]bool{}
	for _, o := range g.Output {
		outputs[o.GetName()] = true
	}
	old := map[string]*onnxpb.ValueInfoProto{}
	for _, vi := range g.ValueInfo {
		old[vi.GetName()] = vi
	}
	produced := map[string]bool{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			produced[o] = true
		}
	}
	var vis []*onnxpb.ValueInfoProto
	seen := map[string]bool{}
	for _, name := range r.order {
		if outputs[name] || seen[name] || !produced[name] {
			continue
		}
		seen[name] = true
		if tp := r.infos[name].TypeProto(); tp != nil {
			n := name
			vis = append(vis, &onnxpb.ValueInfoProto{Name: &n, Type: tp})
		} else if vi := old[name]; vi != nil {
			vis = append(vis, vi)
		}
	}
	g.ValueInfo = vis
}
