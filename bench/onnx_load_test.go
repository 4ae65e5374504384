package bench

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"testing"

	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
	"github.com/optimctl/optimctl/pkg/tensor"
	"google.golang.org/protobuf/proto"
)

// writeBigONNX writes a 256 MiB model: a chain of 64 MatMuls over 1024×1024 float32 weights
// (4 MiB each) stored inline, the size class of a small transformer.
func writeBigONNX(b *testing.B) (string, int64) {
	b.Helper()
	g := &onnxpb.GraphProto{Name: proto.String("chain")}
	rng := rand.New(rand.NewPCG(1, 2))
	prev := "x"
	for i := range 64 {
		w := make([]float32, 1024*1024)
		for j := range w {
			w[j] = rng.Float32()
		}
		wn, out := fmt.Sprintf("w%02d", i), fmt.Sprintf("h%02d", i)
		g.Initializer = append(g.Initializer, onnx.FromTensor(wn, tensor.FromFloat32([]int64{1024, 1024}, w)))
		g.Node = append(g.Node, &onnxpb.NodeProto{OpType: proto.String("MatMul"), Input: []string{prev, wn}, Output: []string{out}})
		prev = out
	}
	vi := func(n string) *onnxpb.ValueInfoProto {
		return &onnxpb.ValueInfoProto{Name: proto.String(n), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
			TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(1)}}}}
	}
	g.Input, g.Output = []*onnxpb.ValueInfoProto{vi("x")}, []*onnxpb.ValueInfoProto{vi(prev)}
	m := &onnxpb.ModelProto{IrVersion: proto.Int64(8), Graph: g,
		OpsetImport: []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}}}
	data, err := m.MarshalVT()
	if err != nil {
		b.Fatal(err)
	}
	p := filepath.Join(b.TempDir(), "chain.onnx")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		b.Fatal(err)
	}
	return p, int64(len(data))
}

// resetPeakRSS makes VmHWM restart from the current RSS (Linux: write 5 to clear_refs).
func resetPeakRSS() bool { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil }

func vmHWM() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range bytes.Split(b, []byte("\n")) {
		if rest, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			n, _ := strconv.ParseInt(string(bytes.Fields(rest)[0]), 10, 64)
			return n
		}
	}
	return -1
}

// BenchmarkONNXLoad256MB compares onnx.Load with reading the same bytes (os.ReadFile): the
// goal is ≤ 1.5× the read time, and a peak RSS growth ≤ 1.3× the file size (peak-rss/file).
func BenchmarkONNXLoad256MB(b *testing.B) {
	path, size := writeBigONNX(b)
	b.Run("ReadFile", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			b.StopTimer()
			debug.FreeOSMemory() // same starting point as Load: fresh pages
			b.StartTimer()
			if _, err := os.ReadFile(path); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("Load", func(b *testing.B) {
		b.SetBytes(size)
		var peak float64
		for b.Loop() {
			b.StopTimer()
			debug.FreeOSMemory() // return freed heap so the next load's pages are new
			base := vmRSS()
			ok := resetPeakRSS()
			b.StartTimer()
			m, err := onnx.Load(path)
			if err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if ok {
				if p := float64(vmHWM()-base) * 1024 / float64(size); p > peak {
					peak = p
				}
			}
			m.Close()
			b.StartTimer()
		}
		b.ReportMetric(peak, "peak-rss/file")
	})
}
