package calibration

import (
	"context"
	"errors"
	"fmt"
	"io"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Method is an activation-range calibration method.
type Method string

// Calibration methods, named as onnxruntime.quantization's CalibrationMethod.
const (
	// MinMax takes the extremes seen (optionally a moving average of per-batch extremes).
	MinMax Method = "minmax"
	// Entropy picks the clipping range that minimises the KL divergence between the
	// distribution and its 8-bit version (TensorRT's entropy calibration).
	Entropy Method = "entropy"
	// Percentile keeps a percentage of the values (default 99.999) and clips the rest.
	Percentile Method = "percentile"
)

// ParseMethod accepts minmax, entropy and percentile.
func ParseMethod(s string) (Method, error) {
	switch m := Method(strings.ToLower(strings.TrimSpace(s))); m {
	case MinMax, Entropy, Percentile:
		return m, nil
	}
	return "", fmt.Errorf("unknown calibration method %q (want minmax, entropy or percentile)", s)
}

// CalibrateOptions tune Calibrate. The zero value is min/max calibration on the CPU.
type CalibrateOptions struct {
	Method Method
	// Percentile is the percentage of values the percentile method keeps (0: 99.999).
	Percentile float64
	// MovingAverage makes min/max an exponential moving average of the per-batch extremes
	// with AveragingConstant (0: ORT's 0.01) instead of the global extremes.
	MovingAverage     bool
	AveragingConstant float32
	// Symmetric calibrates |x|: ranges come out as [−a, a], and the entropy and percentile
	// methods build histograms of magnitudes, as TensorRT's calibrators do. Otherwise the
	// histograms are signed, as onnxruntime.quantization's are.
	Symmetric bool
	// Bins is the histogram size of the entropy and percentile methods (0: 2048).
	Bins int
	// MaxBytesPerPass bounds the activation bytes the histogram methods fetch from one run
	// (0: DefaultMaxBytesPerPass). Tensors beyond it are calibrated in further passes over
	// the data, so memory stays bounded by this figure whatever the model or the number of
	// samples.
	MaxBytesPerPass int64
	// Runtime configures the ONNX Runtime sessions; extra outputs are set by Calibrate.
	Runtime runtime.Options
	// Progress, when set, is called after each sample of each pass.
	Progress func(done, total int)
}

// DefaultMaxBytesPerPass bounds the activation bytes one run of the histogram methods
// fetches. Every pass over the data runs the model on every sample again, which costs
// more than the histograms (PP-OCRv4 det at 320×320, 149 MiB of activations per sample:
// 5 passes at 32 MiB took 1.8× the CPU time of 1 pass, for 250 instead of 420 MiB of peak
// RSS); 256 MiB keeps most models to one pass, and two samples' worth of it in flight.
const DefaultMaxBytesPerPass = 256 << 20

// Range is the calibrated real range of one tensor.
type Range struct {
	Name string  `json:"name"`
	Min  float32 `json:"min"`
	Max  float32 `json:"max"`
}

// Amax is the largest magnitude of the range, what symmetric quantization scales by.
func (r Range) Amax() float32 { return max(-r.Min, r.Max) }

// Table is the result of a calibration: one range per requested tensor, in request order.
type Table struct {
	Method     Method  `json:"method"`
	Percentile float64 `json:"percentile,omitempty"`
	Symmetric  bool    `json:"symmetric"`
	Samples    int     `json:"samples"`
	// Passes is the number of passes over the data (histogram methods may need several).
	Passes int     `json:"passes"`
	Ranges []Range `json:"ranges"`
}

// Lookup returns the range of a tensor.
func (t *Table) Lookup(name string) (Range, bool) {
	for _, r := range t.Ranges {
		if r.Name == name {
			return r, true
		}
	}
	return Range{}, false
}

// Map returns the ranges keyed by tensor name.
func (t *Table) Map() map[string]Range {
	m := make(map[string]Range, len(t.Ranges))
	for _, r := range t.Ranges {
		m[r.Name] = r
	}
	return m
}

// Calibrate runs a float model (serialized ONNX) over every sample of src and returns the
// range of each named tensor (graph inputs or node outputs, float32). It streams: memory
// depends on the model, never on the number of samples.
//
// MinMax does not fetch the activations at all: every tensor gets a ReduceMin and a
// ReduceMax node in a copy of the graph, whose results are concatenated into two extra
// outputs, so one run returns 2 floats per tensor (ONNX Runtime frees each activation as
// soon as its last reader ran). The histogram methods need the values: the tensors are
// exposed as extra outputs in groups of at most MaxBytesPerPass bytes per sample, one
// pass over the data per group, with the next sample's run overlapping the histogram
// updates of the current one.
func Calibrate(ctx context.Context, model []byte, tensors []string, src Source, o CalibrateOptions) (*Table, error) {
	if o.Method == "" {
		o.Method = MinMax
	}
	if o.Method == Percentile && o.Percentile == 0 {
		o.Percentile = quant.DefaultPercentile
	}
	if o.Percentile < 0 || o.Percentile > 100 {
		return nil, fmt.Errorf("percentile %v: want a value in (0, 100]", o.Percentile)
	}
	if o.AveragingConstant == 0 {
		o.AveragingConstant = 0.01
	}
	if len(tensors) == 0 {
		return nil, errors.New("calibration: no tensors to calibrate")
	}
	// Decoded in place: the copy Calibrate adds to is re-encoded, never kept, so aliasing
	// model (which the caller holds for the whole call) saves a copy of the weights.
	m := &onnxpb.ModelProto{}
	if err := m.UnmarshalVTUnsafe(model); err != nil {
		return nil, fmt.Errorf("calibration: decoding model: %w", err)
	}
	if err := checkTensors(m.GetGraph(), tensors); err != nil {
		return nil, err
	}
	t := &Table{Method: o.Method, Symmetric: o.Symmetric}
	if o.Method == Percentile {
		t.Percentile = o.Percentile
	}
	var err error
	switch o.Method {
	case MinMax:
		err = calibrateMinMax(ctx, m, tensors, src, o, t)
	case Entropy, Percentile:
		err = calibrateHistograms(ctx, m, tensors, src, o, t)
	default:
		err = fmt.Errorf("unknown calibration method %q", o.Method)
	}
	if err != nil {
		return nil, err
	}
	return t, nil
}

// checkTensors makes sure every name is a graph input or a node output of the main graph.
func checkTensors(g *onnxpb.GraphProto, names []string) error {
	known := map[string]bool{}
	for _, v := range g.Input {
		known[v.GetName()] = true
	}
	for _, n := range g.Node {
		for _, out := range n.Output {
			known[out] = true
		}
	}
	seen := map[string]bool{}
	for _, n := range names {
		if !known[n] {
			return fmt.Errorf("calibration: tensor %q is not a graph input or node output of the main graph", n)
		}
		if seen[n] {
			return fmt.Errorf("calibration: tensor %q requested twice", n)
		}
		seen[n] = true
	}
	return nil
}

// graphInputs lists the names of the graph's inputs.
func graphInputs(g *onnxpb.GraphProto) map[string]bool {
	in := map[string]bool{}
	for _, v := range g.Input {
		in[v.GetName()] = true
	}
	return in
}

// rangesOutput is the output the min/max graph adds: [min, max] of each tensor in turn.
const rangesOutput = "optimctl_calibration_ranges"

func calibrateMinMax(ctx context.Context, m *onnxpb.ModelProto, tensors []string, src Source, o CalibrateOptions, t *Table) error {
	g := m.Graph
	inputs := graphInputs(g)
	var reduced []string // tensors reduced in the graph, in order
	for _, name := range tensors {
		if !inputs[name] {
			reduced = append(reduced, name)
		}
	}
	if len(reduced) > 0 {
		// The ranges become the only graph output: the model's own outputs are not
		// needed, and as further leaves of the graph they would make ONNX Runtime run the
		// whole model before any reduction. (A declared output also spares the session a
		// rewrite of the model.)
		g.Output = []*onnxpb.ValueInfoProto{addReductions(g, reduced)}
	}
	b, err := m.MarshalVT()
	if err != nil {
		return fmt.Errorf("calibration: encoding model: %w", err)
	}
	ro := o.Runtime.Reproducible() // ranges are written into the output: same bytes on every machine
	ro.ExtraOutputs = nil
	sess, err := runtime.NewSession(b, ro)
	if err != nil {
		return fmt.Errorf("calibration session: %w", err)
	}
	defer sess.Close()
	// The encoded copies of the model are garbage once ONNX Runtime has its own: hand
	// them back before the runs reach the activations' peak.
	b, m = nil, nil
	debug.FreeOSMemory()
	// One pkg/quant MinMax per tensor. The graph already reduced each activation to its
	// batch extremes, and the extremes of [lo, hi] are lo and hi, so feeding that pair is
	// the same update as feeding the whole batch (moving average included).
	states := make(map[string]*quant.MinMax, len(tensors))
	for _, name := range tensors {
		states[name] = quant.NewMinMax(false, o.MovingAverage)
		states[name].AveragingConstant = o.AveragingConstant
	}
	if err := src.Reset(); err != nil {
		return err
	}
	total := src.Len()
	samples, stop := prefetch(ctx, src)
	defer stop()
	for i := 0; ; i++ {
		f, more := <-samples
		if !more {
			break
		}
		if f.err != nil {
			return f.err
		}
		smp := f.s
		for name := range inputs {
			if st, ok := states[name]; ok {
				v, ok := smp[name]
				if !ok || v.DType != tensor.Float32 {
					return fmt.Errorf("calibration: input %q is not float32 in the data", name)
				}
				st.Add(v.Float32s())
			}
		}
		if len(reduced) > 0 {
			out, err := sess.Run(smp, rangesOutput)
			if err != nil {
				return fmt.Errorf("calibration, sample %d: %w", i, err)
			}
			r := out[rangesOutput].Float32s()
			for j, name := range reduced {
				states[name].Add(r[2*j : 2*j+2])
			}
		}
		t.Samples++
		if o.Progress != nil {
			o.Progress(t.Samples, total)
		}
	}
	if t.Samples == 0 {
		return errors.New("calibration: the data has no samples")
	}
	t.Passes = 1
	for _, name := range tensors {
		lo, hi := states[name].Range()
		if o.Symmetric {
			a := max(-lo, hi)
			lo, hi = -a, a
		}
		t.Ranges = append(t.Ranges, Range{Name: name, Min: lo, Max: hi})
	}
	return nil
}

type fetched struct {
	s   Sample
	err error
}

// prefetch reads samples one ahead in a goroutine, so decoding and preprocessing the next
// image overlaps the model run on the current one. stop ends it early.
func prefetch(ctx context.Context, src Source) (<-chan fetched, func()) {
	ch := make(chan fetched, 1)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		for {
			if err := ctx.Err(); err != nil {
				select {
				case ch <- fetched{err: err}:
				case <-done:
				}
				return
			}
			s, err := src.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			select {
			case ch <- fetched{s: s, err: err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return ch, func() {
		close(done)
		for range ch {
		}
		wg.Wait()
	}
}

// addReductions adds, for each tensor, ReduceMin and ReduceMax over all axes (with keepdims,
// so the result has a static shape whatever the opset); one Concat of all ranges becomes a
// float32 graph output of static shape [2·len(names)].
func addReductions(g *onnxpb.GraphProto, names []string) *onnxpb.ValueInfoProto {
	taken := map[string]bool{}
	for _, n := range g.Node {
		for _, out := range n.Output {
			taken[out] = true
		}
	}
	fresh := func(base string) string {
		s := base
		for i := 2; taken[s]; i++ {
			s = fmt.Sprintf("%s_%d", base, i)
		}
		taken[s] = true
		return s
	}
	// Each tensor is viewed flat (a Reshape to [-1] copies nothing), so both reductions
	// over all axes with keepdims give [1] directly.
	flatShape := fresh("optimctl_calibration_flat")
	dt := int32(tensor.Int64)
	g.Initializer = append(g.Initializer, &onnxpb.TensorProto{Name: proto.String(flatShape), DataType: &dt, Dims: []int64{1},
		RawData: []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}})
	mins := make([]string, len(names))
	maxs := make([]string, len(names))
	after := map[string][]*onnxpb.NodeProto{}
	keep := []*onnxpb.AttributeProto{{Name: proto.String("keepdims"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(1)}}
	for i, name := range names {
		flat := fresh(name + "_optimctl_flat")
		mins[i], maxs[i] = fresh(name+"_optimctl_min"), fresh(name+"_optimctl_max")
		after[name] = append(after[name],
			&onnxpb.NodeProto{OpType: proto.String("Reshape"), Name: proto.String(flat), Input: []string{name, flatShape}, Output: []string{flat}},
			&onnxpb.NodeProto{OpType: proto.String("ReduceMin"), Name: proto.String(mins[i]), Input: []string{flat}, Output: []string{mins[i]}, Attribute: keep},
			&onnxpb.NodeProto{OpType: proto.String("ReduceMax"), Name: proto.String(maxs[i]), Input: []string{flat}, Output: []string{maxs[i]}, Attribute: keep})
	}
	// Order matters for memory. ONNX Runtime's default execution order is a depth-first
	// walk back from the graph's leaf, visiting the inputs with the highest node index
	// first: reductions listed in graph order would make it reach the last activation
	// first and run the whole model before any reduction, keeping every activation alive
	// (measured on PP-OCRv4 det at 320×320: 500 MB). Listed last-tensor-first at the end of
	// the graph, each reduction runs as soon as its tensor exists (175 MB, as a plain run).
	for i := len(names) - 1; i >= 0; i-- {
		g.Node = append(g.Node, after[names[i]]...)
	}
	// One Concat of [min0, max0, min1, max1, ...]: a single leaf for the walk above.
	ins := make([]string, 0, 2*len(names))
	for i := range names {
		ins = append(ins, mins[i], maxs[i])
	}
	g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("Concat"), Name: proto.String(fresh(rangesOutput)), Input: ins, Output: []string{rangesOutput},
		Attribute: []*onnxpb.AttributeProto{{Name: proto.String("axis"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(0)}}})
	f32 := int32(tensor.Float32)
	return &onnxpb.ValueInfoProto{Name: proto.String(rangesOutput), Type: &onnxpb.TypeProto{
		Value: &onnxpb.TypeProto_TensorType{TensorType: &onnxpb.TypeProto_Tensor{ElemType: &f32,
			Shape: &onnxpb.TensorShapeProto{Dim: []*onnxpb.TensorShapeProto_Dimension{{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: int64(2 * len(names))}}}}}}}}
}

// calibrateHistograms feeds every tensor's values into a streaming histogram and derives
// the entropy or percentile range from it.
func calibrateHistograms(ctx context.Context, m *onnxpb.ModelProto, tensors []string, src Source, o CalibrateOptions, t *Table) error {
	if err := src.Reset(); err != nil {
		return err
	}
	first, err := src.Next()
	if errors.Is(err, io.EOF) {
		return errors.New("calibration: the data has no samples")
	}
	if err != nil {
		return err
	}
	// Static input shapes let ONNX Runtime infer every activation's shape, so the session
	// writes outputs straight into Go buffers and each group's size is known up front.
	setInputShapes(m.Graph, first)
	b, err := m.MarshalVT()
	if err != nil {
		return fmt.Errorf("calibration: encoding model: %w", err)
	}
	types, err := TensorTypes(b, o.Runtime)
	if err != nil {
		return err
	}
	budget := o.MaxBytesPerPass
	if budget <= 0 {
		budget = DefaultMaxBytesPerPass
	}
	groups := groupBySize(tensors, types, budget)
	hists := make(map[string]*quant.Histogram, len(tensors))
	for _, name := range tensors {
		h, err := quant.NewHistogram(o.Bins, o.Symmetric)
		if err != nil {
			return err
		}
		hists[name] = h
	}
	inputs := graphInputs(m.Graph)
	total := src.Len()
	if total > 0 {
		total *= len(groups)
	}
	done := 0
	for gi, group := range groups {
		var extra []string
		for _, name := range group {
			if !inputs[name] {
				extra = append(extra, name)
			}
		}
		ro := o.Runtime.Reproducible() // see calibrateMinMax; no spinning: the histogram updates run beside the model
		ro.ExtraOutputs = extra
		sess, err := runtime.NewSession(b, ro)
		if err != nil {
			return fmt.Errorf("calibration session: %w", err)
		}
		samples, err := histogramPass(ctx, sess, src, group, extra, hists, func() {
			done++
			if o.Progress != nil {
				o.Progress(done, total)
			}
		})
		sess.Close()
		if err != nil {
			return err
		}
		if gi == 0 {
			t.Samples = samples
		}
	}
	t.Passes = len(groups)
	// The threshold searches are independent per tensor (and cost more than collecting the
	// histograms for entropy: ~1000 candidate windows of up to 2048 bins), so they run on
	// every CPU; results land by index, so the order never depends on scheduling.
	ranges := make([]Range, len(tensors))
	errs := make([]error, len(tensors))
	next := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < goruntime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				ranges[i], errs[i] = histogramRange(tensors[i], hists[tensors[i]], o)
			}
		}()
	}
	for i := range tensors {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	t.Ranges = ranges
	return nil
}

