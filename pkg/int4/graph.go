package int4

import (
	"fmt"
	"path"
	"strings"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// matmulLayer is one constant MatMul weight B [K, N] of an ONNX graph and the MatMul nodes
// that read it as their second input (usually one; tied weights give several).
type matmulLayer struct {
	weight    string // B: an initializer, or the output of a Constant node
	constNode int    // index of that Constant node, −1 for an initializer
	nodes     []int  // MatMul nodes with B as input 1, in graph order
	inputs    []string
	k, n      int
	dtype     tensor.DType
	values    *tensor.Tensor // B as stored ([K, N]); aliases the model's buffers, read only
}

// name is how reports call the layer: its first MatMul node.
func (l *matmulLayer) name(g *onnxpb.GraphProto) string {
	if n := g.Node[l.nodes[0]]; n.GetName() != "" {
		return n.GetName()
	}
	return l.weight
}

// w returns B transposed to quant's [N, K] float32 orientation.
func (l *matmulLayer) w() ([]float32, error) {
	v, err := l.values.AsFloat32()
	if err != nil {
		return nil, fmt.Errorf("weight %q: %w", l.weight, err)
	}
	out := make([]float32, len(v))
	transpose(out, v, l.k, l.n)
	return out, nil
}

// transpose writes src [rows, cols] transposed into dst [cols, rows].
func transpose(dst, src []float32, rows, cols int) {
	const tile = 32
	for i0 := 0; i0 < rows; i0 += tile {
		for j0 := 0; j0 < cols; j0 += tile {
			for i := i0; i < min(i0+tile, rows); i++ {
				for j := j0; j < min(j0+tile, cols); j++ {
					dst[j*rows+i] = src[i*cols+j]
				}
			}
		}
	}
}

// Skip is a weight left in float, with the reason.
type Skip struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// matches reports whether any glob matches one of the names.
func matches(globs []string, names ...string) bool {
	for _, g := range globs {
		for _, n := range names {
			if n == "" {
				continue
			}
			if ok, _ := path.Match(g, n); ok || g == n {
				return true
			}
		}
	}
	return false
}

// findLayers lists the MatMul nodes whose B is a constant 2-D float tensor, grouped by B.
// Weights that cannot or must not be quantized are returned as skips.
func findLayers(m *onnx.Model, o *Options) ([]*matmulLayer, []Skip, error) {
	g := m.Graph()
	ix := onnx.NewIndex(g)
	byWeight := map[string]*matmulLayer{}
	var layers []*matmulLayer
	var skips []Skip
	skipped := map[string]bool{}
	skip := func(name, reason string) {
		if !skipped[name] {
			skipped[name] = true
			skips = append(skips, Skip{name, reason})
		}
	}
	for i, n := range g.Node {
		if n.GetOpType() != "MatMul" || (n.GetDomain() != "" && n.GetDomain() != "ai.onnx") || len(n.Input) != 2 || len(n.Output) != 1 {
			continue
		}
		b := n.Input[1]
		if l := byWeight[b]; l != nil {
			l.nodes = append(l.nodes, i)
			if !contains(l.inputs, n.Input[0]) {
				l.inputs = append(l.inputs, n.Input[0])
			}
			continue
		}
		var val *tensor.Tensor
		constNode := -1
		if ix.IsConstant(b) {
			t, err := m.ToTensor(ix.Initializers[b])
			if err != nil {
				return nil, nil, fmt.Errorf("initializer %q: %w", b, err)
			}
			val = t
		} else if p, ok := ix.Producer[b]; ok && g.Node[p].GetOpType() == "Constant" && g.Node[p].GetDomain() == "" {
			val = shape.ConstantValue(g.Node[p])
			constNode = p
		}
		if val == nil {
			continue // activation × activation (attention scores), or a weight computed at run time
		}
		label := n.GetName()
		switch {
		case len(val.Shape) != 2:
			skip(b, fmt.Sprintf("B has shape %v, not 2-D", val.Shape))
			continue
		case val.DType != tensor.Float32 && val.DType != tensor.Float16:
			skip(b, fmt.Sprintf("B is %s; MatMulNBits takes float32 or float16", val.DType))
			continue
		case val.Shape[0] < 16:
			skip(b, fmt.Sprintf("K = %d is below the smallest block (16)", val.Shape[0]))
			continue
		case len(o.Include) > 0 && !matches(o.Include, label, b):
			continue
		case matches(o.Exclude, label, b):
			skip(b, "excluded")
			continue
		}
		l := &matmulLayer{weight: b, constNode: constNode, nodes: []int{i}, inputs: []string{n.Input[0]},
			k: int(val.Shape[0]), n: int(val.Shape[1]), dtype: val.DType, values: val}
		byWeight[b] = l
		layers = append(layers, l)
	}
	return layers, skips, nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// names hands out value and initializer names not yet used in a graph.
type names struct{ used map[string]bool }

func newNames(g *onnxpb.GraphProto) *names {
	u := map[string]bool{}
	for _, t := range g.Initializer {
		u[t.GetName()] = true
	}
	for _, v := range g.Input {
		u[v.GetName()] = true
	}
	for _, n := range g.Node {
		u[n.GetName()] = true
		for _, o := range n.Output {
			u[o] = true
		}
	}
	return &names{used: u}
}

func (ns *names) fresh(base string) string {
	name := base
	for i := 1; ns.used[name]; i++ {
		name = fmt.Sprintf("%s_%d", base, i)
	}
	ns.used[name] = true
	return name
}

// ensureOpset adds an opset import for domain when the model has none.
func ensureOpset(m *onnx.Model, domain string, version int64) {
	if m.Opset(domain) != 0 {
		return
	}
	d, v := domain, version
	m.Proto.OpsetImport = append(m.Proto.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: &d, Version: &v})
}

// pruneUnused removes initializers and Constant nodes nothing reads any more.
func pruneUnused(g *onnxpb.GraphProto) {
	ix := onnx.NewIndex(g)
	keep := g.Initializer[:0]
	for _, t := range g.Initializer {
		if len(ix.Consumers[t.GetName()]) > 0 || ix.GraphOutputs[t.GetName()] || ix.GraphInputs[t.GetName()] {
			keep = append(keep, t)
		}
	}
	clear(g.Initializer[len(keep):])
	g.Initializer = keep
	nodes := g.Node[:0]
	for _, n := range g.Node {
		if n.GetOpType() == "Constant" && n.GetDomain() == "" && len(n.Output) == 1 &&
			len(ix.Consumers[n.Output[0]]) == 0 && !ix.GraphOutputs[n.Output[0]] {
			continue
		}
		nodes = append(nodes, n)
	}
	clear(g.Node[len(nodes):])
	g.Node = nodes
}

// safeName turns a tensor name into something usable as a name suffix.
func safeName(s string) string {
	return strings.NewReplacer("/", "_", ":", "_", " ", "_").Replace(s)
}
