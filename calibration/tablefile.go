package calibration

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/runtime"
)

// TableFileOptions are the options of `optimctl calibrate` and of a recipe's calibrate
// step: calibrate Model on Calib and write the table to Output.
type TableFileOptions struct {
	Model, Calib, Output string
	// Format is json (ranges, amax, scale and zero point per tensor) or tensorrt
	// (TensorRT's INT8 calibration cache text).
	Format string
	// Method is minmax, entropy or percentile; "" picks entropy for tensorrt (TensorRT's
	// EntropyCalibration2), minmax for json.
	Method     string
	Percentile float64 // percentile method; 0 = 99.999
	Symmetric  bool    // ranges [-amax, amax]; always on for tensorrt (scales are amax/127)
	// ActivationType is int8 or uint8 for the json scales and zero points ("" = uint8,
	// int8 when Symmetric).
	ActivationType string
	TRTVersion     int    // tensorrt header version; 0 = DefaultTensorRTVersion
	TRTAlgorithm   string // tensorrt header calibrator; "" = DefaultTensorRTAlgorithm
	Data           Options
	Runtime        runtime.Options
	Progress       func(done, total int)
}

// TableFileReport is what WriteTableFile did (the keys of `optimctl calibrate --json`).
type TableFileReport struct {
	Input   string `json:"input"`
	Output  string `json:"output"`
	Format  string `json:"format"`
	Method  Method `json:"method"`
	Samples int    `json:"samples"`
	Tensors int    `json:"tensors"`
	Passes  int    `json:"passes"`
}

// Normalize fills the defaults and rejects bad values; WriteTableFile calls it too, so
// callers use it only to report option errors before any work (a CLI's usage errors, a
// recipe's parse-time checks). Output is not required here: a recipe names it later.
func (o *TableFileOptions) Normalize() error {
	switch o.Format {
	case "":
		o.Format = "json"
	case "json", "tensorrt":
	default:
		return fmt.Errorf("format %q: want json or tensorrt", o.Format)
	}
	if o.Calib == "" {
		return fmt.Errorf("calib is required (an .npz, a folder, images or random:N)")
	}
	if o.Method == "" {
		o.Method = string(MinMax)
		if o.Format == "tensorrt" {
			o.Method = string(Entropy)
		}
	}
	if _, err := ParseMethod(o.Method); err != nil {
		return err
	}
	switch strings.ToLower(o.ActivationType) {
	case "", "int8", "uint8":
	default:
		return fmt.Errorf("activation type %q: want int8 or uint8", o.ActivationType)
	}
	if o.Format == "tensorrt" {
		o.Symmetric = true
	}
	if o.Percentile == 0 {
		o.Percentile = 99.999
	}
	if o.TRTVersion == 0 {
		o.TRTVersion = DefaultTensorRTVersion
	}
	if o.TRTAlgorithm == "" {
		o.TRTAlgorithm = DefaultTensorRTAlgorithm
	}
	return nil
}

// WriteTableFile calibrates and writes the table atomically; the model path is refused as
// the output.
func WriteTableFile(ctx context.Context, o TableFileOptions) (*TableFileReport, error) {
	if err := o.Normalize(); err != nil {
		return nil, err
	}
	if o.Output == "" {
		return nil, fmt.Errorf("no output path for the calibration table")
	}
	if err := fsutil.CheckNotSame(o.Model, o.Output); err != nil {
		return nil, err
	}
	m, _ := ParseMethod(o.Method)
	co := CalibrateOptions{Method: m, Percentile: o.Percentile, Symmetric: o.Symmetric, Runtime: o.Runtime, Progress: o.Progress}
	t, err := CalibrateFile(ctx, o.Model, o.Calib, o.Data, co)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if o.Format == "tensorrt" {
		err = WriteTensorRTCache(&buf, t, o.TRTVersion, o.TRTAlgorithm)
	} else {
		qt := quant.Uint8
		if strings.EqualFold(o.ActivationType, "int8") || o.Symmetric && o.ActivationType == "" {
			qt = quant.Int8
		}
		var j *JSONTable
		if j, err = t.ToJSON(o.Model, qt, o.Symmetric); err == nil {
			err = WriteJSON(&buf, j)
		}
	}
	if err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(o.Output, buf.Bytes()); err != nil {
		return nil, err
	}
	return &TableFileReport{Input: o.Model, Output: o.Output, Format: o.Format, Method: t.Method,
		Samples: t.Samples, Tensors: len(t.Ranges), Passes: t.Passes}, nil
}