// histogramRange derives a tensor's range from its histogram.
func histogramRange(name string, h *quant.Histogram, o CalibrateOptions) (Range, error) {
	if h.Total() == 0 {
		// Nothing finite was seen: an empty range quantizes to scale 1, zero point 0.
		return Range{Name: name}, nil
	}
	var lo, hi float32
	var err error
	if o.Method == Entropy {
		lo, hi, err = quant.Entropy(h, 0)
	} else {
		lo, hi, err = quant.Percentile(h, o.Percentile)
	}
	if err != nil {
		return Range{}, fmt.Errorf("calibration of %q: %w", name, err)
	}
	if o.Symmetric {
		// Percentile clamps to the observed extremes, which need not be symmetric.
		a := max(-lo, hi)
		lo, hi = -a, a
	}
	return Range{Name: name, Min: lo, Max: hi}, nil
}

// gcPerSampleBytes is the activation size per sample above which histogramPass collects
// garbage after every sample.
const gcPerSampleBytes = 32 << 20

// histogramPass runs the data once through sess, adding each tensor of group to its
// histogram. Three stages overlap: the next sample is decoded (prefetch) while the
// current one runs, and running sample i+1 overlaps the histogram updates of sample i.
// The activations of two samples are in flight at most, in two sets of buffers that the
// runs take turns writing (Session.RunReusing), so nothing is allocated per sample and
// memory does not depend on the number of samples. Each tensor's histogram takes its
// samples in order, whatever the scheduling.
func histogramPass(ctx context.Context, sess *runtime.Session, src Source, group, extra []string,
	hists map[string]*quant.Histogram, tick func()) (int, error) {
	if err := src.Reset(); err != nil {
		return 0, err
	}
	type result struct {
		vals map[string]*tensor.Tensor
		err  error
	}
	samples, stopFetch := prefetch(ctx, src)
	results := make(chan result)
	// Output sets the histogram stage is done with, for the next run to write into.
	free := make(chan map[string]*tensor.Tensor, 2)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(results)
		for i := 0; ; i++ {
			f, more := <-samples
			if !more {
				return
			}
			if f.err != nil {
				select {
				case results <- result{err: f.err}:
				case <-stop:
				}
				return
			}
			smp := f.s
			vals := map[string]*tensor.Tensor{}
			if len(extra) > 0 {
				var reuse map[string]*tensor.Tensor
				select {
				case reuse = <-free:
				default:
				}
				var err error
				if vals, err = sess.RunReusing(smp, reuse, extra...); err != nil {
					select {
					case results <- result{err: fmt.Errorf("calibration, sample %d: %w", i, err)}:
					case <-stop:
					}
					return
				}
			}
			for _, name := range group {
				if v, ok := smp[name]; ok {
					vals[name] = v
				}
			}
			select {
			case results <- result{vals: vals}:
			case <-stop:
				return
			}
		}
	}()
	defer func() {
		close(stop)
		stopFetch()
		for range results {
		}
		wg.Wait()
	}()
	n := 0
	for r := range results {
		if r.err != nil {
			return n, r.err
		}
		var uwg sync.WaitGroup
		var mu sync.Mutex
		var ferr error
		// Histogram updates are independent per tensor: one worker per CPU.
		next := make(chan string)
		for w := 0; w < goruntime.GOMAXPROCS(0); w++ {
			uwg.Add(1)
			go func() {
				defer uwg.Done()
				for name := range next {
					v := r.vals[name]
					if v == nil || v.DType != tensor.Float32 {
						mu.Lock()
						ferr = fmt.Errorf("calibration: tensor %q is not a float32 tensor", name)
						mu.Unlock()
						continue
					}
					hists[name].Add(v.Float32s())
				}
			}()
		}
		for _, name := range group {
			next <- name
		}
		close(next)
		uwg.Wait()
		if ferr != nil {
			return n, ferr
		}
		n++
		tick()
		var bytes int
		for _, v := range r.vals {
			bytes += len(v.Data)
		}
		select {
		case free <- r.vals:
		default:
		}
		// Outputs ONNX Runtime allocates itself (unknown shapes) and the decoded images are
		// still garbage each sample. With large activations a collection per sample keeps
		// the heap at the two samples in flight instead of twice that, for a cost that is
		// small beside such a run; with small ones the heap stays small anyway.
		if bytes >= gcPerSampleBytes {
			goruntime.GC()
		}
	}
	if n == 0 {
		return 0, errors.New("calibration: the data has no samples")
	}
	return n, nil
}

