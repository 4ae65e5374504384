package int4

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/x448/float16"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/quant/pack"
	"github.com/optimctl/optimctl/pkg/safetensors"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// maxSingleFile: above this the checkpoint is written in shards of this size.
const maxSingleFile = 4 << 30

// runCheckpoint turns the Linear weights of a Hugging Face safetensors checkpoint into a GPTQ
// or AWQ checkpoint in the folder o.Output: model.safetensors (or shards), config.json with
// quantization_config, quantize_config.json (GPTQ), and the input folder's other small files.
func runCheckpoint(ctx context.Context, o *Options, r *Report) error {
	ck, err := safetensors.OpenAny(o.Input)
	if err != nil {
		return err
	}
	defer ck.Close()
	for _, f := range ck.Files() {
		r.SizeBefore += pathSize(f)
	}
	dir := o.Input
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		dir = filepath.Dir(dir)
	}
	cfg, err := readConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		return err
	}
	modelType, _ := cfg["model_type"].(string)
	cls, skips := selectLinears(ck, modelType, o)
	r.Skipped = append(r.Skipped, skips...)
	if len(cls) == 0 {
		return fmt.Errorf("%s: no Linear weights inside repeated blocks (layer.N / layers.N / h.N)", o.Input)
	}
	// Layout constraints of the output format.
	var keep []*ckptLinear
	for _, l := range cls {
		if reason := layoutProblem(l, o); reason != "" {
			r.Skipped = append(r.Skipped, Skip{l.weight(), reason})
			continue
		}
		keep = append(keep, l)
	}
	cls = keep
	if len(cls) == 0 {
		return fmt.Errorf("%s: no Linear weight fits the %s layout", o.Input, o.Format)
	}
	byPrefix := map[string]*ckptLinear{}
	lins := make([]*linear, len(cls))
	for i, l := range cls {
		l := l
		byPrefix[l.prefix] = l
		lins[i] = &linear{name: l.weight(), weight: l.weight(), n: l.n, k: l.k,
			load: func() ([]float32, error) { return loadLinear(ck, l) }}
	}

	var stats map[string]*inputStats
	if o.Algo != RTN || (o.Calib != "" && o.CalibModel != "") {
		m, err := onnx.Load(o.CalibModel)
		if err != nil {
			return err
		}
		defer m.Close()
		matched, err := matchONNX(m, lins)
		if err != nil {
			return fmt.Errorf("%s: %w", o.CalibModel, err)
		}
		r.Matched = matched
		if matched == 0 {
			return fmt.Errorf("%s: none of its MatMul weights equals a Linear weight of %s (is it an export of this checkpoint?)", o.CalibModel, o.Input)
		}
		for _, l := range lins {
			if len(l.inputs) == 0 {
				r.Warnings = append(r.Warnings, fmt.Sprintf("%s: not found in the calibration model; quantized with RTN", l.weight))
			}
		}
		if stats, err = captureFor(ctx, m, o.CalibModel, lins, o, r); err != nil {
			return err
		}
	}

	// AWQ: which groups can fold 1/s somewhere (others keep s = 1 and only clip).
	folds := map[*awqGroup]*ckptFold{}
	search := func(g *awqGroup) bool {
		var ms []*ckptLinear
		for _, m := range g.members {
			ms = append(ms, byPrefix[strings.TrimSuffix(m.weight, ".weight")])
		}
		f := foldFor(modelType, ms, byPrefix, ck)
		folds[g] = f
		return f != nil
	}
	lo := *o
	unmatchedRTN := func(l *linear) bool { return stats == nil || len(l.inputs) == 0 }
	var matchedLins []*linear
	for _, l := range lins {
		if o.Algo != RTN && unmatchedRTN(l) {
			rtn := lo
			rtn.Algo = RTN
			if err := quantizeGPTQorRTN(l, nil, &rtn); err != nil {
				return err
			}
			continue
		}
		matchedLins = append(matchedLins, l)
	}
	groups, err := quantizeLinears(matchedLins, stats, &lo, search)
	if err != nil {
		return err
	}

	// Apply the AWQ folds: new values for norm tensors and float producers, or scaled rows
	// of quantized producers.
	replaced := map[string][]float32{}
	linOf := map[string]*linear{}
	for _, l := range lins {
		linOf[l.weight] = l
	}
	for _, g := range groups {
		f := folds[g]
		switch {
		case g.scales == nil:
			g.foldedInto = "none (s = 1)"
			if f == nil {
				g.foldedInto = "none (no exact fold in this architecture; clipping only)"
			}
		default:
			inv := make([]float32, len(g.scales))
			for i, s := range g.scales {
				inv[i] = 1 / s
			}
			if err := applyCkptFold(ck, f, inv, linOf, replaced); err != nil {
				return err
			}
			g.foldedInto = f.String()
		}
		for _, l := range g.members {
			l.rep.AWQScale = g.foldedInto
		}
	}
	for _, l := range lins {
		r.Layers = append(r.Layers, *l.rep)
		r.QuantizedParams += int64(l.n) * int64(l.k)
	}
	return writeCheckpoint(ck, dir, cfg, cls, lins, replaced, o, r)
}

