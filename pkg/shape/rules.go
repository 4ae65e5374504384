package shape

import (
	"math"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// rules maps a default-domain op type to its inference rule. A rule reads opset-dependent
// forms itself (attributes that became inputs).
var rules = map[string]func(*nodeCtx){}

func init() {
	for _, op := range []string{"Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Exp",
		"Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Floor", "Ceil", "Round", "Erf", "Softplus", "Softsign",
		"Elu", "Selu", "Celu", "Mish", "Gelu", "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh",
		"Asinh", "Acosh", "Atanh", "Clip", "Softmax", "LogSoftmax", "Hardmax", "LRN", "Sign", "Shrink",
		"ThresholdedRelu", "CumSum", "Trilu", "InstanceNormalization", "MeanVarianceNormalization",
		"BitwiseNot", "ReverseSequence", "ScatterND", "ScatterElements", "Scatter", "Not"} {
		rules[op] = same
	}
	rules["Identity"] = identity
	rules["Dropout"] = dropout
	rules["BatchNormalization"] = batchNorm
	rules["LayerNormalization"] = layerNorm
	for _, op := range []string{"Add", "Sub", "Mul", "Div", "Pow", "Mod", "PRelu", "BitShift",
		"BitwiseAnd", "BitwiseOr", "BitwiseXor", "Max", "Min", "Sum", "Mean"} {
		rules[op] = arith
	}
	for _, op := range []string{"Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"} {
		rules[op] = compare
	}
	for _, op := range []string{"IsNaN", "IsInf"} {
		rules[op] = func(c *nodeCtx) {
			if x := c.in(0); x != nil {
				c.set(0, &Info{DType: tensor.Bool, Ranked: x.Ranked, Dims: copyDims(x.Dims)})
			}
		}
	}
	rules["Where"] = where
	rules["Cast"] = cast
	rules["CastLike"] = castLike
	rules["Conv"] = conv
	rules["ConvInteger"] = conv
	rules["QLinearConv"] = func(c *nodeCtx) { convWith(c, 0, 3, c.dtype(7)) }
	rules["ConvTranspose"] = convTranspose
	for _, op := range []string{"MaxPool", "AveragePool", "LpPool"} {
		rules[op] = pool
	}
	for _, op := range []string{"GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool"} {
		rules[op] = globalPool
	}
	rules["MatMul"] = matmul
	rules["MatMulInteger"] = matmul
	rules["Gemm"] = gemm
	rules["Concat"] = concat
	rules["Split"] = split
	rules["Reshape"] = reshape
	rules["Flatten"] = flatten
	rules["Transpose"] = transpose
	rules["Squeeze"] = squeeze
	rules["Unsqueeze"] = unsqueeze
	rules["Shape"] = shapeOp
	rules["Size"] = size
	rules["Gather"] = gather
	rules["GatherElements"] = func(c *nodeCtx) {
		if x, i := c.in(0), c.in(1); x != nil && i != nil {
			c.set(0, &Info{DType: x.DType, Ranked: i.Ranked, Dims: copyDims(i.Dims)})
		}
	}
	rules["Slice"] = slice
	rules["Resize"] = resize
	rules["Upsample"] = resize
	rules["Pad"] = pad
	rules["Constant"] = constant
	rules["ConstantOfShape"] = constantOfShape
	rules["Range"] = rangeOp
	rules["Expand"] = expand
	rules["Tile"] = tile
	for _, op := range []string{"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd",
		"ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"} {
		rules[op] = reduce
	}
	rules["ArgMax"] = argReduce
	rules["ArgMin"] = argReduce
	rules["TopK"] = topK
	rules["LSTM"] = recurrent
	rules["GRU"] = recurrent
	rules["RNN"] = recurrent
	rules["DepthToSpace"] = depthSpace
	rules["SpaceToDepth"] = depthSpace
	rules["QuantizeLinear"] = func(c *nodeCtx) {
		dt := tensor.Uint8
		if c.has(2) {
			dt = c.dtype(2)
		}
		if to := c.attrInt("output_dtype", 0); to != 0 {
			dt = tensor.DType(to)
		}
		if x := c.in(0); x != nil {
			c.set(0, &Info{DType: dt, Ranked: x.Ranked, Dims: copyDims(x.Dims)})
		}
	}
	rules["DequantizeLinear"] = func(c *nodeCtx) {
		dt := c.dtype(1)
		if dt == tensor.Undefined {
			dt = tensor.Float32
		}
		if x := c.in(0); x != nil {
			c.set(0, &Info{DType: dt, Ranked: x.Ranked, Dims: copyDims(x.Dims)})
		}
	}
	rules["NonZero"] = func(c *nodeCtx) {
		if x, ok := c.rankedIn(0); ok {
			c.set(0, ranked(tensor.Int64, []Dim{Known(int64(len(x.Dims))), Unknown}))
		}
	}
}

// same: one output with the type and shape of the first input.
func same(c *nodeCtx) {
	if x := c.in(0); x != nil {
		c.set(0, &Info{DType: x.DType, Ranked: x.Ranked, Dims: copyDims(x.Dims)})
	}
}

func identity(c *nodeCtx) {
	same(c)
	if v, ok := c.vals(0); ok {
		c.setVals(0, v)
	}
}

func dropout(c *nodeCtx) {
	same(c)
	if v, ok := c.vals(0); ok {
		c.setVals(0, v)
	}
	if x := c.in(0); x != nil {
		c.set(1, &Info{DType: tensor.Bool, Ranked: x.Ranked, Dims: copyDims(x.Dims)})
	}
}

func batchNorm(c *nodeCtx) {
	same(c)
	x, ok := c.rankedIn(0)
	if !ok || len(x.Dims) < 2 {
		return
	}
	ch := ranked(x.DType, []Dim{x.Dims[1]})
	for k := 1; k < len(c.n.Output); k++ {
		c.set(k, ch)
	}
}

func layerNorm(c *nodeCtx) {
	same(c)
	x, ok := c.rankedIn(0)
	if !ok {
		return
	}
	ax := axis(c.attrInt("axis", -1), len(x.Dims))
	dims := copyDims(x.Dims)
	for k := ax; k < len(dims); k++ {
		dims[k] = Known(1)
	}
	st := tensor.DType(c.attrInt("stash_type", int64(tensor.Float32)))
	c.set(1, ranked(st, dims))
	c.set(2, ranked(st, copyDims(dims)))
}

// broadcast applies numpy multidirectional broadcasting to the given inputs.
func broadcast(xs ...*Info) *Info {
	out := &Info{}
	rank := 0
	for _, x := range xs {
		if x == nil || !x.Ranked {
			return out
		}
		rank = max(rank, len(x.Dims))
	}
	out.Ranked = true
	out.Dims = make([]Dim, rank)
	for k := 0; k < rank; k++ {
		var cands []Dim
		for _, x := range xs {
			j := k - (rank - len(x.Dims))
			if j < 0 {
				continue
			}
			if d := x.Dims[j]; !(d.IsKnown() && d.Value == 1) {
				cands = append(cands, d)
			}
		}
		out.Dims[k] = mergeBroadcast(cands)
	}
	return out
}

// mergeBroadcast picks the broadcast size of dimensions that are not a known 1.
func mergeBroadcast(ds []Dim) Dim {
	if len(ds) == 0 {
		return Known(1)
	}
	for _, d := range ds {
		if d.IsKnown() {
			return d // a valid model has every other size equal to it (or 1)
		}
	}
	for _, d := range ds[1:] {
		if !d.Same(ds[0]) {
			return Unknown
		}
	}
	return ds[0]
}

func arith(c *nodeCtx) {
	ins := make([]*Info, 0, len(c.n.Input))
	for i := range c.n.Input {
		if x := c.in(i); x != nil {
			ins = append(ins, x)
		} else {
			ins = append(ins, &Info{})
		}
	}
	out := broadcast(ins...)
	out.DType = c.dtype(0)
	c.set(0, out)
	arithValues(c)
}

// arithValues tracks integer arithmetic on small tensors (shape computations).
func arithValues(c *nodeCtx) {
	op := c.n.GetOpType()
	if len(c.n.Input) != 2 {
		if (op == "Sum" || op == "Max" || op == "Min") && len(c.n.Input) == 1 {
			if v, ok := c.vals(0); ok {
				c.setVals(0, v)
			}
		}
		return
	}
	a, okA := c.vals(0)
	b, okB := c.vals(1)
	if !okA || !okB {
		return
	}
	n := max(len(a), len(b))
	if (len(a) != n && len(a) != 1) || (len(b) != n && len(b) != 1) {
		return
	}
	out := make([]Elem, n)
	for k := range out {
		x, y := a[min(k, len(a)-1)], b[min(k, len(b)-1)]
		out[k] = arithElem(op, x, y)
	}
	c.setVals(0, out)
}

func arithElem(op string, x, y Elem) Elem {
	if x.Known && y.Known {
		switch op {
		case "Add", "Sum":
			return KnownElem(x.V + y.V)
		case "Sub":
			return KnownElem(x.V - y.V)
		case "Mul":
			return KnownElem(x.V * y.V)
		case "Div":
			if y.V != 0 {
				return KnownElem(x.V / y.V) // integer Div truncates, as ONNX Runtime does
			}
		case "Max":
			return KnownElem(max(x.V, y.V))
		case "Min":
			return KnownElem(min(x.V, y.V))
		case "Mod":
			if y.V != 0 {
				m := x.V % y.V
				if m != 0 && (m < 0) != (y.V < 0) {
					m += y.V
				}
				return KnownElem(m)
			}
		}
		return Elem{}
	}
	// x op identity keeps a symbolic element.
	switch {
	case (op == "Add" || op == "Sub") && y.Known && y.V == 0,
		(op == "Mul" || op == "Div") && y.Known && y.V == 1:
		return x
	case op == "Add" && x.Known && x.V == 0, op == "Mul" && x.Known && x.V == 1:
		return y
	}
	return Elem{}
}

func compare(c *nodeCtx) {
	out := broadcast(nonNil(c.in(0)), nonNil(c.in(1)))
	out.DType = tensor.Bool
	c.set(0, out)
}

func nonNil(x *Info) *Info {
	if x == nil {
		return &Info{}
	}
	return x
}

func where(c *nodeCtx) {
	out := broadcast(nonNil(c.in(0)), nonNil(c.in(1)), nonNil(c.in(2)))
	out.DType = c.dtype(1)
	if out.DType == tensor.Undefined {
		out.DType = c.dtype(2)
	}
	c.set(0, out)
}

func cast(c *nodeCtx) {
	to := tensor.DType(c.attrInt("to", 0))
	if c.opset < 6 {
		if dt, err := tensor.ParseDType(lower(c.attrString("to", ""))); err == nil {
			to = dt
		}
	}
	x := c.in(0)
	if x == nil {
		c.set(0, &Info{DType: to})
		return
	}
	c.set(0, &Info{DType: to, Ranked: x.Ranked, Dims: copyDims(x.Dims)})
	if v, ok := c.vals(0); ok && isInt(to) {
		c.setVals(0, v)
	}
}

func castLike(c *nodeCtx) {
	x := c.in(0)
	if x == nil {
		return
	}
	to := c.dtype(1)
	c.set(0, &Info{DType: to, Ranked: x.Ranked, Dims: copyDims(x.Dims)})
	if v, ok := c.vals(0); ok && isInt(to) {
		c.setVals(0, v)
	}
}

func isInt(dt tensor.DType) bool {
	switch dt {
	case tensor.Int64, tensor.Int32, tensor.Int16, tensor.Int8, tensor.Uint8, tensor.Uint16, tensor.Uint32, tensor.Uint64:
		return true
	}
	return false
}

func lower(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch >= 'A' && ch <= 'Z' {
			b[i] = ch + 32
		}
	}
	switch string(b) {
	case "float":
		return "float32"
	case "double":
		return "float64"
	case "half":
		return "float16"
	}
	return string(b)
}

