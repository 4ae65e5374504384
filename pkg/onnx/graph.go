package onnx

import (
	"fmt"
	"sort"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// NodeLabel names a node for error messages: its name, else its op type and first output.
func NodeLabel(n *onnxpb.NodeProto) string {
	if n.GetName() != "" {
		return fmt.Sprintf("node %q (%s)", n.GetName(), n.GetOpType())
	}
	if len(n.Output) > 0 {
		return fmt.Sprintf("%s node producing %q", n.GetOpType(), n.Output[0])
	}
	return n.GetOpType() + " node"
}

// Check verifies the graph's structure: every node input is a graph input, an initializer,
// a node output or a name from an enclosing graph, no value is produced twice, and the
// nodes have a topological order. Errors name the node and tensor at fault.
func Check(g *onnxpb.GraphProto) error {
	return checkGraph(g, nil)
}

func checkGraph(g *onnxpb.GraphProto, outer map[string]bool) error {
	defined := map[string]bool{}
	for k := range outer {
		defined[k] = true
	}
	for _, v := range g.Input {
		defined[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		defined[t.GetName()] = true
	}
	for _, st := range g.SparseInitializer {
		if st.Values != nil {
			defined[st.Values.GetName()] = true
		}
	}
	producer := map[string]*onnxpb.NodeProto{}
	for _, n := range g.Node {
		for _, o := range n.Output {
			if o == "" {
				continue
			}
			if p, dup := producer[o]; dup {
				return fmt.Errorf("%s and %s both produce %q", NodeLabel(p), NodeLabel(n), o)
			}
			producer[o] = n
		}
	}
	for _, n := range g.Node {
		for _, in := range n.Input {
			if in == "" || defined[in] || producer[in] != nil {
				continue
			}
			return fmt.Errorf("%s: input %q is not a graph input, an initializer or any node's output (missing initializer?)", NodeLabel(n), in)
		}
	}
	for _, o := range g.Output {
		name := o.GetName()
		if !defined[name] && producer[name] == nil {
			return fmt.Errorf("graph output %q is produced by no node", name)
		}
	}
	if _, err := TopoOrder(g); err != nil {
		return err
	}
	// Subgraphs (If/Loop/Scan bodies) see every name of this graph.
	scope := defined
	for name := range producer {
		scope[name] = true
	}
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			subs := a.Graphs
			if a.G != nil {
				subs = append([]*onnxpb.GraphProto{a.G}, subs...)
			}
			for _, sg := range subs {
				if err := checkGraph(sg, scope); err != nil {
					return fmt.Errorf("subgraph %q of %s: %w", a.GetName(), NodeLabel(n), err)
				}
			}
		}
	}
	return nil
}

// TopoOrder returns node indices in a topological order, stable with respect to the stored
// order (an already sorted graph comes back unchanged). A cycle is an error naming a node on it.
// Names from outside the graph (inputs, initializers, outer scopes) impose no order.
func TopoOrder(g *onnxpb.GraphProto) ([]int, error) {
	producer := map[string]int{}
	for i, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				producer[o] = i
			}
		}
	}
	indeg := make([]int, len(g.Node))
	users := make([][]int, len(g.Node))
	for i, n := range g.Node {
		for _, in := range nodeInputsWithSubgraphs(n) {
			if p, ok := producer[in]; ok && p != i {
				indeg[i]++
				users[p] = append(users[p], i)
			} else if ok && p == i {
				return nil, fmt.Errorf("cycle: %s consumes its own output %q", NodeLabel(n), in)
			}
		}
	}
	// Min-heap on index keeps the original order where the graph allows it.
	ready := &intHeap{}
	for i, d := range indeg {
		if d == 0 {
			ready.push(i)
		}
	}
	order := make([]int, 0, len(g.Node))
	for ready.len() > 0 {
		i := ready.pop()
		order = append(order, i)
		for _, u := range users[i] {
			indeg[u]--
			if indeg[u] == 0 {
				ready.push(u)
			}
		}
	}
	if len(order) != len(g.Node) {
		for i, d := range indeg {
			if d > 0 {
				return nil, fmt.Errorf("cycle in graph through %s", NodeLabel(g.Node[i]))
			}
		}
	}
	return order, nil
}

// nodeInputsWithSubgraphs lists a node's inputs plus the outer-scope names its subgraphs
// read, so a node with a body orders after whatever its body captures.
func nodeInputsWithSubgraphs(n *onnxpb.NodeProto) []string {
	ins := n.Input
	for _, a := range n.Attribute {
		subs := a.Graphs
		if a.G != nil {
			subs = append([]*onnxpb.GraphProto{a.G}, subs...)
		}
		for _, sg := range subs {
			ins = append(append([]string{}, ins...), capturedNames(sg)...)
		}
	}
	return ins
}

