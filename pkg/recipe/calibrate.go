package recipe

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/runtime"
)

// calibrateStep holds the options of a calibrate step: the flags of `optimctl calibrate`.
// It writes <workdir>/<name>.json (format json) or <name>.cache (format tensorrt), which a
// later build-trt step names as its calib_cache.
type calibrateStep struct {
	Format         string             `yaml:"format" json:"format"` // json (default) or tensorrt
	Calib          string             `yaml:"calib" json:"calib"`
	Preprocess     string             `yaml:"preprocess" json:"preprocess,omitempty"`
	Shapes         map[string][]int64 `yaml:"shapes" json:"shapes,omitempty"`
	Limit          int                `yaml:"limit" json:"limit,omitempty"`
	Batch          int                `yaml:"batch" json:"batch,omitempty"`
	Method         string             `yaml:"method" json:"method,omitempty"` // default: entropy for tensorrt, minmax for json
	Percentile     float64            `yaml:"percentile" json:"percentile,omitempty"`
	Symmetric      bool               `yaml:"symmetric" json:"symmetric,omitempty"`
	ActivationType string             `yaml:"activation_type" json:"activation_type,omitempty"` // json: int8 or uint8
	TRTVersion     int                `yaml:"trt_version" json:"trt_version,omitempty"`
	TRTAlgorithm   string             `yaml:"trt_algorithm" json:"trt_algorithm,omitempty"`
	Runtime        runtime.Options    `yaml:"runtime" json:"runtime"`
}

// calibrateReport is a calibrate step's report (the keys of `optimctl calibrate --json`).
type calibrateReport struct {
	Input   string             `json:"input"`
	Output  string             `json:"output"`
	Format  string             `json:"format"`
	Method  calibration.Method `json:"method"`
	Samples int                `json:"samples"`
	Tensors int                `json:"tensors"`
	Passes  int                `json:"passes"`
}

// normalize fills the command's defaults and rejects bad values.
func (c *calibrateStep) normalize() error {
	switch c.Format {
	case "":
		c.Format = "json"
	case "json", "tensorrt":
	default:
		return fmt.Errorf("format %q: want json or tensorrt", c.Format)
	}
	if c.Calib == "" {
		return fmt.Errorf("calib is required (an .npz, a folder, images or random:N)")
	}
	if c.Method == "" {
		c.Method = string(calibration.MinMax)
		if c.Format == "tensorrt" {
			c.Method = string(calibration.Entropy)
		}
	}
	if _, err := calibration.ParseMethod(c.Method); err != nil {
		return err
	}
	switch strings.ToLower(c.ActivationType) {
	case "", "int8", "uint8":
	default:
		return fmt.Errorf("activation_type %q: want int8 or uint8", c.ActivationType)
	}
	if c.Format == "tensorrt" {
		c.Symmetric = true // TensorRT's scales are amax/127
	}
	if c.Percentile == 0 {
		c.Percentile = 99.999
	}
	if c.TRTVersion == 0 {
		c.TRTVersion = calibration.DefaultTensorRTVersion
	}
	if c.TRTAlgorithm == "" {
		c.TRTAlgorithm = calibration.DefaultTensorRTAlgorithm
	}
	return nil
}

func init() {
	kinds["calibrate"] = kind{
		decode: decodeAs[calibrateStep](),
		out: func(o any) (string, bool) {
			if o.(*calibrateStep).Format == "tensorrt" {
				return ".cache", false
			}
			return ".json", false
		},
		check: func(o any) error { c := *o.(*calibrateStep); return c.normalize() },
		files: func(o any) []*string {
			c := o.(*calibrateStep)
			if isFileSpec(c.Calib) {
				return []*string{&c.Calib}
			}
			return nil
		},
		run: func(ctx context.Context, e *stepEnv, o any) (result, error) {
			c := *o.(*calibrateStep)
			if err := c.normalize(); err != nil {
				return result{}, err
			}
			m, _ := calibration.ParseMethod(c.Method)
			d := calibration.Options{Preprocess: c.Preprocess, Shapes: c.Shapes, Limit: c.Limit, Batch: c.Batch}
			co := calibration.CalibrateOptions{Method: m, Percentile: c.Percentile, Symmetric: c.Symmetric, Runtime: c.Runtime,
				Progress: e.bar("calibrating")}
			t, err := calibration.CalibrateFile(ctx, e.input, c.Calib, d, co)
			if err != nil {
				return result{}, err
			}
			var buf bytes.Buffer
			if c.Format == "tensorrt" {
				err = calibration.WriteTensorRTCache(&buf, t, c.TRTVersion, c.TRTAlgorithm)
			} else {
				qt := quant.Uint8
				if strings.EqualFold(c.ActivationType, "int8") || c.Symmetric && c.ActivationType == "" {
					qt = quant.Int8
				}
				var j *calibration.JSONTable
				if j, err = t.ToJSON(e.input, qt, c.Symmetric); err == nil {
					err = calibration.WriteJSON(&buf, j)
				}
			}
			if err != nil {
				return result{}, err
			}
			if err := fsutil.WriteFileAtomic(e.output, buf.Bytes()); err != nil {
				return result{}, err
			}
			return result{report: &calibrateReport{Input: e.input, Output: e.output, Format: c.Format, Method: t.Method,
				Samples: t.Samples, Tensors: len(t.Ranges), Passes: t.Passes}}, nil
		},
	}
}