// spatial computes output sizes of a sliding window (Conv and pooling). ke is the
// effective kernel extent (dilation*(k-1)+1).
func spatial(in Dim, ke, stride, padB, padE int64, autoPad string, ceilMode bool) Dim {
	switch autoPad {
	case "SAME_UPPER", "SAME_LOWER":
		if stride == 1 {
			return in
		}
		if in.IsKnown() {
			return Known((in.Value + stride - 1) / stride)
		}
		return Unknown
	case "VALID":
		padB, padE = 0, 0
	}
	if !in.IsKnown() {
		if stride == 1 && padB+padE == ke-1 {
			return in
		}
		return Unknown
	}
	num := in.Value + padB + padE - ke
	if num < 0 {
		return Unknown
	}
	if !ceilMode {
		return Known(num/stride + 1)
	}
	out := (num+stride-1)/stride + 1
	// The last window must start inside the input or the leading padding.
	if (out-1)*stride >= in.Value+padB {
		out--
	}
	return Known(out)
}

// windowAttrs reads kernel, strides, dilations and pads for n spatial axes.
func windowAttrs(c *nodeCtx, kernel []int64, n int) (strides, dils, pads []int64, autoPad string) {
	strides, _ = c.attrInts("strides")
	dils, _ = c.attrInts("dilations")
	pads, _ = c.attrInts("pads")
	if len(strides) == 0 {
		strides = ones(n)
	}
	if len(dils) == 0 {
		dils = ones(n)
	}
	if len(pads) == 0 {
		pads = make([]int64, 2*n)
	}
	autoPad = c.attrString("auto_pad", "NOTSET")
	return
}

