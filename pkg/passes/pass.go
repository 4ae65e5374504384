// Package passes holds the graph rewrites of `optimctl optimize`. Each pass is small, says
// what it needs (Applies) and reports how many rewrites it made, so a driver can run a
// chosen set to a fixed point and report per-pass counts.
//
// Every pass keeps the model's outputs equal up to float rounding: folds are only done on
// constants (initializers that cannot be overridden at run time), fusions check that the
// intermediate value has no other reader, and graph outputs keep their names.
package passes

import (
	"fmt"
	"sort"
	"strings"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/shape"
)

// Pass is one graph rewrite.
type Pass struct {
	Name string
	// Doc says what the pass does, for --help and docs.
	Doc string
	// Default passes run when the caller names none.
	Default bool
	// Applies reports whether the pass can run on the model (opset, IR version); nil means always.
	Applies func(c *Context) bool
	// Run rewrites the graph and returns the number of rewrites.
	Run func(c *Context) (int, error)
}

// Context is the state the passes of one optimization share.
type Context struct {
	Model *onnx.Model
	// Opset is the default-domain opset of the model.
	Opset int64
	// InputShapes fixes dynamic input dimensions (from --shape); shape-dependent folds use it.
	InputShapes map[string][]int64
	// MaxFoldBytes stops constant folding from materializing outputs larger than this many
	// bytes (0 = no limit). Folding a ConstantOfShape or Expand can turn a tiny node into a
	// large initializer.
	MaxFoldBytes int64

	overridable map[string]bool
	shapes      *shape.Result
	shapesErr   error
}

// NewContext prepares the pass state of a model.
func NewContext(m *onnx.Model, inputShapes map[string][]int64) *Context {
	c := &Context{Model: m, Opset: m.Opset(""), InputShapes: inputShapes}
	c.invalidate()
	return c
}

// invalidate drops cached analyses after an edit.
func (c *Context) invalidate() {
	c.shapes, c.shapesErr = nil, nil
	c.overridable = shape.Overridable(c.Model)
	c.Opset = c.Model.Opset("")
}

// Shapes returns shape inference of the current graph (cached until the next edit).
func (c *Context) Shapes() (*shape.Result, error) {
	if c.shapes == nil && c.shapesErr == nil {
		c.shapes, c.shapesErr = shape.Analyze(c.Model, shape.Options{InputShapes: c.InputShapes})
	}
	return c.shapes, c.shapesErr
}

// info returns the inferred facts of a value (nil when unknown or inference failed).
func (c *Context) info(name string) *shape.Info {
	r, err := c.Shapes()
	if err != nil {
		return nil
	}
	return r.Info(name)
}

// registry lists every pass in the order the driver runs them within one round: constants
// first (so fusions see folded weights), then clean-ups that expose fusions, then fusions,
// then sharing and dead-code removal.
var registry = []*Pass{
	InitializerInputs, ConstantToInitializer, FoldConstants, RemoveIdentity, RemoveNoOps,
	FuseTranspose, CollapseReshape, FuseHardSwish, FuseBatchNorm, FuseAffine, FuseConstChains,
	FuseMatMulAdd, DedupeInitializers, CSE, DeadCode,
}

// All returns every pass in run order.
func All() []*Pass { return append([]*Pass(nil), registry...) }

// Defaults returns the passes run when none are named.
func Defaults() []*Pass {
	var out []*Pass
	for _, p := range registry {
		if p.Default {
			out = append(out, p)
		}
	}
	return out
}

// Lookup returns the named passes in run order, or an error naming the unknown ones.
func Lookup(names []string) ([]*Pass, error) {
	want := map[string]bool{}
	for _, n := range names {
		want[strings.TrimSpace(n)] = true
	}
	var out []*Pass
	for _, p := range registry {
		if want[p.Name] {
			out = append(out, p)
			delete(want, p.Name)
		}
	}
	if len(want) > 0 {
		var bad []string
		for n := range want {
			bad = append(bad, n)
		}
		sort.Strings(bad)
		var known []string
		for _, p := range registry {
			known = append(known, p.Name)
		}
		return nil, fmt.Errorf("unknown pass(es) %s (known: %s)", strings.Join(bad, ", "), strings.Join(known, ", "))
	}
	return out, nil
}

// apply runs a pass body on a fresh graph view and commits its edits.
func apply(c *Context, body func(g *graph) (int, error)) (int, error) {
	g := newGraph(c)
	n, err := body(g)
	if err != nil {
		return n, err
	}
	return n, g.commit()
}
