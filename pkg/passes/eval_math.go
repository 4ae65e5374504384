package passes

// Arithmetic kernels of the constant folder: broadcasting elementwise operators, casts,
// reductions and small matrix products, computed in float64 or int64.

import (
	"fmt"
	"math"

	"github.com/optimctl/optimctl/pkg/shape"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// broadcastShape is numpy's multidirectional broadcast of static shapes.
func broadcastShape(shapes ...[]int64) ([]int64, error) {
	r := 0
	for _, s := range shapes {
		r = max(r, len(s))
	}
	out := make([]int64, r)
	for k := range out {
		out[k] = 1
	}
	for _, s := range shapes {
		for k, d := range s {
			j := r - len(s) + k
			switch {
			case d == out[j] || d == 1:
			case out[j] == 1:
				out[j] = d
			default:
				return nil, fmt.Errorf("shapes %v do not broadcast", shapes)
			}
		}
	}
	return out, nil
}

// broadcastIndex maps every element of out (row-major) to the flat index of an input of
// shape in that broadcasts to it.
func broadcastIndex(out, in []int64) []int {
	n := int(tensor.NumElements(out))
	idx := make([]int, n)
	r := len(out)
	strides := make([]int, r) // input strides aligned to out, 0 where broadcast
	s := 1
	for k := len(in) - 1; k >= 0; k-- {
		j := r - len(in) + k
		if in[k] != 1 {
			strides[j] = s
		}
		s *= int(in[k])
	}
	ctr := make([]int64, r)
	off := 0
	for i := 0; i < n; i++ {
		idx[i] = off
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
	return idx
}

func binaryOp(op string, fn func(a, b float64) float64) evaluator {
	return func(e *evalCtx) ([]*tensor.Tensor, error) {
		a, b := e.input(0), e.input(1)
		if a == nil || b == nil || !numeric(a.DType) || (op != "Pow" && a.DType != b.DType) {
			return nil, errUnsupported
		}
		out, err := broadcastShape(a.Shape, b.Shape)
		if err != nil {
			return nil, err
		}
		ia, ib := broadcastIndex(out, a.Shape), broadcastIndex(out, b.Shape)
		if isFloat(a.DType) {
			fa, fb := floats(a), floats(b)
			v := make([]float64, len(ia))
			for i := range v {
				v[i] = fn(fa[ia[i]], fb[ib[i]])
			}
			return one(makeFloats(a.DType, out, v))
		}
		xa, xb := ints(a), ints(b)
		v := make([]int64, len(ia))
		for i := range v {
			x, y := xa[ia[i]], xb[ib[i]]
			switch op {
			case "Add":
				v[i] = x + y
			case "Sub":
				v[i] = x - y
			case "Mul":
				v[i] = x * y
			case "Div":
				if y == 0 {
					return nil, errUnsupported
				}
				v[i] = x / y
			case "Max":
				v[i] = max(x, y)
			case "Min":
				v[i] = min(x, y)
			default:
				v[i] = int64(fn(float64(x), float64(y)))
			}
		}
		return one(makeInts(a.DType, out, v))
	}
}

func variadic(op string) evaluator {
	bin := evaluators[op]
	return func(e *evalCtx) ([]*tensor.Tensor, error) {
		if len(e.in) == 0 || e.in[0] == nil {
			return nil, errUnsupported
		}
		acc := e.in[0]
		for _, t := range e.in[1:] {
			r, err := bin(&evalCtx{n: e.n, opset: e.opset, in: []*tensor.Tensor{acc, t}})
			if err != nil {
				return nil, err
			}
			acc = r[0]
		}
		if len(e.in) == 1 {
			acc = acc.Clone()
		}
		return one(acc)
	}
}

func compareOp(fn func(a, b float64) bool) evaluator {
	return func(e *evalCtx) ([]*tensor.Tensor, error) {
		a, b := e.input(0), e.input(1)
		if a == nil || b == nil || !numeric(a.DType) || !numeric(b.DType) {
			return nil, errUnsupported
		}
		out, err := broadcastShape(a.Shape, b.Shape)
		if err != nil {
			return nil, err
		}
		ia, ib := broadcastIndex(out, a.Shape), broadcastIndex(out, b.Shape)
		fa, fb := floats(a), floats(b)
		v := make([]int64, len(ia))
		for i := range v {
			if fn(fa[ia[i]], fb[ib[i]]) {
				v[i] = 1
			}
		}
		return one(makeInts(tensor.Bool, out, v))
	}
}

func unaryOp(fn func(x float64) float64) evaluator {
	return func(e *evalCtx) ([]*tensor.Tensor, error) {
		x := e.input(0)
		if x == nil || !isFloat(x.DType) {
			if x != nil && numeric(x.DType) && (e.n.GetOpType() == "Neg" || e.n.GetOpType() == "Abs" || e.n.GetOpType() == "Relu" || e.n.GetOpType() == "Sign") {
				v := ints(x)
				for i := range v {
					v[i] = int64(fn(float64(v[i])))
				}
				return one(makeInts(x.DType, x.Shape, v))
			}
			return nil, errUnsupported
		}
		v := floats(x)
		for i := range v {
			v[i] = fn(v[i])
		}
		return one(makeFloats(x.DType, x.Shape, v))
	}
}

func clip(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	if x == nil || !numeric(x.DType) {
		return nil, errUnsupported
	}
	lo, hi := math.Inf(-1), math.Inf(1)
	if e.opset < 11 {
		lo = float64(shape.AttrFloat(e.n, "min", float32(math.Inf(-1))))
		hi = float64(shape.AttrFloat(e.n, "max", float32(math.Inf(1))))
	} else {
		if t := e.input(1); t != nil {
			lo = floats(t)[0]
		}
		if t := e.input(2); t != nil {
			hi = floats(t)[0]
		}
	}
	v := floats(x)
	for i := range v {
		v[i] = math.Min(math.Max(v[i], lo), hi)
	}
	return one(makeFloats(x.DType, x.Shape, v))
}

func castEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	to := tensor.DType(e.attrInt("to", 0))
	if e.opset < 6 || x == nil || !numeric(x.DType) || !numeric(to) {
		return nil, errUnsupported
	}
	if x.DType == to {
		return one(x.Clone())
	}
	if isFloat(to) {
		return one(makeFloats(to, x.Shape, floats(x)))
	}
	if isFloat(x.DType) {
		f := floats(x)
		v := make([]int64, len(f))
		for i, y := range f {
			if math.IsNaN(y) || math.IsInf(y, 0) {
				return nil, errUnsupported // implementation-defined in runtimes
			}
			if to == tensor.Bool {
				if y != 0 {
					v[i] = 1
				}
				continue
			}
			v[i] = int64(y) // truncation toward zero, as C casts do
		}
		return one(makeInts(to, x.Shape, v))
	}
	return one(makeInts(to, x.Shape, ints(x)))
}

func whereEval(e *evalCtx) ([]*tensor.Tensor, error) {
	c, a, b := e.input(0), e.input(1), e.input(2)
	if c == nil || a == nil || b == nil || a.DType != b.DType {
		return nil, errUnsupported
	}
	out, err := broadcastShape(c.Shape, a.Shape, b.Shape)
	if err != nil {
		return nil, err
	}
	ic, ia, ib := broadcastIndex(out, c.Shape), broadcastIndex(out, a.Shape), broadcastIndex(out, b.Shape)
	cond := ints(c)
	sz := a.DType.Bits() / 8
	res := tensor.New(a.DType, out)
	for i := range ic {
		src, j := b, ib[i]
		if cond[ic[i]] != 0 {
			src, j = a, ia[i]
		}
		copy(res.Data[i*sz:(i+1)*sz], src.Data[j*sz:(j+1)*sz])
	}
	return one(res)
}

func matmulEval(e *evalCtx) ([]*tensor.Tensor, error) {
	a, b := e.input(0), e.input(1)
	if a == nil || b == nil || !isFloat(a.DType) || a.DType != b.DType || len(a.Shape) != 2 || len(b.Shape) != 2 || a.Shape[1] != b.Shape[0] {
		return nil, errUnsupported
	}
	m, k, n := int(a.Shape[0]), int(a.Shape[1]), int(b.Shape[1])
	fa, fb := floats(a), floats(b)
	v := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for p := 0; p < k; p++ {
			x := fa[i*k+p]
			for j := 0; j < n; j++ {
				v[i*n+j] += x * fb[p*n+j]
			}
		}
	}
	return one(makeFloats(a.DType, []int64{int64(m), int64(n)}, v))
}

