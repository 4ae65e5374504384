package passes

import (
	"encoding/binary"
	"errors"
	"math"

	"github.com/x448/float16"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// The evaluator computes default-domain operators on constant inputs, for constant folding.
// Arithmetic runs in float64 (floats) or int64 (integers and bool) and is rounded back to
// the element type once per operator, as a runtime does per kernel; data movement (Reshape,
// Transpose, Gather, Slice, Concat, Expand, Tile, ...) copies element bytes and so is exact
// for every fixed-width type. Anything else is errUnsupported and stays in the graph.

var errUnsupported = errors.New("operator not evaluated by the constant folder")

// evaluator computes one operator.
type evaluator func(e *evalCtx) ([]*tensor.Tensor, error)

// evalCtx is one node's evaluation.
type evalCtx struct {
	n     *onnxpb.NodeProto
	opset int64
	in    []*tensor.Tensor // nil for absent optional inputs
}

func (e *evalCtx) input(i int) *tensor.Tensor {
	if i < len(e.in) {
		return e.in[i]
	}
	return nil
}

func (e *evalCtx) attrInt(name string, def int64) int64 { return shape.AttrInt(e.n, name, def) }

// Evaluate computes node n on its constant inputs (nil entries for absent optional inputs).
// It returns errUnsupported for operators or element types it does not cover.
func Evaluate(n *onnxpb.NodeProto, opset int64, in []*tensor.Tensor) ([]*tensor.Tensor, error) {
	if d := n.GetDomain(); d != "" && d != "ai.onnx" {
		return nil, errUnsupported
	}
	f, ok := evaluators[n.GetOpType()]
	if !ok {
		return nil, errUnsupported
	}
	for _, t := range in {
		if t == nil {
			continue
		}
		if t.DType == tensor.String || !t.DType.Known() || t.DType.Bits() < 8 || t.DType.Bits()%8 != 0 {
			return nil, errUnsupported
		}
		if err := t.Validate(); err != nil {
			return nil, err
		}
	}
	return f(&evalCtx{n: n, opset: opset, in: in})
}

var evaluators = map[string]evaluator{}

func init() {
	for op, fn := range map[string]func(a, b float64) float64{
		"Add": func(a, b float64) float64 { return a + b },
		"Sub": func(a, b float64) float64 { return a - b },
		"Mul": func(a, b float64) float64 { return a * b },
		"Div": func(a, b float64) float64 { return a / b },
		"Pow": math.Pow,
		"Max": math.Max,
		"Min": math.Min,
	} {
		evaluators[op] = binaryOp(op, fn)
	}
	evaluators["Sum"] = variadic("Add")
	evaluators["Max"] = variadic("Max")
	evaluators["Min"] = variadic("Min")
	for op, fn := range map[string]func(a, b float64) bool{
		"Equal":          func(a, b float64) bool { return a == b },
		"Less":           func(a, b float64) bool { return a < b },
		"Greater":        func(a, b float64) bool { return a > b },
		"LessOrEqual":    func(a, b float64) bool { return a <= b },
		"GreaterOrEqual": func(a, b float64) bool { return a >= b },
		"And":            func(a, b float64) bool { return a != 0 && b != 0 },
		"Or":             func(a, b float64) bool { return a != 0 || b != 0 },
		"Xor":            func(a, b float64) bool { return (a != 0) != (b != 0) },
	} {
		evaluators[op] = compareOp(fn)
	}
	for op, fn := range map[string]func(x float64) float64{
		"Neg":        func(x float64) float64 { return -x },
		"Abs":        math.Abs,
		"Sqrt":       math.Sqrt,
		"Reciprocal": func(x float64) float64 { return 1 / x },
		"Exp":        math.Exp,
		"Log":        math.Log,
		"Relu":       func(x float64) float64 { return math.Max(x, 0) },
		"Sigmoid":    func(x float64) float64 { return 1 / (1 + math.Exp(-x)) },
		"Tanh":       math.Tanh,
		"Floor":      math.Floor,
		"Ceil":       math.Ceil,
		"Round":      math.RoundToEven,
		"Erf":        math.Erf,
		"Sin":        math.Sin,
		"Cos":        math.Cos,
		"Sign": func(x float64) float64 {
			switch {
			case x > 0:
				return 1
			case x < 0:
				return -1
			}
			return 0
		},
	} {
		evaluators[op] = unaryOp(fn)
	}
	evaluators["Not"] = func(e *evalCtx) ([]*tensor.Tensor, error) {
		x := e.input(0)
		v := ints(x)
		for i := range v {
			if v[i] == 0 {
				v[i] = 1
			} else {
				v[i] = 0
			}
		}
		return one(makeInts(tensor.Bool, x.Shape, v))
	}
	evaluators["LeakyRelu"] = func(e *evalCtx) ([]*tensor.Tensor, error) {
		alpha := float64(shape.AttrFloat(e.n, "alpha", 0.01))
		return unaryOp(func(x float64) float64 {
			if x < 0 {
				return alpha * x
			}
			return x
		})(e)
	}
	evaluators["HardSigmoid"] = func(e *evalCtx) ([]*tensor.Tensor, error) {
		a, b := float64(shape.AttrFloat(e.n, "alpha", 0.2)), float64(shape.AttrFloat(e.n, "beta", 0.5))
		return unaryOp(func(x float64) float64 { return math.Max(0, math.Min(1, a*x+b)) })(e)
	}
	evaluators["Clip"] = clip
	evaluators["Identity"] = func(e *evalCtx) ([]*tensor.Tensor, error) { return one(e.input(0).Clone()) }
	evaluators["Cast"] = castEval
	evaluators["Where"] = whereEval
	evaluators["Shape"] = shapeEval
	evaluators["Size"] = func(e *evalCtx) ([]*tensor.Tensor, error) {
		return one(tensor.FromInt64([]int64{}, []int64{e.input(0).Len()}))
	}
	evaluators["Reshape"] = reshapeEval
	evaluators["Flatten"] = flattenEval
	evaluators["Squeeze"] = squeezeEval
	evaluators["Unsqueeze"] = unsqueezeEval
	evaluators["Transpose"] = transposeEval
	evaluators["Concat"] = concatEval
	evaluators["Slice"] = sliceEval
	evaluators["Gather"] = gatherEval
	evaluators["Split"] = splitEval
	evaluators["Expand"] = expandEval
	evaluators["Tile"] = tileEval
	evaluators["ConstantOfShape"] = constantOfShapeEval
	evaluators["Range"] = rangeEval
	evaluators["MatMul"] = matmulEval
	for _, op := range []string{"ReduceSum", "ReduceMean", "ReduceProd", "ReduceMax", "ReduceMin"} {
		evaluators[op] = reduceEval
	}
}

func one(t *tensor.Tensor) ([]*tensor.Tensor, error) { return []*tensor.Tensor{t}, nil }

// isFloat reports whether arithmetic on dt runs in float64.
func isFloat(dt tensor.DType) bool {
	switch dt {
	case tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16:
		return true
	}
	return false
}

// numeric reports whether the evaluator can do arithmetic on dt.
func numeric(dt tensor.DType) bool {
	switch dt {
	case tensor.Float32, tensor.Float64, tensor.Float16, tensor.BFloat16, tensor.Int8, tensor.Int16,
		tensor.Int32, tensor.Int64, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64, tensor.Bool:
		return true
	}
	return false
}

// floats converts any numeric tensor to float64.
func floats(t *tensor.Tensor) []float64 {
	f, err := t.AsFloat64()
	if err != nil {
		panic(err)
	}
	return f
}

// ints converts an integer or bool tensor to int64 (floats truncate toward zero).
func ints(t *tensor.Tensor) []int64 {
	n := int(t.Len())
	out := make([]int64, n)
	le := binary.LittleEndian
	b := t.Data
	switch t.DType {
	case tensor.Int64:
		for i := range out {
			out[i] = int64(le.Uint64(b[8*i:]))
		}
	case tensor.Uint64:
		for i := range out {
			out[i] = int64(le.Uint64(b[8*i:]))
		}
	case tensor.Int32:
		for i := range out {
			out[i] = int64(int32(le.Uint32(b[4*i:])))
		}
	case tensor.Uint32:
		for i := range out {
			out[i] = int64(le.Uint32(b[4*i:]))
		}
	case tensor.Int16:
		for i := range out {
			out[i] = int64(int16(le.Uint16(b[2*i:])))
		}
	case tensor.Uint16:
		for i := range out {
			out[i] = int64(le.Uint16(b[2*i:]))
		}
	case tensor.Int8:
		for i := range out {
			out[i] = int64(int8(b[i]))
		}
	case tensor.Uint8, tensor.Bool:
		for i := range out {
			out[i] = int64(b[i])
		}
	default:
		for i, f := range floats(t) {
			out[i] = int64(f)
		}
	}
	return out
}

// makeFloats builds a float tensor of type dt from float64 values.
func makeFloats(dt tensor.DType, shp []int64, v []float64) *tensor.Tensor {
	t := tensor.New(dt, shp)
	le := binary.LittleEndian
	b := t.Data
	switch dt {
	case tensor.Float32:
		for i, x := range v {
			le.PutUint32(b[4*i:], math.Float32bits(float32(x)))
		}
	case tensor.Float64:
		for i, x := range v {
			le.PutUint64(b[8*i:], math.Float64bits(x))
		}
	case tensor.Float16:
		for i, x := range v {
			le.PutUint16(b[2*i:], float16.Fromfloat32(float32(x)).Bits())
		}
	case tensor.BFloat16:
		for i, x := range v {
			le.PutUint16(b[2*i:], tensor.Float32ToBF16(float32(x)))
		}
	default:
		iv := make([]int64, len(v))
		for i, x := range v {
			iv[i] = int64(x)
		}
		return makeInts(dt, shp, iv)
	}
	return t
}

// makeInts builds an integer or bool tensor of type dt (values wrap to the width).
func makeInts(dt tensor.DType, shp []int64, v []int64) *tensor.Tensor {
	if isFloat(dt) {
		f := make([]float64, len(v))
		for i, x := range v {
			f[i] = float64(x)
		}
		return makeFloats(dt, shp, f)
	}
	t := tensor.New(dt, shp)
	le := binary.LittleEndian
	b := t.Data
	for i, x := range v {
		switch dt.Bits() {
		case 64:
			le.PutUint64(b[8*i:], uint64(x))
		case 32:
			le.PutUint32(b[4*i:], uint32(x))
		case 16:
			le.PutUint16(b[2*i:], uint16(x))
		case 8:
			if dt == tensor.Bool && x != 0 {
				x = 1
			}
			b[i] = byte(x)
		}
	}
	return t
}
