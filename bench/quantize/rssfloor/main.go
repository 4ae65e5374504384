// Command rssfloor measures the memory floor under optimctl's quantize: run it under
// /usr/bin/time -v in three steps to see what loading ONNX Runtime, creating a session for
// a model and running it cost a Go process before any quantization work.
//
//	rssfloor -lib LIB                          # load the library only
//	rssfloor -lib LIB -model M.onnx            # + one session (default options)
//	rssfloor -lib LIB -model M.onnx -runs 30 -shape 1,3,48,192   # + runs on zeros
//
// -shape gives every input's dimensions (default: the declared ones, dynamic ones as 1).
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/runtime"
	"github.com/optimctl/optimctl/pkg/tensor"
)

func main() {
	lib := flag.String("lib", "", "ONNX Runtime library")
	model := flag.String("model", "", "ONNX model to open a session for")
	runs := flag.Int("runs", 0, "runs on all-zero inputs")
	shape := flag.String("shape", "", "input dimensions, e.g. 1,3,48,192")
	flag.Parse()
	var dims []int64
	for _, f := range strings.Split(*shape, ",") {
		if d, err := strconv.ParseInt(f, 10, 64); err == nil {
			dims = append(dims, d)
		}
	}
	if err := run(*lib, *model, *runs, dims); err != nil {
		fmt.Fprintln(os.Stderr, "rssfloor:", err)
		os.Exit(1)
	}
}

func run(lib, model string, runs int, dims []int64) error {
	if err := runtime.Init(lib); err != nil {
		return err
	}
	if model == "" {
		return nil
	}
	b, err := os.ReadFile(model)
	if err != nil {
		return err
	}
	s, err := runtime.NewSession(b, runtime.Options{})
	if err != nil {
		return err
	}
	defer s.Close()
	in := map[string]*tensor.Tensor{}
	for _, spec := range s.Inputs() {
		shape := dims
		if shape == nil {
			shape = make([]int64, len(spec.Shape))
			for i, d := range spec.Shape {
				shape[i] = max(d, 1)
			}
		}
		in[spec.Name] = tensor.New(spec.DType, shape)
	}
	for range runs {
		if _, err := s.Run(in); err != nil {
			return err
		}
	}
	return nil
}
