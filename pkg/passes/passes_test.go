package passes

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

func TestFoldShapeArithmetic(t *testing.T) {
	// y = Reshape(x, Concat(Unsqueeze(Gather(Shape(x), 0)), [-1])) with a dynamic batch:
	// Gather of the batch stays, Gather of a static dim folds.
	b := newBuilder(13).input("x", "N", 4, 3).output("y").output("z")
	b.ints("zero", []int64{}, 0).ints("one", []int64{}, 1).ints("ax", []int64{1}, 0).ints("m1", []int64{1}, -1)
	b.node("Shape", []string{"x"}, []string{"s"})
	b.node("Gather", []string{"s", "zero"}, []string{"n"})
	b.node("Unsqueeze", []string{"n", "ax"}, []string{"n1"})
	b.node("Concat", []string{"n1", "m1"}, []string{"t"}, attrInt("axis", 0))
	b.node("Reshape", []string{"x", "t"}, []string{"y"})
	b.node("Gather", []string{"s", "one"}, []string{"c"})
	b.node("Unsqueeze", []string{"c", "ax"}, []string{"c1"})
	b.node("Concat", []string{"m1", "c1"}, []string{"t2"}, attrInt("axis", 0))
	b.node("Reshape", []string{"x", "t2"}, []string{"z"})
	before, after, n := applied(t, b, nil, FoldConstants, DeadCode)
	if n == 0 {
		t.Fatal("nothing folded")
	}
	// The batch chain (5 nodes) stays; the static chain folds into the Reshape's target.
	wantOps(t, after, "Shape", "Gather", "Unsqueeze", "Concat", "Reshape", "Reshape")
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 4, 3}})

	// With the batch fixed too, everything folds.
	_, after, _ = applied(t, b, map[string][]int64{"x": {2, 4, 3}}, FoldConstants, DeadCode)
	wantOps(t, after, "Reshape", "Reshape")
}

func TestFoldConstantSubgraph(t *testing.T) {
	b := newBuilder(13).input("x", 2, 3).output("y")
	b.init("a", []int64{3}, 1, 2, 3).init("c", []int64{3}, 4, 5, 6)
	b.node("Add", []string{"a", "c"}, []string{"ac"})
	b.node("Sqrt", []string{"ac"}, []string{"r"})
	b.node("Mul", []string{"x", "r"}, []string{"y"})
	before, after, _ := applied(t, b, nil, FoldConstants, DeadCode)
	wantOps(t, after, "Mul")
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 3}})
	if len(after.Graph().Initializer) != 1 {
		t.Errorf("initializers = %d, want 1 (inputs of the folded nodes dropped)", len(after.Graph().Initializer))
	}
}

func TestFoldRespectsOverridableInitializers(t *testing.T) {
	// An initializer that is also a graph input (IR >= 4) is only a default: no folding.
	b := newBuilder(13).input("x", 3).output("y")
	b.init("a", []int64{3}, 1, 2, 3)
	b.g.Input = append(b.g.Input, vi("a", tensor.Float32, 3))
	b.node("Neg", []string{"a"}, []string{"na"})
	b.node("Add", []string{"x", "na"}, []string{"y"})
	_, after, n := applied(t, b, nil, FoldConstants)
	if n != 0 {
		t.Fatalf("folded %d nodes reading an overridable initializer", n)
	}
	wantOps(t, after, "Neg", "Add")
}

func TestFoldConstantOfShapeAndLimit(t *testing.T) {
	b := newBuilder(13).input("x", 2, 3).output("y")
	b.ints("shp", []int64{2}, 2, 3)
	b.node("ConstantOfShape", []string{"shp"}, []string{"w"}, &onnxpb.AttributeProto{Name: proto.String("value"),
		Type: onnxpb.AttributeProto_TENSOR.Enum(), T: ownedTensorProto("", tensor.FromFloat32([]int64{1}, []float32{0.5}))})
	b.node("Mul", []string{"x", "w"}, []string{"y"})
	before := b.model(t)
	after := b.model(t)
	c := NewContext(after, nil)
	c.MaxFoldBytes = 8 // the 24-byte result is over the limit
	if n, _ := FoldConstants.Run(c); n != 0 {
		t.Fatalf("folded past MaxFoldBytes")
	}
	if n := run(t, after, FoldConstants, nil); n != 1 {
		t.Fatalf("ConstantOfShape not folded (%d)", n)
	}
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 3}})
}

