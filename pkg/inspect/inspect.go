// Package inspect summarises a model file, ONNX or safetensors, into the report that
// `optimctl inspect` prints: operators, parameters, dtypes, sizes and per-tensor sparsity.
package inspect

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Dim is one dimension in a report: an integer, or a string for a symbolic/unknown size.
type Dim = any

// Value describes a graph input or output.
type Value struct {
	Name  string `json:"name"`
	DType string `json:"dtype"`
	Shape []Dim  `json:"shape"`
}

// Tensor describes one weight tensor.
type Tensor struct {
	Name     string  `json:"name"`
	DType    string  `json:"dtype"`
	Shape    []int64 `json:"shape"`
	Bytes    int64   `json:"bytes"`
	Sparsity float64 `json:"sparsity"` // fraction of elements exactly zero
	// Source says where an ONNX weight lives when it is not a graph initializer
	// ("Constant" for a Constant node's value).
	Source   string `json:"source,omitempty"`
	External bool   `json:"external,omitempty"`
}

// Report is the inspect report; the JSON keys are part of the command-line contract.
type Report struct {
	Format       string            `json:"format"`
	Path         string            `json:"path"`
	IRVersion    int64             `json:"ir_version,omitempty"`
	Opset        int64             `json:"opset,omitempty"`
	Opsets       map[string]int64  `json:"opsets,omitempty"`
	Producer     string            `json:"producer,omitempty"`
	Nodes        int               `json:"nodes"`
	OpTypes      map[string]int    `json:"op_types"`
	Parameters   int64             `json:"parameters"`
	SizeBytes    int64             `json:"size_bytes"`
	DTypes       map[string]int64  `json:"dtypes"` // parameters per element type
	Initializers []Tensor          `json:"initializers"`
	Inputs       []Value           `json:"inputs"`
	Outputs      []Value           `json:"outputs"`
	Metadata     map[string]string `json:"metadata,omitempty"`
	Shards       int               `json:"shards,omitempty"`
}

// File inspects an ONNX model (.onnx) or a safetensors checkpoint (file or folder).
func File(path string) (*Report, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.IsDir() || strings.HasSuffix(path, ".safetensors") || strings.HasSuffix(path, ".safetensors.index.json") {
		return Safetensors(path)
	}
	m, err := onnx.Load(path)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return ONNX(m)
}

// ONNX inspects a loaded model.
func ONNX(m *onnx.Model) (*Report, error) {
	g := m.Graph()
	r := &Report{Format: "onnx", Path: m.Path, IRVersion: m.Proto.GetIrVersion(), Opset: m.Opset(""),
		Opsets: map[string]int64{}, Nodes: len(g.Node), OpTypes: onnx.OpTypeCounts(g),
		DTypes: map[string]int64{}, Initializers: []Tensor{}, Inputs: []Value{}, Outputs: []Value{}}
	if p := m.Proto.GetProducerName(); p != "" {
		r.Producer = strings.TrimSpace(p + " " + m.Proto.GetProducerVersion())
	}
	for _, o := range m.Proto.OpsetImport {
		d := o.GetDomain()
		if d == "" {
			d = "ai.onnx"
		}
		r.Opsets[d] = o.GetVersion()
	}
	for _, kv := range m.Proto.MetadataProps {
		if r.Metadata == nil {
			r.Metadata = map[string]string{}
		}
		r.Metadata[kv.GetKey()] = kv.GetValue()
	}
	add := func(t *onnxpb.TensorProto, name, source string) error {
		info, err := describe(m, t)
		if err != nil {
			return err
		}
		info.Name, info.Source = name, source
		r.Initializers = append(r.Initializers, info)
		n := tensor.NumElements(info.Shape)
		r.Parameters += n
		r.DTypes[info.DType] += n
		return nil
	}
	for _, t := range g.Initializer {
		if err := add(t, t.GetName(), ""); err != nil {
			return nil, err
		}
	}
	for _, n := range g.Node {
		if n.GetOpType() != "Constant" || n.GetDomain() != "" || len(n.Output) == 0 {
			continue
		}
		for _, a := range n.Attribute {
			if a.GetName() == "value" && a.T != nil {
				if err := add(a.T, n.Output[0], "Constant"); err != nil {
					return nil, err
				}
			}
		}
	}
	for _, s := range m.InputSpecs() {
		r.Inputs = append(r.Inputs, value(s))
	}
	for _, s := range m.OutputSpecs() {
		r.Outputs = append(r.Outputs, value(s))
	}
	size, err := onnxSize(m)
	if err != nil {
		return nil, err
	}
	r.SizeBytes = size
	return r, nil
}

func describe(m *onnx.Model, t *onnxpb.TensorProto) (Tensor, error) {
	dt := tensor.DType(t.GetDataType())
	info := Tensor{DType: dt.String(), Shape: append([]int64{}, t.Dims...), External: onnx.IsExternal(t)}
	if dt == tensor.String {
		return info, nil
	}
	b, err := m.TensorData(t)
	if err != nil {
		return info, err
	}
	info.Bytes = int64(len(b))
	info.Sparsity = zeroFraction(dt, b, tensor.NumElements(t.Dims))
	return info, nil
}

