// Command dumpdata writes the samples optimctl's calibration reader produces for a model to
// an .npz file (one array per input, axis 0 = samples), so that compare.py feeds
// onnxruntime.quantization exactly the tensors optimctl calibrates and validates with.
//
//	go run ./bench/quantize/dumpdata -model M.onnx -data DIR -preprocess P -shape x=1,3,48,192 -o out.npz
package main

import (
	"archive/zip"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/onnx"
	"github.com/optimctl/optimctl/pkg/tensor"
)

func main() {
	model := flag.String("model", "", "ONNX model (for its input signature)")
	data := flag.String("data", "", "calibration data spec")
	pre := flag.String("preprocess", "", "image preprocessing")
	shape := flag.String("shape", "", "NAME=d0,d1,...")
	out := flag.String("o", "", "output .npz")
	repeat := flag.Int("repeat", 1, "write the samples this many times (for memory scaling runs)")
	flag.Parse()
	if err := run(*model, *data, *pre, *shape, *out, *repeat); err != nil {
		fmt.Fprintln(os.Stderr, "dumpdata:", err)
		os.Exit(1)
	}
}

func run(model, data, pre, shape, out string, repeat int) error {
	m, err := onnx.Load(model)
	if err != nil {
		return err
	}
	var shapes map[string][]int64
	if shape != "" {
		if shapes, err = calibration.ParseShapes([]string{shape}); err != nil {
			return err
		}
	}
	src, err := calibration.Open(data, m.InputSpecs(), calibration.Options{Preprocess: pre, Shapes: shapes})
	if err != nil {
		return err
	}
	defer src.Close()
	arrays := map[string]*bytes.Buffer{}
	dims := map[string][]int64{}
	count := 0
	for {
		s, err := src.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		for name, t := range s {
			if t.DType != tensor.Float32 {
				return fmt.Errorf("input %s: %s, only float32 is written", name, t.DType)
			}
			if arrays[name] == nil {
				arrays[name] = &bytes.Buffer{}
				dims[name] = t.Shape
			}
			arrays[name].Write(t.Data)
		}
		count++
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	zw := zip.NewWriter(f)
	for name, buf := range arrays {
		sh := append([]int64{int64(count * repeat)}, dims[name][1:]...)
		parts := make([]string, len(sh))
		for i, d := range sh {
			parts[i] = fmt.Sprint(d)
		}
		hdr := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s,), }", strings.Join(parts, ", "))
		for (10+len(hdr)+1)%64 != 0 {
			hdr += " "
		}
		hdr += "\n"
		w, err := zw.CreateHeader(&zip.FileHeader{Name: name + ".npy", Method: zip.Store})
		if err != nil {
			return err
		}
		h := []byte{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, byte(len(hdr)), byte(len(hdr) >> 8)}
		w.Write(h)
		w.Write([]byte(hdr))
		for r := 0; r < repeat; r++ {
			if _, err := w.Write(buf.Bytes()); err != nil {
				return err
			}
		}
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return f.Close()
}
