package passes

import (
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// InitializerInputs: before IR version 4 every initializer had to be listed as a graph
// input too, which made weights look overridable. ONNX Runtime treats them as constants in
// such models; this pass makes that explicit (drops them from the inputs, sets IR 4) so the
// folds below may use them and may add initializers of their own.
var InitializerInputs = &Pass{
	Name:    "initializer-inputs",
	Doc:     "IR<4 models: treat initializers as constants (remove them from graph inputs, set ir_version 4)",
	Default: true,
	Applies: func(c *Context) bool { return c.Model.Proto.GetIrVersion() < 4 },
	Run: func(c *Context) (int, error) {
		g := c.Model.Graph()
		inits := map[string]bool{}
		for _, t := range g.Initializer {
			inits[t.GetName()] = true
		}
		var keep []*onnxpb.ValueInfoProto
		n := 0
		for _, v := range g.Input {
			if inits[v.GetName()] {
				n++
				continue
			}
			keep = append(keep, v)
		}
		g.Input = keep
		v := int64(4)
		c.Model.Proto.IrVersion = &v
		c.invalidate()
		return n, nil
	},
}

// ConstantToInitializer turns Constant nodes into initializers of the same name, so every
// later pass sees one kind of constant.
var ConstantToInitializer = &Pass{
	Name:    "constant-to-initializer",
	Doc:     "move Constant nodes into initializers",
	Default: true,
	Applies: ir4,
	Run: func(c *Context) (int, error) {
		return apply(c, func(g *graph) (int, error) {
			n := 0
			for _, node := range g.g.Node {
				if !is(node, "Constant") || len(node.Output) != 1 || g.pinned[node.Output[0]] {
					continue
				}
				v := shape.ConstantValue(node)
				if v == nil {
					continue
				}
				g.remove(node)
				g.addInitNamed(node.Output[0], v)
				n++
			}
			return n, nil
		})
	},
}

// ownedTensorProto wraps a tensor the passes computed (and never modify afterwards)
// without copying its bytes: folding can produce hundreds of megabytes.
func ownedTensorProto(name string, v *tensor.Tensor) *onnxpb.TensorProto {
	if v.DType == tensor.String {
		return onnx.FromTensor(name, v)
	}
	dt := int32(v.DType)
	return &onnxpb.TensorProto{Name: &name, DataType: &dt, Dims: append([]int64{}, v.Shape...), RawData: v.Data}
}

// ir4 is the precondition of passes that add initializers outside the graph inputs.
func ir4(c *Context) bool { return c.Model.Proto.GetIrVersion() >= 4 }

// addInitNamed adds an initializer under an exact name (the caller has freed it by
// removing its producer).
func (g *graph) addInitNamed(name string, v *tensor.Tensor) {
	t := ownedTensorProto(name, v)
	g.g.Initializer = append(g.g.Initializer, t)
	g.inits[name] = t
	g.consts[name] = v
	g.names[name] = true
	delete(g.producer, name)
	g.changed = true
}

// FoldConstants evaluates nodes whose inputs are all constants, and nodes whose outputs
// shape inference knows exactly (Shape of a static tensor, Gather of a known dimension,
// the Concat building a Reshape target), replacing them with initializers.
var FoldConstants = &Pass{
	Name:    "fold-constants",
	Doc:     "evaluate constant subgraphs and static shape arithmetic into initializers",
	Default: true,
	Applies: ir4,
	Run:     foldConstants,
}

// nonFoldable are operators whose outputs differ run to run.
var nonFoldable = map[string]bool{
	"RandomNormal": true, "RandomUniform": true, "RandomNormalLike": true, "RandomUniformLike": true,
	"Multinomial": true, "Bernoulli": true, "Constant": true,
}

func foldConstants(c *Context) (int, error) {
	shapes, _ := c.Shapes()
	return apply(c, func(g *graph) (int, error) {
		count := 0
		for _, n := range g.g.Node {
			if !isDefault(n) || hasSubgraph(n) || nonFoldable[n.GetOpType()] || len(n.Output) == 0 {
				continue
			}
			outs, ok := foldNode(g, n, shapes)
			if !ok {
				continue
			}
			g.remove(n)
			for k, o := range n.Output {
				if o != "" {
					g.addInitNamed(o, outs[k])
				}
			}
			count++
		}
		return count, nil
	})
}

// foldNode computes n's outputs when they are constant.
func foldNode(g *graph, n *onnxpb.NodeProto, shapes *shape.Result) ([]*tensor.Tensor, bool) {
	used := false
	for _, o := range n.Output {
		if o == "" {
			continue
		}
		if g.pinned[o] {
			return nil, false // graph outputs stay produced by nodes
		}
		used = used || g.used(o)
	}
	if !used {
		return nil, false // dead: removed by dead-code, not materialized
	}
	// Values shape inference pinned down (shape arithmetic on non-constant tensors).
	if shapes != nil && len(n.Output) == 1 {
		if v := knownValue(shapes, n.Output[0]); v != nil {
			return []*tensor.Tensor{v}, true
		}
	}
	ins := make([]*tensor.Tensor, len(n.Input))
	for i, in := range n.Input {
		if in == "" {
			continue
		}
		if ins[i] = g.constant(in); ins[i] == nil {
			return nil, false
		}
	}
	// An unsupported operator stays; so does malformed constant arithmetic (an error other
	// than errUnsupported), for the runtime to report with its own context.
	outs, err := Evaluate(n, g.c.Opset, ins)
	if err != nil || len(outs) != len(n.Output) {
		return nil, false
	}
	if lim := g.c.MaxFoldBytes; lim > 0 {
		for _, t := range outs {
			if int64(len(t.Data)) > lim {
				return nil, false
			}
		}
	}
	return outs, true
}

// knownValue builds the constant shape inference found for an integer value.
func knownValue(r *shape.Result, name string) *tensor.Tensor {
	info := r.Info(name)
	vals, ok := r.KnownInts(name)
	if !ok || info == nil {
		return nil
	}
	shp, ok := info.Static()
	if !ok || tensor.NumElements(shp) != int64(len(vals)) || len(shp) > 1 {
		return nil
	}
	switch info.DType {
	case tensor.Int64, tensor.Int32, tensor.Int16, tensor.Int8, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Bool:
		return makeInts(info.DType, shp, vals)
	}
	return nil
}