// zeroFraction counts elements whose bits are all zero (negative zero counts as zero for
// floats). Sub-byte types are counted per element.
func zeroFraction(dt tensor.DType, b []byte, n int64) float64 {
	if n <= 0 {
		return 0
	}
	var zeros int64
	switch bits := dt.Bits(); {
	case bits == 4:
		for i := int64(0); i < n; i++ {
			if v := tensor.Nibble(b, int(i), false); v == 0 || (dt == tensor.Float4E2M1 && v == 8) {
				zeros++
			}
		}
	case bits >= 8:
		w := int64(bits / 8)
		signMask := byte(0xff)
		if dt.IsFloat() {
			signMask = 0x7f // ignore the sign bit of the most significant byte
		}
		for i := int64(0); i < n; i++ {
			e := b[i*w : (i+1)*w]
			z := true
			for j := int64(0); j < w-1; j++ {
				if e[j] != 0 {
					z = false
					break
				}
			}
			if z && e[w-1]&signMask == 0 {
				zeros++
			}
		}
	default:
		return 0
	}
	return float64(zeros) / float64(n)
}

func onnxSize(m *onnx.Model) (int64, error) {
	if m.Path == "" {
		return int64(m.Proto.SizeVT()), nil
	}
	st, err := os.Stat(m.Path)
	if err != nil {
		return 0, err
	}
	size := st.Size()
	seen := map[string]bool{}
	var werr error
	onnx.WalkTensors(m.Proto, func(t *onnxpb.TensorProto) bool {
		if !onnx.IsExternal(t) {
			return true
		}
		ref, err := onnx.ParseExternal(t)
		if err != nil {
			werr = err
			return false
		}
		p, err := onnx.ResolveExternalPath(m.Dir, ref.Location)
		if err != nil {
			werr = err
			return false
		}
		if !seen[p] {
			seen[p] = true
			if st, err := os.Stat(p); err == nil {
				size += st.Size()
			}
		}
		return true
	})
	return size, werr
}

func value(s tensor.Spec) Value {
	v := Value{Name: s.Name, DType: s.DType.String(), Shape: []Dim{}}
	for i, d := range s.Shape {
		if d >= 0 {
			v.Shape = append(v.Shape, d)
		} else if i < len(s.DimNames) && s.DimNames[i] != "" {
			v.Shape = append(v.Shape, s.DimNames[i])
		} else {
			v.Shape = append(v.Shape, "?")
		}
	}
	return v
}

// WriteText prints the report as a person reads it: a summary, inputs/outputs, operator
// counts, and the largest weight tensors (all of them with verbose).
func WriteText(w io.Writer, r *Report, verbose bool) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Model:\t%s (%s)\n", filepath.Base(r.Path), r.Format)
	if r.Format == "onnx" {
		fmt.Fprintf(tw, "IR / opset:\t%d / %d\n", r.IRVersion, r.Opset)
		if r.Producer != "" {
			fmt.Fprintf(tw, "Producer:\t%s\n", r.Producer)
		}
		fmt.Fprintf(tw, "Nodes:\t%d\n", r.Nodes)
	}
	if r.Shards > 0 {
		fmt.Fprintf(tw, "Shards:\t%d\n", r.Shards)
	}
	fmt.Fprintf(tw, "Parameters:\t%s (%d tensors)\n", human(r.Parameters, ""), len(r.Initializers))
	fmt.Fprintf(tw, "Size:\t%s\n", human(r.SizeBytes, "B"))
	var dts []string
	for _, d := range sortedKeys(r.DTypes) {
		dts = append(dts, fmt.Sprintf("%s %s", d, human(r.DTypes[d], "")))
	}
	if len(dts) > 0 {
		fmt.Fprintf(tw, "Weight dtypes:\t%s\n", strings.Join(dts, ", "))
	}
	tw.Flush()
	if len(r.Inputs)+len(r.Outputs) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "IO\tNAME\tDTYPE\tSHAPE")
		for _, v := range r.Inputs {
			fmt.Fprintf(tw, "input\t%s\t%s\t%v\n", v.Name, v.DType, v.Shape)
		}
		for _, v := range r.Outputs {
			fmt.Fprintf(tw, "output\t%s\t%s\t%v\n", v.Name, v.DType, v.Shape)
		}
		tw.Flush()
	}
	if len(r.OpTypes) > 0 {
		fmt.Fprintln(w)
		ops := sortedKeys(r.OpTypes)
		sort.SliceStable(ops, func(i, j int) bool { return r.OpTypes[ops[i]] > r.OpTypes[ops[j]] })
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "OP\tCOUNT")
		for _, op := range ops {
			fmt.Fprintf(tw, "%s\t%d\n", op, r.OpTypes[op])
		}
		tw.Flush()
	}
	if len(r.Initializers) > 0 {
		fmt.Fprintln(w)
		ts := append([]Tensor(nil), r.Initializers...)
		sort.SliceStable(ts, func(i, j int) bool { return ts[i].Bytes > ts[j].Bytes })
		limit := len(ts)
		if !verbose && limit > 15 {
			limit = 15
		}
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TENSOR\tDTYPE\tSHAPE\tSIZE\tSPARSITY")
		for _, t := range ts[:limit] {
			fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%.1f%%\n", t.Name, t.DType, t.Shape, human(t.Bytes, "B"), 100*t.Sparsity)
		}
		tw.Flush()
		if limit < len(ts) {
			fmt.Fprintf(w, "... %d more tensors (--verbose lists all)\n", len(ts)-limit)
		}
	}
	return nil
}

func human(n int64, unit string) string {
	f := float64(n)
	for _, p := range []string{"", "K", "M", "G", "T"} {
		if f < 1000 || p == "T" {
			if p == "" {
				return fmt.Sprintf("%d%s", n, unit)
			}
			return fmt.Sprintf("%.2f %s%s", f, p, unit)
		}
		f /= 1000
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for s := range m {
		k = append(k, s)
	}
	sort.Strings(k)
	return k
}