func ones(n int) []int64 {
	o := make([]int64, n)
	for i := range o {
		o[i] = 1
	}
	return o
}

func conv(c *nodeCtx) { convWith(c, 0, 1, c.dtype(0)) }

// convWith infers a convolution whose data and weight are inputs xi and wi.
func convWith(c *nodeCtx, xi, wi int, dt tensor.DType) {
	if c.n.GetOpType() == "ConvInteger" {
		dt = tensor.Int32
	}
	x, ok := c.rankedIn(xi)
	if !ok || len(x.Dims) < 3 {
		c.set(0, &Info{DType: dt})
		return
	}
	ns := len(x.Dims) - 2
	w, wok := c.rankedIn(wi)
	kernel, kok := c.attrInts("kernel_shape")
	if !kok && wok && len(w.Dims) == ns+2 {
		for _, d := range w.Dims[2:] {
			kernel = append(kernel, d.Value)
		}
	}
	out := []Dim{x.Dims[0], Unknown}
	if wok && len(w.Dims) >= 1 {
		out[1] = w.Dims[0]
	}
	strides, dils, pads, autoPad := windowAttrs(c, kernel, ns)
	for k := 0; k < ns; k++ {
		if k >= len(kernel) || kernel[k] < 0 {
			out = append(out, Unknown)
			continue
		}
		ke := dils[k]*(kernel[k]-1) + 1
		out = append(out, spatial(x.Dims[2+k], ke, strides[k], pads[k], pads[k+ns], autoPad, false))
	}
	c.set(0, ranked(dt, out))
}

