package calibration

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/image/draw"
)

// Preprocess turns a decoded image into model input. It follows torchvision's classic
// pipeline (Resize → CenterCrop → ToTensor → Normalize) so that numbers from a PyTorch
// recipe carry over; resampling is golang.org/x/image/draw, whose kernels widen when
// shrinking (antialiasing, as PIL does) but whose pixels still differ from PIL's by a
// rounding step here and there.
type Preprocess struct {
	// Resize is resize=HxW: the image is scaled to exactly H×W (aspect not kept).
	Resize [2]int
	// Size is size=S: the shorter side is scaled to S keeping the aspect ratio (the longer
	// side truncates, as torchvision does), then the centre S×S is cropped unless Crop is set.
	Size int
	// Crop is crop=S or crop=HxW: a centre crop after resizing (offsets rounded half to even,
	// as torchvision's CenterCrop does).
	Crop [2]int
	// Mean and Std normalise each channel: (pixel*Scale - Mean[c]) / Std[c]. One value
	// applies to every channel.
	Mean, Std []float32
	// Scale multiplies 8-bit pixel values first; 0 means 1/255 (pixels in [0,1]).
	Scale float64
	// Layout is "nchw" or "nhwc" ("chw"/"hwc" for inputs without a batch axis); empty means
	// guess from the input shape: channels are the axis of size 1 or 3.
	Layout string
	// BGR orders channels B,G,R (OpenCV-trained models) instead of R,G,B.
	BGR bool
	// Gray feeds one luma channel (ITU-R 601: 0.299 R + 0.587 G + 0.114 B, as PIL's "L").
	Gray bool
	// Interp names the resampling kernel: "bilinear" (default, like torchvision's Resize),
	// "catmullrom" (bicubic), "nearest", or "approxbilinear" (fast, no antialiasing).
	Interp string
}

var interpolators = map[string]draw.Interpolator{
	"bilinear":       draw.BiLinear,
	"catmullrom":     draw.CatmullRom,
	"bicubic":        draw.CatmullRom,
	"nearest":        draw.NearestNeighbor,
	"approxbilinear": draw.ApproxBiLinear,
}

func (p Preprocess) interpolator() draw.Interpolator {
	if p.Interp == "" {
		return draw.BiLinear
	}
	return interpolators[p.Interp]
}

// ParsePreprocess parses the --preprocess flag, e.g.
// "size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225,layout=nchw".
// Keys: size=S, resize=HxW, crop=S|HxW, mean=a/b/c, std=a/b/c, scale=1/255|F,
// layout=nchw|nhwc, order=rgb|bgr, gray, interp=bilinear|catmullrom|nearest|approxbilinear.
func ParsePreprocess(s string) (Preprocess, error) {
	var p Preprocess
	seen := map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		key, val, hasVal := strings.Cut(item, "=")
		key = strings.ToLower(strings.TrimSpace(key))
		val = strings.TrimSpace(val)
		if seen[key] {
			return p, fmt.Errorf("--preprocess %q: %s given twice", s, key)
		}
		seen[key] = true
		bad := func(want string) error {
			return fmt.Errorf("--preprocess %q: %s=%q: want %s", s, key, val, want)
		}
		if !hasVal && key != "gray" {
			return p, fmt.Errorf("--preprocess %q: %s needs a value (%s=...)", s, key, key)
		}
		var err error
		switch key {
		case "size":
			if hw, ok := parseHW(val); ok && strings.ContainsAny(val, "xX") {
				p.Resize = hw // size=HxW means an exact size
			} else if p.Size, err = strconv.Atoi(val); err != nil || p.Size <= 0 {
				return p, bad("a positive integer (shorter side) or HxW")
			}
		case "resize":
			var ok bool
			if p.Resize, ok = parseHW(val); !ok {
				return p, bad("HxW, e.g. 48x192")
			}
		case "crop":
			var ok bool
			if p.Crop, ok = parseHW(val); !ok {
				return p, bad("S or HxW")
			}
		case "mean", "std":
			v, err := parseFloats(val)
			if err != nil {
				return p, bad("numbers separated by '/', e.g. 0.485/0.456/0.406")
			}
			if key == "mean" {
				p.Mean = v
			} else {
				for _, x := range v {
					if x == 0 {
						return p, bad("non-zero values")
					}
				}
				p.Std = v
			}
		case "scale":
			if p.Scale, err = parseFraction(val); err != nil || p.Scale <= 0 {
				return p, bad("a positive number or fraction, e.g. 1/255")
			}
		case "layout":
			p.Layout = strings.ToLower(val)
			switch p.Layout {
			case "nchw", "nhwc", "chw", "hwc":
			default:
				return p, bad("nchw or nhwc")
			}
		case "order":
			switch strings.ToLower(val) {
			case "rgb":
			case "bgr":
				p.BGR = true
			default:
				return p, bad("rgb or bgr")
			}
		case "gray", "grey":
			if hasVal {
				if p.Gray, err = strconv.ParseBool(val); err != nil {
					return p, bad("true or false")
				}
			} else {
				p.Gray = true
			}
		case "interp":
			p.Interp = strings.ToLower(val)
			if _, ok := interpolators[p.Interp]; !ok {
				names := make([]string, 0, len(interpolators))
				for k := range interpolators {
					names = append(names, k)
				}
				sort.Strings(names)
				return p, bad(strings.Join(names, ", "))
			}
		default:
			return p, fmt.Errorf("--preprocess %q: unknown key %q (keys: size, resize, crop, mean, std, scale, layout, order, gray, interp)", s, key)
		}
	}
	if p.Size > 0 && p.Resize != [2]int{} {
		return p, fmt.Errorf("--preprocess %q: give size=S (shorter side) or resize=HxW, not both", s)
	}
	if len(p.Mean) > 1 && len(p.Std) > 1 && len(p.Mean) != len(p.Std) {
		return p, fmt.Errorf("--preprocess %q: %d means but %d stds", s, len(p.Mean), len(p.Std))
	}
	return p, nil
}

// parseHW reads "S" (square) or "HxW".
func parseHW(s string) ([2]int, bool) {
	hs, ws, found := strings.Cut(strings.ToLower(s), "x")
	if !found {
		ws = hs
	}
	h, err1 := strconv.Atoi(hs)
	w, err2 := strconv.Atoi(ws)
	if err1 != nil || err2 != nil || h <= 0 || w <= 0 {
		return [2]int{}, false
	}
	return [2]int{h, w}, true
}

func parseFloats(s string) ([]float32, error) {
	var out []float32
	for _, f := range strings.Split(s, "/") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 32)
		if err != nil {
			return nil, err
		}
		out = append(out, float32(v))
	}
	return out, nil
}

// parseFraction reads "1/255" or a plain number.
func parseFraction(s string) (float64, error) {
	if n, d, ok := strings.Cut(s, "/"); ok {
		a, err := strconv.ParseFloat(strings.TrimSpace(n), 64)
		if err != nil {
			return 0, err
		}
		b, err := strconv.ParseFloat(strings.TrimSpace(d), 64)
		if err != nil || b == 0 {
			return 0, fmt.Errorf("bad fraction %q", s)
		}
		return a / b, nil
	}
	return strconv.ParseFloat(s, 64)
}
