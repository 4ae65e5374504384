package recipe

import (
	"context"

	"github.com/optimctl/optimctl/calibration"
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

// options is the step as calibration's options; input and output come from the runner.
func (c *calibrateStep) options(input, output string) calibration.TableFileOptions {
	return calibration.TableFileOptions{Model: input, Calib: c.Calib, Output: output, Format: c.Format,
		Method: c.Method, Percentile: c.Percentile, Symmetric: c.Symmetric, ActivationType: c.ActivationType,
		TRTVersion: c.TRTVersion, TRTAlgorithm: c.TRTAlgorithm,
		Data: calibration.Options{Preprocess: c.Preprocess, Shapes: c.Shapes, Limit: c.Limit, Batch: c.Batch}, Runtime: c.Runtime}
}

// normalize fills the command's defaults and rejects bad values, as `optimctl calibrate` does.
func (c *calibrateStep) normalize() error {
	o := c.options("", "")
	if err := o.Normalize(); err != nil {
		return err
	}
	c.Format, c.Method, c.Percentile, c.Symmetric, c.TRTVersion, c.TRTAlgorithm =
		o.Format, o.Method, o.Percentile, o.Symmetric, o.TRTVersion, o.TRTAlgorithm
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
			c := o.(*calibrateStep)
			opts := c.options(e.input, e.output)
			opts.Progress = e.bar("calibrating")
			r, err := calibration.WriteTableFile(ctx, opts)
			if err != nil {
				return result{}, err
			}
			return result{report: r}, nil
		},
	}
}