func convTranspose(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok || len(x.Dims) < 3 {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	ns := len(x.Dims) - 2
	w, wok := c.rankedIn(1)
	kernel, kok := c.attrInts("kernel_shape")
	if !kok && wok && len(w.Dims) == ns+2 {
		for _, d := range w.Dims[2:] {
			kernel = append(kernel, d.Value)
		}
	}
	out := []Dim{x.Dims[0], Unknown}
	if wok && len(w.Dims) >= 2 && w.Dims[1].IsKnown() {
		out[1] = Known(w.Dims[1].Value * c.attrInt("group", 1))
	}
	strides, dils, pads, autoPad := windowAttrs(c, kernel, ns)
	outPad, _ := c.attrInts("output_padding")
	if len(outPad) == 0 {
		outPad = make([]int64, ns)
	}
	if os, ok := c.attrInts("output_shape"); ok && len(os) >= ns {
		for _, v := range os[len(os)-ns:] {
			out = append(out, Known(v))
		}
		c.set(0, ranked(c.dtype(0), out))
		return
	}
	for k := 0; k < ns; k++ {
		in := x.Dims[2+k]
		if k >= len(kernel) || !in.IsKnown() {
			out = append(out, Unknown)
			continue
		}
		if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
			out = append(out, Known(in.Value*strides[k]))
			continue
		}
		pb, pe := pads[k], pads[k+ns]
		if autoPad == "VALID" {
			pb, pe = 0, 0
		}
		v := strides[k]*(in.Value-1) + outPad[k] + (kernel[k]-1)*dils[k] + 1 - pb - pe
		out = append(out, Known(v))
	}
	c.set(0, ranked(c.dtype(0), out))
}

