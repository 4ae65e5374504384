package calibration

import (
	"bytes"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
	"github.com/optimctl/optimctl/pkg/testassets"
)

func writePNG(t testing.TB, path string, img image.Image) string {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// rgbImage builds a W×H image from rows of (R,G,B) pixels.
func rgbImage(rows [][][3]uint8) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, len(rows[0]), len(rows)))
	for y, row := range rows {
		for x, p := range row {
			img.SetRGBA(x, y, color.RGBA{p[0], p[1], p[2], 255})
		}
	}
	return img
}

// norm is torchvision's arithmetic in float32: (p/255 - mean) / std.
func norm(p uint8, mean, std float32) float32 { return (float32(p)/255 - mean) / std }

func TestImagePixels(t *testing.T) {
	dir := t.TempDir()
	// 2×2: row 0 = (0,51,102) (255,0,0); row 1 = (10,20,30) (200,100,50).
	px := [][][3]uint8{{{0, 51, 102}, {255, 0, 0}}, {{10, 20, 30}, {200, 100, 50}}}
	tiny := writePNG(t, filepath.Join(dir, "tiny.png"), rgbImage(px))
	// 4 wide × 2 tall, columns 0..3 = gray 10, 20, 30, 40.
	wide := writePNG(t, filepath.Join(dir, "wide.png"), rgbImage([][][3]uint8{
		{{10, 10, 10}, {20, 20, 20}, {30, 30, 30}, {40, 40, 40}},
		{{11, 11, 11}, {21, 21, 21}, {31, 31, 31}, {41, 41, 41}}}))
	flat := image.NewRGBA(image.Rect(0, 0, 5, 4))
	for i := 0; i < len(flat.Pix); i += 4 {
		copy(flat.Pix[i:], []byte{90, 45, 200, 255})
	}
	uniform := writePNG(t, filepath.Join(dir, "flat.png"), flat)

	cases := []struct {
		name  string
		data  string
		in    tensor.Spec
		pre   string
		shape []int64
		want  []float32
	}{
		{"nchw mean/std, 2x2 stays 2x2", tiny, spec("x", tensor.Float32, 1, 3, 2, 2), "mean=0.5,std=0.5/0.25/0.5",
			[]int64{1, 3, 2, 2}, []float32{
				-1, 1, norm(10, .5, .5), norm(200, .5, .5), // R plane, row-major
				norm(51, .5, .25), -2, norm(20, .5, .25), norm(100, .5, .25), // G
				norm(102, .5, .5), -1, norm(30, .5, .5), norm(50, .5, .5)}}, // B
		{"nhwc guessed from shape", tiny, spec("x", tensor.Float32, -1, 2, 2, 3), "",
			[]int64{1, 2, 2, 3}, []float32{0, 51. / 255, 102. / 255, 1, 0, 0, 10. / 255, 20. / 255, 30. / 255, 200. / 255, 100. / 255, 50. / 255}},
		{"bgr, scale=1", tiny, spec("x", tensor.Float32, 1, 3, 2, 2), "order=bgr,scale=1",
			[]int64{1, 3, 2, 2}, []float32{102, 0, 30, 50, 51, 0, 20, 100, 0, 255, 10, 200}},
		// PIL "L" by hand: (19595 R + 38470 G + 7471 B + 32768) >> 16.
		{"gray luma", tiny, spec("x", tensor.Float32, 1, 1, 2, 2), "gray,scale=1",
			[]int64{1, 1, 2, 2}, []float32{42, 76, 18, 124}},
		{"uint8 input gets raw pixels, chw rank 3", tiny, spec("x", tensor.Uint8, 3, 2, 2), "",
			[]int64{3, 2, 2}, []float32{0, 255, 10, 200, 51, 0, 20, 100, 102, 0, 30, 50}},
		{"size=2 crops the centre of 4x2", wide, spec("x", tensor.Float32, 1, 1, -1, -1), "size=2,scale=1",
			[]int64{1, 1, 2, 2}, []float32{20, 30, 21, 31}},
		{"crop=1x2 from the static size", wide, spec("x", tensor.Float32, 1, 1, 1, 2), "crop=1x2,scale=1",
			[]int64{1, 1, 1, 2}, []float32{20, 30}},
		{"nearest 2x upscale", tiny, spec("x", tensor.Float32, 1, 1, 4, 4), "resize=4x4,interp=nearest,gray,scale=1",
			[]int64{1, 1, 4, 4}, []float32{42, 42, 76, 76, 42, 42, 76, 76, 18, 18, 124, 124, 18, 18, 124, 124}},
		{"bilinear shrink of a flat image stays flat", uniform, spec("x", tensor.Float32, 1, 3, 2, 3), "scale=1",
			[]int64{1, 3, 2, 3}, []float32{90, 90, 90, 90, 90, 90, 45, 45, 45, 45, 45, 45, 200, 200, 200, 200, 200, 200}},
		{"float16 input", tiny, spec("x", tensor.Float16, 1, 1, 2, 2), "gray,scale=1",
			[]int64{1, 1, 2, 2}, []float32{42, 76, 18, 124}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := drain(t, open(t, c.data, []tensor.Spec{c.in}, Options{Preprocess: c.pre}))
			if len(got) != 1 {
				t.Fatalf("%d samples", len(got))
			}
			v := got[0]["x"]
			if v.DType != c.in.DType || !reflect.DeepEqual(v.Shape, c.shape) {
				t.Fatalf("got %s%v, want %s%v", v.DType, v.Shape, c.in.DType, c.shape)
			}
			if g := f32s(t, v); !equalF32(g, c.want) {
				t.Errorf("values\n got %v\nwant %v", g, c.want)
			}
		})
	}
}

