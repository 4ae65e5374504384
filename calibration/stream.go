package calibration

import (
	"fmt"
	"io"
	"slices"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// inner is what each format reader implements. Readers yield one sample at a time and
// know nothing of Limit or Batch; stream adds both once for every format.
type inner interface {
	// next returns the next sample and where it came from (a file name, for errors).
	next() (Sample, string, error)
	// count is the number of samples, or -1 when unknown.
	count() int
	reset() error
	close() error
	// batchAxes tells, per input, whether the reader's samples carry a batch axis of 1
	// that batching may stack along. nil means the data is fed exactly as stored.
	batchAxes() map[string]bool
}

// expecter is implemented by readers that carry reference outputs.
type expecter interface {
	expected() map[string]*tensor.Tensor
}

// stream applies Limit and Batch over a reader.
type stream struct {
	src    inner
	ins    []tensor.Spec
	batch  int
	drop   bool // drop a short last batch (an input has a fixed batch dimension)
	limit  int
	read   int // samples taken from src since the last reset
	closed bool
}

// expectedStream is a stream over a reader with reference outputs; a separate type so that
// a WithExpected assertion succeeds only for data that can have them.
type expectedStream struct{ *stream }

func (s expectedStream) Expected() map[string]*tensor.Tensor {
	return s.src.(expecter).expected()
}

func wrap(src inner, ins []tensor.Spec, opts Options) (Source, error) {
	b, drop, err := effectiveBatch(ins, src.batchAxes(), opts.Batch)
	if err != nil {
		return nil, err
	}
	s := &stream{src: src, ins: ins, batch: b, drop: drop, limit: opts.Limit}
	if _, ok := src.(expecter); ok {
		return expectedStream{s}, nil
	}
	return s, nil
}

// effectiveBatch decides how many samples one Next stacks, and checks it against inputs
// whose batch dimension is fixed, once, so readers can skip dimension 0 per sample.
func effectiveBatch(ins []tensor.Spec, axes map[string]bool, want int) (int, bool, error) {
	if axes == nil {
		if want > 1 {
			return 0, false, fmt.Errorf("ONNX test data is fed as stored, one data set per run; Batch %d is not possible", want)
		}
		return 1, false, nil
	}
	b := want
	fixed := false
	if b == 0 {
		b = 1
		for _, in := range ins {
			if axes[in.Name] && in.Shape[0] >= 0 {
				if !fixed {
					b = int(in.Shape[0])
				}
				fixed = true
			}
		}
	}
	for _, in := range ins {
		if !axes[in.Name] {
			if b > 1 {
				return 0, false, fmt.Errorf("input %q (%s) has no batch axis in this data, so %d samples cannot be stacked", in.Name, formatSpec(in), b)
			}
			continue
		}
		if d := in.Shape[0]; d >= 0 {
			fixed = true
			if d != int64(b) {
				return 0, false, fmt.Errorf("input %q has a fixed batch dimension of %d (%s), but batches hold %d samples; set Batch to %d", in.Name, d, formatSpec(in), b, d)
			}
		}
	}
	return b, fixed && b > 1, nil
}

func (s *stream) Next() (Sample, error) {
	if s.closed {
		return nil, fmt.Errorf("calibration: Next on a closed source")
	}
	if s.batch == 1 {
		if s.limit > 0 && s.read >= s.limit {
			return nil, io.EOF
		}
		smp, _, err := s.src.next()
		if err != nil {
			return nil, err
		}
		s.read++
		return smp, nil
	}
	return s.nextBatch()
}

// nextBatch copies samples into the batch as they arrive, so only the batch and one
// sample are alive at a time.
func (s *stream) nextBatch() (Sample, error) {
	var out Sample
	var first map[string][]int64 // per-sample shape of the batch's first sample
	n := 0
	for n < s.batch {
		if s.limit > 0 && s.read >= s.limit {
			break
		}
		smp, where, err := s.src.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		s.read++
		if out == nil {
			out, first = Sample{}, map[string][]int64{}
			for name, t := range smp {
				shape := append([]int64{int64(s.batch) * t.Shape[0]}, t.Shape[1:]...)
				out[name] = &tensor.Tensor{DType: t.DType, Shape: shape, Data: make([]byte, int64(s.batch)*int64(len(t.Data)))}
				first[name] = t.Shape
			}
		}
		for name, t := range smp {
			if !slices.Equal(t.Shape, first[name]) {
				return nil, fmt.Errorf("%s: input %q: shape %s differs from %s earlier in the batch; give a fixed size to stack samples",
					where, name, formatShape(t.Shape), formatShape(first[name]))
			}
			copy(out[name].Data[n*len(t.Data):], t.Data)
		}
		n++
	}
	if n == 0 || (n < s.batch && s.drop) {
		return nil, io.EOF
	}
	if n < s.batch {
		for name, t := range out {
			per := int64(len(t.Data)) / int64(s.batch)
			t.Data = t.Data[:int64(n)*per]
			t.Shape[0] = int64(n) * first[name][0]
		}
	}
	return out, nil
}

func (s *stream) Len() int {
	n := s.src.count()
	if n < 0 {
		return -1
	}
	if s.limit > 0 && s.limit < n {
		n = s.limit
	}
	if s.drop {
		return n / s.batch
	}
	return (n + s.batch - 1) / s.batch
}

func (s *stream) Reset() error {
	if s.closed {
		return fmt.Errorf("calibration: Reset on a closed source")
	}
	s.read = 0
	return s.src.reset()
}

func (s *stream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	return s.src.close()
}
