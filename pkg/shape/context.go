package shape

import (
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// nodeCtx is what a rule sees of one node: its inputs' facts and a place to put its outputs'.
type nodeCtx struct {
	r     *Result
	n     *onnxpb.NodeProto
	opset int64
}

// has reports whether optional input i is given.
func (c *nodeCtx) has(i int) bool { return i < len(c.n.Input) && c.n.Input[i] != "" }

// in returns what is known about input i (nil when absent or unknown).
func (c *nodeCtx) in(i int) *Info {
	if !c.has(i) {
		return nil
	}
	return c.r.infos[c.n.Input[i]]
}

// rankedIn returns input i when its rank is known.
func (c *nodeCtx) rankedIn(i int) (*Info, bool) {
	x := c.in(i)
	return x, x != nil && x.Ranked
}

// dtype is the element type of input i (Undefined when unknown).
func (c *nodeCtx) dtype(i int) tensor.DType {
	if x := c.in(i); x != nil {
		return x.DType
	}
	return tensor.Undefined
}

// vals returns the tracked elements of input i.
func (c *nodeCtx) vals(i int) ([]Elem, bool) {
	if !c.has(i) {
		return nil, false
	}
	v, ok := c.r.values[c.n.Input[i]]
	return v, ok
}

// ints returns input i's elements when all are known.
func (c *nodeCtx) ints(i int) ([]int64, bool) {
	if !c.has(i) {
		return nil, false
	}
	return c.r.KnownInts(c.n.Input[i])
}

// floats returns the values of a constant numeric input.
func (c *nodeCtx) floats(i int) ([]float64, bool) {
	if !c.has(i) {
		return nil, false
	}
	t := c.r.consts[c.n.Input[i]]
	if t == nil {
		if v, ok := c.ints(i); ok {
			f := make([]float64, len(v))
			for k, x := range v {
				f[k] = float64(x)
			}
			return f, true
		}
		return nil, false
	}
	f, err := t.AsFloat64()
	return f, err == nil
}

// set records output k.
func (c *nodeCtx) set(k int, info *Info) {
	if k < len(c.n.Output) && c.n.Output[k] != "" && info != nil {
		c.r.infos[c.n.Output[k]] = info
	}
}

// setVals records the elements of output k (dropped when too many to track).
func (c *nodeCtx) setVals(k int, v []Elem) {
	if k < len(c.n.Output) && c.n.Output[k] != "" && len(v) <= maxValueElems {
		c.r.values[c.n.Output[k]] = v
	}
}

func (c *nodeCtx) attrInt(name string, def int64) int64 { return AttrInt(c.n, name, def) }
func (c *nodeCtx) attrInts(name string) ([]int64, bool) { return AttrInts(c.n, name) }
func (c *nodeCtx) attrString(name, def string) string   { return AttrString(c.n, name, def) }

// axis normalizes a possibly negative axis against rank r (panics when out of range; run
// recovers and leaves the outputs unknown).
func axis(a int64, r int) int {
	if a < 0 {
		a += int64(r)
	}
	if a < 0 || a >= int64(r) {
		panic("axis out of range")
	}
	return int(a)
}

// copyDims copies a dimension list.
func copyDims(d []Dim) []Dim { return append([]Dim(nil), d...) }

// product multiplies dimensions: known when all are, the one symbolic dim when the others
// are all 1, unknown otherwise.
func product(ds []Dim) Dim {
	p := int64(1)
	var sym []Dim
	for _, d := range ds {
		if d.IsKnown() {
			p *= d.Value
		} else {
			sym = append(sym, d)
		}
	}
	switch {
	case len(sym) == 0:
		return Known(p)
	case p == 0:
		return Known(0)
	case len(sym) == 1 && p == 1:
		return sym[0]
	}
	return Unknown
}
