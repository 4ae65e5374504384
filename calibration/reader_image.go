package calibration

import (
	"fmt"
	"image"
	"image/color"
	stddraw "image/draw"
	_ "image/jpeg" // register decoders for image.Decode
	_ "image/png"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/optimctl/optimctl/pkg/tensor"
)

func isImage(p string) bool {
	switch strings.ToLower(filepath.Ext(p)) {
	case ".png", ".jpg", ".jpeg":
		return true
	}
	return false
}

// images feeds image files, sorted by name, to a single image input: decoded, resized,
// cropped and normalised by Preprocess, laid out NCHW or NHWC, as float (or raw uint8
// when the input is uint8). Alpha is dropped, not blended, as PIL's convert("RGB") does.
type images struct {
	name  string
	paths []string
	in    tensor.Spec
	pp    Preprocess
	nhwc  bool
	batch bool // rank-4 input: [1,...] per image
	c     int  // channels fed: 1 or 3
	h, w  int  // static spatial size from the input spec, or -1
	lut   [3][256]float32
	i     int
}

func openImages(name string, paths []string, ins []tensor.Spec, pp *Preprocess) (*images, error) {
	if len(ins) != 1 {
		return nil, fmt.Errorf("%s: images feed a single input, but the model has %d (%s); use .npz data", name, len(ins), inputNames(ins))
	}
	in := ins[0]
	r := &images{name: name, paths: paths, in: in}
	if pp != nil {
		r.pp = *pp
	}
	p := &r.pp
	rank := len(in.Shape)
	if rank != 3 && rank != 4 {
		return nil, fmt.Errorf("%s: input %q %s has rank %d; images feed rank-4 (NCHW/NHWC) or rank-3 inputs", name, in.Name, formatSpec(in), rank)
	}
	r.batch = rank == 4
	switch in.DType {
	case tensor.Float32, tensor.Float16, tensor.Float64, tensor.BFloat16:
	case tensor.Uint8:
		if p.Mean != nil || p.Std != nil || p.Scale != 0 {
			return nil, fmt.Errorf("%s: input %q is uint8: raw pixels are fed, so mean=, std= and scale= do not apply", name, in.Name)
		}
	default:
		return nil, fmt.Errorf("%s: input %q is %s; images feed float or uint8 inputs", name, in.Name, in.DType)
	}
	sp := in.Shape[rank-3:] // C,H,W or H,W,C
	switch p.Layout {
	case "nchw", "chw":
	case "nhwc", "hwc":
		r.nhwc = true
	default:
		r.nhwc = !(sp[0] == 1 || sp[0] == 3) && (sp[2] == 1 || sp[2] == 3)
	}
	if want := map[bool]string{true: "hwc", false: "chw"}[r.nhwc]; p.Layout != "" && !strings.HasSuffix(p.Layout, want) {
		return nil, fmt.Errorf("%s: layout=%s does not match input %q of rank %d", name, p.Layout, in.Name, rank)
	}
	cd, hd, wd := sp[0], sp[1], sp[2]
	if r.nhwc {
		cd, hd, wd = sp[2], sp[0], sp[1]
	}
	r.h, r.w = int(hd), int(wd)
	switch {
	case cd < 0 && p.Gray:
		r.c = 1
	case cd < 0:
		r.c = 3
	case cd == 1 || cd == 3:
		r.c = int(cd)
	default:
		return nil, fmt.Errorf("%s: input %q %s has %d channels; images give 1 or 3", name, in.Name, formatSpec(in), cd)
	}
	if p.Gray && r.c == 3 {
		return nil, fmt.Errorf("%s: gray was asked for, but input %q %s takes 3 channels", name, in.Name, formatSpec(in))
	}
	for _, v := range [][]float32{p.Mean, p.Std} {
		if len(v) > 1 && len(v) != r.c {
			return nil, fmt.Errorf("%s: %d mean/std values for %d channels of input %q", name, len(v), r.c, in.Name)
		}
	}
	// Every channel's transform of an 8-bit value is precomputed: the same float32
	// operations torchvision performs ((x/255 - mean) / std), once per value, not per pixel.
	scale := p.Scale
	if scale == 0 {
		scale = 1.0 / 255
	}
	for c := 0; c < r.c; c++ {
		m, s := pick(p.Mean, c, 0), pick(p.Std, c, 1)
		for v := 0; v < 256; v++ {
			r.lut[c][v] = (float32(float64(v)*scale) - m) / s
		}
	}
	// Decode the first image now so that a wrong folder or size fails at Open.
	if _, _, err := r.next(); err != nil {
		return nil, err
	}
	r.i = 0
	return r, nil
}

