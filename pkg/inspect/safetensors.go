package inspect

import (
	"os"

	"github.com/optimctl/optimctl/pkg/safetensors"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// Safetensors inspects a safetensors file or a sharded checkpoint folder. Sparsity reads
// every tensor's bytes once, straight from the mapping.
func Safetensors(path string) (*Report, error) {
	c, err := safetensors.OpenAny(path)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	r := &Report{Format: "safetensors", Path: path, OpTypes: map[string]int{}, DTypes: map[string]int64{},
		Initializers: []Tensor{}, Inputs: []Value{}, Outputs: []Value{}, Metadata: c.Metadata()}
	files := c.Files()
	if c.IndexPath() != "" {
		r.Shards = len(files)
	}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			r.SizeBytes += st.Size()
		}
	}
	for _, name := range c.Names() {
		ti, _ := c.Tensor(name)
		n := tensor.NumElements(ti.Shape)
		t := Tensor{Name: name, DType: ti.DType, Shape: append([]int64{}, ti.Shape...), Bytes: ti.Size}
		if dt, ok := safetensors.ToTensorDType(ti.DType); ok {
			t.DType = dt.String()
			t.Sparsity = zeroFraction(dt, c.Data(name), n)
		}
		r.Initializers = append(r.Initializers, t)
		r.Parameters += n
		r.DTypes[t.DType] += n
	}
	return r, nil
}
