package passes

// Data-movement kernels of the constant folder: they copy element bytes, so they are exact
// for every fixed-width element type.

import (
	"fmt"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

func shapeEval(e *evalCtx) ([]*tensor.Tensor, error) {
	s := e.input(0).Shape
	r := int64(len(s))
	start, end := e.attrInt("start", 0), e.attrInt("end", r)
	if start < 0 {
		start += r
	}
	if end < 0 {
		end += r
	}
	start, end = max(0, min(start, r)), max(0, min(end, r))
	if end < start {
		end = start
	}
	v := append([]int64{}, s[start:end]...)
	return one(tensor.FromInt64([]int64{int64(len(v))}, v))
}

// view returns x with a new shape (same bytes, copied).
func view(x *tensor.Tensor, shp []int64) *tensor.Tensor {
	return &tensor.Tensor{DType: x.DType, Shape: shp, Data: append([]byte(nil), x.Data...)}
}

func reshapeEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x, s := e.input(0), e.input(1)
	if x == nil || s == nil || e.opset < 5 {
		return nil, errUnsupported
	}
	target := ints(s)
	out, err := ResolveReshape(x.Shape, target, e.attrInt("allowzero", 0) == 1)
	if err != nil {
		return nil, err
	}
	return one(view(x, out))
}

// ResolveReshape computes a Reshape's output shape from a static input shape.
func ResolveReshape(in, target []int64, allowZero bool) ([]int64, error) {
	out := make([]int64, len(target))
	infer := -1
	prod := int64(1)
	for k, v := range target {
		switch {
		case v == -1:
			if infer >= 0 {
				return nil, fmt.Errorf("reshape target %v has two -1", target)
			}
			infer = k
			continue
		case v == 0 && !allowZero:
			if k >= len(in) {
				return nil, fmt.Errorf("reshape target %v copies a missing dim of %v", target, in)
			}
			v = in[k]
		case v < 0:
			return nil, fmt.Errorf("bad reshape target %v", target)
		}
		out[k] = v
		prod *= v
	}
	total := tensor.NumElements(in)
	if infer >= 0 {
		if prod == 0 || total%prod != 0 {
			return nil, fmt.Errorf("cannot reshape %v to %v", in, target)
		}
		out[infer] = total / prod
	} else if prod != total {
		return nil, fmt.Errorf("cannot reshape %v to %v", in, target)
	}
	return out, nil
}

func flattenEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	r := int64(len(x.Shape))
	a := e.attrInt("axis", 1)
	if a < 0 {
		a += r
	}
	if a < 0 || a > r {
		return nil, errUnsupported
	}
	return one(view(x, []int64{tensor.NumElements(x.Shape[:a]), tensor.NumElements(x.Shape[a:])}))
}

// axesInput reads Squeeze/Unsqueeze/Reduce axes (attribute before opset from, input after).
func (e *evalCtx) axes(from int64) ([]int64, bool) {
	if e.opset >= from {
		if t := e.input(1); t != nil {
			return ints(t), true
		}
		return nil, true
	}
	a, _ := shape.AttrInts(e.n, "axes")
	return a, true
}

func normAxis(a int64, r int) (int, error) {
	if a < 0 {
		a += int64(r)
	}
	if a < 0 || a >= int64(r) {
		return 0, fmt.Errorf("axis %d out of range for rank %d", a, r)
	}
	return int(a), nil
}

func squeezeEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	axes, _ := e.axes(13)
	drop := map[int]bool{}
	for _, a := range axes {
		k, err := normAxis(a, len(x.Shape))
		if err != nil || x.Shape[k] != 1 {
			return nil, errUnsupported
		}
		drop[k] = true
	}
	out := []int64{}
	for k, d := range x.Shape {
		if len(axes) == 0 && d == 1 || drop[k] {
			continue
		}
		out = append(out, d)
	}
	return one(view(x, out))
}

func unsqueezeEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	axes, _ := e.axes(13)
	r := len(x.Shape) + len(axes)
	ins := map[int]bool{}
	for _, a := range axes {
		k, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		ins[k] = true
	}
	out := make([]int64, 0, r)
	j := 0
	for k := 0; k < r; k++ {
		if ins[k] {
			out = append(out, 1)
		} else {
			out = append(out, x.Shape[j])
			j++
		}
	}
	return one(view(x, out))
}

// TransposeData permutes a tensor's axes by copying element bytes.
func TransposeData(x *tensor.Tensor, perm []int) *tensor.Tensor {
	r := len(x.Shape)
	out := make([]int64, r)
	for k, p := range perm {
		out[k] = x.Shape[p]
	}
	res := tensor.New(x.DType, out)
	sz := x.DType.Bits() / 8
	inStrides := make([]int, r)
	s := 1
	for k := r - 1; k >= 0; k-- {
		inStrides[k] = s
		s *= int(x.Shape[k])
	}
	strides := make([]int, r) // input stride of each output axis
	for k, p := range perm {
		strides[k] = inStrides[p]
	}
	n := int(tensor.NumElements(out))
	ctr := make([]int64, r)
	off := 0
	for i := 0; i < n; i++ {
		copy(res.Data[i*sz:(i+1)*sz], x.Data[off*sz:(off+1)*sz])
		for k := r - 1; k >= 0; k-- {
			ctr[k]++
			off += strides[k]
			if ctr[k] < out[k] {
				break
			}
			off -= strides[k] * int(ctr[k])
			ctr[k] = 0
		}
	}
	return res
}

func transposeEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	p, ok := shape.AttrInts(e.n, "perm")
	r := len(x.Shape)
	perm := make([]int, r)
	for k := range perm {
		perm[k] = r - 1 - k
		if ok {
			if len(p) != r {
				return nil, errUnsupported
			}
			a, err := normAxis(p[k], r)
			if err != nil {
				return nil, err
			}
			perm[k] = a
		}
	}
	return one(TransposeData(x, perm))
}

func concatEval(e *evalCtx) ([]*tensor.Tensor, error) {
	var ins []*tensor.Tensor
	for _, t := range e.in {
		if t != nil {
			ins = append(ins, t)
		}
	}
	if len(ins) == 0 {
		return nil, errUnsupported
	}
	r := len(ins[0].Shape)
	ax, err := normAxis(e.attrInt("axis", 0), r)
	if err != nil {
		return nil, err
	}
	out := append([]int64{}, ins[0].Shape...)
	out[ax] = 0
	for _, t := range ins {
		if t.DType != ins[0].DType || len(t.Shape) != r {
			return nil, errUnsupported
		}
		for k := range t.Shape {
			if k != ax && t.Shape[k] != out[k] {
				return nil, errUnsupported
			}
		}
		out[ax] += t.Shape[ax]
	}
	outer := int(tensor.NumElements(out[:ax]))
	sz := ins[0].DType.Bits() / 8
	res := tensor.New(ins[0].DType, out)
	pos := 0
	for o := 0; o < outer; o++ {
		for _, t := range ins {
			chunk := int(tensor.NumElements(t.Shape[ax:])) * sz
			copy(res.Data[pos:pos+chunk], t.Data[o*chunk:(o+1)*chunk])
			pos += chunk
		}
	}
	return one(res)
}

func sliceEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	r := len(x.Shape)
	var starts, ends, axes, steps []int64
	if e.opset < 10 {
		starts, _ = shape.AttrInts(e.n, "starts")
		ends, _ = shape.AttrInts(e.n, "ends")
		axes, _ = shape.AttrInts(e.n, "axes")
	} else {
		if e.input(1) == nil || e.input(2) == nil {
			return nil, errUnsupported
		}
		starts, ends = ints(e.input(1)), ints(e.input(2))
		if t := e.input(3); t != nil {
			axes = ints(t)
		}
		if t := e.input(4); t != nil {
			steps = ints(t)
		}
	}
	if len(axes) == 0 {
		for k := range starts {
			axes = append(axes, int64(k))
		}
	}
	if len(steps) == 0 {
		for range starts {
			steps = append(steps, 1)
		}
	}
	if len(starts) != len(ends) || len(axes) != len(starts) || len(steps) != len(starts) {
		return nil, errUnsupported
	}
	begin := make([]int64, r)
	step := make([]int64, r)
	out := append([]int64{}, x.Shape...)
	for k := range step {
		step[k] = 1
	}
	for k, a := range axes {
		ax, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		if steps[k] == 0 {
			return nil, errUnsupported
		}
		begin[ax], out[ax] = shape.SliceRange(starts[k], ends[k], steps[k], x.Shape[ax])
		step[ax] = steps[k]
	}
	return one(gatherStrided(x, begin, step, out))
}

// gatherStrided copies the elements begin + i*step (per axis) for i < out.
func gatherStrided(x *tensor.Tensor, begin, step, out []int64) *tensor.Tensor {
	r := len(x.Shape)
	res := tensor.New(x.DType, out)
	n := int(tensor.NumElements(out))
	if n == 0 {
		return res
	}
	sz := x.DType.Bits() / 8
	strides := make([]int, r)
	s := 1
	for k := r - 1; k >= 0; k-- {
		strides[k] = s
		s *= int(x.Shape[k])
	}
	off := 0
	for k := range begin {
		off += int(begin[k]) * strides[k]
	}
	ctr := make([]int64, r)
	for i := 0; i < n; i++ {
		copy(res.Data[i*sz:(i+1)*sz], x.Data[off*sz:(off+1)*sz])
		for k := r - 1; k >= 0; k-- {
			ctr[k]++
			off += int(step[k]) * strides[k]
			if ctr[k] < out[k] {
				break
			}
			off -= int(step[k]) * strides[k] * int(ctr[k])
			ctr[k] = 0
		}
	}
	return res
}

func gatherEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x, it := e.input(0), e.input(1)
	if x == nil || it == nil {
		return nil, errUnsupported
	}
	r := len(x.Shape)
	ax, err := normAxis(e.attrInt("axis", 0), r)
	if err != nil {
		return nil, err
	}
	idx := ints(it)
	out := append(append(append([]int64{}, x.Shape[:ax]...), it.Shape...), x.Shape[ax+1:]...)
	outer := int(tensor.NumElements(x.Shape[:ax]))
	inner := int(tensor.NumElements(x.Shape[ax+1:])) * (x.DType.Bits() / 8)
	dim := x.Shape[ax]
	res := tensor.New(x.DType, out)
	pos := 0
	for o := 0; o < outer; o++ {
		for _, i := range idx {
			if i < 0 {
				i += dim
			}
			if i < 0 || i >= dim {
				return nil, fmt.Errorf("gather index %d out of range [0,%d)", i, dim)
			}
			src := (o*int(dim) + int(i)) * inner
			copy(res.Data[pos:pos+inner], x.Data[src:src+inner])
			pos += inner
		}
	}
	return one(res)
}

func splitEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	r := len(x.Shape)
	ax, err := normAxis(e.attrInt("axis", 0), r)
	if err != nil {
		return nil, err
	}
	var parts []int64
	if e.opset >= 13 {
		if t := e.input(1); t != nil {
			parts = ints(t)
		}
	} else {
		parts, _ = shape.AttrInts(e.n, "split")
	}
	nOut := len(e.n.Output)
	if len(parts) == 0 {
		chunk := (x.Shape[ax] + int64(nOut) - 1) / int64(nOut)
		for k := 0; k < nOut; k++ {
			parts = append(parts, max(0, min(chunk, x.Shape[ax]-int64(k)*chunk)))
		}
	}
	if len(parts) != nOut {
		return nil, errUnsupported
	}
	var res []*tensor.Tensor
	var start int64
	for _, p := range parts {
		begin := make([]int64, r)
		begin[ax] = start
		out := append([]int64{}, x.Shape...)
		out[ax] = p
		res = append(res, gatherStrided(x, begin, ones64(r), out))
		start += p
	}
	if start != x.Shape[ax] {
		return nil, errUnsupported
	}
	return res, nil
}

func ones64(n int) []int64 {
	o := make([]int64, n)
	for k := range o {
		o[k] = 1
	}
	return o
}

// broadcastTo copies x to a broadcast shape.
func broadcastTo(x *tensor.Tensor, out []int64) *tensor.Tensor {
	idx := broadcastIndex(out, x.Shape)
	sz := x.DType.Bits() / 8
	res := tensor.New(x.DType, out)
	for i, j := range idx {
		copy(res.Data[i*sz:(i+1)*sz], x.Data[j*sz:(j+1)*sz])
	}
	return res
}

func expandEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x, s := e.input(0), e.input(1)
	if x == nil || s == nil {
		return nil, errUnsupported
	}
	out, err := broadcastShape(x.Shape, ints(s))
	if err != nil {
		return nil, err
	}
	return one(broadcastTo(x, out))
}

func tileEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x, rt := e.input(0), e.input(1)
	if x == nil || rt == nil {
		return nil, errUnsupported
	}
	reps := ints(rt)
	if len(reps) != len(x.Shape) {
		return nil, errUnsupported
	}
	// Tile = broadcast over interleaved repeat axes, then reshape.
	var inShape, outShape, final []int64
	for k, d := range x.Shape {
		if reps[k] < 0 {
			return nil, errUnsupported
		}
		inShape = append(inShape, 1, d)
		outShape = append(outShape, reps[k], d)
		final = append(final, reps[k]*d)
	}
	b := broadcastTo(&tensor.Tensor{DType: x.DType, Shape: inShape, Data: x.Data}, outShape)
	b.Shape = final
	return one(b)
}

func constantOfShapeEval(e *evalCtx) ([]*tensor.Tensor, error) {
	s := e.input(0)
	if s == nil {
		return nil, errUnsupported
	}
	shp := ints(s)
	for _, d := range shp {
		if d < 0 {
			return nil, errUnsupported
		}
	}
	val := tensor.New(tensor.Float32, []int64{1})
	if a := shape.Attr(e.n, "value"); a != nil && a.T != nil {
		v := shape.ConstantValue(&onnxpb.NodeProto{Attribute: []*onnxpb.AttributeProto{{Name: a.Name, T: a.T}}})
		if v == nil || v.Len() != 1 || v.DType.Bits() < 8 {
			return nil, errUnsupported
		}
		val = v
	}
	res := tensor.New(val.DType, shp)
	fillPattern(res.Data, val.Data)
	return one(res)
}

// fillPattern repeats pat over dst, doubling the copied span up to fillChunk and then
// copying chunk by chunk: one huge memmove cannot be preempted, which stalls the garbage
// collector for as long as it runs.
func fillPattern(dst, pat []byte) {
	if len(dst) == 0 {
		return
	}
	n := copy(dst, pat)
	for n < len(dst) && n < fillChunk {
		n += copy(dst[n:], dst[:n])
	}
	span := n - n%len(pat)
	for n < len(dst) {
		n += copy(dst[n:min(len(dst), n+span)], dst[:span])
	}
}

const fillChunk = 1 << 20