func pick(v []float32, c int, def float32) float32 {
	switch len(v) {
	case 0:
		return def
	case 1:
		return v[0]
	}
	return v[c]
}

func (r *images) next() (Sample, string, error) {
	if r.i >= len(r.paths) {
		return nil, "", io.EOF
	}
	path := r.paths[r.i]
	t, err := r.load(path)
	if err != nil {
		return nil, "", err
	}
	r.i++
	return Sample{r.in.Name: t}, path, nil
}

func (r *images) load(path string) (*tensor.Tensor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	img, _, err := image.Decode(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("%s: cannot decode image: %v", path, err)
	}
	px, err := r.pp.apply(path, img, r.h, r.w)
	if err != nil {
		return nil, err
	}
	b := px.Bounds()
	h, w := b.Dy(), b.Dx()
	if (r.h >= 0 && h != r.h) || (r.w >= 0 && w != r.w) {
		return nil, fmt.Errorf("%s: input %q: preprocessed image is %dx%d (HxW), model wants %s; set size=, resize= or crop= in --preprocess",
			path, r.in.Name, h, w, formatSpec(r.in))
	}
	return r.layout(px), nil
}

// apply resizes and crops img to the final pixels. h and w are the input's static size
// (-1 when dynamic), used when neither size= nor resize= is given.
func (p Preprocess) apply(path string, img image.Image, h, w int) (*image.RGBA, error) {
	src := toRGB(img)
	sw, sh := src.Rect.Dx(), src.Rect.Dy()
	rw, rh := sw, sh
	switch {
	case p.Resize != [2]int{}:
		rh, rw = p.Resize[0], p.Resize[1]
	case p.Size > 0:
		if sw <= sh {
			rw, rh = p.Size, p.Size*sh/sw
		} else {
			rh, rw = p.Size, p.Size*sw/sh
		}
	case p.Crop == [2]int{} && h > 0 && w > 0:
		rh, rw = h, w
	}
	ch, cw := rh, rw
	switch {
	case p.Crop != [2]int{}:
		ch, cw = p.Crop[0], p.Crop[1]
	case p.Size > 0:
		ch, cw = p.Size, p.Size
	}
	if ch > rh || cw > rw {
		return nil, fmt.Errorf("%s: crop %dx%d is larger than the %dx%d resized image", path, ch, cw, rh, rw)
	}
	if rw != sw || rh != sh {
		dst := image.NewRGBA(image.Rect(0, 0, rw, rh))
		p.interpolator().Scale(dst, dst.Rect, src, src.Rect, stddraw.Src, nil)
		src = dst
	}
	if ch == rh && cw == rw {
		return src, nil
	}
	top := int(math.RoundToEven(float64(rh-ch) / 2))
	left := int(math.RoundToEven(float64(rw-cw) / 2))
	return src.SubImage(image.Rect(left, top, left+cw, top+ch)).(*image.RGBA), nil
}

