package passes

import (
	"fmt"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// graph is a pass's editable view of the main graph: producers and consumers kept up to
// date as the pass rewires nodes, removals and insertions applied in one go by commit so
// node order stays stable (and the output deterministic).
type graph struct {
	c         *Context
	g         *onnxpb.GraphProto
	producer  map[string]*onnxpb.NodeProto
	consumers map[string][]*onnxpb.NodeProto
	inits     map[string]*onnxpb.TensorProto
	inputs    map[string]bool
	outputs   map[string]bool
	// pinned values keep their name: graph outputs and names read by subgraphs.
	pinned  map[string]bool
	names   map[string]bool
	removed map[*onnxpb.NodeProto]bool
	after   map[*onnxpb.NodeProto][]*onnxpb.NodeProto // nodes to insert after an anchor
	consts  map[string]*tensor.Tensor                 // decoded constants, by name
	changed bool
}

func newGraph(c *Context) *graph {
	g := c.Model.Graph()
	gr := &graph{c: c, g: g, producer: map[string]*onnxpb.NodeProto{}, consumers: map[string][]*onnxpb.NodeProto{},
		inits: map[string]*onnxpb.TensorProto{}, inputs: map[string]bool{}, outputs: map[string]bool{},
		pinned: map[string]bool{}, names: map[string]bool{}, removed: map[*onnxpb.NodeProto]bool{},
		after: map[*onnxpb.NodeProto][]*onnxpb.NodeProto{}, consts: map[string]*tensor.Tensor{}}
	for _, t := range g.Initializer {
		gr.inits[t.GetName()] = t
		gr.names[t.GetName()] = true
	}
	for _, v := range g.Input {
		gr.inputs[v.GetName()] = true
		gr.names[v.GetName()] = true
	}
	for _, v := range g.Output {
		gr.outputs[v.GetName()] = true
		gr.pinned[v.GetName()] = true
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				gr.producer[o] = n
				gr.names[o] = true
			}
		}
		seen := map[string]bool{}
		for _, in := range n.Input {
			if in != "" && !seen[in] {
				seen[in] = true
				gr.consumers[in] = append(gr.consumers[in], n)
			}
		}
		for _, name := range subgraphReads(n) {
			gr.pinned[name] = true
			if !seen[name] {
				seen[name] = true
				gr.consumers[name] = append(gr.consumers[name], n)
			}
		}
	}
	return gr
}

// subgraphReads lists outer names that n's subgraphs (If/Loop/Scan bodies) read.
func subgraphReads(n *onnxpb.NodeProto) []string {
	var out []string
	for _, a := range n.Attribute {
		subs := a.Graphs
		if a.G != nil {
			subs = append([]*onnxpb.GraphProto{a.G}, subs...)
		}
		for _, sg := range subs {
			local := map[string]bool{}
			for _, v := range sg.Input {
				local[v.GetName()] = true
			}
			for _, t := range sg.Initializer {
				local[t.GetName()] = true
			}
			for _, sn := range sg.Node {
				for _, o := range sn.Output {
					local[o] = true
				}
			}
			for _, sn := range sg.Node {
				for _, in := range sn.Input {
					if in != "" && !local[in] {
						out = append(out, in)
					}
				}
				out = append(out, subgraphReads(sn)...)
			}
			for _, o := range sg.Output {
				if !local[o.GetName()] {
					out = append(out, o.GetName())
				}
			}
		}
	}
	return out
}

// hasSubgraph reports whether a node carries a graph attribute.
func hasSubgraph(n *onnxpb.NodeProto) bool {
	for _, a := range n.Attribute {
		if a.G != nil || len(a.Graphs) > 0 {
			return true
		}
	}
	return false
}

// nodes lists the live nodes in graph order (inserted ones after their anchor).
func (g *graph) nodes() []*onnxpb.NodeProto {
	out := make([]*onnxpb.NodeProto, 0, len(g.g.Node))
	var add func(n *onnxpb.NodeProto)
	add = func(n *onnxpb.NodeProto) {
		if !g.removed[n] {
			out = append(out, n)
		}
		for _, m := range g.after[n] {
			add(m)
		}
	}
	for _, n := range g.g.Node {
		add(n)
	}
	return out
}

