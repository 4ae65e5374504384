package calibration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/quant"
)

// TensorRT INT8 calibration cache (text; TensorRT ≤ 10, implicit quantization):
//
//	TRT-<version>-<algorithm>\n
//	<tensor name>: <scale>\n          one line per tensor
//
// where <scale> is 8 lowercase hex digits: the IEEE-754 bits of the float32 scale written
// big-endian (the integer value of the bits), scale = amax / 127. TensorRT rejects a cache
// written for another version or calibrator, so both are part of the header.
const (
	// DefaultTensorRTVersion is TensorRT 10.9's version number (major·10000 + minor·100 + patch).
	DefaultTensorRTVersion = 100900
	// DefaultTensorRTAlgorithm names IInt8EntropyCalibrator2, the calibrator TensorRT
	// recommends for CNNs.
	DefaultTensorRTAlgorithm = "EntropyCalibration2"
	// trtQMax is the largest INT8 magnitude TensorRT maps amax to.
	trtQMax = 127
)

// tensorRTAlgorithms are the calibrator names TensorRT writes in cache headers.
var tensorRTAlgorithms = map[string]bool{
	"EntropyCalibration2": true, "EntropyCalibration": true, "MinMaxCalibration": true, "LegacyCalibration": true,
}

// TensorRTScale is a range's scale in TensorRT's cache: amax / 127 in float32.
func TensorRTScale(r Range) float32 { return r.Amax() / trtQMax }

// WriteTensorRTCache writes t in TensorRT's calibration-cache text format, tensors in the
// table's order. version is e.g. 100900 for TensorRT 10.9 (0: the default), algorithm one
// of EntropyCalibration2, EntropyCalibration, MinMaxCalibration, LegacyCalibration ("": the
// default). Names with a newline or ": " cannot be represented and are refused.
func WriteTensorRTCache(w io.Writer, t *Table, version int, algorithm string) error {
	if version == 0 {
		version = DefaultTensorRTVersion
	}
	if algorithm == "" {
		algorithm = DefaultTensorRTAlgorithm
	}
	if version < 0 {
		return fmt.Errorf("TensorRT version %d: want a positive number such as %d", version, DefaultTensorRTVersion)
	}
	if !tensorRTAlgorithms[algorithm] {
		return fmt.Errorf("TensorRT calibrator %q: want EntropyCalibration2, EntropyCalibration, MinMaxCalibration or LegacyCalibration", algorithm)
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "TRT-%d-%s\n", version, algorithm)
	for _, r := range t.Ranges {
		if strings.ContainsAny(r.Name, "\n\r") || strings.Contains(r.Name, ": ") {
			return fmt.Errorf("tensor %q: the name cannot be written in a TensorRT cache", r.Name)
		}
		fmt.Fprintf(bw, "%s: %08x\n", r.Name, math.Float32bits(TensorRTScale(r)))
	}
	return bw.Flush()
}

var trtHeader = regexp.MustCompile(`^TRT-(\d+)-([A-Za-z0-9]+)$`)

// ReadTensorRTCache parses a TensorRT calibration cache into symmetric ranges
// (amax = scale × 127), with the version and algorithm of its header.
func ReadTensorRTCache(r io.Reader) (t *Table, version int, algorithm string, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	if !sc.Scan() {
		return nil, 0, "", fmt.Errorf("TensorRT cache: empty")
	}
	m := trtHeader.FindStringSubmatch(strings.TrimSpace(sc.Text()))
	if m == nil {
		return nil, 0, "", fmt.Errorf("TensorRT cache: first line %q is not TRT-<version>-<algorithm>", sc.Text())
	}
	version, _ = strconv.Atoi(m[1])
	algorithm = m[2]
	t = &Table{Symmetric: true}
	for line := 2; sc.Scan(); line++ {
		s := sc.Text()
		if s == "" {
			continue
		}
		i := strings.LastIndex(s, ": ")
		if i < 0 {
			return nil, 0, "", fmt.Errorf("TensorRT cache line %d: %q is not \"name: hex\"", line, s)
		}
		bits, err := strconv.ParseUint(s[i+2:], 16, 32)
		if err != nil || len(s)-i-2 != 8 {
			return nil, 0, "", fmt.Errorf("TensorRT cache line %d: %q is not 8 hex digits", line, s[i+2:])
		}
		a := math.Float32frombits(uint32(bits)) * trtQMax
		t.Ranges = append(t.Ranges, Range{Name: s[:i], Min: -a, Max: a})
	}
	return t, version, algorithm, sc.Err()
}

// JSONTable is the JSON calibration table: the ranges, and the scale and zero point they
// give for the chosen 8-bit activation type (computed as onnxruntime.quantization does).
type JSONTable struct {
	Format     string      `json:"format"` // "optimctl-calibration/v1"
	Model      string      `json:"model,omitempty"`
	Method     Method      `json:"method"`
	Percentile float64     `json:"percentile,omitempty"`
	Samples    int         `json:"samples"`
	QType      string      `json:"quant_type"` // int8 or uint8
	Symmetric  bool        `json:"symmetric"`
	Tensors    []JSONRange `json:"tensors"`
}

// JSONRange is one tensor's entry of a JSONTable.
type JSONRange struct {
	Name      string  `json:"name"`
	Min       float32 `json:"min"`
	Max       float32 `json:"max"`
	Amax      float32 `json:"amax"`
	Scale     float32 `json:"scale"`
	ZeroPoint int32   `json:"zero_point"`
}

// JSONFormat identifies the JSON table layout.
const JSONFormat = "optimctl-calibration/v1"

// ToJSON converts a table, computing each tensor's scale and zero point for the 8-bit type
// qt (quant.Int8 or quant.Uint8), symmetric or not.
func (t *Table) ToJSON(model string, qt quant.QType, symmetric bool) (*JSONTable, error) {
	if qt != quant.Int8 && qt != quant.Uint8 {
		return nil, fmt.Errorf("calibration table: quantized type %s: want int8 or uint8", qt)
	}
	j := &JSONTable{Format: JSONFormat, Model: model, Method: t.Method, Percentile: t.Percentile, Samples: t.Samples,
		QType: qt.String(), Symmetric: symmetric, Tensors: make([]JSONRange, 0, len(t.Ranges))}
	for _, r := range t.Ranges {
		s, z := quant.ComputeParams(r.Min, r.Max, qt, symmetric)
		j.Tensors = append(j.Tensors, JSONRange{Name: r.Name, Min: r.Min, Max: r.Max, Amax: r.Amax(), Scale: s, ZeroPoint: z})
	}
	return j, nil
}

// WriteJSON writes the JSON table (indented, one trailing newline).
func WriteJSON(w io.Writer, j *JSONTable) error {
	b, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// ReadJSON reads a JSON table back into ranges.
func ReadJSON(r io.Reader) (*Table, error) {
	var j JSONTable
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return nil, fmt.Errorf("calibration table: %w", err)
	}
	if j.Format != JSONFormat {
		return nil, fmt.Errorf("calibration table: format %q, want %q", j.Format, JSONFormat)
	}
	t := &Table{Method: j.Method, Percentile: j.Percentile, Samples: j.Samples, Symmetric: j.Symmetric}
	for _, r := range j.Tensors {
		t.Ranges = append(t.Ranges, Range{Name: r.Name, Min: r.Min, Max: r.Max})
	}
	return t, nil
}