func TestConstantToInitializer(t *testing.T) {
	b := newBuilder(13).input("x", 2).output("y")
	b.node("Constant", nil, []string{"k"}, &onnxpb.AttributeProto{Name: proto.String("value_floats"),
		Type: onnxpb.AttributeProto_FLOATS.Enum(), Floats: []float32{2, 3}})
	b.node("Mul", []string{"x", "k"}, []string{"y"})
	before, after, n := applied(t, b, nil, ConstantToInitializer)
	if n != 1 {
		t.Fatalf("changes = %d", n)
	}
	wantOps(t, after, "Mul")
	if after.Initializer("k") == nil {
		t.Fatal("initializer k missing")
	}
	sameOutputs(t, before, after, map[string][]int64{"x": {2}})
}

func TestInitializerInputsIR3(t *testing.T) {
	b := newBuilder(9).input("x", 3).output("y")
	b.init("w", []int64{3}, 1, 2, 3)
	b.g.Input = append(b.g.Input, vi("w", tensor.Float32, 3))
	b.node("Add", []string{"x", "w"}, []string{"y"})
	m := b.model(t)
	m.Proto.IrVersion = proto.Int64(3)
	if n := run(t, m, InitializerInputs, nil); n != 1 {
		t.Fatalf("changes = %d", n)
	}
	if m.Proto.GetIrVersion() != 4 || len(m.Graph().Input) != 1 {
		t.Fatalf("ir %d, %d inputs", m.Proto.GetIrVersion(), len(m.Graph().Input))
	}
	// An IR 8 model keeps its overridable initializer.
	m8 := b.model(t)
	if n := run(t, m8, InitializerInputs, nil); n != 0 || len(m8.Graph().Input) != 2 {
		t.Fatalf("IR 8 model changed")
	}
}

func TestRemoveIdentityKeepsOutputNames(t *testing.T) {
	b := newBuilder(13).input("x", 2, 3).output("y")
	b.node("Relu", []string{"x"}, []string{"r"})
	b.node("Identity", []string{"r"}, []string{"i"})
	b.node("Dropout", []string{"i"}, []string{"y"})
	before, after, n := applied(t, b, nil, RemoveIdentity)
	if n != 2 {
		t.Fatalf("changes = %d", n)
	}
	wantOps(t, after, "Relu")
	if got := after.Graph().Node[0].Output[0]; got != "y" {
		t.Fatalf("Relu output = %q, want the graph output name y", got)
	}
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 3}})
}

func TestRemoveIdentityNegative(t *testing.T) {
	// Identity from a graph input to a graph output cannot go; a Dropout whose mask is
	// read, or in training mode, stays.
	b := newBuilder(13).input("x", 2).output("y").output("m").output("z")
	b.ints("train", []int64{}, 1)
	b.g.Initializer[0].DataType = proto.Int32(int32(tensor.Bool))
	b.g.Initializer[0].RawData = []byte{1}
	b.node("Identity", []string{"x"}, []string{"y"})
	b.node("Dropout", []string{"x"}, []string{"d", "m"})
	b.node("Dropout", []string{"d", "", "train"}, []string{"z"})
	_, after, n := applied(t, b, nil, RemoveIdentity)
	if n != 0 {
		t.Fatalf("changes = %d, want 0", n)
	}
	wantOps(t, after, "Identity", "Dropout", "Dropout")
}

