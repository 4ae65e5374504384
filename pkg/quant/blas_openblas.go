//go:build openblas && cgo

package quant

// OpenBLAS fast path (build tag openblas; Debian's libopenblas-dev): the gonum calls of this
// package and of everything else in the binary — blas32.Gemm/Syrk, blas64.Gemm, and the
// level-3 calls inside gonum's Cholesky and triangular inverse — run OpenBLAS's threaded
// kernels, and lapack64.Potrf/Trtri run OpenBLAS's dpotrf_/dtrtri_. gonum's own
// implementations stay in place for every other routine, and are the reference the tests
// compare against (blas_openblas_test.go). Without the tag, the build is pure Go.
//
// gonum is row-major, CBLAS is told so; LAPACK is column-major, so a row-major upper
// triangle is handed over as the column-major lower one (the same numbers).

/*
#cgo LDFLAGS: -lopenblas
#include <stddef.h>

// Prototypes of the few entry points used, with CBLAS's enums as int (their ABI), so that no
// particular cblas.h (reference or OpenBLAS) has to be installed.
void cblas_sgemm(int order, int ta, int tb, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc);
void cblas_dgemm(int order, int ta, int tb, int m, int n, int k, double alpha, const double *a, int lda,
                 const double *b, int ldb, double beta, double *c, int ldc);
void cblas_ssyrk(int order, int uplo, int t, int n, int k, float alpha, const float *a, int lda,
                 float beta, float *c, int ldc);
void cblas_dsyrk(int order, int uplo, int t, int n, int k, double alpha, const double *a, int lda,
                 double beta, double *c, int ldc);
void cblas_dtrsm(int order, int side, int uplo, int ta, int diag, int m, int n, double alpha,
                 const double *a, int lda, double *b, int ldb);
void cblas_dtrmm(int order, int side, int uplo, int ta, int diag, int m, int n, double alpha,
                 const double *a, int lda, double *b, int ldb);
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info, size_t);
void dtrtri_(const char *uplo, const char *diag, const int *n, double *a, const int *lda, int *info, size_t, size_t);

static int potrf(char uplo, int n, double *a, int lda) {
	int info = 0;
	dpotrf_(&uplo, &n, a, &lda, &info, 1);
	return info;
}
static int trtri(char uplo, char diag, int n, double *a, int lda) {
	int info = 0;
	dtrtri_(&uplo, &diag, &n, a, &lda, &info, 1, 1);
	return info;
}
*/
import "C"

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/blas/gonum"
	"gonum.org/v1/gonum/lapack/lapack64"

	lapackgonum "gonum.org/v1/gonum/lapack/gonum"
)

// blasThreaded: OpenBLAS spreads one call over the cores itself, so callers make one large
// call instead of splitting the work over goroutines.
const blasThreaded = true

// BLASName names the matrix kernels this binary was built with (for reports and benchmarks).
const BLASName = "openblas"

func init() {
	blas32.Use(openBLAS{})
	blas64.Use(openBLAS{})
	lapack64.Use(openLAPACK{})
}

// CBLAS enum values.
const (
	cblasRowMajor = 101
	cblasNoTrans  = 111
	cblasTrans    = 112
	cblasUpper    = 121
	cblasLower    = 122
	cblasNonUnit  = 131
	cblasUnit     = 132
	cblasLeft     = 141
	cblasRight    = 142
)

func cTrans(t blas.Transpose) C.int {
	if t == blas.NoTrans {
		return cblasNoTrans
	}
	return cblasTrans // real matrices: ConjTrans is Trans
}

func cUplo(u blas.Uplo) C.int {
	if u == blas.Upper {
		return cblasUpper
	}
	return cblasLower
}

func cDiag(d blas.Diag) C.int {
	if d == blas.Unit {
		return cblasUnit
	}
	return cblasNonUnit
}

func cSide(s blas.Side) C.int {
	if s == blas.Left {
		return cblasLeft
	}
	return cblasRight
}

func p32(s []float32) *C.float {
	if len(s) == 0 {
		return nil
	}
	return (*C.float)(&s[0])
}

func p64(s []float64) *C.double {
	if len(s) == 0 {
		return nil
	}
	return (*C.double)(&s[0])
}

// openBLAS overrides the gonum level-3 routines that matter here. Every slice is checked to
// hold the matrix it describes before C sees it, so a bad shape panics in Go (as gonum's own
// checks would) instead of reading or writing past a slice in C.
type openBLAS struct{ gonum.Implementation }

func (openBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkLen32(a, span(tA, m, k, lda))
	checkLen32(b, span(tB, k, n, ldb))
	checkLen32(c, (m-1)*ldc+n)
	C.cblas_sgemm(cblasRowMajor, cTrans(tA), cTrans(tB), C.int(m), C.int(n), C.int(k), C.float(alpha), p32(a), C.int(lda),
		p32(b), C.int(ldb), C.float(beta), p32(c), C.int(ldc))
}