// commit writes the edits back into the GraphProto and re-sorts it topologically.
func (g *graph) commit() error {
	if !g.changed {
		return nil
	}
	g.g.Node = g.nodes()
	g.removed = map[*onnxpb.NodeProto]bool{}
	g.after = map[*onnxpb.NodeProto][]*onnxpb.NodeProto{}
	g.c.invalidate()
	return onnx.SortTopologically(g.g)
}

// isConst reports whether name is a constant: an initializer the caller cannot override.
func (g *graph) isConst(name string) bool {
	_, ok := g.inits[name]
	return ok && !g.c.overridable[name]
}

// constant decodes a constant (nil when name is not one or cannot be decoded). The result
// may alias the model's buffers: never modify it.
func (g *graph) constant(name string) *tensor.Tensor {
	if !g.isConst(name) {
		return nil
	}
	if t, ok := g.consts[name]; ok {
		return t
	}
	t, err := g.c.Model.ToTensor(g.inits[name])
	if err != nil || t.DType == tensor.String {
		t = nil
	}
	g.consts[name] = t
	return t
}

// constFloats returns a float constant's values as float64 (nil when not a float constant).
func (g *graph) constFloats(name string) []float64 {
	t := g.constant(name)
	if t == nil || !isFloat(t.DType) {
		return nil
	}
	return floats(t)
}

// single returns the only consumer of name, or nil when it has none, several, or is pinned.
func (g *graph) single(name string) *onnxpb.NodeProto {
	if g.pinned[name] {
		return nil
	}
	cs := g.liveConsumers(name)
	if len(cs) != 1 {
		return nil
	}
	return cs[0]
}

// liveConsumers lists the consumers of name that have not been removed.
func (g *graph) liveConsumers(name string) []*onnxpb.NodeProto {
	var out []*onnxpb.NodeProto
	for _, n := range g.consumers[name] {
		if !g.removed[n] {
			out = append(out, n)
		}
	}
	return out
}

// used reports whether a value is read by a live node or is a graph output.
func (g *graph) used(name string) bool {
	return g.pinned[name] || len(g.liveConsumers(name)) > 0
}

// produced returns the live node producing name.
func (g *graph) produced(name string) *onnxpb.NodeProto {
	if p := g.producer[name]; p != nil && !g.removed[p] {
		return p
	}
	return nil
}

// setInput rewires input i of n.
func (g *graph) setInput(n *onnxpb.NodeProto, i int, name string) {
	old := n.Input[i]
	n.Input[i] = name
	g.changed = true
	still := false
	for _, in := range n.Input {
		still = still || in == old
	}
	if !still {
		g.dropConsumer(old, n)
	}
	if name != "" && !containsNode(g.consumers[name], n) {
		g.consumers[name] = append(g.consumers[name], n)
	}
}

func containsNode(ns []*onnxpb.NodeProto, n *onnxpb.NodeProto) bool {
	for _, m := range ns {
		if m == n {
			return true
		}
	}
	return false
}

func (g *graph) dropConsumer(name string, n *onnxpb.NodeProto) {
	cs := g.consumers[name]
	for k, m := range cs {
		if m == n {
			g.consumers[name] = append(cs[:k:k], cs[k+1:]...)
			return
		}
	}
}

// replaceUses makes every live consumer of old read new instead (graph outputs excepted).
func (g *graph) replaceUses(old, new string) {
	for _, n := range g.liveConsumers(old) {
		for i, in := range n.Input {
			if in == old {
				g.setInput(n, i, new)
			}
		}
	}
}

// remove deletes a node.
func (g *graph) remove(n *onnxpb.NodeProto) {
	g.removed[n] = true
	g.changed = true
	for _, in := range n.Input {
		g.dropConsumer(in, n)
	}
}

// insertAfter places a new node after anchor in graph order.
func (g *graph) insertAfter(anchor, n *onnxpb.NodeProto) {
	g.after[anchor] = append(g.after[anchor], n)
	g.changed = true
	for _, o := range n.Output {
		if o != "" {
			g.producer[o] = n
			g.names[o] = true
		}
	}
	for _, in := range n.Input {
		if in != "" && !containsNode(g.consumers[in], n) {
			g.consumers[in] = append(g.consumers[in], n)
		}
	}
}