func TestRemoveNoOps(t *testing.T) {
	b := newBuilder(13).input("x", 2, 3).output("y").output("keep1").output("keep2").output("keep3")
	b.ints("s23", []int64{2}, 2, 3).ints("s32", []int64{2}, 3, 2)
	b.init("one", []int64{1}, 1).init("ones", []int64{4, 2, 3}).init("zero", []int64{}, 0)
	b.ints("pads", []int64{4}, 0, 0, 0, 0)
	b.ints("st", []int64{1}, 0).ints("en", []int64{1}, 1<<40).ints("en1", []int64{1}, 2)
	b.node("Cast", []string{"x"}, []string{"c"}, attrInt("to", int64(tensor.Float32)))
	b.node("Reshape", []string{"c", "s23"}, []string{"r"})
	b.node("Mul", []string{"r", "one"}, []string{"m"})
	b.node("Add", []string{"zero", "m"}, []string{"a"})
	b.node("Transpose", []string{"a"}, []string{"t"}, attrInts("perm", []int64{0, 1}))
	b.node("Slice", []string{"t", "st", "en"}, []string{"sl"})
	b.node("Pad", []string{"sl", "pads"}, []string{"y"})
	// Not no-ops: a Reshape that changes the shape, a Mul whose constant broadcasts the
	// result to a bigger shape, a Slice that drops a row.
	b.node("Reshape", []string{"x", "s32"}, []string{"keep1"})
	for i := range b.g.Initializer {
		if b.g.Initializer[i].GetName() == "ones" {
			b.g.Initializer[i] = ownedTensorProto("ones", tensor.FromFloat32([]int64{4, 2, 3}, make24(1)))
		}
	}
	b.node("Mul", []string{"x", "ones"}, []string{"keep2"})
	b.node("Slice", []string{"x", "st", "en1"}, []string{"keep3"})
	before, after, n := applied(t, b, nil, RemoveNoOps)
	if n != 6 {
		t.Fatalf("changes = %d, want 6", n)
	}
	wantOps(t, after, "Pad", "Reshape", "Mul", "Slice")
	if after.Graph().Node[0].Input[0] != "x" {
		t.Fatalf("the last no-op must be kept (its input is a graph input, its output a graph output)")
	}
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 3}})
}

func make24(v float32) []float32 {
	out := make([]float32, 24)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestCastToOtherTypeKept(t *testing.T) {
	b := newBuilder(13).input("x", 2).output("y")
	b.node("Cast", []string{"x"}, []string{"y"}, attrInt("to", int64(tensor.Float16)))
	_, _, n := applied(t, b, nil, RemoveNoOps)
	if n != 0 {
		t.Fatal("a type-changing Cast was removed")
	}
}

func TestFuseTranspose(t *testing.T) {
	b := newBuilder(13).input("x", 2, 3, 4).output("y").output("z")
	b.node("Transpose", []string{"x"}, []string{"t1"}, attrInts("perm", []int64{0, 2, 1}))
	b.node("Transpose", []string{"t1"}, []string{"t2"}, attrInts("perm", []int64{0, 2, 1}))
	b.node("Relu", []string{"t2"}, []string{"y"})
	// Not inverses: merged into one Transpose with the composed permutation.
	b.node("Transpose", []string{"x"}, []string{"u1"}, attrInts("perm", []int64{1, 0, 2}))
	b.node("Transpose", []string{"u1"}, []string{"z"}, attrInts("perm", []int64{0, 2, 1}))
	before, after, n := applied(t, b, nil, FuseTranspose)
	if n != 2 {
		t.Fatalf("changes = %d", n)
	}
	wantOps(t, after, "Relu", "Transpose")
	perm, _ := shape.AttrInts(after.Graph().Node[1], "perm")
	if len(perm) != 3 || perm[0] != 1 || perm[1] != 2 || perm[2] != 0 {
		t.Fatalf("merged perm = %v, want [1 2 0]", perm)
	}
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 3, 4}})
}

