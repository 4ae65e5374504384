package quantize

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/validate"
)

// sensitivitySamples caps the samples the per-layer comparison runs: the ranking needs
// a few samples, not the whole calibration set.
const sensitivitySamples = 16

// LayerSensitivity is one quantized layer's share of the output error.
type LayerSensitivity struct {
	Node   string `json:"node"`
	OpType string `json:"op_type"`
	Output string `json:"output"`
	// SNRdB compares the layer's output in the quantized model with its float twin: the
	// error accumulated up to and including this layer.
	SNRdB float64 `json:"snr_db"`
	// AddedNoise is the noise-to-signal power ratio the layer adds: its output's ratio minus
	// the worst of its inputs' (both measured before the layer's own Q/DQ), so a layer
	// downstream of a bad one is not blamed for it. The ranking key.
	AddedNoise float64 `json:"added_noise"`
	// AddedNoiseDB is AddedNoise in dB (−∞ when it adds nothing).
	AddedNoiseDB float64 `json:"added_noise_db"`
	Rank         int     `json:"rank"`
}

// FallbackReport says what --auto-fallback kept in float and whether the gates hold.
type FallbackReport struct {
	Passed bool `json:"passed"`
	// Kept are the layers kept in float, most sensitive first.
	Kept          []string `json:"kept"`
	Attempts      int      `json:"attempts"`
	FailedGates   []string `json:"failed_gates"`
	Top1Agreement *float64 `json:"top1_agreement,omitempty"`
	// CosineMin and SNRdB are the worst over every output of the final model.
	CosineMin float64 `json:"cosine_min"`
	SNRdB     float64 `json:"snr_db"`
}

// withSensitivity builds the quantized model, measures every layer's contribution to
// the error, and, for --auto-fallback, keeps the most sensitive layers in float until
// the gates hold on the data: the smallest number of layers is found by doubling, then
// bisecting (the gates are close to monotonic in the number of float layers; the search
// only trusts measured results).
func (j *job) withSensitivity(ctx context.Context, exclude map[string]bool) (*onnxpb.ModelProto, error) {
	full, p, err := j.buildStatic(exclude)
	if err != nil {
		return nil, err
	}
	measured, mp := full, p
	if j.o.Format == QOperator {
		// Measured on the QDQ twin: the same numbers, with every float name still present.
		o := j.o
		j.o.Format = QDQ
		measured, mp, err = j.buildStatic(exclude)
		j.o = o
		if err != nil {
			return nil, err
		}
	}
	sens, err := j.measureSensitivity(ctx, measured, mp)
	if err != nil {
		return nil, err
	}
	j.rep.Sensitivity = sens
	if !j.o.AutoFallback {
		return full, nil
	}
	dir, err := os.MkdirTemp("", "optimctl-fallback-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fr := &FallbackReport{}
	j.rep.Fallback = fr
	check := func(k int) (*onnxpb.ModelProto, *validate.Report, error) {
		ex := map[string]bool{}
		for name := range exclude {
			ex[name] = true
		}
		for _, s := range sens[:k] {
			ex[s.Node] = true
		}
		m, _, err := j.buildStatic(ex)
		if err != nil {
			return nil, nil, err
		}
		r, err := j.gate(ctx, m, dir)
		fr.Attempts++
		j.o.Log.Info("auto-fallback", "float_layers", k, "passed", r != nil && r.Passed)
		return m, r, err
	}
	type result struct {
		m *onnxpb.ModelProto
		r *validate.Report
	}
	results := map[int]result{}
	try := func(k int) (bool, error) {
		m, r, err := check(k)
		if err != nil {
			return false, err
		}
		results[k] = result{m, r}
		return r.Passed, nil
	}
	ok, err := try(0)
	if err != nil {
		return nil, err
	}
	best := 0
	if !ok {
		// Double until the gate holds (or every layer is float), then bisect.
		lo, hi := 0, -1
		for k := 1; ; k *= 2 {
			if k > len(sens) {
				k = len(sens)
			}
			pass, err := try(k)
			if err != nil {
				return nil, err
			}
			if pass {
				hi = k
				break
			}
			lo = k
			if k == len(sens) {
				break
			}
		}
		if hi < 0 {
			best = len(sens)
		} else {
			for hi-lo > 1 {
				mid := (lo + hi) / 2
				pass, err := try(mid)
				if err != nil {
					return nil, err
				}
				if pass {
					hi = mid
				} else {
					lo = mid
				}
			}
			best = hi
		}
	}
	res := results[best]
	fr.Passed = res.r.Passed
	fr.FailedGates = append([]string{}, res.r.FailedGates...)
	fr.Top1Agreement = res.r.Top1Agreement
	fr.CosineMin, fr.SNRdB = 1, math.Inf(1)
	for _, o := range res.r.Outputs {
		fr.CosineMin = math.Min(fr.CosineMin, o.CosineMin)
		fr.SNRdB = math.Min(fr.SNRdB, o.SNRdB)
	}
	fr.SNRdB = clampDB(fr.SNRdB)
	fr.Kept = []string{}
	for _, s := range sens[:best] {
		fr.Kept = append(fr.Kept, s.Node)
	}
	if best > 0 {
		j.note("auto-fallback kept %d layer(s) in float: %s", best, strings.Join(fr.Kept, ", "))
	}
	// Rebuild the report's counts for the chosen variant.
	ex := map[string]bool{}
	for name := range exclude {
		ex[name] = true
	}
	for _, k := range fr.Kept {
		ex[k] = true
	}
	if _, _, err := j.buildStatic(ex); err != nil {
		return nil, err
	}
	return res.m, nil
}

// gate validates a candidate against the original model with the fallback gates.
func (j *job) gate(ctx context.Context, m *onnxpb.ModelProto, dir string) (*validate.Report, error) {
	b, err := m.MarshalVT()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "candidate.onnx")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	rt := j.o.Runtime.Reproducible() // the gate decides which layers the output keeps in float
	rt.ExtraOutputs = nil
	return validate.Run(ctx, validate.Options{Reference: j.input, Candidate: path, Data: j.o.Data, Preprocess: j.o.Preprocess,
		Shapes: j.o.Shapes, Limit: j.o.Limit, Runtime: rt, Warmup: 1,
		Gates: validate.Gates{MaxTop1Drop: j.o.MaxTop1Drop, MinCosine: j.o.MinCosine, MinSNR: j.o.MinSNR}})
}