// layoutProblem says why a Linear cannot be stored in the output layout ("" if it can).
func layoutProblem(l *ckptLinear, o *Options) string {
	gs := o.GroupSize
	if gs == -1 {
		gs = l.k
	}
	if l.k%gs != 0 {
		return fmt.Sprintf("K = %d is not a multiple of the group size %d", l.k, gs)
	}
	switch o.Format {
	case FormatGPTQ:
		pf := 32 / o.Bits
		if l.k%pf != 0 || l.n%pf != 0 {
			return fmt.Sprintf("N = %d and K = %d must be multiples of %d for GPTQ's int32 packing", l.n, l.k, pf)
		}
	case FormatAWQ:
		if l.n%8 != 0 {
			return fmt.Sprintf("N = %d must be a multiple of 8 for AWQ's int32 packing", l.n)
		}
	}
	return ""
}

func readConfig(path string) (map[string]any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading the model's config.json (model_type and the quantization_config go there): %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var cfg map[string]any
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// weightHash identifies a weight by its float32 values in [N, K] order.
func weightHash(w []float32) uint64 {
	h := fnv.New64a()
	var buf [4096]byte
	for i := 0; i < len(w); {
		n := 0
		for ; n+4 <= len(buf) && i < len(w); i++ {
			binary.LittleEndian.PutUint32(buf[n:], math.Float32bits(w[i]))
			n += 4
		}
		h.Write(buf[:n])
	}
	return h.Sum64()
}

// matchONNX finds, for each checkpoint Linear, the MatMul of the calibration model whose B
// holds the same values (B [K, N] is the Linear weight transposed; exporters rename it
// freely, e.g. "onnx::MatMul_1234", but keep its values exactly, also when widening F16 or
// BF16 to F32). The Linear's inputs become that MatMul's inputs.
func matchONNX(m *onnx.Model, lins []*linear) (int, error) {
	layers, _, err := findLayers(m, &Options{})
	if err != nil {
		return 0, err
	}
	byHash := map[[3]uint64]*matmulLayer{}
	for _, l := range layers {
		w, err := l.w()
		if err != nil {
			return 0, err
		}
		byHash[[3]uint64{weightHash(w), uint64(l.n), uint64(l.k)}] = l
	}
	n := 0
	for _, l := range lins {
		w, err := l.load()
		if err != nil {
			return 0, err
		}
		if ml := byHash[[3]uint64{weightHash(w), uint64(l.n), uint64(l.k)}]; ml != nil {
			l.inputs = ml.inputs
			n++
		}
	}
	return n, nil
}

// applyCkptFold divides the fold target by s: a norm's weight and bias, or the output rows
// of the previous Linear (its quantized scales when it is quantized, and its bias).
func applyCkptFold(ck *safetensors.Checkpoint, f *ckptFold, inv []float32, linOf map[string]*linear, replaced map[string][]float32) error {
	scaleTensor := func(name string, fn func([]float32)) error {
		v, ok := replaced[name]
		if !ok {
			var err error
			if v, err = readF32(ck, name); err != nil {
				return err
			}
		}
		fn(v)
		replaced[name] = v
		return nil
	}
	vec := func(v []float32) {
		for i := range v {
			v[i] *= inv[i%len(inv)]
		}
	}
	if f.prev == nil {
		if err := scaleTensor(f.normWeight, vec); err != nil {
			return err
		}
		if f.normBias != "" {
			return scaleTensor(f.normBias, vec)
		}
		return nil
	}
	p := f.prev
	if l := linOf[p.weight()]; l != nil && l.q != nil {
		scaleRows(l.q, inv)
	} else {
		k := p.k
		if err := scaleTensor(p.weight(), func(v []float32) {
			if p.conv1D { // [K, N]: output n is column n
				for r := 0; r < k; r++ {
					for c := range inv {
						v[r*len(inv)+c] *= inv[c]
					}
				}
				return
			}
			for r := range inv { // [N, K]: output n is row n
				for c := 0; c < k; c++ {
					v[r*k+c] *= inv[r]
				}
			}
		}); err != nil {
			return err
		}
	}
	if _, ok := ck.Tensor(p.prefix + ".bias"); ok {
		return scaleTensor(p.prefix+".bias", vec)
	}
	return nil
}

// encodeFloats stores float32 values in a safetensors float dtype.
func encodeFloats(dtype string, v []float32) ([]byte, error) {
	switch dtype {
	case "F32":
		b := make([]byte, 4*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
		}
		return b, nil
	case "F16":
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], float16.Fromfloat32(x).Bits())
		}
		return b, nil
	case "BF16":
		b := make([]byte, 2*len(v))
		for i, x := range v {
			binary.LittleEndian.PutUint16(b[2*i:], tensor.Float32ToBF16(x))
		}
		return b, nil
	}
	return nil, fmt.Errorf("cannot store float values as %s", dtype)
}

