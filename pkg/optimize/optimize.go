// Package optimize runs graph passes (package passes) over an ONNX model to a fixed point
// and reports what changed. It is what `optimctl optimize` and recipe steps call.
package optimize

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/passes"
	"github.com/optimctl/optimctl/pkg/shape"
)

// Options choose what Run does. The zero value runs every default pass. The yaml keys are
// those of an `optimize` step in a recipe (the same names as the command's flags).
type Options struct {
	// Passes names the passes to run (nil: passes.Defaults). Order does not matter: passes
	// run in their fixed order each round.
	Passes []string `yaml:"passes"`
	// InputShapes fixes dynamic input dimensions (NAME → dims, -1 keeps a dimension
	// dynamic). The written model declares these shapes, and shape arithmetic that depends
	// on them is folded, so the result is only valid for inputs of these shapes.
	InputShapes map[string][]int64 `yaml:"shapes"`
	// MaxFoldBytes bounds the size of one folded constant (0 = no bound).
	MaxFoldBytes int64 `yaml:"max_fold_bytes"`
	// MaxRounds bounds the fixed-point iteration (0 = 20).
	MaxRounds int `yaml:"max_rounds"`
	// NoShapes leaves graph.value_info as the passes left it instead of writing the
	// inferred types and shapes of every intermediate value.
	NoShapes bool `yaml:"no_shapes"`
}

// PassReport is one pass's total over all rounds.
type PassReport struct {
	Name    string `json:"name"`
	Changes int    `json:"changes"`
}

// Report is the result of an optimization (keys as in the CLI contract).
type Report struct {
	Input       string         `json:"input"`
	Output      string         `json:"output"`
	NodesBefore int            `json:"nodes_before"`
	NodesAfter  int            `json:"nodes_after"`
	SizeBefore  int64          `json:"size_before"`
	SizeAfter   int64          `json:"size_after"`
	Seconds     float64        `json:"seconds"`
	Passes      []PassReport   `json:"passes"`
	Rounds      int            `json:"rounds"`
	OpsBefore   map[string]int `json:"op_types_before"`
	OpsAfter    map[string]int `json:"op_types_after"`
}

