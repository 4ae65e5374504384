package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/optimctl/optimctl/calibration"
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
			o, err := fl.toOptions(g, args[0])
			if err != nil {
				return err
			}
			if g.stderrIsTerminal() {
				o.Progress = newProgress(g, "calibrating", -1)
			}
			rep, err := calibration.WriteTableFile(cmd.Context(), o)
			if err != nil {
				return err
			}
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

func (fl *calibrateFlags) toOptions(g *globals, model string) (calibration.TableFileOptions, error) {
	shapes, err := calibration.ParseShapes(fl.shapes)
	if err != nil {
		return calibration.TableFileOptions{}, usageError{err}
	}
	o := calibration.TableFileOptions{Model: model, Calib: fl.calib, Output: fl.output, Format: fl.format,
		Method: fl.method, Percentile: fl.percentile, Symmetric: fl.symmetric, ActivationType: fl.actType,
		TRTVersion: fl.trtVersion, TRTAlgorithm: fl.trtAlgo,
		Data: calibration.Options{Preprocess: fl.preprocess, Shapes: shapes, Limit: fl.limit, Batch: fl.batch}}
	if err := o.Normalize(); err != nil {
		return o, usageError{err}
	}
	if o.Runtime, err = fl.rt.options(g); err != nil {
		return o, err
	}
	return o, nil
}