func int32Bytes(v []int32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(x))
	}
	return b
}

func uint16Bytes(v []uint16) []byte {
	b := make([]byte, 2*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint16(b[2*i:], x)
	}
	return b
}

// packedTensor is one tensor of the output checkpoint.
type packedTensor struct {
	name, dtype string
	shape       []int64
	data        []byte
}

// packLinear packs one quantized Linear in the output layout.
func packLinear(l *ckptLinear, q *quant.GroupQuant, o *Options) ([]packedTensor, int, error) {
	n, k := l.n, l.k
	groups := q.NumGroups()
	fp16 := make([]uint16, n*groups)
	if err := pack.ScalesToFP16T(fp16, q.Scales, n, groups); err != nil {
		return nil, 0, err
	}
	for i, h := range fp16 {
		if f := float16.Frombits(h); f.IsInf(0) || f.IsNaN() || (f.Float32() == 0 && q.Scales[(i%n)*groups+i/n] != 0) {
			return nil, 0, fmt.Errorf("%s: scale %g does not fit float16", l.weight(), q.Scales[(i%n)*groups+i/n])
		}
	}
	scales := packedTensor{l.prefix + ".scales", "F16", []int64{int64(groups), int64(n)}, uint16Bytes(fp16)}
	zeroZeros := 0
	if o.Format == FormatAWQ {
		qwLen, qzLen, err := pack.AWQSizes(n, k, groups)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", l.weight(), err)
		}
		qw, qz := make([]int32, qwLen), make([]int32, qzLen)
		if err := pack.PackAWQQweight(qw, q.Codes, n, k); err != nil {
			return nil, 0, err
		}
		if err := pack.PackAWQQzeros(qz, q.Zeros, n, groups); err != nil {
			return nil, 0, err
		}
		return []packedTensor{
			{l.prefix + ".qweight", "I32", []int64{int64(k), int64(n / 8)}, int32Bytes(qw)},
			{l.prefix + ".qzeros", "I32", []int64{int64(groups), int64(n / 8)}, int32Bytes(qz)},
			scales,
		}, 0, nil
	}
	qwLen, qzLen, err := pack.GPTQSizes(n, k, groups, q.Bits)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", l.weight(), err)
	}
	qw, qz := make([]int32, qwLen), make([]int32, qzLen)
	if err := pack.PackGPTQQweight(qw, q.Codes, n, k, q.Bits); err != nil {
		return nil, 0, err
	}
	v1 := o.CheckpointFormat == pack.GPTQFormatV1
	if err := pack.PackGPTQQzeros(qz, q.Zeros, n, groups, q.Bits, v1); err != nil {
		return nil, 0, err
	}
	if v1 {
		for _, z := range q.Zeros {
			if z == 0 {
				zeroZeros++
			}
		}
	}
	pf := 32 / q.Bits
	return []packedTensor{
		{l.prefix + ".qweight", "I32", []int64{int64(k / pf), int64(n)}, int32Bytes(qw)},
		{l.prefix + ".qzeros", "I32", []int64{int64(groups), int64(n / pf)}, int32Bytes(qz)},
		scales,
		{l.prefix + ".g_idx", "I32", []int64{int64(k)}, int32Bytes(q.GroupIndex())},
	}, zeroZeros, nil
}

