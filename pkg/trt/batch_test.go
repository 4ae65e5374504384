package trt

import (
	"bytes"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/calibration"
	"github.com/optimctl/optimctl/pkg/tensor"
)

func TestFillInput(t *testing.T) {
	x := tensor.FromFloat32([]int64{2, 2}, []float32{1, 2, 3, 4})
	s := calibration.Sample{"x": x}
	dst := bytes.Repeat([]byte{0xAB}, 16)
	if err := fillInput(s, "x", tensor.Float32, []int64{2, 2}, dst); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dst, x.Data) {
		t.Fatalf("dst %x, want %x", dst, x.Data)
	}
	bad := []struct {
		name  string
		dtype tensor.DType
		dims  []int64
		size  int
		want  string
	}{
		{"y", tensor.Float32, []int64{2, 2}, 16, `no input "y"`},
		{"x", tensor.Float16, []int64{2, 2}, 8, "is float32, the network input is float16"},
		{"x", tensor.Float32, []int64{4, 2}, 32, "shape 2x2, TensorRT calibrates at 4x2"},
		{"x", tensor.Float32, []int64{2, 2}, 12, "holds 16 bytes, TensorRT expects 12"},
	}
	for _, c := range bad {
		err := fillInput(s, c.name, c.dtype, c.dims, make([]byte, c.size))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c, err, c.want)
		}
	}
}
