package quantize

import (
	"fmt"
	"slices"
	"sort"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// editor is the quantizer's view of the main graph while it rewrites it: fresh names that
// collide with nothing, initializers by name, and node builders. The graph itself stays the
// source of truth; the maps only speed up look-ups and are updated by the helpers below.
type editor struct {
	m     *onnx.Model
	g     *onnxpb.GraphProto
	names map[string]bool // every tensor and node name in use
	inits map[string]*onnxpb.TensorProto
}

func newEditor(m *onnx.Model) *editor {
	g := m.Proto.Graph
	e := &editor{m: m, g: g, names: map[string]bool{}, inits: map[string]*onnxpb.TensorProto{}}
	for _, t := range g.Initializer {
		e.inits[t.GetName()] = t
		e.names[t.GetName()] = true
	}
	for _, v := range g.Input {
		e.names[v.GetName()] = true
	}
	for _, v := range g.Output {
		e.names[v.GetName()] = true
	}
	for _, n := range g.Node {
		if n.GetName() != "" {
			e.names[n.GetName()] = true
		}
		for _, o := range n.Output {
			e.names[o] = true
		}
		for _, in := range n.Input {
			e.names[in] = true
		}
	}
	return e
}

// fresh returns base, or base_2, base_3, ... the first that is unused, and reserves it.
// Names derive from the tensor they belong to, so the output is readable and deterministic.
func (e *editor) fresh(base string) string {
	name := base
	for i := 2; e.names[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	e.names[name] = true
	return name
}

// addInit adds an initializer holding v under a fresh name derived from base.
func (e *editor) addInit(base string, v *tensor.Tensor) string {
	name := e.fresh(base)
	t := onnx.FromTensor(name, v)
	e.g.Initializer = append(e.g.Initializer, t)
	e.inits[name] = t
	return name
}

// isConst reports whether name is an initializer that no graph input can override.
func (e *editor) isConst(name string) bool {
	if _, ok := e.inits[name]; !ok {
		return false
	}
	for _, v := range e.g.Input {
		if v.GetName() == name {
			return false
		}
	}
	return true
}

// floats decodes a float initializer (any float width) into a new slice.
func (e *editor) floats(name string) ([]float32, []int64, error) {
	t := e.inits[name]
	if t == nil {
		return nil, nil, fmt.Errorf("tensor %q is not an initializer", name)
	}
	v, err := e.m.Float32s(t)
	if err != nil {
		return nil, nil, err
	}
	return v, append([]int64(nil), t.Dims...), nil
}

// dropNodes removes the nodes a fold replaced, then the initializers only they read.
func (e *editor) dropNodes(removed map[*onnxpb.NodeProto]bool) {
	e.g.Node = slices.DeleteFunc(e.g.Node, func(n *onnxpb.NodeProto) bool { return removed[n] })
	e.removeUnusedInits()
}

// removeUnusedInits drops initializers that no node, graph output or subgraph reads, so
// float weights replaced by their quantized copies do not stay in the file.
func (e *editor) removeUnusedInits() {
	used := map[string]bool{}
	for _, n := range e.g.Node {
		for _, in := range nodeReads(n) {
			used[in] = true
		}
	}
	for _, o := range e.g.Output {
		used[o.GetName()] = true
	}
	removed := map[string]bool{}
	keep := e.g.Initializer[:0]
	for _, t := range e.g.Initializer {
		if used[t.GetName()] {
			keep = append(keep, t)
		} else {
			removed[t.GetName()] = true
			delete(e.inits, t.GetName())
		}
	}
	e.g.Initializer = keep
	// Old models (IR < 4) also list every initializer as a graph input: drop those too.
	ins := e.g.Input[:0]
	for _, v := range e.g.Input {
		if !removed[v.GetName()] {
			ins = append(ins, v)
		}
	}
	e.g.Input = ins
}

// nodeReads lists what a node reads, including names its subgraphs capture.
func nodeReads(n *onnxpb.NodeProto) []string {
	out := append([]string(nil), n.Input...)
	for _, a := range n.Attribute {
		subs := a.Graphs
		if a.G != nil {
			subs = append([]*onnxpb.GraphProto{a.G}, subs...)
		}
		for _, sg := range subs {
			for _, sn := range sg.Node {
				out = append(out, nodeReads(sn)...)
			}
			for _, o := range sg.Output {
				out = append(out, o.GetName())
			}
		}
	}
	return out
}

// newNode builds a default-domain node (domain "com.microsoft" for ORT's contrib ops).
func newNode(op, domain, name string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: ins, Output: outs, Attribute: attrs}
	if domain != "" {
		n.Domain = proto.String(domain)
	}
	return n
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func attrInts(name string, v []int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func attrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// getAttr finds an attribute by name (nil when absent).
func getAttr(n *onnxpb.NodeProto, name string) *onnxpb.AttributeProto {
	for _, a := range n.Attribute {
		if a.GetName() == name {
			return a
		}
	}
	return nil
}

func intAttr(n *onnxpb.NodeProto, name string, def int64) int64 {
	if a := getAttr(n, name); a != nil {
		return a.GetI()
	}
	return def
}

func floatAttr(n *onnxpb.NodeProto, name string, def float32) float32 {
	if a := getAttr(n, name); a != nil {
		return a.GetF()
	}
	return def
}

// dropAttr removes the named attributes from a node.
func dropAttr(n *onnxpb.NodeProto, names ...string) {
	keep := n.Attribute[:0]
	for _, a := range n.Attribute {
		drop := false
		for _, d := range names {
			if a.GetName() == d {
				drop = true
			}
		}
		if !drop {
			keep = append(keep, a)
		}
	}
	n.Attribute = keep
}

// isDefaultDomain is true for ONNX's own operators.
func isDefaultDomain(n *onnxpb.NodeProto) bool {
	d := n.GetDomain()
	return d == "" || d == "ai.onnx"
}

// nodeID is how reports and --exclude name a node: its name, else op type and first output.
func nodeID(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return n.GetName()
	}
	if len(n.Output) > 0 {
		return n.GetOpType() + ":" + n.Output[0]
	}
	return n.GetOpType()
}

// consumers maps every value to the nodes reading it, in graph order.
func consumers(g *onnxpb.GraphProto) map[string][]*onnxpb.NodeProto {
	c := map[string][]*onnxpb.NodeProto{}
	for _, n := range g.Node {
		seen := map[string]bool{}
		for _, in := range nodeReads(n) {
			if in != "" && !seen[in] {
				seen[in] = true
				c[in] = append(c[in], n)
			}
		}
	}
	return c
}

// producers maps every node output to its node.
func producers(g *onnxpb.GraphProto) map[string]*onnxpb.NodeProto {
	p := map[string]*onnxpb.NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				p[o] = n
			}
		}
	}
	return p
}

func graphOutputs(g *onnxpb.GraphProto) map[string]bool {
	out := map[string]bool{}
	for _, v := range g.Output {
		out[v.GetName()] = true
	}
	return out
}

// renameInput makes n read to instead of from (every occurrence).
func renameInput(n *onnxpb.NodeProto, from, to string) {
	for i, in := range n.Input {
		if in == from {
			n.Input[i] = to
		}
	}
}

// matchExclude reports whether an --exclude entry names the node: its name, its op type,
// or the name of its first output.
func matchExclude(n *onnxpb.NodeProto, exclude map[string]bool) bool {
	if len(exclude) == 0 {
		return false
	}
	if exclude[n.GetName()] && n.GetName() != "" || exclude[n.GetOpType()] || exclude[nodeID(n)] {
		return true
	}
	return len(n.Output) > 0 && exclude[n.Output[0]]
}

// sortedNames returns the keys of a set in order, for deterministic reports.
func sortedNames(s map[string]bool) []string {
	out := make([]string, 0, len(s))
	for k := range s {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