func pool(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok || len(x.Dims) < 3 {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	ns := len(x.Dims) - 2
	kernel, _ := c.attrInts("kernel_shape")
	strides, dils, pads, autoPad := windowAttrs(c, kernel, ns)
	ceil := c.attrInt("ceil_mode", 0) == 1
	out := []Dim{x.Dims[0], x.Dims[1]}
	for k := 0; k < ns; k++ {
		if k >= len(kernel) {
			out = append(out, Unknown)
			continue
		}
		ke := dils[k]*(kernel[k]-1) + 1
		out = append(out, spatial(x.Dims[2+k], ke, strides[k], pads[k], pads[k+ns], autoPad, ceil))
	}
	c.set(0, ranked(c.dtype(0), out))
	c.set(1, ranked(tensor.Int64, copyDims(out)))
}

func globalPool(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok || len(x.Dims) < 2 {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	out := []Dim{x.Dims[0], x.Dims[1]}
	for range x.Dims[2:] {
		out = append(out, Known(1))
	}
	c.set(0, ranked(x.DType, out))
}

func matmul(c *nodeCtx) {
	dt := c.dtype(0)
	if c.n.GetOpType() == "MatMulInteger" {
		dt = tensor.Int32
	}
	a, okA := c.rankedIn(0)
	b, okB := c.rankedIn(1)
	if !okA || !okB || len(a.Dims) == 0 || len(b.Dims) == 0 {
		c.set(0, &Info{DType: dt})
		return
	}
	ad, bd := copyDims(a.Dims), copyDims(b.Dims)
	aVec, bVec := len(ad) == 1, len(bd) == 1
	if aVec {
		ad = []Dim{Known(1), ad[0]}
	}
	if bVec {
		bd = []Dim{bd[0], Known(1)}
	}
	batch := broadcast(ranked(dt, ad[:len(ad)-2]), ranked(dt, bd[:len(bd)-2]))
	out := append(batch.Dims, ad[len(ad)-2], bd[len(bd)-1])
	if aVec {
		out = append(out[:len(out)-2], out[len(out)-1])
	}
	if bVec {
		out = out[:len(out)-1]
	}
	c.set(0, ranked(dt, out))
}

func gemm(c *nodeCtx) {
	a, okA := c.rankedIn(0)
	b, okB := c.rankedIn(1)
	if !okA || !okB || len(a.Dims) != 2 || len(b.Dims) != 2 {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	m, n := a.Dims[0], b.Dims[1]
	if c.attrInt("transA", 0) != 0 {
		m = a.Dims[1]
	}
	if c.attrInt("transB", 0) != 0 {
		n = b.Dims[0]
	}
	c.set(0, ranked(c.dtype(0), []Dim{m, n}))
}

func concat(c *nodeCtx) {
	var ins []*Info
	var rankOf *Info
	for i := range c.n.Input {
		x := c.in(i)
		ins = append(ins, x)
		if x != nil && x.Ranked && rankOf == nil {
			rankOf = x
		}
	}
	dt := tensor.Undefined
	for _, x := range ins {
		if x != nil && x.DType != tensor.Undefined {
			dt = x.DType
			break
		}
	}
	if rankOf == nil {
		c.set(0, &Info{DType: dt})
		return
	}
	r := len(rankOf.Dims)
	ax := axis(c.attrInt("axis", 0), r)
	out := make([]Dim, r)
	sum := Known(0)
	for k := 0; k < r; k++ {
		out[k] = Unknown
	}
	for _, x := range ins {
		if x == nil || !x.Ranked || len(x.Dims) != r {
			sum = Unknown
			continue
		}
		for k, d := range x.Dims {
			if k == ax {
				if sum.IsKnown() && d.IsKnown() {
					sum = Known(sum.Value + d.Value)
				} else {
					sum = Unknown
				}
			} else if !out[k].IsKnown() && (d.IsKnown() || out[k].Param == "") {
				out[k] = d
			}
		}
	}
	if len(ins) == 1 && rankOf != nil {
		sum = rankOf.Dims[ax]
	}
	out[ax] = sum
	c.set(0, ranked(dt, out))
	// Concatenation of tracked 1-D tensors (shape building).
	var vals []Elem
	for i := range c.n.Input {
		v, ok := c.vals(i)
		if !ok {
			return
		}
		vals = append(vals, v...)
	}
	if r == 1 {
		c.setVals(0, vals)
	}
}

func split(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	nOut := len(c.n.Output)
	if !ok {
		for k := 0; k < nOut; k++ {
			c.set(k, &Info{DType: c.dtype(0)})
		}
		return
	}
	ax := axis(c.attrInt("axis", 0), len(x.Dims))
	var parts []int64
	if c.opset >= 13 {
		parts, _ = c.ints(1)
	} else {
		parts, _ = c.attrInts("split")
	}
	d := x.Dims[ax]
	if parts == nil && d.IsKnown() {
		num := int64(nOut)
		if v := c.attrInt("num_outputs", 0); v > 0 {
			num = v
		}
		chunk := (d.Value + num - 1) / num
		for k := int64(0); k < num; k++ {
			parts = append(parts, max(0, min(chunk, d.Value-k*chunk)))
		}
	}
	for k := 0; k < nOut; k++ {
		dims := copyDims(x.Dims)
		if k < len(parts) {
			dims[ax] = Known(parts[k])
		} else {
			dims[ax] = Unknown
		}
		c.set(k, ranked(x.DType, dims))
	}
}

func reshape(c *nodeCtx) {
	x := c.in(0)
	dt := c.dtype(0)
	var target []Elem
	var ok bool
	if c.opset < 5 {
		s, has := c.attrInts("shape")
		if has {
			for _, v := range s {
				target = append(target, KnownElem(v))
			}
			ok = true
		}
	} else {
		target, ok = c.vals(1)
	}
	if !ok {
		c.setShapeOfLength(1, dt)
		return
	}
	allowZero := c.attrInt("allowzero", 0) == 1
	out := make([]Dim, len(target))
	infer := -1
	for k, e := range target {
		switch {
		case e.Known && e.V == -1:
			infer = k
			out[k] = Unknown
		case e.Known && e.V == 0 && !allowZero:
			if x == nil || !x.Ranked || k >= len(x.Dims) {
				out[k] = Unknown
			} else {
				out[k] = x.Dims[k]
			}
		default:
			out[k] = e.Dim()
		}
	}
	if infer >= 0 && x != nil && x.Ranked {
		out[infer] = inferredDim(x.Dims, out, infer)
	}
	c.set(0, ranked(dt, out))
	if v, ok := c.vals(0); ok && len(out) <= 1 {
		c.setVals(0, v)
	}
}

// inferredDim solves the -1 of a Reshape: the input's element count divided by the other
// output dims, with symbolic dims cancelling by name.
func inferredDim(in, out []Dim, skip int) Dim {
	knownIn, knownOut := int64(1), int64(1)
	symIn := map[string]int{}
	nUnknown := 0
	for _, d := range in {
		switch {
		case d.IsKnown():
			knownIn *= d.Value
		case d.Param != "":
			symIn[d.Param]++
		default:
			nUnknown++
		}
	}
	for k, d := range out {
		if k == skip {
			continue
		}
		switch {
		case d.IsKnown():
			knownOut *= d.Value
		case d.Param != "" && symIn[d.Param] > 0:
			symIn[d.Param]--
		default:
			return Unknown
		}
	}
	if nUnknown > 0 || knownOut == 0 || knownIn%knownOut != 0 {
		return Unknown
	}
	left := 0
	var name string
	for p, n := range symIn {
		if n > 0 { // at most one name is left when this matters (left == 1)
			left += n
			name = p
		}
	}
	switch {
	case left == 0:
		return Known(knownIn / knownOut)
	case left == 1 && knownIn == knownOut:
		return Sym(name)
	}
	return Unknown
}

func flatten(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, ranked(c.dtype(0), []Dim{Unknown, Unknown}))
		return
	}
	a := c.attrInt("axis", 1)
	if a < 0 {
		a += int64(len(x.Dims))
	}
	if a < 0 || a > int64(len(x.Dims)) {
		return
	}
	c.set(0, ranked(x.DType, []Dim{product(x.Dims[:a]), product(x.Dims[a:])}))
}

func transpose(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	perm, has := c.attrInts("perm")
	r := len(x.Dims)
	if !has {
		for k := r - 1; k >= 0; k-- {
			perm = append(perm, int64(k))
		}
	}
	if len(perm) != r {
		return
	}
	out := make([]Dim, r)
	for k, p := range perm {
		out[k] = x.Dims[axis(p, r)]
	}
	c.set(0, ranked(x.DType, out))
}

// axesOf reads the axes of Squeeze/Unsqueeze/Reduce*: an attribute before opset
// inputFrom, input 1 from then on.
func axesOf(c *nodeCtx, inputFrom int64) ([]int64, bool) {
	if c.opset >= inputFrom {
		if !c.has(1) {
			return nil, true
		}
		return c.ints(1)
	}
	a, _ := c.attrInts("axes")
	return a, true
}

func squeeze(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	axes, aok := axesOf(c, 13)
	if !ok || !aok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	drop := map[int]bool{}
	if len(axes) == 0 {
		for k, d := range x.Dims {
			if !d.IsKnown() {
				c.set(0, &Info{DType: x.DType})
				return
			}
			if d.Value == 1 {
				drop[k] = true
			}
		}
	}
	for _, a := range axes {
		drop[axis(a, len(x.Dims))] = true
	}
	var out []Dim
	for k, d := range x.Dims {
		if !drop[k] {
			out = append(out, d)
		}
	}
	c.set(0, ranked(x.DType, out))
	if v, ok := c.vals(0); ok && len(out) <= 1 {
		c.setVals(0, v)
	}
}

func unsqueeze(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	axes, aok := axesOf(c, 13)
	if !ok || !aok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	r := len(x.Dims) + len(axes)
	ins := map[int]bool{}
	for _, a := range axes {
		ins[axis(a, r)] = true
	}
	out := make([]Dim, 0, r)
	j := 0
	for k := 0; k < r; k++ {
		if ins[k] {
			out = append(out, Known(1))
		} else {
			out = append(out, x.Dims[j])
			j++
		}
	}
	c.set(0, ranked(x.DType, out))
	if v, ok := c.vals(0); ok && len(out) <= 1 {
		c.setVals(0, v)
	}
}

func shapeOp(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, ranked(tensor.Int64, []Dim{Unknown}))
		return
	}
	r := int64(len(x.Dims))
	start, end := c.attrInt("start", 0), c.attrInt("end", r)
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
	dims := x.Dims[start:end]
	c.set(0, ranked(tensor.Int64, []Dim{Known(int64(len(dims)))}))
	vals := make([]Elem, len(dims))
	for k, d := range dims {
		vals[k] = DimElem(d)
	}
	c.setVals(0, vals)
}

