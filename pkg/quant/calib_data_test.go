package quant

// entropyBatches are the calibration batches shared by the entropy and percentile tests and
// by the one-off ONNX Runtime run that produced their reference values: a normal N(0.3, 1)
// tensor in three batches, the second and third reaching further out than the first, so that
// the histogram has to widen twice.
func entropyBatches() [][]float32 {
	r := &testRNG{s: 20240611}
	b1 := r.normals(40000, 0.3, 1)
	b2 := r.normals(40000, 0.3, 1.3)
	b3 := r.normals(40000, 0.3, 1.6)
	return [][]float32{b1, b2, b3}
}

// heavyBatch is a heavy-tailed tensor (cubes of standard normals), where the entropy
// threshold lies well inside the observed range.
func heavyBatch() []float32 {
	r := &testRNG{s: 7}
	x := make([]float32, 40000)
	for i := range x {
		v := r.normal()
		x[i] = float32(v * v * v)
	}
	return x
}
