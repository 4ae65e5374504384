//go:build !openblas || !cgo

package quant

// Pure-Go matrix kernels (gonum), the default build. blas_openblas.go replaces them with
// OpenBLAS under the openblas build tag.

// blasThreaded is false: gonum's calls run on one core, so callers split large products
// into tiles over goroutines themselves.
const blasThreaded = false

// BLASName names the matrix kernels this binary was built with (for reports and benchmarks).
const BLASName = "gonum"