func TestFuseTransposeSharedNotMerged(t *testing.T) {
	b := newBuilder(13).input("x", 2, 3).output("y").output("t1")
	b.node("Transpose", []string{"x"}, []string{"t1"}, attrInts("perm", []int64{1, 0}))
	b.node("Transpose", []string{"t1"}, []string{"y"}, attrInts("perm", []int64{1, 0}))
	if _, _, n := applied(t, b, nil, FuseTranspose); n != 0 {
		t.Fatal("merged a Transpose whose output is also a graph output")
	}
}

func TestCollapseReshape(t *testing.T) {
	b := newBuilder(13).input("x", 2, 3, 4).output("y").output("z").output("g")
	b.ints("ax0", []int64{1}, 0).ints("s", []int64{2}, 4, 6)
	b.node("Flatten", []string{"x"}, []string{"f"}, attrInt("axis", 1))
	b.node("Reshape", []string{"f", "s"}, []string{"y"})
	b.node("Unsqueeze", []string{"x", "ax0"}, []string{"u"})
	b.node("Squeeze", []string{"u", "ax0"}, []string{"q"})
	b.node("Relu", []string{"q"}, []string{"z"})
	// Slice of one element + Squeeze of that axis = Gather.
	b.ints("st", []int64{1}, 1).ints("en", []int64{1}, 2).ints("ax1", []int64{1}, 1)
	b.node("Slice", []string{"x", "st", "en", "ax1"}, []string{"sl"})
	b.node("Squeeze", []string{"sl", "ax1"}, []string{"g"})
	before, after, n := applied(t, b, nil, CollapseReshape)
	if n != 3 {
		t.Fatalf("changes = %d, want 3", n)
	}
	wantOps(t, after, "Reshape", "Relu", "Gather")
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 3, 4}})
}

func TestCollapseReshapeDynamicZeroKept(t *testing.T) {
	// Reshape(Reshape(x, [0,-1]), [0,2,-1]) with a dynamic batch: the second target's 0
	// copies from the intermediate, so the chain only collapses if that is the same.
	b := newBuilder(13).input("x", "N", 4, 3).output("y")
	b.ints("a", []int64{2}, 0, -1).ints("c", []int64{3}, 0, 0, -1)
	b.node("Reshape", []string{"x", "a"}, []string{"r"})
	b.node("Reshape", []string{"r", "c"}, []string{"y"})
	before, after, _ := applied(t, b, nil, CollapseReshape)
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 4, 3}})
	if len(after.Graph().Node) != 2 {
		t.Fatalf("collapsed a chain whose target copies from the intermediate: %v", ops(after))
	}
}

// convBN builds x → Conv → BatchNormalization → y.
func convBN(extraUse bool) *builder {
	b := newBuilder(13).input("x", 1, 4, 6, 6).output("y")
	b.init("w", []int64{8, 2, 3, 3}).init("bias", []int64{8})
	b.init("sc", []int64{8}).init("bb", []int64{8}).init("mean", []int64{8}).positive("var", []int64{8})
	b.node("Conv", []string{"x", "w", "bias"}, []string{"c"}, attrInts("pads", []int64{1, 1, 1, 1}), attrInt("group", 2))
	b.node("BatchNormalization", []string{"c", "sc", "bb", "mean", "var"}, []string{"y"}, attrFloat("epsilon", 1e-3))
	if extraUse {
		b.output("c2")
		b.node("Relu", []string{"c"}, []string{"c2"})
	}
	return b
}

func TestFuseBatchNormConv(t *testing.T) {
	before, after, n := applied(t, convBN(false), nil, FuseBatchNorm)
	if n != 1 {
		t.Fatalf("changes = %d", n)
	}
	wantOps(t, after, "Conv")
	if after.Graph().Node[0].Output[0] != "y" {
		t.Fatal("the graph output must keep its name")
	}
	sameOutputs(t, before, after, map[string][]int64{"x": {1, 4, 6, 6}})
}

func TestFuseBatchNormSecondConsumer(t *testing.T) {
	_, after, n := applied(t, convBN(true), nil, FuseBatchNorm)
	if n != 0 {
		t.Fatal("folded a BatchNormalization whose Conv output has another reader")
	}
	wantOps(t, after, "Conv", "BatchNormalization", "Relu")
}

