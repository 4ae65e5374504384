package calibration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"strings"
	"testing"

	"github.com/optimctl/optimctl/pkg/tensor"
)

var randomInputs = []tensor.Spec{
	spec("x", tensor.Float32, -1, 3, 4),
	spec("ids", tensor.Int64, -1, 6),
	spec("mask", tensor.Bool, -1, 2),
	spec("px", tensor.Uint8, -1, 8),
	spec("half", tensor.Float16, -1, 2),
}

// digest hashes every byte of every sample in input order.
func digest(t *testing.T, samples []Sample, ins []tensor.Spec) string {
	h := sha256.New()
	for _, s := range samples {
		for _, in := range ins {
			h.Write(s[in.Name].Data)
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func TestRandomDeterministic(t *testing.T) {
	read := func(seed uint64) []Sample {
		return drain(t, open(t, "random:4", randomInputs, Options{Seed: seed}))
	}
	a, b, c := read(0), read(0), read(1)
	if len(a) != 4 {
		t.Fatalf("%d samples, want 4", len(a))
	}
	da, db, dc := digest(t, a, randomInputs), digest(t, b, randomInputs), digest(t, c, randomInputs)
	if da != db {
		t.Errorf("same seed, different data: %s vs %s", da, db)
	}
	if da == dc {
		t.Errorf("seeds 0 and 1 gave identical data")
	}
	// The generator is part of the contract (a calibration table built on random:N must be
	// reproducible across releases): pin the bytes of seed 0.
	const golden = "010502d97052a988"
	if da != golden {
		t.Errorf("seed 0 digest %s, want %s (the generator changed)", da, golden)
	}
	s := open(t, "random:4", randomInputs, Options{})
	first := drain(t, s)
	s.Reset()
	if again := drain(t, s); digest(t, again, randomInputs) != digest(t, first, randomInputs) {
		t.Error("Reset did not replay the same data")
	}
	for i, smp := range a {
		for _, in := range randomInputs {
			want := append([]int64{1}, in.Shape[1:]...)
			if v := smp[in.Name]; v.DType != in.DType || !reflect.DeepEqual(v.Shape, want) {
				t.Errorf("sample %d %s: %s%v, want %s%v", i, in.Name, v.DType, v.Shape, in.DType, want)
			}
		}
		for _, v := range smp["x"].Float32s() {
			if v < 0 || v >= 1 {
				t.Errorf("float %v outside [0,1)", v)
			}
		}
		for _, v := range smp["ids"].Int64s() {
			if v < 0 || v >= 10 {
				t.Errorf("int64 %v outside [0,10)", v)
			}
		}
		for _, v := range smp["mask"].Data {
			if v > 1 {
				t.Errorf("bool byte %d", v)
			}
		}
	}
}

func TestRandomRangeShapesBatch(t *testing.T) {
	ins := []tensor.Spec{
		spec("x", tensor.Float32, -1, 5),
		{Name: "input_ids", DType: tensor.Int64, Shape: []int64{-1, -1}, DimNames: []string{"batch", "seq"}},
	}
	_, err := Open("random:2", ins, Options{})
	want := `random:2: input "input_ids": dimension 1 (seq) of [batch,seq] is dynamic; give it with --shape input_ids=1,D`
	if err == nil || err.Error() != want {
		t.Fatalf("error %v\nwant %s", err, want)
	}

	src := open(t, "random:5:-1:1", ins[:1], Options{Batch: 2})
	if src.Len() != 3 {
		t.Errorf("Len = %d, want 3", src.Len())
	}
	got := drain(t, src)
	if len(got) != 3 || got[0]["x"].Shape[0] != 2 || got[2]["x"].Shape[0] != 1 {
		t.Fatalf("batches: %d, first %v, last %v", len(got), got[0]["x"].Shape, got[len(got)-1]["x"].Shape)
	}
	neg := false
	for _, b := range got {
		for _, v := range b["x"].Float32s() {
			if v < -1 || v >= 1 {
				t.Errorf("%v outside [-1,1)", v)
			}
			neg = neg || v < 0
		}
	}
	if !neg {
		t.Error("no negative value from [-1,1)")
	}
	// Batching must not change the data: batch of 2 = two single samples concatenated.
	single := drain(t, open(t, "random:5:-1:1", ins[:1], Options{}))
	if !bytes.Equal(got[0]["x"].Data, append(append([]byte{}, single[0]["x"].Data...), single[1]["x"].Data...)) {
		t.Error("batched random data differs from single samples")
	}

	ids := drain(t, open(t, "random:2:100:103", ins[1:], Options{Shapes: map[string][]int64{"input_ids": {1, 16}}}))
	if s := ids[0]["input_ids"].Shape; !reflect.DeepEqual(s, []int64{1, 16}) {
		t.Errorf("shape %v, want [1 16]", s)
	}
	for _, v := range ids[1]["input_ids"].Int64s() {
		if v < 100 || v >= 103 {
			t.Errorf("id %d outside [100,103)", v)
		}
	}

	for _, bad := range []string{"random:0", "random:x", "random:3:1", "random:3:2:1", "random:3:a:b"} {
		if _, err := Open(bad, ins[:1], Options{}); err == nil || !strings.HasPrefix(err.Error(), bad+": ") {
			t.Errorf("Open(%s): %v", bad, err)
		}
	}
	if _, err := Open("random:1", []tensor.Spec{spec("s", tensor.String, 1)}, Options{}); err == nil || !strings.Contains(err.Error(), `input "s": cannot generate string data`) {
		t.Errorf("string input: %v", err)
	}
}
