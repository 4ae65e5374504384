package trt

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestMarshalOptionsFlags(t *testing.T) {
	cases := []struct {
		o    Options
		want uint32
	}{
		{Options{}, 0},
		{Options{FP16: true}, flagFP16},
		{Options{INT8: true}, flagINT8}, // Q/DQ scales: no calibrator
		{Options{INT8: true, Calib: "random:4"}, flagINT8 | flagCalibrate},
		{Options{INT8: true, CalibCache: "c"}, flagINT8 | flagCalibrate},
		{Options{Calib: "random:4"}, 0}, // refused by Validate; never a calibrator without INT8
		{Options{FP8: true, SparseWeights: true, Refit: true, VersionCompatible: true}, flagFP8 | flagSparseWeights | flagRefit | flagVersionCompatible},
		{Options{StronglyTyped: true}, flagStronglyTyped},
	}
	for _, c := range cases {
		w, err := marshalOptions(&c.o, nil, nil)
		if err != nil || w.flags != c.want {
			t.Errorf("%+v: flags %#x, %v; want %#x", c.o, w.flags, err, c.want)
		}
	}
	// The bits are distinct and named.
	seen := uint32(0)
	for _, f := range flagNames {
		if f.bit&seen != 0 || f.bit == 0 {
			t.Errorf("flag %s reuses a bit", f.name)
		}
		seen |= f.bit
	}
	if got := flagList(flagINT8 | flagCalibrate | flagSparseWeights); !reflect.DeepEqual(got, []string{"int8", "sparse_weights", "calibrate"}) {
		t.Errorf("flagList = %v", got)
	}
}

func TestMarshalOptionsProfileAndCaches(t *testing.T) {
	o := Options{Workspace: 3<<30 + 5}
	profile := []ShapeSpec{spec("images:1x3x224x224/8x3x224x224/32x3x224x224"), spec("n:7/7/7")}
	cache := []byte("timing")
	w, err := marshalOptions(&o, [][]ShapeSpec{profile}, cache)
	if err != nil {
		t.Fatal(err)
	}
	if w.workspace != 3<<30+5 || string(w.timingCache) != "timing" || len(w.profile) != 2 {
		t.Fatalf("wire %+v", w)
	}
	p := w.profile[0]
	want := wireProfile{name: "images", nbDims: 4,
		min: [maxDims]int64{1, 3, 224, 224}, opt: [maxDims]int64{8, 3, 224, 224}, max: [maxDims]int64{32, 3, 224, 224}}
	if p != want {
		t.Fatalf("profile %+v, want %+v (unused dims zero)", p, want)
	}
	if w.profile[1].nbDims != 1 || w.profile[1].opt[0] != 7 || w.profile[1].opt[1] != 0 {
		t.Fatalf("second profile %+v", w.profile[1])
	}
	if _, err := marshalOptions(&o, [][]ShapeSpec{{{Name: "a\x00b", Min: []int64{1}, Opt: []int64{1}, Max: []int64{1}}}}, nil); err == nil || !strings.Contains(err.Error(), "NUL") {
		t.Fatalf("NUL in a name: %v", err)
	}
	nine := make([]int64, 9)
	if _, err := marshalOptions(&o, [][]ShapeSpec{{{Name: "x", Min: nine, Opt: nine, Max: nine}}}, nil); err == nil {
		t.Fatal("9 dimensions accepted: they do not fit otrt_profile_input")
	}
}

// Several profiles go out grouped and numbered in order, each with all its inputs.
func TestMarshalOptionsSeveralProfiles(t *testing.T) {
	p0 := []ShapeSpec{spec("images:1x3x8x8/4x3x8x8/8x3x8x8"), spec("n:7")}
	p1 := []ShapeSpec{spec("images:16x3x8x8/32x3x8x8/64x3x8x8"), spec("n:7")}
	w, err := marshalOptions(&Options{}, [][]ShapeSpec{p0, p1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range w.profile {
		got = append(got, fmt.Sprintf("%d %s %d..%d", p.index, p.name, p.min[0], p.max[0]))
	}
	want := []string{"0 images 1..8", "0 n 7..7", "1 images 16..64", "1 n 7..7"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Fatalf("wire profiles %q, want %q", got, want)
	}
}
