// Package quantize rewrites ONNX models for lower precision: INT8 with activations
// quantized at run time (dynamic), INT8 with calibrated activation ranges (static, as
// Q/DQ pairs or integer operators, for ONNX Runtime or TensorRT), and float16. The
// arithmetic (scales, zero points, rounding) follows onnxruntime.quantization, so the two
// tools' outputs can be compared number for number; the graph work around it (weights in
// Constant nodes, BatchNorm folding, opset upgrades, streaming calibration, per-layer
// sensitivity and automatic float fallback) is what this package adds.
package quantize

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
)

// Report describes a quantization run; its first keys are the command-line contract's.
type Report struct {
	Input       string  `json:"input"`
	Output      string  `json:"output"`
	NodesBefore int     `json:"nodes_before"`
	NodesAfter  int     `json:"nodes_after"`
	SizeBefore  int64   `json:"size_before"`
	SizeAfter   int64   `json:"size_after"`
	Seconds     float64 `json:"seconds"`

	Mode           Mode   `json:"mode"`
	Format         Format `json:"format,omitempty"`
	Target         Target `json:"target,omitempty"`
	PerChannel     bool   `json:"per_channel"`
	ActivationType string `json:"activation_type,omitempty"`
	WeightType     string `json:"weight_type,omitempty"`
	Symmetric      bool   `json:"symmetric_activations"`
	OpsetBefore    int64  `json:"opset_before"`
	OpsetAfter     int64  `json:"opset_after"`
	// Prepared counts the float rewrites done before quantizing.
	Prepared PrepareReport `json:"prepared"`
	// QuantizedNodes counts the nodes quantized (or converted to float16), by op type.
	QuantizedNodes int            `json:"quantized_nodes"`
	QuantizedOps   map[string]int `json:"quantized_op_types"`
	OpTypesAfter   map[string]int `json:"op_types_after"`
	// KeptFloat are nodes left in float on request (--exclude) or by the fallback.
	KeptFloat   []string           `json:"kept_float"`
	Fallback    *FallbackReport    `json:"fallback,omitempty"`
	Calibration *CalibrationReport `json:"calibration,omitempty"`
	Sensitivity []LayerSensitivity `json:"sensitivity,omitempty"`
	Notes       []string           `json:"notes"`
}

// PrepareReport counts the float-graph rewrites that precede quantization.
type PrepareReport struct {
	ConstantsToInitializers int `json:"constants_to_initializers"`
	BatchNormsFolded        int `json:"batchnorms_folded"`
	MatMulAddToGemm         int `json:"matmul_add_to_gemm"`
}

// CalibrationReport describes the activation calibration of a static run.
type CalibrationReport struct {
	Data          string             `json:"data"`
	Method        calibration.Method `json:"method"`
	Percentile    float64            `json:"percentile,omitempty"`
	MovingAverage bool               `json:"moving_average,omitempty"`
	Samples       int                `json:"samples"`
	Tensors       int                `json:"tensors"`
	Passes        int                `json:"passes"`
	Seconds       float64            `json:"seconds"`
}

