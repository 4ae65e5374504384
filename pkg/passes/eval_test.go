package passes

import (
	"errors"
	"math"
	"reflect"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

func f32(shape []int64, v ...float32) *tensor.Tensor { return tensor.FromFloat32(shape, v) }
func i64s(shape []int64, v ...int64) *tensor.Tensor  { return tensor.FromInt64(shape, v) }

// eval runs one operator on constants and fails the test on error.
func eval(t *testing.T, opset int64, op string, in []*tensor.Tensor, attrs ...*onnxpb.AttributeProto) []*tensor.Tensor {
	t.Helper()
	outs := []string{"y"}
	if op == "Split" {
		outs = []string{"a", "b"}
	}
	out, err := Evaluate(newNode(op, "", nil, outs, attrs...), opset, in)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	return out
}

func wantF(t *testing.T, got *tensor.Tensor, shape []int64, want ...float64) {
	t.Helper()
	v, _ := got.AsFloat64()
	if !reflect.DeepEqual(got.Shape, shape) && !(len(got.Shape) == 0 && len(shape) == 0) {
		t.Fatalf("shape %v, want %v", got.Shape, shape)
	}
	if len(v) != len(want) {
		t.Fatalf("values %v, want %v", v, want)
	}
	for i := range v {
		if math.Abs(v[i]-want[i]) > 1e-6*math.Max(1, math.Abs(want[i])) && !(math.IsNaN(v[i]) && math.IsNaN(want[i])) {
			t.Fatalf("values %v, want %v", v, want)
		}
	}
}

func TestEvalArithmetic(t *testing.T) {
	// Broadcasting [2,1] + [3].
	wantF(t, eval(t, 13, "Add", []*tensor.Tensor{f32([]int64{2, 1}, 1, 2), f32([]int64{3}, 10, 20, 30)})[0],
		[]int64{2, 3}, 11, 21, 31, 12, 22, 32)
	// Integer Div truncates toward zero, as runtimes do.
	wantF(t, eval(t, 13, "Div", []*tensor.Tensor{i64s([]int64{3}, 7, -7, 6), i64s([]int64{}, 2)})[0], []int64{3}, 3, -3, 3)
	// Variadic Sum and Max, Pow, Sqrt of a negative (NaN), Clip by inputs.
	wantF(t, eval(t, 13, "Sum", []*tensor.Tensor{f32([]int64{2}, 1, 2), f32([]int64{2}, 3, 4), f32([]int64{}, 1)})[0], []int64{2}, 5, 7)
	wantF(t, eval(t, 13, "Max", []*tensor.Tensor{f32([]int64{2}, 1, 5), f32([]int64{2}, 3, 4)})[0], []int64{2}, 3, 5)
	wantF(t, eval(t, 13, "Pow", []*tensor.Tensor{f32([]int64{2}, 2, 3), f32([]int64{}, 2)})[0], []int64{2}, 4, 9)
	wantF(t, eval(t, 13, "Sqrt", []*tensor.Tensor{f32([]int64{2}, 4, -1)})[0], []int64{2}, 2, math.NaN())
	wantF(t, eval(t, 13, "Clip", []*tensor.Tensor{f32([]int64{3}, -1, 3, 9), f32([]int64{}, 0), f32([]int64{}, 6)})[0], []int64{3}, 0, 3, 6)
	wantF(t, eval(t, 9, "Clip", []*tensor.Tensor{f32([]int64{3}, -1, 3, 9)}, attrFloat("min", 0), attrFloat("max", 6))[0], []int64{3}, 0, 3, 6)
	// Comparisons give bool; Where picks by condition with broadcasting.
	eq := eval(t, 13, "Equal", []*tensor.Tensor{i64s([]int64{3}, 1, 2, 3), i64s([]int64{}, 2)})[0]
	if eq.DType != tensor.Bool {
		t.Fatalf("Equal gives %s", eq.DType)
	}
	wantF(t, eq, []int64{3}, 0, 1, 0)
	wantF(t, eval(t, 13, "Where", []*tensor.Tensor{eq, f32([]int64{}, 5), f32([]int64{3}, 1, 2, 3)})[0], []int64{3}, 1, 5, 3)
	// Mixed element types are not folded (a malformed model is not "repaired").
	if _, err := Evaluate(newNode("Add", "", nil, []string{"y"}), 13, []*tensor.Tensor{f32([]int64{1}, 1), i64s([]int64{1}, 1)}); !errors.Is(err, errUnsupported) {
		t.Fatalf("float + int64 = %v, want errUnsupported", err)
	}
}

func TestEvalCast(t *testing.T) {
	to := func(dt tensor.DType) *onnxpb.AttributeProto { return attrInt("to", int64(dt)) }
	got := eval(t, 13, "Cast", []*tensor.Tensor{f32([]int64{4}, 1.7, -1.7, 0, 3e9)}, to(tensor.Int32))[0]
	if got.DType != tensor.Int32 {
		t.Fatal(got.DType)
	}
	v := got.Int32s()
	if v[0] != 1 || v[1] != -1 || v[2] != 0 {
		t.Fatalf("float->int32 = %v, want truncation toward zero", v)
	}
	wantF(t, eval(t, 13, "Cast", []*tensor.Tensor{i64s([]int64{2}, 0, 5)}, to(tensor.Bool))[0], []int64{2}, 0, 1)
	h := eval(t, 13, "Cast", []*tensor.Tensor{f32([]int64{2}, 1.5, 65504)}, to(tensor.Float16))[0]
	wantF(t, h, []int64{2}, 1.5, 65504)
	if _, err := Evaluate(newNode("Cast", "", nil, []string{"y"}, to(tensor.Int64)), 13, []*tensor.Tensor{f32([]int64{1}, float32(math.NaN()))}); err == nil {
		t.Fatal("NaN cast to an integer was folded (the result is implementation-defined)")
	}
}

func TestEvalLayout(t *testing.T) {
	x := f32([]int64{2, 3}, 0, 1, 2, 3, 4, 5)
	wantF(t, eval(t, 13, "Transpose", []*tensor.Tensor{x}, attrInts("perm", []int64{1, 0}))[0], []int64{3, 2}, 0, 3, 1, 4, 2, 5)
	wantF(t, eval(t, 13, "Reshape", []*tensor.Tensor{x, i64s([]int64{3}, 0, -1, 1)})[0], []int64{2, 3, 1}, 0, 1, 2, 3, 4, 5)
	wantF(t, eval(t, 13, "Concat", []*tensor.Tensor{x, f32([]int64{2, 1}, 9, 8)}, attrInt("axis", -1))[0], []int64{2, 4}, 0, 1, 2, 9, 3, 4, 5, 8)
	// Slice with a negative step and clamped bounds: columns 2..0 reversed of row 1.
	wantF(t, eval(t, 13, "Slice", []*tensor.Tensor{x, i64s([]int64{2}, 1, 100), i64s([]int64{2}, 2, -100), i64s([]int64{2}, 0, 1), i64s([]int64{2}, 1, -1)})[0],
		[]int64{1, 3}, 5, 4, 3)
	// Opset 9 Slice takes attributes.
	wantF(t, eval(t, 9, "Slice", []*tensor.Tensor{x}, attrInts("starts", []int64{1}), attrInts("ends", []int64{3}), attrInts("axes", []int64{1}))[0],
		[]int64{2, 2}, 1, 2, 4, 5)
	wantF(t, eval(t, 13, "Gather", []*tensor.Tensor{x, i64s([]int64{2}, -1, 0)}, attrInt("axis", 1))[0], []int64{2, 2}, 2, 0, 5, 3)
	wantF(t, eval(t, 13, "Gather", []*tensor.Tensor{x, i64s([]int64{}, 1)})[0], []int64{3}, 3, 4, 5)
	wantF(t, eval(t, 13, "Expand", []*tensor.Tensor{f32([]int64{2, 1}, 1, 2), i64s([]int64{3}, 2, 1, 3)})[0], []int64{2, 2, 3}, 1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2)
	wantF(t, eval(t, 13, "Tile", []*tensor.Tensor{f32([]int64{2}, 1, 2), i64s([]int64{1}, 3)})[0], []int64{6}, 1, 2, 1, 2, 1, 2)
	sp := eval(t, 13, "Split", []*tensor.Tensor{x, i64s([]int64{2}, 1, 2)}, attrInt("axis", 1))
	wantF(t, sp[0], []int64{2, 1}, 0, 3)
	wantF(t, sp[1], []int64{2, 2}, 1, 2, 4, 5)
	wantF(t, eval(t, 11, "Unsqueeze", []*tensor.Tensor{x}, attrInts("axes", []int64{0, -1}))[0], []int64{1, 2, 3, 1}, 0, 1, 2, 3, 4, 5)
	wantF(t, eval(t, 13, "Squeeze", []*tensor.Tensor{f32([]int64{1, 2, 1}, 7, 8), i64s([]int64{1}, 2)})[0], []int64{1, 2}, 7, 8)
	wantF(t, eval(t, 13, "Shape", []*tensor.Tensor{x}, attrInt("start", -1))[0], []int64{1}, 3)
	// Degenerate: an empty slice and a zero-size ConstantOfShape.
	wantF(t, eval(t, 13, "Slice", []*tensor.Tensor{x, i64s([]int64{1}, 2), i64s([]int64{1}, 1), i64s([]int64{1}, 1)})[0], []int64{2, 0})
	wantF(t, eval(t, 13, "ConstantOfShape", []*tensor.Tensor{i64s([]int64{2}, 0, 3)})[0], []int64{0, 3})
}

func TestEvalConstantOfShapeRangeReduce(t *testing.T) {
	val := &onnxpb.AttributeProto{Name: proto.String("value"), Type: onnxpb.AttributeProto_TENSOR.Enum(),
		T: ownedTensorProto("", i64s([]int64{1}, 7))}
	c := eval(t, 13, "ConstantOfShape", []*tensor.Tensor{i64s([]int64{2}, 2, 2)}, val)[0]
	if c.DType != tensor.Int64 {
		t.Fatal(c.DType)
	}
	wantF(t, c, []int64{2, 2}, 7, 7, 7, 7)
	// A large fill crosses the chunked copy.
	big := eval(t, 13, "ConstantOfShape", []*tensor.Tensor{i64s([]int64{1}, 3<<18+5)})[0]
	if big.Len() != 3<<18+5 || big.Float32s()[3<<18+4] != 0 {
		t.Fatal("big fill")
	}
	wantF(t, eval(t, 13, "Range", []*tensor.Tensor{i64s([]int64{}, 10), i64s([]int64{}, 4), i64s([]int64{}, -3)})[0], []int64{2}, 10, 7)
	wantF(t, eval(t, 13, "Range", []*tensor.Tensor{f32([]int64{}, 0), f32([]int64{}, 1), f32([]int64{}, 0.25)})[0], []int64{4}, 0, 0.25, 0.5, 0.75)
	x := f32([]int64{2, 3}, 1, 2, 3, 4, 5, 6)
	wantF(t, eval(t, 13, "ReduceMean", []*tensor.Tensor{x}, attrInts("axes", []int64{-1}))[0], []int64{2, 1}, 2, 5)
	wantF(t, eval(t, 13, "ReduceSum", []*tensor.Tensor{x, i64s([]int64{1}, 0)}, attrInt("keepdims", 0))[0], []int64{3}, 5, 7, 9)
	wantF(t, eval(t, 13, "ReduceMax", []*tensor.Tensor{x}, attrInt("keepdims", 0))[0], []int64{}, 6)
	wantF(t, eval(t, 13, "MatMul", []*tensor.Tensor{x, f32([]int64{3, 1}, 1, 0, -1)})[0], []int64{2, 1}, -2, -2)
}

func TestFillPatternGuard(t *testing.T) {
	// Every byte written, nothing past the end (the guard bytes stay).
	buf := make([]byte, 3*fillChunk+7+4)
	for i := range buf {
		buf[i] = 0xAA
	}
	dst := buf[:len(buf)-4]
	fillPattern(dst, []byte{1, 2, 3})
	for i, b := range dst {
		if b != byte(i%3+1) {
			t.Fatalf("byte %d = %d", i, b)
		}
	}
	for _, b := range buf[len(dst):] {
		if b != 0xAA {
			t.Fatal("wrote past the end")
		}
	}
}

func BenchmarkConstantOfShape(b *testing.B) {
	for _, n := range []int64{1 << 10, 1 << 20, 1 << 24} {
		b.Run(tensor.Float32.String()+"x"+strconv.FormatInt(n, 10), func(b *testing.B) {
			in := []*tensor.Tensor{i64s([]int64{1}, n)}
			node := newNode("ConstantOfShape", "", nil, []string{"y"})
			b.SetBytes(4 * n)
			for range b.N {
				if _, err := Evaluate(node, 13, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
