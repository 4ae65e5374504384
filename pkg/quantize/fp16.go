package quantize

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/x448/float16"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// DefaultFP16BlockOps stay in float32 under --mode fp16, for range or precision:
//   - Resize/Upsample: sampling coordinates computed in float16 drift by whole pixels on
//     large images (and ONNX Runtime's CPU Resize has no float16 kernel);
//   - Softmax/LogSoftmax, Exp, Log, Pow: exponentials overflow float16's 65504, and the
//     normalised outputs (probabilities) are where the caller reads precision;
//   - reductions that sum (ReduceSum, ReduceMean, ReduceProd, ReduceSumSquare,
//     ReduceLogSum(Exp), ReduceL1/L2) and CumSum: long sums overflow or lose the small terms;
//   - Range, TopK, NonMaxSuppression, RoiAlign: they produce indices or boxes;
//   - random generators, ConstantOfShape, EyeLike: their dtype is an attribute;
//   - QuantizeLinear/DequantizeLinear/DynamicQuantizeLinear: their scales are float32 in
//     the opsets most models use.
var DefaultFP16BlockOps = []string{
	"Resize", "Upsample", "Softmax", "LogSoftmax", "Exp", "Log", "Pow",
	"ReduceSum", "ReduceMean", "ReduceProd", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ReduceL1", "ReduceL2", "CumSum",
	"Range", "TopK", "NonMaxSuppression", "RoiAlign",
	"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "ConstantOfShape", "EyeLike",
	"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear",
}

// fp16 converts float32 weights and compute to float16. Nodes on the block list, nodes of
// other domains and nodes with subgraphs stay float32; a Cast is inserted wherever a value
// crosses between the two regions, once per value and direction. Float32 graph inputs and
// outputs are kept by default (Casts at the boundary), so callers feed and read what they
// did before.
func (j *job) fp16() (*onnxpb.ModelProto, error) {
	_, e, err := j.loadPrepared()
	if err != nil {
		return nil, err
	}
	block := map[string]bool{}
	list := j.o.FP16BlockOps
	if list == nil {
		list = DefaultFP16BlockOps
	}
	for _, op := range list {
		block[op] = true
	}
	exclude := excludeSet(j.o.Exclude)
	g := e.g
	half := map[*onnxpb.NodeProto]bool{}
	j.rep.QuantizedOps = map[string]int{}
	for _, n := range g.Node {
		if !isDefaultDomain(n) || block[n.GetOpType()] || matchExclude(n, exclude) || hasSubgraph(n) {
			continue
		}
		if big := outOfHalfRange(e, n); big != "" {
			j.note("%s kept in float32: constant %q exceeds float16's range (±65504)", nodeLabel(n), big)
			continue
		}
		half[n] = true
		if touchesFloat(n, j.types) {
			j.rep.QuantizedNodes++
			j.rep.QuantizedOps[n.GetOpType()]++
		}
	}
	isF32 := func(name string) bool { return name != "" && j.types[name].DType == tensor.Float32 }
	// Element type of each float value after the rewrite.
	newType := map[string]tensor.DType{}
	keepIO := j.o.KeepFloat32IO
	for _, v := range g.Input {
		if isF32(v.GetName()) && !keepIO && e.inits[v.GetName()] == nil {
			newType[v.GetName()] = tensor.Float16
			setElemType(v, tensor.Float16)
		}
	}
	for _, n := range g.Node {
		if !half[n] {
			continue
		}
		if n.GetOpType() == "Cast" {
			if a := getAttr(n, "to"); a != nil && a.GetI() == int64(tensor.Float32) {
				a.I = ptr(int64(tensor.Float16))
				newType[n.Output[0]] = tensor.Float16
			}
			continue
		}
		for _, o := range n.Output {
			if isF32(o) {
				newType[o] = tensor.Float16
			}
		}
	}
	// Initializers: float32 weights read only by float16 nodes are converted in place;
	// those also read in float32 get a float16 copy.
	cons := consumers(g)
	half16 := map[string]string{} // float32 initializer → its float16 copy
	for _, t := range append([]*onnxpb.TensorProto{}, g.Initializer...) {
		name := t.GetName()
		if tensor.DType(t.GetDataType()) != tensor.Float32 || !e.isConst(name) {
			continue
		}
		readers16, readers32 := 0, 0
		for _, c := range cons[name] {
			if half[c] && c.GetOpType() != "Cast" {
				readers16++
			} else {
				readers32++
			}
		}
		if readers16 == 0 {
			continue
		}
		vals, dims, err := e.floats(name)
		if err != nil {
			return nil, err
		}
		h := toFloat16(vals, dims)
		if readers32 == 0 {
			nt := &onnxpb.TensorProto{Name: t.Name, Dims: dims, DataType: ptr(int32(tensor.Float16)), RawData: h.Data}
			replaceInit(e, name, nt)
			newType[name] = tensor.Float16
		} else {
			half16[name] = e.addInit(name+"_fp16", h)
		}
	}
	// Casts where a node reads a float value in the other precision.
	casts := map[string]string{}
	var out []*onnxpb.NodeProto
	castTo := func(v string, to tensor.DType) (string, *onnxpb.NodeProto) {
		key := fmt.Sprintf("%s|%d", v, to)
		if c, ok := casts[key]; ok {
			return c, nil
		}
		name := e.fresh(v + "_" + to.String())
		casts[key] = name
		return name, newNode("Cast", "", e.fresh(v+"_Cast_"+to.String()), []string{v}, []string{name}, attrInt("to", int64(to)))
	}
	for _, n := range g.Node {
		for i, in := range n.Input {
			if !isF32(in) || (n.GetOpType() == "Cast" && i == 0) {
				continue
			}
			have := tensor.Float32
			if newType[in] == tensor.Float16 {
				have = tensor.Float16
			}
			want := tensor.Float32
			if half[n] {
				want = tensor.Float16
			}
			if have == want {
				continue
			}
			if c, ok := half16[in]; ok && want == tensor.Float16 {
				n.Input[i] = c
				continue
			}
			name, cn := castTo(in, want)
			if cn != nil {
				out = append(out, cn)
			}
			n.Input[i] = name
		}
		out = append(out, n)
	}
	g.Node = out
	// Graph outputs: keep float32 by casting back under the original name.
	for _, v := range g.Output {
		name := v.GetName()
		if newType[name] != tensor.Float16 {
			continue
		}
		if !keepIO {
			setElemType(v, tensor.Float16)
			continue
		}
		inner := e.fresh(name + "_fp16")
		for _, n := range g.Node {
			for i, o := range n.Output {
				if o == name {
					n.Output[i] = inner
				}
			}
			renameInput(n, name, inner)
		}
		g.Node = append(g.Node, newNode("Cast", "", e.fresh(name+"_Cast_float32"), []string{inner}, []string{name}, attrInt("to", int64(tensor.Float32))))
	}
	for _, v := range g.ValueInfo {
		if newType[v.GetName()] == tensor.Float16 {
			setElemType(v, tensor.Float16)
		}
	}
	e.removeUnusedInits()
	pruneValueInfo(g)
	j.rep.KeptFloat = []string{}
	for _, n := range g.Node {
		if !half[n] && isDefaultDomain(n) && n.GetOpType() != "Cast" && touchesFloat(n, j.types) {
			j.rep.KeptFloat = append(j.rep.KeptFloat, nodeID(n))
		}
	}
	return e.m.Proto, nil
}

