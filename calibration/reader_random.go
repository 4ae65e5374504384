package calibration

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"

	"github.com/optimctl/optimctl/pkg/tensor"
)

// random generates N samples from the input signature. The generator is a PCG seeded from
// Options.Seed and restarted by reset, so every run, and every pass of a run, sees the same
// bytes: a benchmark or a calibration table built on random data is reproducible.
//
// Values: floats uniform in [lo,hi) (default [0,1)); 8-bit integers over their whole range
// and wider integers in [0,10) by default (small non-negative, safe as ids or indices), or
// in [lo,hi) when given; bools 0 or 1.
type random struct {
	name   string
	n      int
	seed   uint64
	lo, hi float64
	ranged bool
	ins    []tensor.Spec
	shapes [][]int64
	rng    *rand.Rand
	i      int
}

// pcgStream is the PCG stream constant; fixed so that a seed alone names the data.
const pcgStream = 0x9e3779b97f4a7c15

func openRandom(spec string, ins []tensor.Spec, seed uint64) (*random, error) {
	parts := strings.Split(strings.TrimPrefix(spec, "random:"), ":")
	r := &random{name: spec, seed: seed, hi: 1, ins: ins}
	n, err := strconv.Atoi(parts[0])
	if err != nil || n <= 0 || (len(parts) != 1 && len(parts) != 3) {
		return nil, fmt.Errorf("%s: want random:N or random:N:LO:HI with N > 0", spec)
	}
	r.n = n
	if len(parts) == 3 {
		lo, err1 := strconv.ParseFloat(parts[1], 64)
		hi, err2 := strconv.ParseFloat(parts[2], 64)
		if err1 != nil || err2 != nil || !(lo < hi) || math.IsInf(hi-lo, 0) {
			return nil, fmt.Errorf("%s: LO:HI must be finite numbers with LO < HI", spec)
		}
		r.lo, r.hi, r.ranged = lo, hi, true
	}
	for _, in := range ins {
		switch {
		case isFloatKind(in.DType), isIntKind(in.DType), in.DType == tensor.Bool:
		default:
			return nil, fmt.Errorf("%s: input %q: cannot generate %s data", spec, in.Name, in.DType)
		}
		shape := append([]int64(nil), in.Shape...)
		for d, v := range shape {
			if d == 0 && v < 0 {
				shape[0] = 1 // one sample; batching stacks along this axis
				continue
			}
			if v < 0 {
				hint := append([]int64(nil), in.Shape...)
				if hint[0] < 0 {
					hint[0] = 1
				}
				parts := strings.Split(joinDims(hint), ",")
				for i, h := range hint {
					if h < 0 {
						parts[i] = "D"
					}
				}
				return nil, fmt.Errorf("%s: input %q: dimension %d%s of %s is dynamic; give it with --shape %s=%s",
					spec, in.Name, d, dimName(in, d), formatSpec(in), in.Name, strings.Join(parts, ","))
			}
		}
		r.shapes = append(r.shapes, shape)
	}
	r.reset()
	return r, nil
}

func dimName(in tensor.Spec, d int) string {
	if d < len(in.DimNames) && in.DimNames[d] != "" {
		return " (" + in.DimNames[d] + ")"
	}
	return ""
}

func (r *random) next() (Sample, string, error) {
	if r.i >= r.n {
		return nil, "", io.EOF
	}
	smp := make(Sample, len(r.ins))
	for k, in := range r.ins {
		smp[in.Name] = r.generate(in.DType, r.shapes[k])
	}
	where := fmt.Sprintf("%s (sample %d)", r.name, r.i)
	r.i++
	return smp, where, nil
}

func (r *random) generate(dt tensor.DType, shape []int64) *tensor.Tensor {
	n := int(tensor.NumElements(shape))
	t := &tensor.Tensor{DType: dt, Shape: append([]int64(nil), shape...)}
	if isFloatKind(dt) {
		v := make([]float32, n)
		lo, span := float32(r.lo), float32(r.hi-r.lo)
		for i := range v {
			v[i] = lo + span*r.rng.Float32()
		}
		t.Data = fromFloat32(dt, v)
		return t
	}
	lo, hi := int64(0), int64(10)
	switch dt {
	case tensor.Bool:
		lo, hi = 0, 2
	case tensor.Uint8:
		lo, hi = 0, 256
	case tensor.Int8:
		lo, hi = -128, 128
	}
	if r.ranged && dt != tensor.Bool {
		lo, hi = int64(math.Ceil(r.lo)), int64(math.Ceil(r.hi))
		tlo, thi := intRange(dt)
		lo, hi = max(lo, tlo), min(hi, thi)
		if hi <= lo {
			hi = lo + 1
		}
	}
	size := dt.Bits() / 8
	t.Data = make([]byte, n*size)
	var b [8]byte
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint64(b[:], uint64(lo+r.rng.Int64N(hi-lo)))
		copy(t.Data[i*size:], b[:size])
	}
	return t
}

// intRange is the half-open range of values an integer type holds, clipped to int64.
func intRange(dt tensor.DType) (int64, int64) {
	bits := dt.Bits()
	switch dt {
	case tensor.Uint8, tensor.Uint16, tensor.Uint32:
		return 0, 1 << bits
	case tensor.Uint64:
		return 0, math.MaxInt64
	case tensor.Int64:
		return math.MinInt64, math.MaxInt64
	}
	return -1 << (bits - 1), 1 << (bits - 1)
}

func (r *random) count() int { return r.n }

func (r *random) batchAxes() map[string]bool {
	axes := map[string]bool{}
	for _, in := range r.ins {
		// A fixed first dimension is generated whole: it may not be a batch axis at all
		// (e.g. a [3] scale input), so it is never stacked.
		axes[in.Name] = len(in.Shape) > 0 && in.Shape[0] < 0
	}
	return axes
}

func (r *random) reset() error {
	r.rng = rand.New(rand.NewPCG(r.seed, pcgStream))
	r.i = 0
	return nil
}

func (r *random) close() error { return nil }