func size(c *nodeCtx) {
	c.set(0, ranked(tensor.Int64, nil))
	if x, ok := c.rankedIn(0); ok {
		c.setVals(0, []Elem{DimElem(product(x.Dims))})
	}
}

func gather(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	idx, iok := c.rankedIn(1)
	if !ok || !iok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	ax := axis(c.attrInt("axis", 0), len(x.Dims))
	out := copyDims(x.Dims[:ax])
	out = append(out, idx.Dims...)
	out = append(out, x.Dims[ax+1:]...)
	c.set(0, ranked(x.DType, out))
	vals, vok := c.vals(0)
	ids, idok := c.ints(1)
	if vok && idok && len(x.Dims) == 1 {
		var res []Elem
		for _, i := range ids {
			if i < 0 {
				i += int64(len(vals))
			}
			if i < 0 || i >= int64(len(vals)) {
				return
			}
			res = append(res, vals[i])
		}
		c.setVals(0, res)
	}
}

// sliceParams reads starts/ends/axes/steps in either form.
func sliceParams(c *nodeCtx, r int) (starts, ends, axes, steps []int64, ok bool) {
	if c.opset < 10 {
		starts, ok1 := c.attrInts("starts")
		ends, ok2 := c.attrInts("ends")
		axes, _ = c.attrInts("axes")
		if !ok1 || !ok2 {
			return nil, nil, nil, nil, false
		}
		return starts, ends, defaultAxes(axes, len(starts)), ones(len(starts)), true
	}
	var ok1, ok2 bool
	starts, ok1 = c.ints(1)
	ends, ok2 = c.ints(2)
	if !ok1 || !ok2 || len(starts) != len(ends) {
		return nil, nil, nil, nil, false
	}
	if c.has(3) {
		if axes, ok = c.ints(3); !ok {
			return nil, nil, nil, nil, false
		}
	}
	if c.has(4) {
		if steps, ok = c.ints(4); !ok {
			return nil, nil, nil, nil, false
		}
	} else {
		steps = ones(len(starts))
	}
	return starts, ends, defaultAxes(axes, len(starts)), steps, len(steps) == len(starts)
}

func defaultAxes(axes []int64, n int) []int64 {
	if len(axes) > 0 {
		return axes
	}
	out := make([]int64, n)
	for k := range out {
		out[k] = int64(k)
	}
	return out
}

// SliceRange clamps a Slice's start/end for one axis of size dim as ONNX specifies and
// returns the normalized start and the element count.
func SliceRange(start, end, step, dim int64) (int64, int64) {
	if step > 0 {
		if start < 0 {
			start += dim
		}
		if end < 0 {
			end += dim
		}
		start = max(0, min(start, dim))
		end = max(0, min(end, dim))
		if end <= start {
			return start, 0
		}
		return start, (end - start + step - 1) / step
	}
	if start < 0 {
		start += dim
	}
	if end < 0 {
		end += dim
	}
	start = max(-1, min(start, dim-1))
	end = max(-1, min(end, dim-1))
	if start <= end {
		return start, 0
	}
	return start, (start - end + (-step) - 1) / (-step)
}

func slice(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	starts, ends, axes, steps, pok := sliceParams(c, len(x.Dims))
	out := copyDims(x.Dims)
	if !pok {
		for k := range out {
			out[k] = Unknown
		}
		c.set(0, ranked(x.DType, out))
		return
	}
	for k, a := range axes {
		ax := axis(a, len(x.Dims))
		d := x.Dims[ax]
		if steps[k] == 0 {
			return
		}
		if !d.IsKnown() {
			if starts[k] == 0 && steps[k] == 1 && ends[k] >= math.MaxInt32 {
				continue
			}
			out[ax] = Unknown
			continue
		}
		_, n := SliceRange(starts[k], ends[k], steps[k], d.Value)
		out[ax] = Known(n)
	}
	c.set(0, ranked(x.DType, out))
	if vals, ok := c.vals(0); ok && len(x.Dims) == 1 && len(axes) == 1 {
		s, n := SliceRange(starts[0], ends[0], steps[0], int64(len(vals)))
		res := make([]Elem, n)
		for k := range res {
			res[k] = vals[s+int64(k)*steps[0]]
		}
		c.setVals(0, res)
	}
}