// photos copies a few real photos into a folder, in an order that sorting must fix.
func photos(t testing.TB, names ...string) string {
	src := testassets.Path(t, testassets.Images)
	dir := t.TempDir()
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, n), b, 0o644)
	}
	return dir
}

func TestImageFolderRealPhotos(t *testing.T) {
	dir := photos(t, "coffee.png", "astronaut.png", "camera.png", "chelsea.png")
	cls := tensor.Spec{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 3, 48, 192}, DimNames: []string{"N"}}
	pre := "mean=0.5,std=0.5"
	src := open(t, dir, []tensor.Spec{cls}, Options{Preprocess: pre})
	if src.Len() != 4 {
		t.Fatalf("Len = %d", src.Len())
	}
	got := drain(t, src)
	if len(got) != 4 {
		t.Fatalf("%d samples", len(got))
	}
	plane := 48 * 192
	for i, s := range got {
		v := s["x"]
		if !reflect.DeepEqual(v.Shape, []int64{1, 3, 48, 192}) {
			t.Fatalf("sample %d shape %v", i, v.Shape)
		}
		for _, f := range v.Float32s() {
			if f < -1 || f > 1 {
				t.Fatalf("sample %d value %v outside [-1,1]", i, f)
			}
		}
	}
	// Sorted by name: astronaut, camera, chelsea, coffee. camera is gray: R = G = B.
	cam := got[1]["x"].Float32s()
	if !equalF32(cam[:plane], cam[plane:2*plane]) || !equalF32(cam[:plane], cam[2*plane:]) {
		t.Error("gray photo: channels differ")
	}
	if ast := got[0]["x"].Float32s(); equalF32(ast[:plane], ast[plane:2*plane]) {
		t.Error("colour photo: R and G planes identical")
	}

	// The real classifier's signature is [?,3,?,?]; --shape x=1,3,48,192 gives the same data.
	real := tensor.Spec{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 3, -1, -1}}
	again := drain(t, open(t, dir, []tensor.Spec{real}, Options{Preprocess: pre, Shapes: map[string][]int64{"x": {1, 3, 48, 192}}}))
	for i := range got {
		if !bytes.Equal(again[i]["x"].Data, got[i]["x"].Data) {
			t.Errorf("sample %d differs with --shape", i)
		}
	}

	// Batch=4 stacks the same four samples; Reset replays them.
	b := open(t, dir, []tensor.Spec{cls}, Options{Preprocess: pre, Batch: 4})
	for pass := 0; pass < 2; pass++ {
		batches := drain(t, b)
		if len(batches) != 1 || !reflect.DeepEqual(batches[0]["x"].Shape, []int64{4, 3, 48, 192}) {
			t.Fatalf("batches %d, shape %v", len(batches), batches[0]["x"].Shape)
		}
		data := batches[0]["x"].Data
		for i := range got {
			if !bytes.Equal(data[i*3*plane*4:(i+1)*3*plane*4], got[i]["x"].Data) {
				t.Errorf("pass %d: batch slice %d differs from sample %d", pass, i, i)
			}
		}
		b.Reset()
	}
}