func reduceEval(e *evalCtx) ([]*tensor.Tensor, error) {
	x := e.input(0)
	if x == nil || !numeric(x.DType) {
		return nil, errUnsupported
	}
	from := int64(18)
	if e.n.GetOpType() == "ReduceSum" {
		from = 13
	}
	axes, _ := e.axes(from)
	r := len(x.Shape)
	if len(axes) == 0 {
		if e.attrInt("noop_with_empty_axes", 0) == 1 {
			return one(x.Clone())
		}
		for k := 0; k < r; k++ {
			axes = append(axes, int64(k))
		}
	}
	red := make([]bool, r)
	for _, a := range axes {
		k, err := normAxis(a, r)
		if err != nil {
			return nil, err
		}
		red[k] = true
	}
	keep := e.attrInt("keepdims", 1) == 1
	kept := make([]int64, r) // output shape with reduced axes as 1
	var out []int64
	for k, d := range x.Shape {
		kept[k] = d
		if red[k] {
			kept[k] = 1
			if keep {
				out = append(out, 1)
			}
		} else {
			out = append(out, d)
		}
	}
	if out == nil {
		out = []int64{}
	}
	// Map every input element to its output slot.
	nOut := int(tensor.NumElements(kept))
	strides := make([]int, r)
	s := 1
	for k := r - 1; k >= 0; k-- {
		if !red[k] {
			strides[k] = s
		}
		s *= int(kept[k])
	}
	v := floats(x)
	acc := make([]float64, nOut)
	cnt := make([]int, nOut)
	op := e.n.GetOpType()
	switch op {
	case "ReduceProd":
		for i := range acc {
			acc[i] = 1
		}
	case "ReduceMax":
		for i := range acc {
			acc[i] = math.Inf(-1)
		}
	case "ReduceMin":
		for i := range acc {
			acc[i] = math.Inf(1)
		}
	}
	ctr := make([]int64, r)
	off := 0
	for _, y := range v {
		switch op {
		case "ReduceSum", "ReduceMean":
			acc[off] += y
		case "ReduceProd":
			acc[off] *= y
		case "ReduceMax":
			acc[off] = math.Max(acc[off], y)
		case "ReduceMin":
			acc[off] = math.Min(acc[off], y)
		}
		cnt[off]++
		for k := r - 1; k >= 0; k-- {
			ctr[k]++
			off += strides[k]
			if ctr[k] < x.Shape[k] {
				break
			}
			off -= strides[k] * int(ctr[k])
			ctr[k] = 0
		}
	}
	if op == "ReduceMean" {
		for i := range acc {
			if cnt[i] > 0 {
				acc[i] /= float64(cnt[i])
			}
		}
	}
	if len(v) == 0 && (op == "ReduceMax" || op == "ReduceMin") {
		return nil, errUnsupported
	}
	if isFloat(x.DType) {
		return one(makeFloats(x.DType, out, acc))
	}
	iv := make([]int64, len(acc))
	for i, a := range acc {
		iv[i] = int64(a)
	}
	return one(makeInts(x.DType, out, iv))
}

func rangeEval(e *evalCtx) ([]*tensor.Tensor, error) {
	s, l, d := e.input(0), e.input(1), e.input(2)
	if s == nil || l == nil || d == nil || s.Len() != 1 || l.Len() != 1 || d.Len() != 1 {
		return nil, errUnsupported
	}
	if isFloat(s.DType) {
		a, b, st := floats(s)[0], floats(l)[0], floats(d)[0]
		if st == 0 {
			return nil, errUnsupported
		}
		n := int64(math.Max(math.Ceil((b-a)/st), 0))
		v := make([]float64, n)
		for i := range v {
			v[i] = a + float64(i)*st
		}
		return one(makeFloats(s.DType, []int64{n}, v))
	}
	a, b, st := ints(s)[0], ints(l)[0], ints(d)[0]
	if st == 0 {
		return nil, errUnsupported
	}
	n := int64(math.Max(math.Ceil(float64(b-a)/float64(st)), 0))
	v := make([]int64, n)
	for i := range v {
		v[i] = a + int64(i)*st
	}
	return one(makeInts(s.DType, []int64{n}, v))
}
