package quantize

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/optimctl/optimctl/pkg/quant"
	"github.com/optimctl/optimctl/pkg/tensor"
)

// weightQ is a quantized weight initializer: integer data, scale and zero point (one per
// channel along axis when perChannel), stored as initializers named after the weight.
type weightQ struct {
	q, scale, zp string
	scales       []float32
	zps          []int32
	axis         int
	perChannel   bool
	dq           string // output of its DequantizeLinear (QDQ), once made
}

// quantizeWeight quantizes a float initializer with the weight type: symmetric for int8
// (zero point 0, range [−127, 127]) and asymmetric for uint8, as onnxruntime.quantization
// does, per channel along axis when asked and the weight has that axis. Results are cached,
// so a weight shared by several nodes is stored once.
func (b *builder) quantizeWeight(name string, axis int, perChannel bool) (*weightQ, error) {
	key := fmt.Sprintf("%s|%d|%v", name, axis, perChannel)
	if w, ok := b.weights[key]; ok {
		return w, nil
	}
	if isFP8(b.o.WeightType) {
		return b.quantizeWeightFP8(key, name, axis, perChannel)
	}
	vals, dims, err := b.e.floats(name)
	if err != nil {
		return nil, err
	}
	if axis < 0 {
		axis += len(dims)
	}
	if len(dims) == 0 || axis < 0 || axis >= len(dims) || dims[axis] <= 1 {
		perChannel = false
	}
	dt := b.o.WeightType
	qt := quant.QType(dt)
	po := quant.ParamOptions{Symmetric: dt == tensor.Int8, ReduceRange: b.o.ReduceRange}
	qmin, qmax := qt.Range(po.ReduceRange, po.Symmetric)
	shape := make([]int, len(dims))
	for i, d := range dims {
		shape[i] = int(d)
	}
	var scales []float32
	var zps []int32
	if perChannel {
		if scales, zps, err = quant.ComputeParamsPerChannel(vals, shape, axis, qt, po); err != nil {
			return nil, fmt.Errorf("weight %q: %w", name, err)
		}
	} else {
		lo, hi := finiteMinMax(vals)
		s, z := quant.ComputeParamsWith(lo, hi, qt, po)
		scales, zps = []float32{s}, []int32{z}
	}
	q := make([]byte, len(vals))
	switch {
	case perChannel && dt == tensor.Int8:
		err = quant.QuantizePerChannel(int8s(q), vals, shape, axis, scales, zps, qmin, qmax)
	case perChannel:
		err = quant.QuantizePerChannel(q, vals, shape, axis, scales, zps, qmin, qmax)
	case dt == tensor.Int8:
		quant.QuantizeSlice(int8s(q), vals, scales[0], zps[0], qmin, qmax)
	default:
		quant.QuantizeSlice(q, vals, scales[0], zps[0], qmin, qmax)
	}
	if err != nil {
		return nil, fmt.Errorf("weight %q: %w", name, err)
	}
	ch := len(scales)
	w := &weightQ{scales: scales, zps: zps, axis: axis, perChannel: perChannel}
	w.q = b.e.addInit(name+"_quantized", &tensor.Tensor{DType: dt, Shape: dims, Data: q})
	pshape := []int64{}
	if perChannel {
		pshape = []int64{int64(ch)}
	}
	w.scale = b.e.addInit(name+"_scale", tensor.FromFloat32(pshape, scales))
	w.zp = b.e.addInit(name+"_zero_point", zeroPoints(dt, pshape, zps))
	b.weights[key] = w
	return w, nil
}

// int8s views bytes as int8 (same size, no copy).
func int8s(b []byte) []int8 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*int8)(unsafe.Pointer(&b[0])), len(b))
}

// zeroPoints stores zero points as the quantized type (int8, uint8 or int32).
func zeroPoints(dt tensor.DType, shape []int64, zps []int32) *tensor.Tensor {
	t := tensor.New(dt, shape)
	for i, z := range zps {
		switch dt {
		case tensor.Int32:
			binary.LittleEndian.PutUint32(t.Data[4*i:], uint32(z))
		default:
			t.Data[i] = byte(z)
		}
	}
	return t
}

// quantizeBias stores a bias as int32 with scale = input scale × weight scale (per
// channel), zero point 0: what QLinearConv takes and what ONNX Runtime's QDQ fusion
// expects in front of a Conv/Gemm. Values beyond int32 saturate.
func (b *builder) quantizeBias(name string, xScale float32, w *weightQ) (q, scale, zp string, scales []float32, err error) {
	vals, dims, err := b.e.floats(name)
	if err != nil {
		return "", "", "", nil, err
	}
	if len(dims) != 1 || (w.perChannel && len(w.scales) != len(vals)) {
		return "", "", "", nil, fmt.Errorf("bias %q: shape %v does not match %d weight channels", name, dims, len(w.scales))
	}
	scales = make([]float32, len(vals))
	data := make([]byte, 4*len(vals))
	for i, v := range vals {
		ws := w.scales[0]
		if w.perChannel {
			ws = w.scales[i]
		}
		s := xScale * ws
		if s == 0 || s-s != 0 {
			s = 1
		}
		scales[i] = s
		r := math.RoundToEven(float64(v / s))
		r = min(max(r, math.MinInt32), math.MaxInt32)
		binary.LittleEndian.PutUint32(data[4*i:], uint32(int32(r)))
	}
	q = b.e.addInit(name+"_quantized", &tensor.Tensor{DType: tensor.Int32, Shape: dims, Data: data})
	// A per-tensor weight gives one bias scale; store it as a scalar so the pattern matches
	// ORT's, else one scale per channel.
	if !w.perChannel {
		scale = b.e.addInit(name+"_scale", tensor.FromFloat32([]int64{}, scales[:1]))
		zp = b.e.addInit(name+"_zero_point", tensor.New(tensor.Int32, []int64{}))
	} else {
		scale = b.e.addInit(name+"_scale", tensor.FromFloat32(dims, scales))
		zp = b.e.addInit(name+"_zero_point", tensor.New(tensor.Int32, dims))
	}
	return q, scale, zp, scales, nil
}
