//go:build openblas && cgo

package quant

import (
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/floats/scalar"

	lapackgonum "gonum.org/v1/gonum/lapack/gonum"
)

// TestOpenBLASMatchesGonum runs every overridden routine against gonum's pure-Go one (the
// reference) on odd shapes, both transpositions and triangles, with padded leading
// dimensions.
func TestOpenBLASMatchesGonum(t *testing.T) {
	ob, ref := openBLAS{}, gonum.Implementation{}
	rng := &testRNG{s: 11}
	const m, n, k, pad = 37, 29, 53, 3
	for _, tA := range []blas.Transpose{blas.NoTrans, blas.Trans} {
		for _, tB := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			ar, ac := m, k
			if tA == blas.Trans {
				ar, ac = k, m
			}
			br, bc := k, n
			if tB == blas.Trans {
				br, bc = n, k
			}
			a := rng.normals(ar*(ac+pad), 0, 1)
			b := rng.normals(br*(bc+pad), 0, 1)
			c0 := rng.normals(m*(n+pad), 0, 1)
			c1, c2 := append([]float32(nil), c0...), append([]float32(nil), c0...)
			ob.Sgemm(tA, tB, m, n, k, 0.5, a, ac+pad, b, bc+pad, -1.5, c1, n+pad)
			ref.Sgemm(tA, tB, m, n, k, 0.5, a, ac+pad, b, bc+pad, -1.5, c2, n+pad)
			close32(t, "sgemm", c1, c2, 1e-5)
			a64, b64, c64 := f64(a), f64(b), f64(c0)
			d1, d2 := append([]float64(nil), c64...), append([]float64(nil), c64...)
			ob.Dgemm(tA, tB, m, n, k, 0.5, a64, ac+pad, b64, bc+pad, -1.5, d1, n+pad)
			ref.Dgemm(tA, tB, m, n, k, 0.5, a64, ac+pad, b64, bc+pad, -1.5, d2, n+pad)
			close64(t, "dgemm", d1, d2, 1e-12)
		}
	}
	for _, ul := range []blas.Uplo{blas.Upper, blas.Lower} {
		for _, tr := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			a := rng.normals(k*(k+pad), 0, 1)
			c0 := rng.normals(n*(n+pad), 0, 1)
			c1, c2 := append([]float32(nil), c0...), append([]float32(nil), c0...)
			ob.Ssyrk(ul, tr, n, n, 2, a, k+pad, 0.25, c1, n+pad)
			ref.Ssyrk(ul, tr, n, n, 2, a, k+pad, 0.25, c2, n+pad)
			close32(t, "ssyrk", c1, c2, 1e-5)
			d1, d2 := f64(c0), f64(c0)
			ob.Dsyrk(ul, tr, n, n, 2, f64(a), k+pad, 0.25, d1, n+pad)
			ref.Dsyrk(ul, tr, n, n, 2, f64(a), k+pad, 0.25, d2, n+pad)
			close64(t, "dsyrk", d1, d2, 1e-12)
			for _, side := range []blas.Side{blas.Left, blas.Right} {
				tri := f64(rng.normals(n*(n+pad), 0, 1))
				for i := 0; i < n; i++ {
					tri[i*(n+pad)+i] += 8 // well conditioned
				}
				b0 := f64(rng.normals(n*(n+pad), 0, 1))
				e1, e2 := append([]float64(nil), b0...), append([]float64(nil), b0...)
				ob.Dtrsm(side, ul, tr, blas.NonUnit, n, n, 1.5, tri, n+pad, e1, n+pad)
				ref.Dtrsm(side, ul, tr, blas.NonUnit, n, n, 1.5, tri, n+pad, e2, n+pad)
				close64(t, "dtrsm", e1, e2, 1e-12)
				e1, e2 = append([]float64(nil), b0...), append([]float64(nil), b0...)
				ob.Dtrmm(side, ul, tr, blas.Unit, n, n, 1.5, tri, n+pad, e1, n+pad)
				ref.Dtrmm(side, ul, tr, blas.Unit, n, n, 1.5, tri, n+pad, e2, n+pad)
				close64(t, "dtrmm", e1, e2, 1e-12)
			}
		}
		// Cholesky of a positive definite matrix and inverse of the factor.
		x := f64(rng.normals(k*k, 0, 1))
		spd := make([]float64, k*(k+pad))
		ref.Dsyrk(ul, blas.NoTrans, k, k, 1, x, k, 0, spd, k+pad)
		for i := 0; i < k; i++ {
			spd[i*(k+pad)+i] += 1
		}
		p1, p2 := append([]float64(nil), spd...), append([]float64(nil), spd...)
		if ok1, ok2 := (openLAPACK{}).Dpotrf(ul, k, p1, k+pad), (lapackgonum.Implementation{}).Dpotrf(ul, k, p2, k+pad); !ok1 || !ok2 {
			t.Fatalf("dpotrf %c: ok %v (openblas), %v (gonum)", ul, ok1, ok2)
		}
		close64(t, "dpotrf", p1, p2, 1e-10)
		if ok1, ok2 := (openLAPACK{}).Dtrtri(ul, blas.NonUnit, k, p1, k+pad), (lapackgonum.Implementation{}).Dtrtri(ul, blas.NonUnit, k, p2, k+pad); !ok1 || !ok2 {
			t.Fatalf("dtrtri %c: ok %v (openblas), %v (gonum)", ul, ok1, ok2)
		}
		close64(t, "dtrtri", p1, p2, 1e-10)
	}
	// Not positive definite: both say so.
	neg := []float64{1, 2, 2, 1}
	if (openLAPACK{}).Dpotrf(blas.Upper, 2, neg, 2) {
		t.Error("dpotrf accepted an indefinite matrix")
	}
}

func f64(s []float32) []float64 {
	out := make([]float64, len(s))
	for i, v := range s {
		out[i] = float64(v)
	}
	return out
}

func close32(t *testing.T, what string, got, want []float32, tol float64) {
	t.Helper()
	close64(t, what, f64(got), f64(want), tol)
}

func close64(t *testing.T, what string, got, want []float64, tol float64) {
	t.Helper()
	for i := range got {
		if !scalar.EqualWithinAbsOrRel(got[i], want[i], tol, tol) {
			t.Fatalf("%s: element %d = %v, gonum %v", what, i, got[i], want[i])
		}
	}
}
