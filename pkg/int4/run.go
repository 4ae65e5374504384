// Package int4 is optimctl's weight-only low-bit quantization of linear layers — round to
// nearest, GPTQ and AWQ from package quant — applied to real model files:
//
//   - ONNX: every MatMul whose B is a constant 2-D float tensor becomes a
//     com.microsoft::MatMulNBits node (packed B, scales in A's type, packed zero points),
//     which ONNX Runtime's CPU and CUDA providers run;
//   - Hugging Face safetensors checkpoints (BERT, Llama/Qwen2/Mistral, GPT-2 names): the
//     Linear weights inside the repeated blocks become a GPTQ checkpoint (qweight, qzeros,
//     scales, g_idx, quantize_config.json) or an AutoAWQ "gemm" checkpoint.
//
// GPTQ and AWQ need the inputs of each layer on calibration data. They are captured by
// running the data through ONNX Runtime with the MatMul inputs as extra outputs, batch by
// batch: a GPTQ Hessian (K×K) accumulates per distinct layer input, AWQ keeps a bounded
// reservoir sample of rows. For a checkpoint, an ONNX export of the same weights
// (calib_model) is run and its MatMul weights are matched to checkpoint tensors by value.
//
// Outputs are deterministic: the same input, data and options give the same bytes.
package int4

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/onnx/onnxpb"
)

// Report is the int4 report. input, output, nodes_before, nodes_after, size_before,
// size_after and seconds are the keys every quantize report carries.
type Report struct {
	Input       string  `json:"input"`
	Output      string  `json:"output"`
	Mode        string  `json:"mode"`
	Format      Format  `json:"format"`
	Algo        Algo    `json:"algo"`
	Bits        int     `json:"bits"`
	GroupSize   int     `json:"group_size"`
	Symmetric   bool    `json:"symmetric"`
	NodesBefore int     `json:"nodes_before"`
	NodesAfter  int     `json:"nodes_after"`
	SizeBefore  int64   `json:"size_before"`
	SizeAfter   int64   `json:"size_after"`
	Seconds     float64 `json:"seconds"`
	// QuantizedParams counts the weights now stored in Bits bits.
	QuantizedParams int64 `json:"quantized_params"`
	// Calibration: samples (batches) per pass, activation rows per layer input (the most over
	// inputs), rows left out as padding, passes over the data, time spent capturing.
	CalibSamples   int     `json:"calib_samples,omitempty"`
	CalibRows      int64   `json:"calib_rows,omitempty"`
	PaddingRows    int64   `json:"padding_rows,omitempty"`
	CapturePasses  int     `json:"capture_passes,omitempty"`
	CaptureSeconds float64 `json:"capture_seconds,omitempty"`
	// Matched counts checkpoint weights found in the calibration model (checkpoints only).
	Matched int           `json:"matched,omitempty"`
	Layers  []LayerReport `json:"layers"`
	Skipped []Skip        `json:"skipped"`
	// Warnings are things a reader of the output should know (e.g. zero points that
	// checkpoint_format "gptq" cannot store exactly).
	Warnings []string `json:"warnings,omitempty"`
}

// runGCPercent is the garbage collector's growth target (GOGC) during Run.
const runGCPercent = 25

// Run quantizes o.Input into o.Output (never over the input; atomically).
func Run(ctx context.Context, o Options) (*Report, error) {
	start := time.Now()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	// What is live — the model, the Hessians, the codes — is large and nearly free of
	// pointers, and each calibration batch and each layer leaves hundreds of MB of garbage;
	// with the default GOGC the heap would grow to twice the live data between collections
	// (5.6 GB peak for GPTQ on SmolLM2-135M). Collections are cheap here, so run them at a
	// quarter's growth for the duration of the run.
	defer debug.SetGCPercent(debug.SetGCPercent(runGCPercent))
	if o.Input == "" || o.Output == "" {
		return nil, errors.New("input and output paths are required")
	}
	if err := fsutil.CheckNotSame(o.Input, o.Output); err != nil {
		return nil, err
	}
	if abs(o.Input) == abs(o.Output) {
		return nil, fmt.Errorf("%s: %w", o.Output, fsutil.ErrSameFile)
	}
	st, err := os.Stat(o.Input)
	if err != nil {
		return nil, err
	}
	format := o.Format
	isONNX := !st.IsDir() && strings.EqualFold(filepath.Ext(o.Input), ".onnx")
	if format == "" {
		format = FormatGPTQ
		if isONNX {
			format = FormatONNX
		}
	}
	if (format == FormatONNX || format == FormatQDQ) != isONNX {
		if isONNX {
			return nil, fmt.Errorf("%s: format %s writes a checkpoint from a safetensors checkpoint, not from ONNX", o.Input, format)
		}
		return nil, fmt.Errorf("%s: format %s needs an .onnx model", o.Input, format)
	}
	if err := o.resolve(format); err != nil {
		return nil, err
	}
	r := &Report{Input: o.Input, Output: o.Output, Mode: "int4", Format: format, Algo: o.Algo, Bits: o.Bits,
		GroupSize: o.GroupSize, Symmetric: *o.Symmetric, Layers: []LayerReport{}, Skipped: []Skip{}}
	if format == FormatONNX || format == FormatQDQ {
		err = runONNX(ctx, &o, r)
	} else {
		err = runCheckpoint(ctx, &o, r)
	}
	if err != nil {
		return nil, err
	}
	if format == FormatONNX || format == FormatQDQ {
		r.SizeAfter = pathSize(o.Output)
		if o.ExternalData {
			r.SizeAfter += pathSize(o.Output + ".data")
		}
	} else {
		r.SizeAfter = weightsSize(o.Output)
	}
	r.Seconds = time.Since(start).Seconds()
	return r, nil
}

func abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		return p
	}
	return a
}

func pathSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}

// externalSize adds up the external-data files an ONNX model refers to.
func externalSize(m *onnx.Model) int64 {
	seen := map[string]bool{}
	var n int64
	onnx.WalkTensors(m.Proto, func(t *onnxpb.TensorProto) bool {
		if ref, err := onnx.ParseExternal(t); err == nil && onnx.IsExternal(t) && !seen[ref.Location] {
			seen[ref.Location] = true
			if p, err := onnx.ResolveExternalPath(m.Dir, ref.Location); err == nil {
				n += pathSize(p)
			}
		}
		return true
	})
	return n
}

// weightsSize adds up the .safetensors files of a checkpoint folder.
func weightsSize(dir string) int64 {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n int64
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".safetensors") {
			n += pathSize(filepath.Join(dir, e.Name()))
		}
	}
	return n
}