// File quantizes the model at input and writes the result to output atomically (never
// over the input).
func File(ctx context.Context, input, output string, o Options) (*Report, error) {
	start := time.Now()
	o, err := o.normalized()
	if err != nil {
		return nil, err
	}
	if err := fsutil.CheckNotSame(input, output); err != nil {
		return nil, err
	}
	m, err := onnx.Load(input)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	rep := &Report{Input: input, Output: output, NodesBefore: len(m.Proto.Graph.Node), SizeBefore: fileSize(input)}
	if o.Runtime.ExternalDataDir == "" {
		o.Runtime.ExternalDataDir = m.Dir
	}
	j := &job{o: o, m: m, rep: rep, input: input}
	out, err := j.run(ctx)
	if err != nil {
		return nil, err
	}
	m.Proto = out
	rep.NodesAfter = len(out.Graph.Node)
	rep.OpTypesAfter = onnx.OpTypeCounts(out.Graph)
	if err := m.Save(output, onnx.SaveOptions{}); err != nil {
		return nil, err
	}
	rep.SizeAfter = fileSize(output)
	rep.Seconds = time.Since(start).Seconds()
	return rep, nil
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

// job is one quantization: the prepared float model and what was learnt about it.
type job struct {
	o        Options
	m        *onnx.Model
	input    string
	rep      *Report
	prepared []byte // the prepared float model, serialized
	types    valueTypes
	ranges   map[string]calibration.Range
}

func (j *job) note(format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	j.rep.Notes = append(j.rep.Notes, msg)
	j.o.Log.Info(msg)
}

func (j *job) run(ctx context.Context) (*onnxpb.ModelProto, error) {
	o := j.o
	j.rep.Mode, j.rep.OpsetBefore = o.Mode, j.m.Opset("")
	j.rep.Notes, j.rep.KeptFloat = []string{}, []string{}
	if err := j.prepare(); err != nil {
		return nil, err
	}
	switch o.Mode {
	case FP16:
		return j.fp16()
	case Dynamic:
		j.rep.PerChannel, j.rep.WeightType, j.rep.ActivationType = j.o.PerChannel, o.WeightType.String(), o.ActivationType.String()
		return j.dynamic()
	}
	j.rep.Format, j.rep.Target = o.Format, o.Target
	j.rep.ActivationType, j.rep.WeightType, j.rep.Symmetric = o.ActivationType.String(), o.WeightType.String(), o.Symmetric
	if err := j.calibrate(ctx); err != nil {
		return nil, err
	}
	j.rep.PerChannel = j.o.PerChannel
	exclude := excludeSet(o.Exclude)
	if o.Sensitivity || o.AutoFallback {
		return j.withSensitivity(ctx, exclude)
	}
	out, _, err := j.buildStatic(exclude)
	return out, err
}

// prepare rewrites the float graph into what quantization works on: Constant-node weights
// become initializers, BatchNorms fold into Convs, and the opset is raised to
// 13 when the rewrite needs it and every operator can be carried over.
func (j *job) prepare() error {
	e := newEditor(j.m)
	n, err := constantsToInitializers(e)
	if err != nil {
		return err
	}
	j.rep.Prepared.ConstantsToInitializers = n
	// Folding also matters for float16: BatchNorm variances can exceed its range (PP-OCRv4
	// det has 9.8e7), while the folded weights are small.
	if n, err = foldBatchNorm(e); err != nil {
		return err
	}
	j.rep.Prepared.BatchNormsFolded = n
	t0 := time.Now()
	if j.types, err = probeTypes(j.m, nil, j.o.Shapes, j.o.Runtime); err != nil {
		return err
	}
	j.o.Log.Debug("tensor types inferred", "seconds", time.Since(t0).Seconds(), "peak_rss", peakRSS())
	if j.o.Mode != FP16 {
		if n := fuseMatMulAdd(e, j.types); n > 0 {
			j.rep.Prepared.MatMulAddToGemm = n
		}
		if err := j.upgrade(e); err != nil {
			return err
		}
		// Values the upgrade added (Softmax reshapes, new inputs) need types too.
		if j.types, err = probeTypes(j.m, nil, j.o.Shapes, j.o.Runtime); err != nil {
			return err
		}
	}
	b, err := j.m.MarshalInline()
	if err != nil {
		return err
	}
	j.prepared = b
	j.rep.OpsetAfter = j.m.Opset("")
	j.o.Log.Debug("prepared", "peak_rss", peakRSS())
	return nil
}

// upgrade raises the opset to 13 for per-channel Q/DQ (and to at least 10 for any
// Q/DQ); when an operator blocks it, weights fall back to per-tensor with a note.
func (j *job) upgrade(e *editor) error {
	if isFP8(j.o.ActivationType) {
		return j.upgradeFP8(e)
	}
	cur := j.m.Opset("")
	if cur >= opsetPerChannel {
		return nil
	}
	changed, err := upgradeOpset(e, opsetPerChannel, j.types.ranks())
	if changed {
		j.note("opset upgraded from %d to %d (per-channel Q/DQ and the integer operators need it)", cur, opsetPerChannel)
		return nil
	}
	if cur < opsetQDQ {
		return fmt.Errorf("opset %d has no QuantizeLinear and cannot be upgraded: %v", cur, err)
	}
	if j.o.PerChannel {
		j.o.PerChannel = false
		j.note("per-channel weights need opset 13 and the model stays at opset %d (%v): weights are quantized per tensor", cur, err)
	}
	return nil
}

// loadPrepared decodes a fresh copy of the prepared float model to rewrite.
func (j *job) loadPrepared() (*onnx.Model, *editor, error) {
	m, err := onnx.LoadBytes(j.prepared, j.m.Dir)
	if err != nil {
		return nil, nil, err
	}
	return m, newEditor(m), nil
}

// calibrate measures the ranges of every activation the plan without fallback needs (a
// fallback variant only quantizes fewer).
func (j *job) calibrate(ctx context.Context) error {
	start := time.Now()
	_, e, err := j.loadPrepared()
	if err != nil {
		return err
	}
	p := planStatic(e, j.types, j.o, excludeSet(j.o.Exclude))
	// Every activation, shared ones included: a fallback variant may keep the node they
	// share with in float and then need their own range.
	tensors := p.acts
	if len(tensors) == 0 {
		return fmt.Errorf("nothing to quantize: no supported operator with float inputs (op types: %v)", opsUsed(e.g))
	}
	src, err := j.openData(j.o.Calib)
	if err != nil {
		return err
	}
	defer src.Close()
	copts := calibration.CalibrateOptions{Method: j.o.Method, Percentile: j.o.Percentile, MovingAverage: j.o.MovingAverage,
		AveragingConstant: j.o.AveragingConstant, Symmetric: j.o.Symmetric, Runtime: j.o.Runtime, Progress: j.o.Progress}
	t, err := calibration.Calibrate(ctx, j.prepared, tensors, src, copts)
	if err != nil {
		return err
	}
	j.ranges = t.Map()
	j.o.Log.Debug("calibrated", "seconds", time.Since(start).Seconds(), "peak_rss", peakRSS())
	j.rep.Calibration = &CalibrationReport{Data: j.o.Calib, Method: t.Method, Percentile: t.Percentile, MovingAverage: j.o.MovingAverage,
		Samples: t.Samples, Tensors: len(tensors), Passes: t.Passes, Seconds: time.Since(start).Seconds()}
	return nil
}

// openData opens calibration or validation data for the prepared model's inputs.
func (j *job) openData(spec string) (calibration.Source, error) {
	pm, err := onnx.LoadBytes(j.prepared, j.m.Dir)
	if err != nil {
		return nil, err
	}
	return calibration.Open(spec, pm.InputSpecs(), calibration.Options{Preprocess: j.o.Preprocess, Shapes: j.o.Shapes,
		Limit: j.o.Limit, Batch: j.o.Batch})
}

// buildStatic produces the statically quantized model with the given nodes kept float.
func (j *job) buildStatic(exclude map[string]bool) (*onnxpb.ModelProto, *plan, error) {
	_, e, err := j.loadPrepared()
	if err != nil {
		return nil, nil, err
	}
	p := planStatic(e, j.types, j.o, exclude)
	b := newBuilder(e, j.o, p, j.ranges, j.types)
	if j.o.Format == QOperator {
		err = b.buildQOperator()
	} else {
		err = b.buildQDQ()
	}
	if err != nil {
		return nil, nil, err
	}
	j.rep.QuantizedNodes = len(p.nodes)
	j.rep.QuantizedOps = map[string]int{}
	for _, n := range p.nodes {
		j.rep.QuantizedOps[n.GetOpType()]++
	}
	j.rep.KeptFloat = keptFloat(e, exclude)
	return e.m.Proto, p, nil
}

// keptFloat lists the nodes that --exclude (or the fallback) named, for the report.
func keptFloat(e *editor, exclude map[string]bool) []string {
	out := []string{}
	for _, n := range e.g.Node {
		if matchExclude(n, exclude) {
			out = append(out, nodeID(n))
		}
	}
	return out
}

func excludeSet(list []string) map[string]bool {
	s := map[string]bool{}
	for _, x := range list {
		if x != "" {
			s[x] = true
		}
	}
	return s
}

// peakRSS reads the process's peak resident set (Linux; 0 elsewhere), for debug logs.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
