package main

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/quant"
)

func init() { commands = append(commands, newCalibrateCmd) }

// calibrateFlags holds the raw flag values of `optimctl calibrate`.
type calibrateFlags struct {
	output, format, method, calib, preprocess, actType, trtAlgo string
	shapes                                                      []string
	limit, batch, trtVersion                                    int
	percentile                                                  float64
	symmetric                                                   bool
	rt                                                          runtimeFlags
}

// calibrateReport is the --json report of `optimctl calibrate`.
type calibrateReport struct {
	Input   string             `json:"input"`
	Output  string             `json:"output"`
	Format  string             `json:"format"`
	Method  calibration.Method `json:"method"`
	Samples int                `json:"samples"`
	Tensors int                `json:"tensors"`
	Passes  int                `json:"passes"`
}

func newCalibrateCmd(g *globals) *cobra.Command {
	fl := &calibrateFlags{}
	cmd := &cobra.Command{
		Use:   "calibrate MODEL --calib DATA -o TABLE [--format json|tensorrt]",
		Short: "Measure activation ranges and write a calibration table (JSON, or a TensorRT INT8 calibration cache)",
		Long: `Runs the model on the calibration data and records the range of every float32 activation
(graph inputs and node outputs), streaming: memory does not grow with the number of samples.

  --format json      ranges, amax, and the scale/zero point of --activation-type per tensor
  --format tensorrt  TensorRT's cache text: "TRT-<version>-<algorithm>", then
                     "tensor: <hex of float32 amax/127>" per tensor (TensorRT <= 10)

The default method is entropy on |x| histograms for tensorrt (TensorRT's
EntropyCalibration2) and minmax for json.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dopts, copts, err := fl.toOptions(cmd, g)
			if err != nil {
				return err
			}
			if g.stderrIsTerminal() {
				copts.Progress = newProgress(g, "calibrating", -1)
			}
			t, err := calibration.CalibrateFile(cmd.Context(), args[0], fl.calib, dopts, copts)
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if fl.format == "tensorrt" {
				err = calibration.WriteTensorRTCache(&buf, t, fl.trtVersion, fl.trtAlgo)
			} else {
				qt := quant.Uint8
				if strings.HasPrefix(strings.ToLower(fl.actType), "int8") || fl.symmetric && fl.actType == "" {
					qt = quant.Int8
				}
				var j *calibration.JSONTable
				if j, err = t.ToJSON(args[0], qt, fl.symmetric); err == nil {
					err = calibration.WriteJSON(&buf, j)
				}
			}
			if err != nil {
				return err
			}
			if err := fsutil.CheckNotSame(args[0], fl.output); err != nil {
				return err
			}
			if err := fsutil.WriteFileAtomic(fl.output, buf.Bytes()); err != nil {
				return err
			}
			rep := calibrateReport{Input: args[0], Output: fl.output, Format: fl.format, Method: t.Method, Samples: t.Samples, Tensors: len(t.Ranges), Passes: t.Passes}
			if g.JSON {
				return g.emitJSON(rep)
			}
			fmt.Fprintf(g.stdout, "%s → %s (%s): %s on %d samples, %d tensors\n", rep.Input, rep.Output, rep.Format, rep.Method, rep.Samples, rep.Tensors)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&fl.output, "output", "o", "", "calibration table to write (required)")
	f.StringVar(&fl.format, "format", "json", "json or tensorrt")
	f.StringVar(&fl.calib, "calib", "", "calibration data (.npz, folder, image folder with --preprocess, random:N) (required)")
	f.StringVar(&fl.preprocess, "preprocess", "", `image preprocessing, e.g. "resize=320x320,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"`)
	f.StringArrayVar(&fl.shapes, "shape", nil, "NAME=d0,d1,... fixes the dynamic dimensions of an input (repeatable)")
	f.IntVar(&fl.limit, "limit", 0, "use at most this many samples (0 = all)")
	f.IntVar(&fl.batch, "calib-batch", 0, "samples per run (0 = the model's batch size, else 1)")
	f.StringVar(&fl.method, "calib-method", "", "minmax, entropy or percentile (default: entropy for tensorrt, minmax for json)")
	f.Float64Var(&fl.percentile, "percentile", 99.999, "percentile method: percentage of values kept")
	f.BoolVar(&fl.symmetric, "symmetric", false, "symmetric ranges [-amax, amax] (always on for tensorrt)")
	f.StringVar(&fl.actType, "activation-type", "", "json: int8 or uint8 for the scales and zero points (default uint8, int8 with --symmetric)")
	f.IntVar(&fl.trtVersion, "trt-version", calibration.DefaultTensorRTVersion, "tensorrt: version number in the header (major*10000+minor*100+patch)")
	f.StringVar(&fl.trtAlgo, "trt-algorithm", calibration.DefaultTensorRTAlgorithm, "tensorrt: calibrator named in the header")
	fl.rt.register(cmd, "basic")
	cmd.MarkFlagRequired("output")
	cmd.MarkFlagRequired("calib")
	return cmd
}

func (fl *calibrateFlags) toOptions(cmd *cobra.Command, g *globals) (calibration.Options, calibration.CalibrateOptions, error) {
	var d calibration.Options
	var c calibration.CalibrateOptions
	switch fl.format {
	case "json", "tensorrt":
	default:
		return d, c, usagef("--format %q: want json or tensorrt", fl.format)
	}
	if fl.method == "" {
		fl.method = "minmax"
		if fl.format == "tensorrt" {
			fl.method = "entropy"
		}
	}
	m, err := calibration.ParseMethod(fl.method)
	if err != nil {
		return d, c, usageError{err}
	}
	switch strings.ToLower(fl.actType) {
	case "", "int8", "uint8":
	default:
		return d, c, usagef("--activation-type %q: want int8 or uint8", fl.actType)
	}
	shapes, err := calibration.ParseShapes(fl.shapes)
	if err != nil {
		return d, c, usageError{err}
	}
	if fl.format == "tensorrt" {
		fl.symmetric = true // TensorRT's scales are amax/127
	}
	rt, err := fl.rt.options(g)
	if err != nil {
		return d, c, err
	}
	d = calibration.Options{Preprocess: fl.preprocess, Shapes: shapes, Limit: fl.limit, Batch: fl.batch}
	c = calibration.CalibrateOptions{Method: m, Percentile: fl.percentile, Symmetric: fl.symmetric, Runtime: rt}
	return d, c, nil
}
