package int4

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
)

// captureModel returns the serialized model that ONNX Runtime runs to capture the tensors
// names: the nodes they depend on and nothing else, with exactly those tensors as the
// graph's outputs. Compared with running the whole model with extra outputs, the session
// holds only the weights that precede the captured layers (a sequential capture of early
// layers loads a fraction of the model), and no logits are computed or fetched (for a
// causal LM, [tokens × vocabulary] floats per batch). Nodes, initializers and value infos
// are shared with m, not copied; m is not modified. Graph inputs all stay, since the
// calibration data feeds them all.
func captureModel(m *onnx.Model, names []string) ([]byte, error) {
	g := m.Graph()
	ix := onnx.NewIndex(g)
	keep := make([]bool, len(g.Node))
	if hasSubgraphs(g) {
		// Implicit inputs of If/Loop bodies are not listed on the node: keep everything.
		for i := range keep {
			keep[i] = true
		}
	} else {
		need := map[string]bool{}
		for _, n := range names {
			need[n] = true
		}
		// Nodes are topologically sorted: walking backwards sees every consumer before its
		// producers.
		for i := len(g.Node) - 1; i >= 0; i-- {
			n := g.Node[i]
			for _, o := range n.Output {
				if need[o] {
					keep[i] = true
					break
				}
			}
			if keep[i] {
				for _, in := range n.Input {
					need[in] = true
				}
			}
		}
	}
	ng := &onnxpb.GraphProto{Name: g.Name, Input: g.Input, ValueInfo: g.ValueInfo}
	used := map[string]bool{}
	for i, n := range g.Node {
		if keep[i] {
			ng.Node = append(ng.Node, n)
			for _, in := range n.Input {
				used[in] = true
			}
		}
	}
	for _, in := range g.Input {
		used[in.GetName()] = true // old IR: inputs with an initializer as default
	}
	for _, t := range g.Initializer {
		if used[t.GetName()] {
			ng.Initializer = append(ng.Initializer, t)
		}
	}
	for _, name := range names {
		vi := &onnxpb.ValueInfoProto{Name: proto.String(name)}
		if et := elemType(g, ix, name); et != 0 {
			vi.Type = &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(et)}}}
		}
		ng.Output = append(ng.Output, vi)
	}
	p := m.Proto
	mp := &onnxpb.ModelProto{IrVersion: p.IrVersion, OpsetImport: p.OpsetImport, ProducerName: p.ProducerName,
		ProducerVersion: p.ProducerVersion, Domain: p.Domain, ModelVersion: p.ModelVersion, Graph: ng,
		Functions: p.Functions}
	b, err := mp.MarshalVT()
	if err != nil {
		return nil, fmt.Errorf("encoding the capture model: %w", err)
	}
	return b, nil
}

func hasSubgraphs(g *onnxpb.GraphProto) bool {
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			if a.G != nil || len(a.Graphs) > 0 {
				return true
			}
		}
	}
	return false
}

// elemType is the element type of tensor name: from the graph's value infos, else from the
// weight of a MatMul that reads it (A and B of a float MatMul share their type); 0 when
// unknown (ONNX Runtime is then asked, see runtime.Options.ExtraOutputs).
func elemType(g *onnxpb.GraphProto, ix *onnx.Index, name string) int32 {
	for _, vis := range [][]*onnxpb.ValueInfoProto{g.ValueInfo, g.Input, g.Output} {
		for _, vi := range vis {
			if vi.GetName() == name {
				if t := vi.GetType().GetTensorType(); t != nil && t.GetElemType() != 0 {
					return t.GetElemType()
				}
			}
		}
	}
	for _, c := range ix.Consumers[name] {
		n := g.Node[c]
		if n.GetOpType() != "MatMul" || len(n.Input) != 2 || n.Input[0] != name {
			continue
		}
		if t := ix.Initializers[n.Input[1]]; t != nil {
			return t.GetDataType()
		}
		if p, ok := ix.Producer[n.Input[1]]; ok && g.Node[p].GetOpType() == "Constant" {
			for _, a := range g.Node[p].Attribute {
				if a.T != nil {
					return a.T.GetDataType()
				}
			}
		}
	}
	return 0
}