// layer is a quantized compute node and the tensors compared for it: pairs of a name in
// the float model and the name of the same value in the quantized one.
type layer struct {
	node   *onnxpb.NodeProto
	output [2]string
	inputs [][2]string
}

// measureSensitivity runs the prepared float model and the quantized one side by side
// on up to sensitivitySamples samples, both exposing every quantized layer's output
// (the names survive quantization: Q/DQ pairs are added after them), and ranks layers by
// the noise each adds.
func (j *job) measureSensitivity(ctx context.Context, q *onnxpb.ModelProto, p *plan) ([]LayerSensitivity, error) {
	var layers []layer
	fnames, qnames := map[string]bool{}, map[string]bool{}
	prod := producers(q.Graph)
	// seen is the value a tensor's readers get: its DequantizeLinear output when it has one.
	seen := func(t string) [2]string {
		if dq, ok := p.dqOf[t]; ok {
			return [2]string{t, dq}
		}
		return [2]string{t, t}
	}
	for _, n := range p.nodes {
		switch p.class[n] {
		case clsWeighted, clsBinary, clsUnary, clsConcat:
		default:
			continue // data movement adds no error of its own
		}
		out := finalOutput(p, n, n.Output[0])
		if !j.types.isFloat32(out) {
			continue
		}
		// The layer owns its weights and its output's quantization; an input's quantization
		// belongs to the quantized layer that produced it, else to this one.
		l := layer{node: n, output: seen(out)}
		for _, in := range p.inputsOf[n] {
			pair := [2]string{in, in}
			if pn := prod[in]; pn != nil && p.sel[pn] {
				pair = seen(in)
			}
			l.inputs = append(l.inputs, pair)
		}
		for _, pr := range append([][2]string{l.output}, l.inputs...) {
			fnames[pr[0]], qnames[pr[1]] = true, true
		}
		layers = append(layers, l)
	}
	if len(layers) == 0 {
		return nil, errors.New("sensitivity: no quantized layer to measure")
	}
	ffetch, qfetch := sortedNames(fnames), sortedNames(qnames)
	qb, err := q.MarshalVT()
	if err != nil {
		return nil, err
	}
	rt := j.o.Runtime.Reproducible() // the ranking decides which layers --auto-fallback keeps in float
	rt.ExtraOutputs = ffetch
	fs, err := runtime.NewSession(j.prepared, rt)
	if err != nil {
		return nil, fmt.Errorf("sensitivity, float model: %w", err)
	}
	defer fs.Close()
	rt.ExtraOutputs = qfetch
	qs, err := runtime.NewSession(qb, rt)
	if err != nil {
		return nil, fmt.Errorf("sensitivity, quantized model: %w", err)
	}
	defer qs.Close()
	src, err := j.openData(j.o.Data)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	type pair = [2]string
	sig := map[pair]float64{}
	noise := map[pair]float64{}
	var pairs []pair
	seenPair := map[pair]bool{}
	for _, l := range layers {
		for _, pr := range append([]pair{l.output}, l.inputs...) {
			if !seenPair[pr] {
				seenPair[pr] = true
				pairs = append(pairs, pr)
			}
		}
	}
	for i := 0; i < sensitivitySamples; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		smp, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		fo, err := fs.Run(smp, ffetch...)
		if err != nil {
			return nil, fmt.Errorf("sensitivity, float model: %w", err)
		}
		qo, err := qs.Run(smp, qfetch...)
		if err != nil {
			return nil, fmt.Errorf("sensitivity, quantized model: %w", err)
		}
		for _, pr := range pairs {
			a, b := fo[pr[0]], qo[pr[1]]
			if a == nil || b == nil || a.DType != tensor.Float32 || b.DType != tensor.Float32 || len(a.Data) != len(b.Data) {
				continue
			}
			s, n := powers(a.Float32s(), b.Float32s())
			sig[pr] += s
			noise[pr] += n
		}
	}
	nsr := func(pr pair) float64 {
		if sig[pr] == 0 {
			if noise[pr] == 0 {
				return 0
			}
			return math.Inf(1)
		}
		return noise[pr] / sig[pr]
	}
	out := make([]LayerSensitivity, len(layers))
	for i, l := range layers {
		in := 0.0
		for _, t := range l.inputs {
			in = math.Max(in, nsr(t))
		}
		o := nsr(l.output)
		added := math.Max(0, o-in)
		out[i] = LayerSensitivity{Node: nodeID(l.node), OpType: l.node.GetOpType(), Output: l.output[0],
			SNRdB: -10 * math.Log10(o), AddedNoise: added, AddedNoiseDB: 10 * math.Log10(added)}
		if o == 0 {
			out[i].SNRdB = math.Inf(1)
		}
	}
	sort.SliceStable(out, func(a, b int) bool { return out[a].AddedNoise > out[b].AddedNoise })
	for i := range out {
		out[i].Rank = i + 1
		// JSON has no infinities: clamp for the report.
		out[i].SNRdB = clampDB(out[i].SNRdB)
		out[i].AddedNoiseDB = clampDB(out[i].AddedNoiseDB)
	}
	return out, nil
}