// writeCheckpoint writes the output folder: first into a temporary folder beside it, which
// then replaces o.Output (an existing output folder is replaced only on success).
func writeCheckpoint(ck *safetensors.Checkpoint, inDir string, cfg map[string]any, cls []*ckptLinear, lins []*linear,
	replaced map[string][]float32, o *Options, r *Report) (err error) {
	if st, err := os.Stat(o.Output); err == nil && !st.IsDir() {
		return fmt.Errorf("%s: exists and is not a folder (checkpoints are written as folders)", o.Output)
	}
	parent := filepath.Dir(filepath.Clean(o.Output))
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(o.Output)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()

	quantized := map[string]bool{}
	var tensors []packedTensor
	zeroZeros := 0
	for i, l := range cls {
		pt, zz, err := packLinear(l, lins[i].q, o)
		if err != nil {
			return err
		}
		tensors = append(tensors, pt...)
		zeroZeros += zz
		quantized[l.weight()] = true
	}
	if zeroZeros > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d zero points are 0, which checkpoint_format gptq stores as %d (z−1 wraps): "+
			"AutoGPTQ's torch kernel masks (z+1) and recovers 0, but GPTQModel adds 0x%X to whole words and carries into the next "+
			"zero point; use symmetric quantization or checkpoint_format gptq_v2", zeroZeros, 1<<o.Bits-1, onesPattern(o.Bits)))
	}
	var total int64
	for _, t := range tensors {
		total += int64(len(t.data))
	}
	for _, name := range ck.Names() {
		if quantized[name] {
			continue
		}
		info, _ := ck.Tensor(name)
		if v, ok := replaced[name]; ok {
			b, err := encodeFloats(info.DType, v)
			if err != nil {
				return fmt.Errorf("tensor %q: %w", name, err)
			}
			tensors = append(tensors, packedTensor{name, info.DType, info.Shape, b})
		} else {
			tensors = append(tensors, packedTensor{name, info.DType, info.Shape, ck.Data(name)})
		}
		total += info.Size
	}
	meta := map[string]string{"format": "pt"}
	type adder interface {
		Add(name, dtype string, shape []int64, data []byte) error
	}
	var w adder
	var closeW func() error
	if total > maxSingleFile {
		sw, err := safetensors.NewShardedWriter(tmp, maxSingleFile, meta)
		if err != nil {
			return err
		}
		w, closeW = sw, sw.Close
	} else {
		fw, err := safetensors.NewWriter(filepath.Join(tmp, safetensors.SingleFileName), meta)
		if err != nil {
			return err
		}
		w, closeW = fw, fw.Close
	}
	for _, t := range tensors {
		if err := w.Add(t.name, t.dtype, t.shape, t.data); err != nil {
			return err
		}
	}
	if err := closeW(); err != nil {
		return err
	}

	qc := quantConfig(cls, r, o)
	cfg["quantization_config"] = qc
	if err := writeJSON(filepath.Join(tmp, "config.json"), cfg); err != nil {
		return err
	}
	if o.Format == FormatGPTQ {
		if err := writeJSON(filepath.Join(tmp, "quantize_config.json"), qc); err != nil {
			return err
		}
	}
	if err := copySideFiles(inDir, tmp); err != nil {
		return err
	}
	return replaceDir(tmp, o.Output)
}