// rename gives the value produced as old the name new (which must be unused): the
// producer's output and every consumer follow.
func (g *graph) rename(old, new string) {
	p := g.producer[old]
	for i, o := range p.Output {
		if o == old {
			p.Output[i] = new
		}
	}
	delete(g.producer, old)
	g.producer[new] = p
	g.names[new] = true
	for _, n := range g.liveConsumers(old) {
		for i, in := range n.Input {
			if in == old {
				g.setInput(n, i, new)
			}
		}
	}
	g.changed = true
}

// bypass removes node n whose output out carries the same value as its input in. When
// out is a graph output, in's producer is renamed to out instead, so the graph keeps its
// output names. It reports false (and changes nothing) when neither is possible.
func (g *graph) bypass(n *onnxpb.NodeProto, in, out string) bool {
	if !g.pinned[out] {
		g.replaceUses(out, in)
		g.remove(n)
		return true
	}
	p := g.produced(in)
	if p == nil || g.pinned[in] || g.inputs[in] || hasSubgraph(p) {
		return false
	}
	for _, o := range n.Output {
		if o != out && g.used(o) {
			return false
		}
	}
	g.remove(n)
	delete(g.producer, out)
	g.rename(in, out)
	return true
}

// unique returns base, or base with a numeric suffix, not yet used as a value name.
func (g *graph) unique(base string) string {
	name := base
	for i := 1; g.names[name]; i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	g.names[name] = true
	return name
}

// addInit adds an initializer holding v under a fresh name derived from base.
func (g *graph) addInit(base string, v *tensor.Tensor) string {
	name := g.unique(base)
	t := ownedTensorProto(name, v)
	g.g.Initializer = append(g.g.Initializer, t)
	g.inits[name] = t
	g.consts[name] = v
	g.changed = true
	return name
}

// newNode builds a default-domain node.
func newNode(op, name string, ins, outs []string, attrs ...*onnxpb.AttributeProto) *onnxpb.NodeProto {
	n := &onnxpb.NodeProto{OpType: proto.String(op), Input: ins, Output: outs, Attribute: attrs}
	if name != "" {
		n.Name = proto.String(name)
	}
	return n
}

func attrInts(name string, v []int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INTS.Enum(), Ints: v}
}

func attrInt(name string, v int64) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(v)}
}

func attrFloat(name string, v float32) *onnxpb.AttributeProto {
	return &onnxpb.AttributeProto{Name: proto.String(name), Type: onnxpb.AttributeProto_FLOAT.Enum(), F: proto.Float32(v)}
}

// setAttr replaces or adds an attribute.
func setAttr(n *onnxpb.NodeProto, a *onnxpb.AttributeProto) {
	for i, b := range n.Attribute {
		if b.GetName() == a.GetName() {
			n.Attribute[i] = a
			return
		}
	}
	n.Attribute = append(n.Attribute, a)
}

// delAttr removes an attribute.
func delAttr(n *onnxpb.NodeProto, name string) {
	for i, b := range n.Attribute {
		if b.GetName() == name {
			n.Attribute = append(n.Attribute[:i:i], n.Attribute[i+1:]...)
			return
		}
	}
}

// isDefault reports whether n is in the default (ai.onnx) domain.
func isDefault(n *onnxpb.NodeProto) bool {
	d := n.GetDomain()
	return d == "" || d == "ai.onnx"
}

// is reports whether n is a default-domain node of one of the given op types.
func is(n *onnxpb.NodeProto, ops ...string) bool {
	if n == nil || !isDefault(n) {
		return false
	}
	for _, op := range ops {
		if n.GetOpType() == op {
			return true
		}
	}
	return false
}

// errorf prefixes a pass error with the node at fault.
func errorf(n *onnxpb.NodeProto, format string, a ...any) error {
	return fmt.Errorf("%s: %s", onnx.NodeLabel(n), fmt.Sprintf(format, a...))
}