func TestFuseBatchNormNonConstantStats(t *testing.T) {
	b := newBuilder(13).input("x", 1, 2, 4, 4).input("mean", 2).output("y")
	b.init("w", []int64{2, 2, 1, 1}).init("sc", []int64{2}).init("bb", []int64{2}).positive("var", []int64{2})
	b.node("Conv", []string{"x", "w"}, []string{"c"})
	b.node("BatchNormalization", []string{"c", "sc", "bb", "mean", "var"}, []string{"y"})
	if _, _, n := applied(t, b, nil, FuseBatchNorm); n != 0 {
		t.Fatal("folded a BatchNormalization whose mean is a graph input")
	}
}

func TestFuseBatchNormConvTransposeGroups(t *testing.T) {
	b := newBuilder(13).input("x", 1, 4, 3, 3).output("y")
	b.init("w", []int64{4, 3, 2, 2}).init("sc", []int64{6}).init("bb", []int64{6}).init("mean", []int64{6}).positive("var", []int64{6})
	b.node("ConvTranspose", []string{"x", "w"}, []string{"c"}, attrInt("group", 2), attrInts("strides", []int64{2, 2}))
	b.node("BatchNormalization", []string{"c", "sc", "bb", "mean", "var"}, []string{"y"})
	before, after, n := applied(t, b, nil, FuseBatchNorm)
	if n != 1 {
		t.Fatalf("changes = %d", n)
	}
	wantOps(t, after, "ConvTranspose")
	sameOutputs(t, before, after, map[string][]int64{"x": {1, 4, 3, 3}})
}

func TestFuseBatchNormGemmAndMatMul(t *testing.T) {
	for _, op := range []string{"Gemm", "MatMul"} {
		t.Run(op, func(t *testing.T) {
			b := newBuilder(13).input("x", 3, 4).output("y")
			b.init("w", []int64{5, 4}).init("sc", []int64{5}).init("bb", []int64{5}).init("mean", []int64{5}).positive("var", []int64{5})
			if op == "Gemm" {
				b.init("cb", []int64{5})
				b.node("Gemm", []string{"x", "w", "cb"}, []string{"g"}, attrInt("transB", 1), attrFloat("beta", 0.5))
			} else {
				b.g.Initializer[0] = ownedTensorProto("w", tensor.FromFloat32([]int64{4, 5}, make([]float32, 20)))
				b.init("w2", []int64{4, 5})
				b.g.Initializer[0] = b.g.Initializer[len(b.g.Initializer)-1]
				b.g.Initializer[0].Name = proto.String("w")
				b.g.Initializer = b.g.Initializer[:len(b.g.Initializer)-1]
				b.node("MatMul", []string{"x", "w"}, []string{"g"})
			}
			b.node("BatchNormalization", []string{"g", "sc", "bb", "mean", "var"}, []string{"y"})
			before, after, n := applied(t, b, nil, FuseBatchNorm)
			if n != 1 {
				t.Fatalf("changes = %d", n)
			}
			wantOps(t, after, "Gemm")
			sameOutputs(t, before, after, map[string][]int64{"x": {3, 4}})
		})
	}
}

func TestFuseAffineAfterConv(t *testing.T) {
	b := newBuilder(13).input("x", 1, 3, 5, 5).output("y")
	b.init("w", []int64{4, 3, 3, 3}).init("s", []int64{1, 4, 1, 1}).init("k", []int64{4, 1, 1}).init("d", []int64{}, 2)
	b.node("Conv", []string{"x", "w"}, []string{"c"})
	b.node("Mul", []string{"s", "c"}, []string{"m"})
	b.node("Add", []string{"m", "k"}, []string{"a"})
	b.node("Div", []string{"a", "d"}, []string{"y"})
	before, after, n := applied(t, b, nil, FuseAffine, FuseAffine, FuseAffine)
	if n != 3 {
		t.Fatalf("changes = %d, want 3", n)
	}
	wantOps(t, after, "Conv")
	sameOutputs(t, before, after, map[string][]int64{"x": {1, 3, 5, 5}})
}