// toRGB converts any decoded image to opaque 8-bit RGB (stored as RGBA, alpha 255) with
// its origin at (0,0), so that the scalers and the layout code have one fast path.
func toRGB(img image.Image) *image.RGBA {
	b := img.Bounds()
	dst := image.NewRGBA(image.Rect(0, 0, b.Dx(), b.Dy()))
	switch s := img.(type) {
	case *image.YCbCr, *image.Gray:
		stddraw.Draw(dst, dst.Rect, img, b.Min, stddraw.Src)
		return dst
	case *image.NRGBA:
		for y := 0; y < b.Dy(); y++ {
			row := s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):]
			out := dst.Pix[y*dst.Stride:]
			for x := 0; x < b.Dx(); x++ {
				copy(out[4*x:4*x+3], row[4*x:4*x+3])
				out[4*x+3] = 0xff
			}
		}
		return dst
	case *image.RGBA:
		opaque := true
		for y := 0; y < b.Dy() && opaque; y++ {
			row := s.Pix[s.PixOffset(b.Min.X, b.Min.Y+y):]
			copy(dst.Pix[y*dst.Stride:y*dst.Stride+4*b.Dx()], row)
			for x := 0; x < b.Dx(); x++ {
				if row[4*x+3] != 0xff {
					opaque = false
					break
				}
			}
		}
		if opaque {
			return dst
		}
	}
	for y := 0; y < b.Dy(); y++ {
		for x := 0; x < b.Dx(); x++ {
			c := color.NRGBAModel.Convert(img.At(b.Min.X+x, b.Min.Y+y)).(color.NRGBA)
			i := y*dst.Stride + 4*x
			dst.Pix[i], dst.Pix[i+1], dst.Pix[i+2], dst.Pix[i+3] = c.R, c.G, c.B, 0xff
		}
	}
	return dst
}

// layout writes the pixels as the input's tensor: channels first or last, RGB or BGR, or
// one luma channel; float through the per-channel table, or the raw bytes for uint8.
func (r *images) layout(px *image.RGBA) *tensor.Tensor {
	b := px.Rect
	h, w, c := b.Dy(), b.Dx(), r.c
	var shape []int64
	if r.nhwc {
		shape = []int64{int64(h), int64(w), int64(c)}
	} else {
		shape = []int64{int64(c), int64(h), int64(w)}
	}
	if r.batch {
		shape = append([]int64{1}, shape...)
	}
	n := h * w * c
	// idx is where channel ch of pixel (y,x) goes.
	idx := func(y, x, ch int) int { return (ch*h+y)*w + x }
	if r.nhwc {
		idx = func(y, x, ch int) int { return (y*w+x)*c + ch }
	}
	var u8 []byte
	var f32 []float32
	var out *tensor.Tensor
	switch r.in.DType {
	case tensor.Uint8:
		out = &tensor.Tensor{DType: tensor.Uint8, Shape: shape, Data: make([]byte, n)}
		u8 = out.Data
	case tensor.Float32:
		out = tensor.New(tensor.Float32, shape)
		f32 = out.Float32s()
	default:
		f32 = make([]float32, n)
	}
	for y := 0; y < h; y++ {
		row := px.Pix[px.PixOffset(b.Min.X, b.Min.Y+y):]
		for x := 0; x < w; x++ {
			p := row[4*x : 4*x+3]
			for ch := 0; ch < c; ch++ {
				var v uint8
				switch {
				case c == 1:
					// PIL's "L": 16-bit fixed-point ITU-R 601 luma; exact for gray sources.
					v = uint8((19595*uint32(p[0]) + 38470*uint32(p[1]) + 7471*uint32(p[2]) + 1<<15) >> 16)
				case r.pp.BGR:
					v = p[2-ch]
				default:
					v = p[ch]
				}
				if u8 != nil {
					u8[idx(y, x, ch)] = v
				} else {
					f32[idx(y, x, ch)] = r.lut[ch][v]
				}
			}
		}
	}
	if out != nil {
		return out
	}
	return &tensor.Tensor{DType: r.in.DType, Shape: shape, Data: fromFloat32(r.in.DType, f32)}
}

func (r *images) count() int                 { return len(r.paths) }
func (r *images) batchAxes() map[string]bool { return map[string]bool{r.in.Name: r.batch} }
func (r *images) reset() error               { r.i = 0; return nil }
func (r *images) close() error               { return nil }
