package quant

import "math"

// testRNG is a splitmix64 generator: fixed, documented output for a seed, independent of
// math/rand's algorithms, so that reference values computed once elsewhere from the same
// samples stay valid.
type testRNG struct{ s uint64 }

func (r *testRNG) next() uint64 {
	r.s += 0x9e3779b97f4a7c15
	z := r.s
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// uniform returns a float64 in [0, 1).
func (r *testRNG) uniform() float64 { return float64(r.next()>>11) / (1 << 53) }

// normal returns a standard normal deviate (Box–Muller, one of the pair).
func (r *testRNG) normal() float64 {
	u1 := 1 - r.uniform() // (0, 1]
	u2 := r.uniform()
	return math.Sqrt(-2*math.Log(u1)) * math.Cos(2*math.Pi*u2)
}

// normals returns n float32 samples of N(mean, std²).
func (r *testRNG) normals(n int, mean, std float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(mean + std*r.normal())
	}
	return x
}