func TestFuseAffineNotPerChannel(t *testing.T) {
	// A constant that varies over space, or widens the output, is not a per-channel scale.
	b := newBuilder(13).input("x", 1, 3, 5, 5).output("y").output("z")
	b.init("w", []int64{4, 3, 1, 1}).init("w2", []int64{4, 3, 1, 1}).init("sp", []int64{1, 1, 5, 5}).init("wide", []int64{2, 4, 1, 1})
	b.node("Conv", []string{"x", "w"}, []string{"c"})
	b.node("Mul", []string{"c", "sp"}, []string{"y"})
	b.node("Conv", []string{"x", "w2"}, []string{"c2"})
	b.node("Add", []string{"c2", "wide"}, []string{"z"})
	if _, _, n := applied(t, b, nil, FuseAffine); n != 0 {
		t.Fatalf("folded %d non-per-channel constants", n)
	}
}

func TestFuseAffineBeforeConv(t *testing.T) {
	b := newBuilder(13).input("x", 1, 4, 5, 5).output("y").output("z")
	b.init("s", []int64{4, 1, 1}).init("k", []int64{1, 4, 1, 1}).init("w", []int64{6, 2, 1, 1}).init("w2", []int64{4, 1, 3, 3})
	b.init("k2", []int64{4, 1, 1})
	// Scale then shift feeding an unpadded grouped Conv: both fold.
	b.node("Mul", []string{"x", "s"}, []string{"m"})
	b.node("Add", []string{"m", "k"}, []string{"a"})
	b.node("Conv", []string{"a", "w"}, []string{"y"}, attrInt("group", 2))
	// A shift feeding a padded depthwise Conv cannot fold (the padding sees zeros).
	b.node("Add", []string{"x", "k2"}, []string{"a2"})
	b.node("Conv", []string{"a2", "w2"}, []string{"z"}, attrInt("group", 4), attrInts("pads", []int64{1, 1, 1, 1}))
	before, after, n := applied(t, b, nil, FuseAffine, FuseAffine)
	if n != 2 {
		t.Fatalf("changes = %d, want 2", n)
	}
	wantOps(t, after, "Conv", "Add", "Conv")
	sameOutputs(t, before, after, map[string][]int64{"x": {1, 4, 5, 5}})
}

func TestFuseAffineReorderBeforePaddedConv(t *testing.T) {
	// x*a + b into a padded Conv: the scale folds, b/a stays as one Add.
	b := newBuilder(13).input("x", 1, 2, 5, 5).output("y")
	b.init("a", []int64{1}, 0.5).init("k", []int64{1}, -0.25).init("w", []int64{3, 2, 3, 3})
	b.node("Mul", []string{"a", "x"}, []string{"m"})
	b.node("Add", []string{"m", "k"}, []string{"s"})
	b.node("Conv", []string{"s", "w"}, []string{"y"}, attrInts("pads", []int64{1, 1, 1, 1}))
	before, after, n := applied(t, b, nil, FuseAffine)
	if n != 1 {
		t.Fatalf("changes = %d", n)
	}
	wantOps(t, after, "Add", "Conv")
	sameOutputs(t, before, after, map[string][]int64{"x": {1, 2, 5, 5}})
}

func TestFuseAffineBeforeMatMul(t *testing.T) {
	// LayerNorm's gamma/beta feeding a linear layer fold into it.
	b := newBuilder(13).input("x", 2, 3, 4).output("y")
	b.init("g", []int64{4}).init("be", []int64{4}).init("w", []int64{4, 5}).init("c", []int64{5})
	b.node("Mul", []string{"x", "g"}, []string{"m"})
	b.node("Add", []string{"m", "be"}, []string{"a"})
	b.node("MatMul", []string{"a", "w"}, []string{"mm"})
	b.node("Add", []string{"mm", "c"}, []string{"y"})
	before, after, n := applied(t, b, nil, FuseAffine, FuseAffine)
	if n != 2 {
		t.Fatalf("changes = %d", n)
	}
	wantOps(t, after, "MatMul", "Add")
	sameOutputs(t, before, after, map[string][]int64{"x": {2, 3, 4}})
}