// powers returns Σa² and Σ(a−b)².
func powers(a, b []float32) (sig, noise float64) {
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		if x-x != 0 || y-y != 0 {
			continue
		}
		sig += x * x
		noise += (x - y) * (x - y)
	}
	return sig, noise
}

func clampDB(v float64) float64 {
	switch {
	case math.IsInf(v, 1) || v > 999:
		return 999
	case math.IsInf(v, -1) || v < -999 || math.IsNaN(v):
		return -999
	}
	return math.Round(v*100) / 100
}

// SensitivityMarkdown renders the per-layer report as a Markdown table.
func SensitivityMarkdown(r *Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Quantization sensitivity: %s\n\n", r.Input)
	fmt.Fprintf(&b, "Each row is a quantized layer; *added noise* is the noise-to-signal power its output gains over its inputs "+
		"(quantized model vs the float model, same samples); *SNR* is the accumulated error at its output.\n\n")
	fmt.Fprintf(&b, "| rank | node | op | added noise (dB) | SNR (dB) |\n|---:|---|---|---:|---:|\n")
	for _, s := range r.Sensitivity {
		fmt.Fprintf(&b, "| %d | %s | %s | %.2f | %.2f |\n", s.Rank, s.Node, s.OpType, s.AddedNoiseDB, s.SNRdB)
	}
	if f := r.Fallback; f != nil {
		state := "met"
		if !f.Passed {
			state = "NOT met: " + strings.Join(f.FailedGates, "; ")
		}
		fmt.Fprintf(&b, "\nAuto-fallback (%d attempts): gate %s; kept in float: %s\n", f.Attempts, state, strings.Join(f.Kept, ", "))
	}
	return b.String()
}
