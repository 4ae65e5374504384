package runtime

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

// ONNX's backend-test tolerance (onnx/backend/test/runner): |got-want| <= atol + rtol*|want|.
const (
	conformanceRtol = 1e-3
	conformanceAtol = 1e-7
)

// TestONNXConformance runs ONNX's node conformance tests through ONNX Runtime twice:
// from the original model bytes and from the bytes onnxpb re-encodes them to. It proves
// the foundation the rest of optimctl stands on: every model decodes, re-encoding is
// byte-identical, and nothing that ONNX Runtime runs correctly from the original stops
// running correctly after our round trip.
func TestONNXConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance corpus: skipped with -short")
	}
	initForTest(t)
	root := testassets.Path(t, testassets.ONNXNodeTests)
	models, err := filepath.Glob(filepath.Join(root, "*", "model.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(models)

	var st struct {
		corpus, decoded, identical, harness int
		sessions, matched                   [2]int // [original, re-encoded]
	}
	failures := map[string][]string{} // reason class -> test names (original bytes)
	for _, path := range models {
		dir := filepath.Dir(path)
		name := filepath.Base(dir)
		sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
		if len(sets) == 0 {
			continue
		}
		sort.Strings(sets)
		st.corpus++
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		m := &onnxpb.ModelProto{}
		if err := m.UnmarshalVT(orig); err != nil {
			t.Errorf("%s: decode: %v", name, err)
			continue
		}
		st.decoded++
		re, err := m.MarshalVT()
		if err != nil {
			t.Errorf("%s: encode: %v", name, err)
			continue
		}
		if bytes.Equal(orig, re) {
			st.identical++
		} else {
			t.Errorf("%s: re-encoded model differs from the original (%d vs %d bytes)", name, len(re), len(orig))
		}
		cases, err := loadConformanceCases(m, sets)
		if err != nil {
			st.harness++
			continue
		}
		var ok [2]bool
		for v, b := range [][]byte{orig, re} {
			created, err := runConformance(b, cases)
			if created {
				st.sessions[v]++
			}
			if err == nil {
				st.matched[v]++
				ok[v] = true
			} else if v == 0 {
				class := classify(created, err)
				failures[class] = append(failures[class], name)
				if testing.Verbose() {
					t.Logf("%s: %s: %v", name, class, err)
				}
			}
		}
		if ok[0] && !ok[1] {
			t.Errorf("%s: passes from the original bytes but not after re-encoding", name)
		}
	}
	t.Logf("ONNX node conformance: corpus %d, decoded %d, re-encoded byte-identical %d, unsupported by harness (sequence/optional/map I/O) %d",
		st.corpus, st.decoded, st.identical, st.harness)
	t.Logf("  original bytes:   sessions created (ORT-supported) %d, outputs matched %d", st.sessions[0], st.matched[0])
	t.Logf("  re-encoded bytes: sessions created (ORT-supported) %d, outputs matched %d", st.sessions[1], st.matched[1])
	classes := make([]string, 0, len(failures))
	for c := range failures {
		classes = append(classes, c)
	}
	sort.Strings(classes)
	for _, c := range classes {
		t.Logf("  not matched, %s: %d (e.g. %s)", c, len(failures[c]), strings.Join(failures[c][:min(3, len(failures[c]))], ", "))
	}
	if st.decoded != st.corpus || st.identical != st.corpus {
		t.Errorf("decoded %d and re-encoded identically %d of %d models; want all", st.decoded, st.identical, st.corpus)
	}
	if st.corpus == 0 {
		t.Fatal("empty conformance corpus")
	}
}

func classify(created bool, err error) string {
	msg := err.Error()
	switch {
	case !created:
		return "session not created"
	case strings.Contains(msg, "onnxruntime_go"):
		return "onnxruntime_go limitation"
	case strings.Contains(msg, "mismatch"):
		return "numbers differ"
	}
	return "run failed"
}

type conformanceCase struct {
	set     string
	inputs  map[string]*tensor.Tensor
	outputs []*tensor.Tensor // in graph.output order
}

// loadConformanceCases reads the test data sets; an error means the harness cannot
// express the test (non-tensor inputs or outputs).
func loadConformanceCases(m *onnxpb.ModelProto, sets []string) ([]conformanceCase, error) {
	g := m.GetGraph()
	inits := map[string]bool{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = true
	}
	var inNames []string
	for _, vi := range g.Input {
		if inits[vi.GetName()] {
			continue
		}
		if vi.GetType().GetTensorType() == nil {
			return nil, fmt.Errorf("input %q is not a tensor", vi.GetName())
		}
		inNames = append(inNames, vi.GetName())
	}
	for _, vi := range g.Output {
		if vi.GetType().GetTensorType() == nil {
			return nil, fmt.Errorf("output %q is not a tensor", vi.GetName())
		}
	}
	var cases []conformanceCase
	for _, set := range sets {
		c := conformanceCase{set: filepath.Base(set), inputs: map[string]*tensor.Tensor{}}
		for i := 0; ; i++ {
			tp, err := readTensorProto(filepath.Join(set, fmt.Sprintf("input_%d.pb", i)))
			if os.IsNotExist(err) {
				break
			}
			if err != nil {
				return nil, err
			}
			name := tp.GetName()
			if name == "" && i < len(inNames) {
				name = inNames[i]
			}
			tt, err := tensorFromProto(tp)
			if err != nil {
				return nil, fmt.Errorf("%s input %d: %w", c.set, i, err)
			}
			c.inputs[name] = tt
		}
		for i := range g.Output {
			tp, err := readTensorProto(filepath.Join(set, fmt.Sprintf("output_%d.pb", i)))
			if err != nil {
				return nil, err
			}
			tt, err := tensorFromProto(tp)
			if err != nil {
				return nil, fmt.Errorf("%s output %d: %w", c.set, i, err)
			}
			c.outputs = append(c.outputs, tt)
		}
		cases = append(cases, c)
	}
	return cases, nil
}

// runConformance creates a session from model and checks every case; created says
// whether ONNX Runtime accepted the model.
func runConformance(model []byte, cases []conformanceCase) (created bool, err error) {
	s, err := NewSession(model, Options{IntraOpThreads: 1})
	if err != nil {
		return false, err
	}
	defer s.Close()
	outs := s.Outputs()
	for _, c := range cases {
		got, err := s.Run(c.inputs)
		if err != nil {
			return true, fmt.Errorf("%s: %w", c.set, err)
		}
		for i, want := range c.outputs {
			if err := compareConformance(got[outs[i].Name], want); err != nil {
				return true, fmt.Errorf("%s output %q: %w", c.set, outs[i].Name, err)
			}
		}
	}
	return true, nil
}

func readTensorProto(path string) (*onnxpb.TensorProto, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tp := &onnxpb.TensorProto{}
	if err := tp.UnmarshalVT(b); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return tp, nil
}

// tensorFromProto converts a TensorProto with inline data: raw_data, or the typed field
// ONNX stores that element type in (float_data, int32_data, int64_data, double_data,
// uint64_data, string_data). The real converter lives in pkg/onnx; this one keeps the
// runtime tests independent of it.
func tensorFromProto(tp *onnxpb.TensorProto) (*tensor.Tensor, error) {
	if tp.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return nil, fmt.Errorf("external data")
	}
	dt := tensor.DType(tp.GetDataType())
	t := &tensor.Tensor{DType: dt, Shape: append([]int64{}, tp.Dims...)}
	if dt == tensor.String {
		for _, s := range tp.StringData {
			t.Strings = append(t.Strings, string(s))
		}
		return t, t.Validate()
	}
	le := binary.LittleEndian
	switch {
	case tp.RawData != nil:
		t.Data = append([]byte{}, tp.RawData...)
	case dt == tensor.Float32 || dt == tensor.Complex64:
		for _, v := range tp.FloatData {
			t.Data = le.AppendUint32(t.Data, math.Float32bits(v))
		}
	case dt == tensor.Float64 || dt == tensor.Complex128:
		for _, v := range tp.DoubleData {
			t.Data = le.AppendUint64(t.Data, math.Float64bits(v))
		}
	case dt == tensor.Int64:
		for _, v := range tp.Int64Data {
			t.Data = le.AppendUint64(t.Data, uint64(v))
		}
	case dt == tensor.Uint64:
		for _, v := range tp.Uint64Data {
			t.Data = le.AppendUint64(t.Data, v)
		}
	case dt == tensor.Uint32:
		for _, v := range tp.Uint64Data {
			t.Data = le.AppendUint32(t.Data, uint32(v))
		}
	case dt.Bits() < 8:
		// Sub-byte types: each int32_data entry holds one packed byte.
		for _, v := range tp.Int32Data {
			t.Data = append(t.Data, byte(v))
		}
	case dt.Bits() == 8 || dt.Bits() == 16 || dt.Bits() == 32:
		// int32_data holds one element per entry (float16/bfloat16/float8 as their bits).
		w := dt.Bits() / 8
		for _, v := range tp.Int32Data {
			var b [4]byte
			le.PutUint32(b[:], uint32(v))
			t.Data = append(t.Data, b[:w]...)
		}
	default:
		return nil, fmt.Errorf("no typed-field decoding for %s", dt)
	}
	if t.Data == nil {
		t.Data = []byte{}
	}
	return t, t.Validate()
}