func (openBLAS) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	checkLen64(a, span(tA, m, k, lda))
	checkLen64(b, span(tB, k, n, ldb))
	checkLen64(c, (m-1)*ldc+n)
	C.cblas_dgemm(cblasRowMajor, cTrans(tA), cTrans(tB), C.int(m), C.int(n), C.int(k), C.double(alpha), p64(a), C.int(lda),
		p64(b), C.int(ldb), C.double(beta), p64(c), C.int(ldc))
}

func (openBLAS) Ssyrk(ul blas.Uplo, t blas.Transpose, n, k int, alpha float32, a []float32, lda int, beta float32, c []float32, ldc int) {
	if n == 0 {
		return
	}
	checkLen32(a, span(t, n, k, lda))
	checkLen32(c, (n-1)*ldc+n)
	C.cblas_ssyrk(cblasRowMajor, cUplo(ul), cTrans(t), C.int(n), C.int(k), C.float(alpha), p32(a), C.int(lda), C.float(beta), p32(c), C.int(ldc))
}

func (openBLAS) Dsyrk(ul blas.Uplo, t blas.Transpose, n, k int, alpha float64, a []float64, lda int, beta float64, c []float64, ldc int) {
	if n == 0 {
		return
	}
	checkLen64(a, span(t, n, k, lda))
	checkLen64(c, (n-1)*ldc+n)
	C.cblas_dsyrk(cblasRowMajor, cUplo(ul), cTrans(t), C.int(n), C.int(k), C.double(alpha), p64(a), C.int(lda), C.double(beta), p64(c), C.int(ldc))
}

func (openBLAS) Dtrsm(s blas.Side, ul blas.Uplo, tA blas.Transpose, d blas.Diag, m, n int, alpha float64, a []float64, lda int, b []float64, ldb int) {
	if m == 0 || n == 0 {
		return
	}
	checkLen64(a, triSpan(s, m, n, lda))
	checkLen64(b, (m-1)*ldb+n)
	C.cblas_dtrsm(cblasRowMajor, cSide(s), cUplo(ul), cTrans(tA), cDiag(d), C.int(m), C.int(n), C.double(alpha), p64(a), C.int(lda), p64(b), C.int(ldb))
}

func (openBLAS) Dtrmm(s blas.Side, ul blas.Uplo, tA blas.Transpose, d blas.Diag, m, n int, alpha float64, a []float64, lda int, b []float64, ldb int) {
	if m == 0 || n == 0 {
		return
	}
	checkLen64(a, triSpan(s, m, n, lda))
	checkLen64(b, (m-1)*ldb+n)
	C.cblas_dtrmm(cblasRowMajor, cSide(s), cUplo(ul), cTrans(tA), cDiag(d), C.int(m), C.int(n), C.double(alpha), p64(a), C.int(lda), p64(b), C.int(ldb))
}

// span is the number of elements a row-major rows×cols operand (before transposition t)
// with leading dimension ld occupies.
func span(t blas.Transpose, rows, cols, ld int) int {
	if t != blas.NoTrans {
		rows, cols = cols, rows
	}
	if rows == 0 || cols == 0 {
		return 0
	}
	if ld < cols {
		panic("blas: bad leading dimension")
	}
	return (rows-1)*ld + cols
}

// triSpan is span for the triangular operand of trsm/trmm (order m on the left, n on the right).
func triSpan(s blas.Side, m, n, ld int) int {
	k := n
	if s == blas.Left {
		k = m
	}
	return span(blas.NoTrans, k, k, ld)
}

func checkLen32(s []float32, n int) {
	if len(s) < n {
		panic("blas: slice too short for its matrix")
	}
}

func checkLen64(s []float64, n int) {
	if len(s) < n {
		panic("blas: slice too short for its matrix")
	}
}

// openLAPACK runs the Cholesky factorisation and the triangular inverse in OpenBLAS.
type openLAPACK struct{ lapackgonum.Implementation }

// flip turns a row-major triangle into the same numbers' column-major triangle.
func flip(u blas.Uplo) C.char {
	if u == blas.Upper {
		return 'L'
	}
	return 'U'
}

func (openLAPACK) Dpotrf(ul blas.Uplo, n int, a []float64, lda int) bool {
	if n == 0 {
		return true
	}
	checkLen64(a, (n-1)*lda+n)
	return C.potrf(flip(ul), C.int(n), p64(a), C.int(lda)) == 0
}

func (openLAPACK) Dtrtri(ul blas.Uplo, d blas.Diag, n int, a []float64, lda int) bool {
	if n == 0 {
		return true
	}
	checkLen64(a, (n-1)*lda+n)
	diag := C.char('N')
	if d == blas.Unit {
		diag = 'U'
	}
	return C.trtri(flip(ul), diag, C.int(n), p64(a), C.int(lda)) == 0
}