func TestImageNativeSizeAndAlpha(t *testing.T) {
	dir := photos(t, "camera.png", "logo.png")
	// Dynamic H, W and no size: pixels pass through unscaled, so values are exact.
	in := spec("x", tensor.Float32, -1, 3, -1, -1)
	src := open(t, filepath.Join(dir, "camera.png"), []tensor.Spec{in}, Options{})
	s := drain(t, src)[0]["x"]
	if !reflect.DeepEqual(s.Shape, []int64{1, 3, 512, 512}) {
		t.Fatalf("shape %v", s.Shape)
	}
	f, _ := os.Open(filepath.Join(dir, "camera.png"))
	img, _ := png.Decode(f)
	f.Close()
	gray := img.(*image.Gray)
	for _, p := range [][2]int{{0, 0}, {10, 20}, {300, 511}, {511, 7}} {
		y, x := p[0], p[1]
		want := float32(gray.GrayAt(x, y).Y) / 255
		for c := 0; c < 3; c++ {
			if g := s.Float32s()[(c*512+y)*512+x]; g != want {
				t.Errorf("camera (%d,%d) channel %d = %v, want %v", y, x, c, g, want)
			}
		}
	}

	// logo.png decodes as NRGBA (opaque here): pixels pass through the NRGBA path exactly.
	s = drain(t, open(t, filepath.Join(dir, "logo.png"), []tensor.Spec{spec("x", tensor.Uint8, 1, -1, -1, 3)}, Options{}))[0]["x"]
	f, _ = os.Open(filepath.Join(dir, "logo.png"))
	img, _ = png.Decode(f)
	f.Close()
	nrgba := img.(*image.NRGBA)
	w := nrgba.Rect.Dx()
	for _, p := range [][2]int{{0, 0}, {250, 250}, {100, 400}, {499, 499}} {
		y, x := p[0], p[1]
		i := nrgba.PixOffset(x, y)
		if got := s.Data[(y*w+x)*3 : (y*w+x)*3+3]; !bytes.Equal(got, nrgba.Pix[i:i+3]) {
			t.Errorf("logo (%d,%d) = %v, want %v", y, x, got, nrgba.Pix[i:i+3])
		}
	}

	// Translucent pixels keep their colour: alpha is dropped (PIL convert("RGB")), not blended.
	tr := image.NewNRGBA(image.Rect(0, 0, 3, 1))
	copy(tr.Pix, []byte{200, 100, 50, 128, 10, 20, 30, 0, 7, 8, 9, 255})
	s = drain(t, open(t, writePNG(t, filepath.Join(t.TempDir(), "alpha.png"), tr), []tensor.Spec{spec("x", tensor.Uint8, 1, 1, 3, 3)}, Options{Preprocess: "layout=nhwc"}))[0]["x"]
	if want := []byte{200, 100, 50, 10, 20, 30, 7, 8, 9}; !bytes.Equal(s.Data, want) {
		t.Errorf("translucent pixels = %v, want %v", s.Data, want)
	}
}