// onesPattern has a 1 in the lowest bit of every bits-wide field of a 32-bit word.
func onesPattern(bits int) uint32 {
	var v uint32
	for s := 0; s < 32; s += bits {
		v |= 1 << s
	}
	return v
}

// quantConfig is the quantization_config of the output (and GPTQ's quantize_config.json).
func quantConfig(cls []*ckptLinear, r *Report, o *Options) map[string]any {
	if o.Format == FormatAWQ {
		var notConv []string
		for _, s := range r.Skipped {
			notConv = append(notConv, strings.TrimSuffix(s.Name, ".weight"))
		}
		sort.Strings(notConv)
		var nc any
		if len(notConv) > 0 {
			nc = notConv
		}
		return map[string]any{"quant_method": "awq", "bits": o.Bits, "group_size": o.GroupSize,
			"zero_point": !*o.Symmetric, "version": "gemm", "modules_to_not_convert": nc}
	}
	damp := o.Damp
	if damp == 0 {
		damp = 0.01
	}
	return map[string]any{
		"quant_method": "gptq", "bits": o.Bits, "group_size": o.GroupSize, "desc_act": o.ActOrder && o.Algo == GPTQ,
		"static_groups": o.StaticGroups, "sym": *o.Symmetric, "damp_percent": damp,
		// Every layer's statistics come from the float model, not from already
		// quantized predecessors.
		"true_sequential": false, "lm_head": false, "checkpoint_format": o.CheckpointFormat,
		"model_file_base_name": "model",
		"meta":                 map[string]any{"quantizer": []string{"optimctl"}, "algorithm": string(o.Algo)},
	}
}

func writeJSON(path string, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(path, buf.Bytes())
}

// copySideFiles copies the input folder's small files (tokenizer, generation config…) that
// are neither weights nor the configs written here.
func copySideFiles(src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range ents {
		name := e.Name()
		if !e.Type().IsRegular() || name == "config.json" || name == "quantize_config.json" || strings.HasPrefix(name, ".") {
			continue
		}
		skip := false
		for _, ext := range []string{".safetensors", ".safetensors.index.json", ".bin", ".bin.index.json", ".pt", ".pth", ".onnx", ".onnx.data", ".gguf", ".h5", ".msgpack", ".npz"} {
			if strings.HasSuffix(name, ext) {
				skip = true
			}
		}
		if skip {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// replaceDir moves the finished folder tmp to out, replacing an existing out only now.
func replaceDir(tmp, out string) error {
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if _, err := os.Stat(out); err == nil {
		old := tmp + ".old"
		if err := os.Rename(out, old); err != nil {
			return err
		}
		if err := os.Rename(tmp, out); err != nil {
			os.Rename(old, out)
			return err
		}
		return os.RemoveAll(old)
	}
	return os.Rename(tmp, out)
}
