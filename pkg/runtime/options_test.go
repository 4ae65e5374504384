package runtime

import "testing"

func TestReproducible(t *testing.T) {
	for _, tc := range []struct{ in, want int }{{0, ReproducibleThreads}, {1, 1}, {7, 7}} {
		got := Options{IntraOpThreads: tc.in}.Reproducible()
		if got.IntraOpThreads != tc.want || !got.NoSpinning {
			t.Errorf("Reproducible() of %d threads: %d threads, no spinning %v; want %d, true", tc.in, got.IntraOpThreads, got.NoSpinning, tc.want)
		}
	}
}
