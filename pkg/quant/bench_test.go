package quant

import (
	"fmt"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// BenchmarkHessianAdd measures H += XᵀX for one batch; GFLOP/s counts the symmetric
// product's useful work, rows·K·(K+1) flops.
func BenchmarkHessianAdd(b *testing.B) {
	for _, c := range []struct{ k, rows int }{{768, 2048}, {3072, 2048}, {4096, 512}} {
		b.Run(fmt.Sprintf("%s/K=%d/rows=%d", BLASName, c.k, c.rows), func(b *testing.B) {
			x := (&testRNG{s: 1}).normals(c.rows*c.k, 0, 1)
			h := NewHessian(c.k)
			if err := h.Add(x, c.rows); err != nil { // touch the K×K accumulator's pages first
				b.Fatal(err)
			}
			for b.Loop() {
				if err := h.Add(x, c.rows); err != nil {
					b.Fatal(err)
				}
			}
			flops := float64(c.rows) * float64(c.k) * float64(c.k+1)
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkSGEMM is a square float32 product through this build's kernels (gonum, or
// OpenBLAS with -tags openblas): the machine's SGEMM rate the other kernels are held to.
func BenchmarkSGEMM(b *testing.B) {
	for _, d := range []int{2048} {
		b.Run(fmt.Sprintf("%s/N=%d", BLASName, d), func(b *testing.B) {
			x := (&testRNG{s: 7}).normals(d*d, 0, 1)
			c := make([]float32, d*d)
			m := blas32.General{Rows: d, Cols: d, Stride: d, Data: x}
			for b.Loop() {
				blas32.Gemm(blas.NoTrans, blas.NoTrans, 1, m, m, 0, blas32.General{Rows: d, Cols: d, Stride: d, Data: c})
			}
			b.ReportMetric(2*float64(d)*float64(d)*float64(d)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkGPTQ is one layer's GPTQ (Hessian given), group 128, act-order off. GFLOP/s
// counts the lazy updates (2·N·K²) and the Cholesky factorisation and triangular inverse
// (K³/3 each).
func BenchmarkGPTQ(b *testing.B) {
	for _, d := range []int{768, 3072} {
		b.Run(fmt.Sprintf("%s/N=K=%d", BLASName, d), func(b *testing.B) {
			rows := 512
			x := (&testRNG{s: 2}).normals(rows*d, 0, 1)
			h := NewHessian(d)
			if err := h.Add(x, rows); err != nil {
				b.Fatal(err)
			}
			w := (&testRNG{s: 3}).normals(d*d, 0, 0.02)
			b.ResetTimer()
			for b.Loop() {
				if _, err := GPTQ(w, d, d, h, GPTQOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			k := float64(d)
			b.ReportMetric((2*k*k*k+2*k*k*k/3)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

// BenchmarkRTN is group-128 round-to-nearest; GB/s counts the float32 weights read.
func BenchmarkRTN(b *testing.B) {
	for _, d := range []int{768, 3072, 8192} {
		for _, sym := range []bool{false, true} {
			b.Run(fmt.Sprintf("N=K=%d/sym=%v", d, sym), func(b *testing.B) {
				w := (&testRNG{s: 4}).normals(d*d, 0, 0.02)
				b.SetBytes(int64(4 * d * d))
				for b.Loop() {
					if _, err := QuantizeRTN(w, d, d, GroupOptions{Symmetric: sym}); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkAWQ is one layer's AWQ search (20 scales, 10 clipping ratios), group 128.
func BenchmarkAWQ(b *testing.B) {
	for _, c := range []struct{ d, rows int }{{768, 512}} {
		b.Run(fmt.Sprintf("N=K=%d/rows=%d", c.d, c.rows), func(b *testing.B) {
			w, x := awqCase(5, c.d, c.d, c.rows)
			b.ResetTimer()
			for b.Loop() {
				if _, err := AWQ(w, c.d, c.d, x, c.rows, AWQOptions{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEntropy is the KL search over a 2048-bin signed and absolute histogram.
func BenchmarkEntropy(b *testing.B) {
	for _, abs := range []bool{false, true} {
		b.Run(fmt.Sprintf("abs=%v", abs), func(b *testing.B) {
			h, _ := NewHistogram(0, abs)
			h.Add(heavyBatch())
			for b.Loop() {
				if _, _, err := Entropy(h, 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