func resize(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	r := len(x.Dims)
	var scales []float64
	var sizes []int64
	op := c.n.GetOpType()
	switch {
	case op == "Upsample" && c.opset < 9:
		fs, _ := AttrFloats(c.n, "scales")
		for _, f := range fs {
			scales = append(scales, float64(f))
		}
	case op == "Upsample" || c.opset < 11:
		scales, _ = c.floats(1)
	default:
		if s, ok := c.floats(2); ok && len(s) > 0 {
			scales = s
		}
		if s, ok := c.ints(3); ok && len(s) > 0 {
			sizes = s
		}
	}
	axes, hasAxes := c.attrInts("axes")
	if !hasAxes {
		axes = defaultAxes(nil, r)
	}
	out := copyDims(x.Dims)
	switch {
	case len(sizes) == len(axes):
		for k, a := range axes {
			out[axis(a, r)] = Known(sizes[k])
		}
	case len(scales) == len(axes):
		// keep_aspect_ratio_policy only matters with sizes.
		for k, a := range axes {
			ax := axis(a, r)
			d := x.Dims[ax]
			switch {
			case scales[k] == 1:
			case d.IsKnown():
				out[ax] = Known(int64(math.Floor(float64(d.Value) * scales[k])))
			default:
				out[ax] = Unknown
			}
		}
	default:
		for k := range out {
			out[k] = Unknown
		}
	}
	c.set(0, ranked(x.DType, out))
}

func pad(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	r := len(x.Dims)
	var pads []int64
	var pok bool
	if c.opset < 11 {
		pads, pok = c.attrInts("pads")
		if !pok {
			pads, pok = c.attrInts("paddings")
		}
	} else {
		pads, pok = c.ints(1)
	}
	axes := defaultAxes(nil, r)
	if c.opset >= 18 && c.has(3) {
		var aok bool
		if axes, aok = c.ints(3); !aok {
			pok = false
		}
	}
	out := copyDims(x.Dims)
	if !pok || len(pads) != 2*len(axes) {
		for k := range out {
			out[k] = Unknown
		}
		c.set(0, ranked(x.DType, out))
		return
	}
	for k, a := range axes {
		ax := axis(a, r)
		d := x.Dims[ax]
		switch {
		case pads[k] == 0 && pads[k+len(axes)] == 0:
		case d.IsKnown():
			out[ax] = Known(d.Value + pads[k] + pads[k+len(axes)])
		default:
			out[ax] = Unknown
		}
	}
	c.set(0, ranked(x.DType, out))
}

func constant(c *nodeCtx) {
	v := ConstantValue(c.n)
	if v == nil {
		return
	}
	c.set(0, StaticInfo(v.DType, v.Shape))
	if len(c.n.Output) > 0 {
		c.r.setConst(c.n.Output[0], v)
	}
}

func constantOfShape(c *nodeCtx) {
	dt := tensor.Float32
	var fill []Elem
	if a := Attr(c.n, "value"); a != nil && a.T != nil {
		dt = tensor.DType(a.T.GetDataType())
		if v, err := onnx.ToTensor(a.T); err == nil {
			if vals, ok := constValues(v); ok && len(vals) == 1 {
				fill = vals
			}
		}
	}
	target, ok := c.vals(0)
	if !ok {
		c.setShapeOfLength(0, dt)
		return
	}
	dims := make([]Dim, len(target))
	for k, e := range target {
		dims[k] = e.Dim()
	}
	c.set(0, ranked(dt, dims))
	if n, ok := (&Info{Ranked: true, Dims: dims}).Static(); ok && len(fill) == 1 && len(n) <= 1 {
		cnt := tensor.NumElements(n)
		if cnt <= maxValueElems {
			vals := make([]Elem, cnt)
			for k := range vals {
				vals[k] = fill[0]
			}
			c.setVals(0, vals)
		}
	}
}

func rangeOp(c *nodeCtx) {
	dt := c.dtype(0)
	s, ok1 := c.floats(0)
	l, ok2 := c.floats(1)
	d, ok3 := c.floats(2)
	if !ok1 || !ok2 || !ok3 || len(s) != 1 || len(l) != 1 || len(d) != 1 || d[0] == 0 {
		c.set(0, ranked(dt, []Dim{Unknown}))
		return
	}
	n := int64(math.Max(math.Ceil((l[0]-s[0])/d[0]), 0))
	c.set(0, ranked(dt, []Dim{Known(n)}))
	if isInt(dt) && n <= maxValueElems {
		vals := make([]Elem, n)
		for k := range vals {
			vals[k] = KnownElem(int64(s[0]) + int64(k)*int64(d[0]))
		}
		c.setVals(0, vals)
	}
}

func expand(c *nodeCtx) {
	x := c.in(0)
	target, ok := c.vals(1)
	if x == nil || !ok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	dims := make([]Dim, len(target))
	for k, e := range target {
		dims[k] = e.Dim()
	}
	out := broadcast(x, ranked(x.DType, dims))
	out.DType = x.DType
	c.set(0, out)
}