// capturedNames are the names a subgraph reads but does not define itself.
func capturedNames(g *onnxpb.GraphProto) []string {
	local := map[string]bool{}
	for _, v := range g.Input {
		local[v.GetName()] = true
	}
	for _, t := range g.Initializer {
		local[t.GetName()] = true
	}
	for _, n := range g.Node {
		for _, o := range n.Output {
			local[o] = true
		}
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range g.Node {
		for _, in := range nodeInputsWithSubgraphs(n) {
			if in != "" && !local[in] && !seen[in] {
				seen[in] = true
				out = append(out, in)
			}
		}
	}
	for _, o := range g.Output {
		if n := o.GetName(); !local[n] && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

type intHeap struct{ a []int }

func (h *intHeap) len() int { return len(h.a) }
func (h *intHeap) push(v int) {
	h.a = append(h.a, v)
	for i := len(h.a) - 1; i > 0; {
		p := (i - 1) / 2
		if h.a[p] <= h.a[i] {
			break
		}
		h.a[p], h.a[i] = h.a[i], h.a[p]
		i = p
	}
}
func (h *intHeap) pop() int {
	top := h.a[0]
	last := len(h.a) - 1
	h.a[0] = h.a[last]
	h.a = h.a[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h.a) && h.a[l] < h.a[m] {
			m = l
		}
		if r < len(h.a) && h.a[r] < h.a[m] {
			m = r
		}
		if m == i {
			break
		}
		h.a[m], h.a[i] = h.a[i], h.a[m]
		i = m
	}
	return top
}

// SortTopologically reorders g.Node in place into TopoOrder.
func SortTopologically(g *onnxpb.GraphProto) error {
	order, err := TopoOrder(g)
	if err != nil {
		return err
	}
	nodes := make([]*onnxpb.NodeProto, len(order))
	for i, j := range order {
		nodes[i] = g.Node[j]
	}
	g.Node = nodes
	return nil
}

// Index maps value names to the nodes that produce and consume them in one graph. It is a
// snapshot: rebuild it after editing the graph.
type Index struct {
	Graph        *onnxpb.GraphProto
	Producer     map[string]int   // value → index of the node that outputs it
	Consumers    map[string][]int // value → indices of nodes that read it (in node order)
	Initializers map[string]*onnxpb.TensorProto
	GraphInputs  map[string]bool
	GraphOutputs map[string]bool
}

// NewIndex builds the producer/consumer index of g. Reads by subgraphs count as reads by
// the node that owns the subgraph.
func NewIndex(g *onnxpb.GraphProto) *Index {
	ix := &Index{Graph: g, Producer: map[string]int{}, Consumers: map[string][]int{},
		Initializers: map[string]*onnxpb.TensorProto{}, GraphInputs: map[string]bool{}, GraphOutputs: map[string]bool{}}
	for _, t := range g.Initializer {
		ix.Initializers[t.GetName()] = t
	}
	for _, v := range g.Input {
		ix.GraphInputs[v.GetName()] = true
	}
	for _, v := range g.Output {
		ix.GraphOutputs[v.GetName()] = true
	}
	for i, n := range g.Node {
		for _, o := range n.Output {
			if o != "" {
				ix.Producer[o] = i
			}
		}
		seen := map[string]bool{}
		for _, in := range nodeInputsWithSubgraphs(n) {
			if in != "" && !seen[in] {
				seen[in] = true
				ix.Consumers[in] = append(ix.Consumers[in], i)
			}
		}
	}
	return ix
}

// IsConstant reports whether name is an initializer that is not also a graph input
// (an input with an initializer is only a default and may be overridden at run time).
func (ix *Index) IsConstant(name string) bool {
	_, ok := ix.Initializers[name]
	return ok && !ix.GraphInputs[name]
}

// InputSpecs lists the real inputs of the model (graph inputs that are not initializers).
func (m *Model) InputSpecs() []tensor.Spec {
	inits := map[string]bool{}
	for _, t := range m.Proto.Graph.Initializer {
		inits[t.GetName()] = true
	}
	var out []tensor.Spec
	for _, v := range m.Proto.Graph.Input {
		if !inits[v.GetName()] {
			out = append(out, ValueSpec(v))
		}
	}
	return out
}

// OutputSpecs lists the graph outputs.
func (m *Model) OutputSpecs() []tensor.Spec {
	var out []tensor.Spec
	for _, v := range m.Proto.Graph.Output {
		out = append(out, ValueSpec(v))
	}
	return out
}

// ValueSpec converts a tensor-typed ValueInfoProto; dims without a value are -1.
func ValueSpec(v *onnxpb.ValueInfoProto) tensor.Spec {
	s := tensor.Spec{Name: v.GetName()}
	tt := v.GetType().GetTensorType()
	if tt == nil {
		return s
	}
	s.DType = tensor.DType(tt.GetElemType())
	if tt.Shape == nil {
		s.Shape = nil
		return s
	}
	s.Shape = make([]int64, len(tt.Shape.Dim))
	s.DimNames = make([]string, len(tt.Shape.Dim))
	for i, d := range tt.Shape.Dim {
		if dv, ok := d.Value.(*onnxpb.TensorShapeProto_Dimension_DimValue); ok {
			s.Shape[i] = dv.DimValue
		} else {
			s.Shape[i] = -1
			s.DimNames[i] = d.GetDimParam()
		}
	}
	return s
}

// OpTypeCounts counts nodes by op type (domain-qualified for non-default domains).
func OpTypeCounts(g *onnxpb.GraphProto) map[string]int {
	c := map[string]int{}
	for _, n := range g.Node {
		c[QualifiedOpType(n)]++
	}
	return c
}

// QualifiedOpType is "Conv" for the default domain and "com.microsoft::MatMulNBits" otherwise.
func QualifiedOpType(n *onnxpb.NodeProto) string {
	if d := n.GetDomain(); d != "" && d != "ai.onnx" {
		return d + "::" + n.GetOpType()
	}
	return n.GetOpType()
}

// SortedKeys returns map keys in order, for deterministic reports.
func SortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