// setInputShapes fixes the graph inputs' dimensions to those of a sample.
func setInputShapes(g *onnxpb.GraphProto, smp Sample) {
	for _, v := range g.Input {
		t, ok := smp[v.GetName()]
		tt := v.GetType().GetTensorType()
		if !ok || tt == nil {
			continue
		}
		shape := &onnxpb.TensorShapeProto{}
		for _, d := range t.Shape {
			shape.Dim = append(shape.Dim, &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d}})
		}
		tt.Shape = shape
	}
}

// groupBySize splits tensors, in order, into groups whose per-sample bytes stay within
// budget (a tensor larger than the budget gets a group of its own). Unknown sizes count
// as a quarter of the budget.
func groupBySize(tensors []string, types map[string]tensor.Spec, budget int64) [][]string {
	var groups [][]string
	var cur []string
	var used int64
	for _, name := range tensors {
		size := budget / 4
		if s, ok := types[name]; ok {
			if n := tensor.NumElements(s.Shape); n >= 0 && s.Shape != nil {
				size = s.DType.ByteSize(n)
			}
		}
		if len(cur) > 0 && used+size > budget {
			groups = append(groups, cur)
			cur, used = nil, 0
		}
		cur = append(cur, name)
		used += size
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// TensorTypes returns the element type and shape of every value of a model's main graph:
// declared for graph inputs and initializers, inferred by ONNX Runtime for node outputs
// (value_info is optional and usually absent). A session with every node output exposed is
// built, with optimisations off, and never run.
func TensorTypes(model []byte, rt runtime.Options) (map[string]tensor.Spec, error) {
	m := &onnxpb.ModelProto{}
	if err := m.UnmarshalVT(model); err != nil {
		return nil, fmt.Errorf("decoding model: %w", err)
	}
	g := m.GetGraph()
	vt := map[string]tensor.Spec{}
	for _, v := range g.GetInput() {
		s := onnx.ValueSpec(v)
		vt[s.Name] = s
	}
	for _, t := range g.GetInitializer() {
		vt[t.GetName()] = tensor.Spec{Name: t.GetName(), DType: tensor.DType(t.GetDataType()), Shape: append([]int64{}, t.Dims...)}
	}
	outs := map[string]bool{}
	for _, v := range g.GetOutput() {
		outs[v.GetName()] = true
	}
	var extra []string
	for _, n := range g.GetNode() {
		for _, o := range n.Output {
			if o != "" && !outs[o] {
				extra = append(extra, o)
			}
		}
	}
	opts := runtime.Options{GraphOptLevel: runtime.OptDisabled, IntraOpThreads: 1, ExternalDataDir: rt.ExternalDataDir, ExtraOutputs: extra}
	s, err := runtime.NewSession(model, opts)
	if err != nil {
		return nil, fmt.Errorf("inferring tensor types with ONNX Runtime: %w", err)
	}
	defer s.Close()
	for _, o := range s.Outputs() {
		if o.DType != tensor.Undefined {
			vt[o.Name] = o
		}
	}
	return vt, nil
}

// FloatTensors lists the float32 activations of a model in graph order: its float32
// inputs, then every float32 node output (Constant nodes excepted: they hold weights). These are what a calibration table covers.
func FloatTensors(model []byte, rt runtime.Options) ([]string, error) {
	types, err := TensorTypes(model, rt)
	if err != nil {
		return nil, err
	}
	m := &onnxpb.ModelProto{}
	if err := m.UnmarshalVT(model); err != nil {
		return nil, err
	}
	g := m.GetGraph()
	inits := map[string]bool{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = true
	}
	var out []string
	for _, v := range g.GetInput() {
		if !inits[v.GetName()] && types[v.GetName()].DType == tensor.Float32 {
			out = append(out, v.GetName())
		}
	}
	order, err := onnx.TopoOrder(g)
	if err != nil {
		return nil, err
	}
	for _, i := range order {
		if g.Node[i].GetOpType() == "Constant" {
			continue // weights stored as nodes, not activations
		}
		for _, o := range g.Node[i].Output {
			if o != "" && types[o].DType == tensor.Float32 {
				out = append(out, o)
			}
		}
	}
	return out, nil
}

// CalibrateFile calibrates every float32 activation of the model at path (its float32
// inputs and node outputs, in graph order) on data opened with dataOpts: what a
// calibration table for another tool (TensorRT's cache, a JSON table) covers.
func CalibrateFile(ctx context.Context, path, data string, dataOpts Options, o CalibrateOptions) (*Table, error) {
	m, err := onnx.Load(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	b, err := m.MarshalInline()
	if err != nil {
		return nil, err
	}
	if o.Runtime.ExternalDataDir == "" {
		o.Runtime.ExternalDataDir = m.Dir
	}
	tensors, err := FloatTensors(b, o.Runtime)
	if err != nil {
		return nil, err
	}
	src, err := Open(data, m.InputSpecs(), dataOpts)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	return Calibrate(ctx, b, tensors, src, o)
}