func TestFuseMatMulAdd(t *testing.T) {
	b := newBuilder(13).input("x", 3, 4).input("bias", 5).output("y").output("z").output("u")
	b.init("w", []int64{4, 5}).init("c", []int64{1, 5}).init("w3", []int64{4, 5}).init("c3", []int64{5}).init("w2", []int64{4, 5})
	b.g.Input = append(b.g.Input, vi("x3", tensor.Float32, 2, 3, 4))
	b.node("MatMul", []string{"x", "w"}, []string{"m"})
	b.node("Add", []string{"c", "m"}, []string{"y"})
	// Negative: the bias is not a constant; the MatMul is 3-D.
	b.node("MatMul", []string{"x", "w2"}, []string{"m2"})
	b.node("Add", []string{"m2", "bias"}, []string{"z"})
	b.node("MatMul", []string{"x3", "w3"}, []string{"m3"})
	b.node("Add", []string{"m3", "c3"}, []string{"u"})
	before, after, n := applied(t, b, nil, FuseMatMulAdd)
	if n != 1 {
		t.Fatalf("changes = %d, want 1", n)
	}
	wantOps(t, after, "Gemm", "MatMul", "Add", "MatMul", "Add")
	if after.Graph().Node[0].Output[0] != "y" {
		t.Fatal("Gemm must produce the graph output y")
	}
	sameOutputs(t, before, after, map[string][]int64{"x": {3, 4}, "bias": {5}, "x3": {2, 3, 4}})
}

// hardswish builds x*clip(x+3,0,6)/6 at the given opset.
func hardswish(opset int64, hi float32) *builder {
	b := newBuilder(opset).input("x", 2, 8).output("y")
	b.init("three", []int64{}, 3).init("six", []int64{}, 6).init("zero", []int64{}, 0).init("hi", []int64{}, hi)
	b.node("Add", []string{"x", "three"}, []string{"a"})
	if opset < 11 {
		b.node("Clip", []string{"a"}, []string{"c"}, attrFloat("min", 0), attrFloat("max", hi))
	} else {
		b.node("Clip", []string{"a", "zero", "hi"}, []string{"c"})
	}
	b.node("Mul", []string{"x", "c"}, []string{"m"})
	b.node("Div", []string{"m", "six"}, []string{"y"})
	return b
}

func TestFuseHardSwish(t *testing.T) {
	for _, tc := range []struct {
		opset int64
		want  []string
	}{{9, []string{"HardSigmoid", "Mul"}}, {11, []string{"HardSigmoid", "Mul"}}, {14, []string{"HardSwish"}}} {
		before, after, n := applied(t, hardswish(tc.opset, 6), nil, FuseHardSwish)
		if n != 1 {
			t.Fatalf("opset %d: changes = %d", tc.opset, n)
		}
		wantOps(t, after, tc.want...)
		sameOutputs(t, before, after, map[string][]int64{"x": {2, 8}})
	}
	if _, _, n := applied(t, hardswish(11, 5), nil, FuseHardSwish); n != 0 {
		t.Fatal("fused clip(x+3, 0, 5)")
	}
}

func TestFuseConstChains(t *testing.T) {
	b := newBuilder(13).input("x", 3).output("y")
	b.init("a", []int64{3}, 2, 3, 4).init("d", []int64{}, 4).init("s", []int64{1}, 1)
	b.node("Mul", []string{"x", "a"}, []string{"m"})
	b.node("Div", []string{"m", "d"}, []string{"q"})
	b.node("Sub", []string{"q", "s"}, []string{"y"})
	before, after, n := applied(t, b, nil, FuseConstChains)
	if n != 1 {
		t.Fatalf("changes = %d", n)
	}
	wantOps(t, after, "Mul", "Sub")
	sameOutputs(t, before, after, map[string][]int64{"x": {3}})
}