// compareConformance applies the backend-test tolerance; NaN equals NaN. Types that
// tensor cannot widen to float64 compare bit for bit.
func compareConformance(got, want *tensor.Tensor) error {
	if got == nil {
		return fmt.Errorf("not returned")
	}
	if got.DType != want.DType {
		return fmt.Errorf("type mismatch: got %s, want %s", got.DType, want.DType)
	}
	if !slices.Equal(got.Shape, want.Shape) {
		return fmt.Errorf("shape mismatch: got %v, want %v", got.Shape, want.Shape)
	}
	if got.DType == tensor.String {
		for i := range want.Strings {
			if got.Strings[i] != want.Strings[i] {
				return fmt.Errorf("value mismatch at %d: got %q, want %q", i, got.Strings[i], want.Strings[i])
			}
		}
		return nil
	}
	g, err1 := comparable64(got)
	w, err2 := comparable64(want)
	if err1 != nil || err2 != nil {
		if !bytes.Equal(got.Data, want.Data) {
			return fmt.Errorf("value mismatch (bitwise %s)", got.DType)
		}
		return nil
	}
	for i := range w {
		a, b := g[i], w[i]
		if a == b || (math.IsNaN(a) && math.IsNaN(b)) {
			continue
		}
		if !(math.Abs(a-b) <= conformanceAtol+conformanceRtol*math.Abs(b)) {
			return fmt.Errorf("value mismatch at %d: got %g, want %g", i, a, b)
		}
	}
	return nil
}

// comparable64 widens elements to float64; complex numbers become (re, im) pairs.
func comparable64(t *tensor.Tensor) ([]float64, error) {
	switch t.DType {
	case tensor.Complex64:
		return (&tensor.Tensor{DType: tensor.Float32, Shape: []int64{2 * t.Len()}, Data: t.Data}).AsFloat64()
	case tensor.Complex128:
		return (&tensor.Tensor{DType: tensor.Float64, Shape: []int64{2 * t.Len()}, Data: t.Data}).AsFloat64()
	}
	return t.AsFloat64()
}