func tile(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	reps, rok := c.ints(1)
	if !ok || !rok || len(reps) != len(x.Dims) {
		c.set(0, &Info{DType: c.dtype(0), Ranked: ok, Dims: unknownDims(x)})
		return
	}
	out := copyDims(x.Dims)
	for k, r := range reps {
		switch {
		case r == 1:
		case out[k].IsKnown():
			out[k] = Known(out[k].Value * r)
		default:
			out[k] = Unknown
		}
	}
	c.set(0, ranked(x.DType, out))
}

func unknownDims(x *Info) []Dim {
	if x == nil || !x.Ranked {
		return nil
	}
	return unknowns(len(x.Dims))
}

// unknowns is n dims of unknown size.
func unknowns(n int) []Dim {
	d := make([]Dim, n)
	for k := range d {
		d[k] = Unknown
	}
	return d
}

// setShapeOfLength sets output 0 when the values of the 1-D shape tensor at input i are
// unknown: one unknown dim per element when its length is known, else unranked.
func (c *nodeCtx) setShapeOfLength(i int, dt tensor.DType) {
	if t := c.in(i); t != nil && t.Ranked && len(t.Dims) == 1 && t.Dims[0].IsKnown() {
		c.set(0, ranked(dt, unknowns(int(t.Dims[0].Value))))
		return
	}
	c.set(0, &Info{DType: dt})
}

func reduce(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	inputFrom := int64(18)
	if c.n.GetOpType() == "ReduceSum" {
		inputFrom = 13
	}
	axes, aok := axesOf(c, inputFrom)
	if !aok {
		c.set(0, &Info{DType: x.DType})
		return
	}
	keep := c.attrInt("keepdims", 1) == 1
	if len(axes) == 0 {
		if c.attrInt("noop_with_empty_axes", 0) == 1 {
			same(c)
			return
		}
		axes = defaultAxes(nil, len(x.Dims))
	}
	red := map[int]bool{}
	for _, a := range axes {
		red[axis(a, len(x.Dims))] = true
	}
	var out []Dim
	for k, d := range x.Dims {
		switch {
		case !red[k]:
			out = append(out, d)
		case keep:
			out = append(out, Known(1))
		}
	}
	c.set(0, ranked(x.DType, out))
}

func argReduce(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, &Info{DType: tensor.Int64})
		return
	}
	ax := axis(c.attrInt("axis", 0), len(x.Dims))
	keep := c.attrInt("keepdims", 1) == 1
	var out []Dim
	for k, d := range x.Dims {
		switch {
		case k != ax:
			out = append(out, d)
		case keep:
			out = append(out, Known(1))
		}
	}
	c.set(0, ranked(tensor.Int64, out))
}

func topK(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	if !ok {
		c.set(0, &Info{DType: c.dtype(0)})
		c.set(1, &Info{DType: tensor.Int64})
		return
	}
	ax := axis(c.attrInt("axis", -1), len(x.Dims))
	out := copyDims(x.Dims)
	out[ax] = Unknown
	if c.opset < 10 {
		out[ax] = Known(c.attrInt("k", 0))
	} else if k, ok := c.ints(1); ok && len(k) == 1 {
		out[ax] = Known(k[0])
	}
	c.set(0, ranked(x.DType, out))
	c.set(1, ranked(tensor.Int64, copyDims(out)))
}

func recurrent(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	dt := c.dtype(0)
	if !ok || len(x.Dims) != 3 {
		for k := range c.n.Output {
			c.set(k, &Info{DType: dt})
		}
		return
	}
	hidden := c.attrInt("hidden_size", -1)
	h := Unknown
	if hidden > 0 {
		h = Known(hidden)
	}
	dirs := Known(1)
	if c.attrString("direction", "forward") == "bidirectional" {
		dirs = Known(2)
	}
	seq, batch := x.Dims[0], x.Dims[1]
	if c.attrInt("layout", 0) == 1 {
		seq, batch = x.Dims[1], x.Dims[0]
		c.set(0, ranked(dt, []Dim{batch, seq, dirs, h}))
		for k := 1; k < len(c.n.Output); k++ {
			c.set(k, ranked(dt, []Dim{batch, dirs, h}))
		}
		return
	}
	c.set(0, ranked(dt, []Dim{seq, dirs, batch, h}))
	for k := 1; k < len(c.n.Output); k++ {
		c.set(k, ranked(dt, []Dim{dirs, batch, h}))
	}
}

func depthSpace(c *nodeCtx) {
	x, ok := c.rankedIn(0)
	b := c.attrInt("blocksize", 0)
	if !ok || len(x.Dims) != 4 || b <= 0 {
		c.set(0, &Info{DType: c.dtype(0)})
		return
	}
	out := copyDims(x.Dims)
	mul := func(d Dim, f int64) Dim {
		if d.IsKnown() {
			return Known(d.Value * f)
		}
		return Unknown
	}
	div := func(d Dim, f int64) Dim {
		if d.IsKnown() {
			return Known(d.Value / f)
		}
		return Unknown
	}
	if c.n.GetOpType() == "DepthToSpace" {
		out[1], out[2], out[3] = div(x.Dims[1], b*b), mul(x.Dims[2], b), mul(x.Dims[3], b)
	} else {
		out[1], out[2], out[3] = mul(x.Dims[1], b*b), div(x.Dims[2], b), div(x.Dims[3], b)
	}
	c.set(0, ranked(x.DType, out))
}