func TestDedupeAndCSE(t *testing.T) {
	b := newBuilder(13).input("x", 3).output("y")
	b.init("a", []int64{3}, 1, 2, 3).init("b", []int64{3}, 1, 2, 3).init("c", []int64{3}, 1, 2, 4)
	b.node("Add", []string{"x", "a"}, []string{"p"})
	b.node("Add", []string{"x", "b"}, []string{"q"})
	b.node("Add", []string{"x", "c"}, []string{"r"})
	b.node("LeakyRelu", []string{"p"}, []string{"l1"}, attrFloat("alpha", 0.1))
	b.node("LeakyRelu", []string{"p"}, []string{"l2"}, attrFloat("alpha", 0.2))
	b.node("Sum", []string{"p", "q", "r", "l1", "l2"}, []string{"y"})
	before, after, n := applied(t, b, nil, DedupeInitializers, CSE, DeadCode)
	if n == 0 {
		t.Fatal("no changes")
	}
	wantOps(t, after, "Add", "Add", "LeakyRelu", "LeakyRelu", "Sum")
	if len(after.Graph().Initializer) != 2 {
		t.Errorf("initializers = %d, want 2", len(after.Graph().Initializer))
	}
	sameOutputs(t, before, after, map[string][]int64{"x": {3}})
}

func TestDeadCode(t *testing.T) {
	b := newBuilder(13).input("x", 3).output("y")
	b.init("unused", []int64{3}).init("default", []int64{3})
	b.g.Input = append(b.g.Input, vi("default", tensor.Float32, 3))
	b.node("Relu", []string{"x"}, []string{"y"})
	b.node("Neg", []string{"x"}, []string{"dead"})
	b.node("Abs", []string{"dead"}, []string{"dead2"})
	b.g.ValueInfo = append(b.g.ValueInfo, vi("dead2", tensor.Float32, 3), vi("gone", tensor.Float32, 3))
	_, after, n := applied(t, b, nil, DeadCode)
	if n != 3 {
		t.Fatalf("changes = %d, want 3", n)
	}
	wantOps(t, after, "Relu")
	g := after.Graph()
	if len(g.Initializer) != 1 || g.Initializer[0].GetName() != "default" {
		t.Errorf("initializers: want only the input default kept")
	}
	if len(g.ValueInfo) != 0 {
		t.Errorf("stale value_info kept: %v", g.ValueInfo)
	}
}

func TestLookup(t *testing.T) {
	ps, err := Lookup([]string{"dead-code", "fold-constants"})
	if err != nil || len(ps) != 2 || ps[0] != FoldConstants {
		t.Fatalf("Lookup = %v, %v (want run order)", ps, err)
	}
	if _, err := Lookup([]string{"nope"}); err == nil {
		t.Fatal("unknown pass accepted")
	}
	for _, p := range All() {
		if p.Name == "" || p.Doc == "" || p.Run == nil {
			t.Errorf("pass %+v incomplete", p.Name)
		}
	}
}

func TestFuseAffineGemmPerRowBiasKept(t *testing.T) {
	// Gemm's C of shape [M,1] is per row: a per-column Add after it cannot merge into C,
	// and nothing (weights included) may change.
	b := newBuilder(13).input("x", 3, 4).output("y")
	b.init("w", []int64{4, 5}).init("c", []int64{3, 1}).init("k", []int64{5})
	b.node("Gemm", []string{"x", "w", "c"}, []string{"g"})
	b.node("Add", []string{"g", "k"}, []string{"y"})
	before, after, n := applied(t, b, nil, FuseAffine)
	if n != 0 {
		t.Fatalf("changes = %d", n)
	}
	if !proto.Equal(before.Proto, after.Proto) {
		t.Fatal("graph changed although the fold was refused")
	}
}