// Run optimizes m in place. Sizes in the report are the encoded sizes of the model before
// and after (File replaces them with file sizes).
func Run(m *onnx.Model, opt Options) (*Report, error) {
	start := time.Now()
	chosen, err := selectPasses(opt.Passes)
	if err != nil {
		return nil, err
	}
	g := m.Graph()
	rep := &Report{Input: m.Path, NodesBefore: len(g.Node), SizeBefore: int64(m.Proto.SizeVT()),
		OpsBefore: onnx.OpTypeCounts(g)}
	if err := checkInputShapes(m, opt.InputShapes); err != nil {
		return nil, err
	}
	ctx := passes.NewContext(m, opt.InputShapes)
	ctx.MaxFoldBytes = opt.MaxFoldBytes
	totals := make([]int, len(chosen))
	maxRounds := opt.MaxRounds
	if maxRounds <= 0 {
		maxRounds = 20
	}
	for rep.Rounds < maxRounds {
		rep.Rounds++
		changed := 0
		for i, p := range chosen {
			if p.Applies != nil && !p.Applies(ctx) {
				continue
			}
			n, err := p.Run(ctx)
			if err != nil {
				return nil, fmt.Errorf("pass %s: %w", p.Name, err)
			}
			if n > 0 {
				// A pass must leave a valid graph; catching it here names the pass at fault.
				if err := onnx.Check(g); err != nil {
					return nil, fmt.Errorf("pass %s left an invalid graph (a bug in optimctl): %w", p.Name, err)
				}
			}
			totals[i] += n
			changed += n
		}
		if changed == 0 {
			break
		}
	}
	if len(opt.InputShapes) > 0 {
		fixInputShapes(m, opt.InputShapes)
	}
	if !opt.NoShapes {
		r, err := shape.Analyze(m, shape.Options{InputShapes: opt.InputShapes})
		if err != nil {
			return nil, err
		}
		r.WriteValueInfo(g)
		refineOutputs(g, r)
	}
	for i, p := range chosen {
		rep.Passes = append(rep.Passes, PassReport{Name: p.Name, Changes: totals[i]})
	}
	rep.NodesAfter = len(g.Node)
	rep.SizeAfter = int64(m.Proto.SizeVT())
	rep.OpsAfter = onnx.OpTypeCounts(g)
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// selectPasses resolves pass names. Passes that add initializers need IR version 4, so
// initializer-inputs joins any selection that includes one of them.
func selectPasses(names []string) ([]*passes.Pass, error) {
	if names == nil {
		return passes.Defaults(), nil
	}
	var clean []string
	for _, n := range names {
		if n = strings.TrimSpace(n); n != "" {
			clean = append(clean, n)
		}
	}
	if len(clean) == 0 {
		return nil, fmt.Errorf("no passes named (see --list-passes)")
	}
	chosen, err := passes.Lookup(clean)
	if err != nil {
		return nil, err
	}
	for _, p := range chosen {
		if p == passes.InitializerInputs {
			return chosen, nil
		}
	}
	return append([]*passes.Pass{passes.InitializerInputs}, chosen...), nil
}

// checkInputShapes validates --shape against the model's inputs.
func checkInputShapes(m *onnx.Model, shapes map[string][]int64) error {
	for _, name := range onnx.SortedKeys(shapes) {
		dims := shapes[name]
		var vi *onnxpb.ValueInfoProto
		for _, v := range m.Graph().Input {
			if v.GetName() == name {
				vi = v
			}
		}
		if vi == nil {
			return fmt.Errorf("--shape %s: the model has no input %q", name, name)
		}
		info := shape.FromValueInfo(vi)
		if info != nil && info.Ranked && len(info.Dims) != len(dims) {
			return fmt.Errorf("--shape %s: input %q has rank %d, got %d dimensions", name, name, len(info.Dims), len(dims))
		}
		for k, d := range dims {
			if info != nil && info.Ranked && info.Dims[k].IsKnown() && d >= 0 && d != info.Dims[k].Value {
				return fmt.Errorf("--shape %s: dimension %d of input %q is fixed at %d, got %d", name, k, name, info.Dims[k].Value, d)
			}
		}
	}
	return nil
}

// fixInputShapes writes the fixed dimensions into the graph inputs: shape arithmetic was
// folded for them, so the model must not claim to accept others.
func fixInputShapes(m *onnx.Model, shapes map[string][]int64) {
	for _, vi := range m.Graph().Input {
		dims, ok := shapes[vi.GetName()]
		if !ok {
			continue
		}
		info := shape.FromValueInfo(vi)
		if info == nil {
			continue
		}
		info.Ranked = true
		if len(info.Dims) != len(dims) {
			info.Dims = make([]shape.Dim, len(dims))
			for k := range info.Dims {
				info.Dims[k] = shape.Unknown
			}
		}
		for k, d := range dims {
			if d >= 0 {
				info.Dims[k] = shape.Known(d)
			}
		}
		vi.Type = info.TypeProto()
	}
}

// refineOutputs fills unknown dimensions of graph outputs with inferred sizes.
func refineOutputs(g *onnxpb.GraphProto, r *shape.Result) {
	for _, vi := range g.Output {
		inferred := r.Info(vi.GetName())
		declared := shape.FromValueInfo(vi)
		if inferred == nil || declared == nil || !inferred.Ranked {
			continue
		}
		if !declared.Ranked {
			if t := inferred.TypeProto(); t != nil && inferred.DType == declared.DType {
				vi.Type = t
			}
			continue
		}
		if len(declared.Dims) != len(inferred.Dims) {
			continue
		}
		changed := false
		for k, d := range declared.Dims {
			if !d.IsKnown() && inferred.Dims[k].IsKnown() {
				declared.Dims[k] = inferred.Dims[k]
				changed = true
			}
		}
		if changed {
			vi.Type = declared.TypeProto()
		}
	}
}

// File optimizes the model at in and writes it to out atomically (never over in).
func File(in, out string, opt Options) (*Report, error) {
	start := time.Now()
	if out == "" {
		return nil, fmt.Errorf("no output path")
	}
	m, err := onnx.Load(in)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	sizeBefore := modelFileSize(in, m)
	rep, err := Run(m, opt)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", in, err)
	}
	if err := m.Save(out, onnx.SaveOptions{}); err != nil {
		return nil, err
	}
	rep.Input, rep.Output = in, out
	rep.SizeBefore = sizeBefore
	rep.SizeAfter = modelFileSize(out, nil)
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

// modelFileSize is the size of a model file plus the external data files beside it that it
// names (those of src when given, else the one Save writes).
func modelFileSize(path string, src *onnx.Model) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	size := st.Size()
	if src == nil {
		// Save puts external data (models over 2 GB) in <name>.data beside the model.
		if d, err := os.Stat(path + ".data"); err == nil {
			size += d.Size()
		}
		return size
	}
	seen := map[string]bool{}
	onnx.WalkTensors(src.Proto, func(t *onnxpb.TensorProto) bool {
		if !onnx.IsExternal(t) {
			return true
		}
		if ref, err := onnx.ParseExternal(t); err == nil && !seen[ref.Location] {
			seen[ref.Location] = true
			if d, err := os.Stat(filepath.Join(filepath.Dir(path), ref.Location)); err == nil {
				size += d.Size()
			}
		}
		return true
	})
	return size
}