func TestImageJPEG(t *testing.T) {
	dir := photos(t, "chelsea.png")
	f, _ := os.Open(filepath.Join(dir, "chelsea.png"))
	img, err := png.Decode(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	jdir := t.TempDir()
	var buf bytes.Buffer
	jpeg.Encode(&buf, img, &jpeg.Options{Quality: 95})
	os.WriteFile(filepath.Join(jdir, "chelsea.JPG"), buf.Bytes(), 0o644)

	in := spec("x", tensor.Float32, 1, 3, 224, 224)
	pre := "size=224,mean=0.485/0.456/0.406,std=0.229/0.224/0.225"
	fromPNG := drain(t, open(t, dir, []tensor.Spec{in}, Options{Preprocess: pre}))[0]["x"].Float32s()
	fromJPG := drain(t, open(t, jdir, []tensor.Spec{in}, Options{Preprocess: pre}))[0]["x"].Float32s()
	var sum float64
	for i := range fromPNG {
		sum += math.Abs(float64(fromPNG[i] - fromJPG[i]))
	}
	// Quality-95 JPEG against the lossless original, in normalised units (1/255/0.226 ≈ 0.017
	// per 8-bit step): a correct decode is within a few steps on average.
	if mean := sum / float64(len(fromPNG)); mean > 0.05 || mean == 0 {
		t.Errorf("mean |PNG - JPEG| = %.4f, want in (0, 0.05]", mean)
	}
}

func TestImageErrors(t *testing.T) {
	dir := t.TempDir()
	tiny := writePNG(t, filepath.Join(dir, "tiny.png"), rgbImage([][][3]uint8{{{1, 2, 3}, {4, 5, 6}}}))
	bad := filepath.Join(dir, "broken.png")
	os.WriteFile(bad, []byte("\x89PNG\r\n\x1a\nnot really"), 0o644)
	x := tensor.Spec{Name: "x", DType: tensor.Float32, Shape: []int64{-1, 3, 48, 192}, DimNames: []string{"N"}}
	cases := []struct {
		name string
		data string
		ins  []tensor.Spec
		pre  string
		want string
	}{
		{"crop larger than the image", tiny, []tensor.Spec{x}, "resize=48x192,crop=64x64",
			`tiny.png: crop 64x64 is larger than the 48x192 resized image`},
		{"preprocessed size differs", tiny, []tensor.Spec{x}, "resize=32x32",
			`tiny.png: input "x": preprocessed image is 32x32 (HxW), model wants [N,3,48,192]; set size=, resize= or crop= in --preprocess`},
		{"two inputs", tiny, []tensor.Spec{x, spec("y", tensor.Float32, 1)}, "",
			`tiny.png: images feed a single input, but the model has 2 (x, y); use .npz data`},
		{"four channels", tiny, []tensor.Spec{spec("x", tensor.Float32, 1, 4, 2, 2)}, "",
			`tiny.png: input "x" [1,4,2,2] has 4 channels; images give 1 or 3`},
		{"corrupt image", bad, []tensor.Spec{x}, "",
			`broken.png: cannot decode image`},
		{"uint8 with mean", tiny, []tensor.Spec{spec("x", tensor.Uint8, 1, 3, 1, 2)}, "mean=0.5",
			`tiny.png: input "x" is uint8: raw pixels are fed, so mean=, std= and scale= do not apply`},
		{"int64 input", tiny, []tensor.Spec{spec("x", tensor.Int64, 1, 3, 1, 2)}, "",
			`tiny.png: input "x" is int64; images feed float or uint8 inputs`},
		{"gray for 3 channels", tiny, []tensor.Spec{x}, "gray",
			`tiny.png: gray was asked for, but input "x" [N,3,48,192] takes 3 channels`},
		{"bad preprocess key", tiny, []tensor.Spec{x}, "size=224,zoom=2",
			`--preprocess "size=224,zoom=2": unknown key "zoom"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := firstError(c.data, c.ins, Options{Preprocess: c.pre})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error\n  %v\nwant it to contain\n  %s", err, c.want)
			}
		})
	}
}

func TestParsePreprocess(t *testing.T) {
	p, err := ParsePreprocess("size=256, crop=224, mean=0.485/0.456/0.406, std=0.229/0.224/0.225, layout=NCHW, order=bgr, scale=1/255, interp=catmullrom")
	if err != nil {
		t.Fatal(err)
	}
	want := Preprocess{Size: 256, Crop: [2]int{224, 224}, Mean: []float32{0.485, 0.456, 0.406}, Std: []float32{0.229, 0.224, 0.225},
		Layout: "nchw", BGR: true, Scale: 1.0 / 255, Interp: "catmullrom"}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
	if p, _ := ParsePreprocess("size=48x192,gray"); p.Resize != [2]int{48, 192} || !p.Gray || p.Size != 0 {
		t.Errorf("size=HxW,gray: %+v", p)
	}
	for _, bad := range []string{"size=0", "resize=4y4", "std=0", "layout=chwn", "order=rgba", "size=2,resize=2x2", "mean=1/2,std=1/2/3", "scale=1/0", "size", "size=1,size=2", "interp=lanczos"} {
		if _, err := ParsePreprocess(bad); err == nil {
			t.Errorf("ParsePreprocess(%q): no error", bad)
		}
	}
}