// touchesFloat reports whether a node reads or writes a float32 value.
func touchesFloat(n *onnxpb.NodeProto, vt valueTypes) bool {
	for _, s := range [][]string{n.Input, n.Output} {
		for _, v := range s {
			if v != "" && vt[v].DType == tensor.Float32 {
				return true
			}
		}
	}
	return false
}

// outOfHalfRange names a float32 constant input of n with a value beyond float16's range.
func outOfHalfRange(e *editor, n *onnxpb.NodeProto) string {
	for _, in := range n.Input {
		if !isConstFloat(e, in) {
			continue
		}
		vals, _, err := e.floats(in)
		if err != nil {
			continue
		}
		for _, v := range vals {
			if v > 65504 || v < -65504 {
				return in
			}
		}
	}
	return ""
}

func hasSubgraph(n *onnxpb.NodeProto) bool {
	for _, a := range n.Attribute {
		if a.G != nil || len(a.Graphs) > 0 {
			return true
		}
	}
	return false
}

func setElemType(v *onnxpb.ValueInfoProto, dt tensor.DType) {
	if tt := v.GetType().GetTensorType(); tt != nil {
		tt.ElemType = ptr(int32(dt))
	}
}

func replaceInit(e *editor, name string, t *onnxpb.TensorProto) {
	for i, old := range e.g.Initializer {
		if old.GetName() == name {
			e.g.Initializer[i] = t
		}
	}
	e.inits[name] = t
}

// toFloat16 rounds to nearest even, saturating at ±65504 so that an outlier weight does
// not become infinity.
func toFloat16(vals []float32, dims []int64) *tensor.Tensor {
	t := tensor.New(tensor.Float16, dims)
	for i, v := range vals {
		if v > 65504 {
			v = 65504
		} else if v < -65504 {
			v = -65504
		}
		if v != v {
			v = float32(math.NaN())
		}
		binary.LittleEndian.PutUint16(t.Data[2*i:], float16.Fromfloat32(v).Bits())
	}
	return t
}

func ptr[T any](v T) *T { return &v }
