package quant

import (
	"errors"
	"math"
)

// DefaultQuantizedBins is the number of target bins of the entropy search: 128 levels on
// each side of zero, i.e. INT8.
const DefaultQuantizedBins = 128

// Entropy returns the clipping range that minimises the KL divergence between the collected
// distribution and its quantized version (the "entropy calibration" of TensorRT, from Migacz,
// "8-bit Inference with TensorRT", GTC 2017). numQuantizedBins ≤ 0 means 128.
//
// The search follows the tool whose histogram kind h is:
//   - signed histogram: ONNX Runtime's HistogramCollector.get_entropy_threshold. Candidate
//     windows grow symmetrically around the zero bin by one bin per side; outliers are
//     folded into the window's end bins for p; q merges the window (without the outliers)
//     into numQuantizedBins bins, leftover bins going to the last one, and spreads each
//     merged count evenly, with integer division as ORT does, over every position of its
//     stretch (not only the nonzero ones); both are smoothed (zeros → 1e-4, the mass taken
//     from the nonzero entries) and the first minimum wins. The range is then clamped to
//     the observed [min, max]. Unlike ORT the divergence is summed in float64.
//   - absolute histogram: TensorRT's calibrator (pytorch-quantization's
//     _compute_amax_entropy, stride 1, start bin numQuantizedBins): the first bin (the zero
//     spike of ReLU outputs) is replaced by the second, windows [0, i) for i from
//     numQuantizedBins to Bins(), outliers folded into the last bin of p, q spread over the
//     nonzero positions only, the last minimum wins; the result is (−amax, amax), amax
//     clamped to the largest observed magnitude.
//
// Rebuilding each window and summing its divergence bin by bin costs O(Bins()²) per
// tensor. Instead every candidate's divergence is written as a sum over the
// numQuantizedBins merged bins, with prefix sums over the histogram for the rest (for the
// smoothed p of the signed search, Σ (c−ε)·ln(c−ε) over a window's nonzero counts is a
// Taylor series in ε whose coefficients are prefix sums of c·ln c, ln c and c⁻ᵏ; ε ≤ 0.21
// and c ≥ 1, so it converges fast): O(numQuantizedBins) per candidate. The candidates
// within 1e-9 of the smallest divergence so found are then evaluated again bin by bin, and
// the tool's rule picks among those exact values, so the threshold is the one the bin-by-bin
// search gives (the fast values are within ~1e-13 of the exact ones).
//
// It returns an error when the histogram is empty or has fewer bins than the search needs.
func Entropy(h *Histogram, numQuantizedBins int) (lo, hi float32, err error) {
	if numQuantizedBins <= 0 {
		numQuantizedBins = DefaultQuantizedBins
	}
	if h.Total() == 0 {
		return 0, 0, errors.New("entropy calibration: empty histogram")
	}
	if h.Abs() {
		amax, err := entropyAbs(h.Counts(), h.Edges(), numQuantizedBins)
		if err != nil {
			return 0, 0, err
		}
		omin, omax := h.Observed()
		amax = min(amax, max(-omin, omax)) // never beyond the data (all zeros → 0)
		return -amax, amax, nil
	}
	return entropySigned(h, numQuantizedBins)
}

func entropySigned(h *Histogram, nq int) (float32, float32, error) {
	hist := h.Counts()
	nb := len(hist)
	zero := nb / 2
	half := nq / 2
	if half > zero || nq < 2 {
		return 0, 0, errors.New("entropy calibration: histogram has fewer bins than quantized bins")
	}
	s := newSignedSearch(hist, nq)
	fast := make([]float64, zero-half+1)
	for i := half; i <= zero; i++ {
		fast[i-half] = s.fastKL(zero-i, min(zero+i+1, nb))
	}
	ex := newSignedExact(hist, nq)
	k := pickVerified(fast, false, func(k int) float64 {
		i := k + half
		return ex.kl(zero-i, min(zero+i+1, nb))
	})
	i := k + half
	lo, hi := float32(h.Edge(zero-i)), float32(h.Edge(min(zero+i+1, nb)))
	omin, omax := h.Observed()
	return max(lo, omin), min(hi, omax), nil
}

// pickVerified returns the index of the smallest divergence: fast holds every
// candidate's divergence from the O(numQuantizedBins) formulas, exact recomputes one bin
// by bin. Every candidate within tolerance of the fast minimum is recomputed, and the
// smallest exact value wins, the first of equals or (last) the last, as the tool's
// search does. +Inf is exact in both (it comes from integer tests), and when every
// candidate is +Inf the tool's loop keeps its first (or, last, its last) candidate.
func pickVerified(fast []float64, last bool, exact func(int) float64) int {
	best := math.Inf(1)
	for _, d := range fast {
		best = min(best, d)
	}
	if math.IsInf(best, 1) {
		if last {
			return len(fast) - 1
		}
		return 0
	}
	const tol = 1e-9
	limit := best + tol*(1+math.Abs(best))
	pick, pickD := -1, math.Inf(1)
	for k, d := range fast {
		if d > limit {
			continue
		}
		e := exact(k)
		if pick < 0 || e < pickD || (last && e == pickD) {
			pick, pickD = k, e
		}
	}
	return pick
}

// smoothEps is ORT's smooth_distribution epsilon.
const smoothEps = 1e-4

// taylorTerms bounds the series of signedSearch.sumFLog: with ε ≤ 0.21 the term of order
// k is below 0.21ᵏ/(k(k−1)) per count, under 1e-19 at k = 24. A histogram gets only the
// orders its largest ε needs (a dense one: 3 or 4).
const taylorTerms = 24

// signedSearch evaluates ORT's smoothed KL divergence of a signed histogram's windows in
// O(nq) each, from prefix sums over the bins (index k: bins before k).
type signedSearch struct {
	hist []uint64
	nq   int
	n    uint64      // all counts
	c    []uint64    // Σ counts
	nz   []int       // number of nonzero bins
	f    []float64   // Σ c·ln c
	l    []float64   // Σ ln c over nonzero bins
	inv  [][]float64 // inv[k]: Σ c^−(k+1) over nonzero bins
	// per-stretch scratch of fastKL: q's value and p's nonzero count
	v, pw []float64
}

func newSignedSearch(hist []uint64, nq int) *signedSearch {
	nb := len(hist)
	s := &signedSearch{hist: hist, nq: nq, c: make([]uint64, nb+1), nz: make([]int, nb+1),
		f: make([]float64, nb+1), l: make([]float64, nb+1), v: make([]float64, nq), pw: make([]float64, nq)}
	for j, c := range hist {
		s.c[j+1] = s.c[j] + c
		s.nz[j+1], s.f[j+1], s.l[j+1] = s.nz[j], s.f[j], s.l[j]
		if c != 0 {
			lx := math.Log(float64(c))
			s.nz[j+1]++
			s.f[j+1] += float64(c) * lx
			s.l[j+1] += lx
		}
	}
	s.n = s.c[nb]
	// The largest ε of any window (the same count as fastKL's, end bins taken as nonzero:
	// at most one more zero each) sets how many orders the series needs.
	emax := 0.0
	for i := nq / 2; i <= nb/2; i++ {
		start, end := nb/2-i, min(nb/2+i+1, nb)
		nzP := max(s.nz[end-1]-s.nz[start+1], 1)
		emax = max(emax, smoothEps*float64(end-start-nzP)/float64(nzP))
	}
	orders := 1 // sumFLog evaluates terms up to k = orders+1; the first left out is below 1e-19
	for ek := emax * emax * emax; orders < taylorTerms && ek/float64((orders+2)*(orders+1)) >= 1e-19; ek *= emax {
		orders++
	}
	s.inv = make([][]float64, orders)
	for k := range s.inv {
		s.inv[k] = make([]float64, nb+1)
	}
	for j, c := range hist {
		r, p := 1/float64(c), 1.0
		for k := range s.inv {
			s.inv[k][j+1] = s.inv[k][j]
			if c != 0 {
				p *= r
				s.inv[k][j+1] += p // c^-(k+1)
			}
		}
	}
	return s
}

// xlogx is x·ln x with 0·ln 0 = 0.
func xlogx(x float64) float64 {
	if x == 0 {
		return 0
	}
	return x * math.Log(x)
}

// sumFLog is Σ (c−e)·ln(c−e) over the nonzero counts c of bins [a, b):
// Σ c·ln c − e·Σ (ln c + 1) + Σₖ≥₂ eᵏ/(k(k−1))·Σ c^−(k−1).
func (s *signedSearch) sumFLog(a, b int, e float64) float64 {
	if b <= a {
		return 0
	}
	nz := float64(s.nz[b] - s.nz[a])
	sum := (s.f[b] - s.f[a]) - e*((s.l[b]-s.l[a])+nz)
	ek := e
	for k := 2; k <= len(s.inv)+1 && ek != 0; k++ {
		ek *= e
		term := ek / float64(k*(k-1))
		if term*nz < 1e-19*float64(s.n) {
			break
		}
		sum += term * (s.inv[k-2][b] - s.inv[k-2][a])
	}
	return sum
}

// fastKL is the divergence ORT's get_entropy_threshold computes for the window
// [start, end) (see newSignedExact for the bin-by-bin version): p is the window with the
// outliers folded into its end bins, q merges it into nq stretches of m/nq bins (the
// leftover bins summed into the last stretch but given q = 0) and spreads each stretch's
// sum over all its positions by integer division by its nonzero count; both smoothed.
// With p′, q′ the smoothed values (sums unchanged: N and sq = Σ v·m/nq),
// KL = (Σ p′·ln p′ − Σ p′·ln q′)/N + ln(sq/N), and q′ is constant on each stretch.
func (s *signedSearch) fastKL(start, end int) float64 {
	const eps = smoothEps
	hist, c, nz := s.hist, s.c, s.nz
	nq := s.nq
	n := s.n
	m := end - start
	pl, pr := c[start], n-c[end] // outliers folded into the end bins
	p0, pm := hist[start]+pl, hist[end-1]+pr
	b2i := func(b bool) int {
		if b {
			return 1
		}
		return 0
	}
	nzP := nz[end-1] - nz[start+1] + b2i(p0 != 0) + b2i(pm != 0)
	eP := eps * float64(m-nzP) / float64(nzP)
	a := s.sumFLog(start+1, end-1, eP) + float64(m-nzP)*eps*math.Log(eps)
	if p0 != 0 {
		a += xlogx(float64(p0) - eP)
	}
	if pm != 0 {
		a += xlogx(float64(pm) - eP)
	}
	// q per stretch: v = sum / nonzero count of p in the stretch (integer division).
	mm := m / nq
	left := m - nq*mm // leftover positions at the end: q = 0
	var zQ int
	var sq float64
	vs, pws := s.v[:nq], s.pw[:nq]
	for b := 0; b < nq; b++ {
		sa, sb := start+b*mm, start+(b+1)*mm
		sum := c[sb] - c[sa]
		pf := float64(sum) // Σ p over the stretch, outliers included
		if b == 0 {
			pf += float64(pl)
		}
		if sb == end {
			pf += float64(pr)
		}
		if b == nq-1 {
			sum += c[end] - c[sb]
		}
		norm := s.stretchNonzero(sa, sb, start, end, p0, pm)
		var v float64
		if norm != 0 {
			if sum < 1<<40 { // exact: the quotient is at least 2⁻⁴⁰ away from the next integer
				v = math.Floor(float64(sum) / float64(norm))
			} else {
				v = float64(sum / uint64(norm))
			}
		}
		vs[b] = v
		pws[b] = pf - eP*float64(norm) + eps*float64(mm-norm) // Σ p′ over the stretch
		if v == 0 {
			zQ += mm
		} else {
			sq += v * float64(mm)
		}
	}
	zQ += left
	if zQ == m {
		return math.Inf(1)
	}
	eQ := eps * float64(zQ) / float64(m-zQ)
	lnEps := math.Log(eps)
	var bsum float64 // Σ p′·ln q′
	for b, v := range vs {
		if v == 0 {
			bsum += pws[b] * lnEps
		} else {
			bsum += pws[b] * math.Log(v-eQ)
		}
	}
	if left > 0 {
		sa := start + nq*mm
		pf := float64(c[end]-c[sa]) + float64(pr)
		nzl := s.stretchNonzero(sa, end, start, end, p0, pm)
		bsum += (pf - eP*float64(nzl) + eps*float64(left-nzl)) * lnEps
	}
	fn := float64(n)
	return (a-bsum)/fn + math.Log(sq/fn)
}

// stretchNonzero counts the nonzero positions of the folded p over bins [a, b) of the
// window [start, end): the end bins count as nonzero when their folded value is.
func (s *signedSearch) stretchNonzero(a, b, start, end int, p0, pm uint64) int {
	k := s.nz[b] - s.nz[a]
	if a == start && (s.hist[start] != 0) != (p0 != 0) {
		if p0 != 0 {
			k++
		} else {
			k--
		}
	}
	if b == end && (s.hist[end-1] != 0) != (pm != 0) {
		if pm != 0 {
			k++
		} else {
			k--
		}
	}
	return k
}

// signedExact is the bin-by-bin divergence of one window, as ORT computes it (in
// float64): the check on signedSearch and what pickVerified decides by.
type signedExact struct {
	hist    []uint64
	prefix  []uint64
	nq      int
	p, q    []float64
	nonzero []bool
}

func newSignedExact(hist []uint64, nq int) *signedExact {
	nb := len(hist)
	e := &signedExact{hist: hist, prefix: make([]uint64, nb+1), nq: nq,
		p: make([]float64, nb), q: make([]float64, nb), nonzero: make([]bool, nb)}
	for i, c := range hist {
		e.prefix[i+1] = e.prefix[i] + c
	}
	return e
}

func (e *signedExact) kl(start, end int) float64 {
	hist, prefix, nq := e.hist, e.prefix, e.nq
	nb := len(hist)
	m := end - start
	p, q, nonzero := e.p[:m], e.q[:m], e.nonzero[:m]
	sliced := hist[start:end]
	for j, c := range sliced {
		p[j] = float64(c)
	}
	p[0] += float64(prefix[start])
	p[m-1] += float64(prefix[nb] - prefix[end])
	for j := range p {
		nonzero[j] = p[j] != 0
	}
	merged := m / nq
	clear(q)
	for b := 0; b < nq; b++ {
		s, t := b*merged, (b+1)*merged
		var sum uint64
		for _, c := range sliced[s:t] {
			sum += c
		}
		if b == nq-1 {
			for _, c := range sliced[nq*merged:] {
				sum += c
			}
		}
		norm := uint64(0)
		for _, nz := range nonzero[s:t] {
			if nz {
				norm++
			}
		}
		if norm != 0 {
			v := float64(sum / norm) // ORT stores q as int64: the division truncates
			for j := s; j < t; j++ {
				q[j] = v
			}
		}
	}
	return smoothedKL(p, q)
}

// smoothedKL is KL(p‖q) after ORT's smooth_distribution (eps 1e-4) of both; +Inf when
// either is all zeros.
func smoothedKL(p, q []float64) float64 {
	if !smooth(p) || !smooth(q) {
		return math.Inf(1)
	}
	return kl(p, q)
}

// smooth replaces zeros by eps and takes eps·zeros/nonzeros from every nonzero entry, in
// place, so that q has no zero where p has mass. It returns false for an all-zero input.
func smooth(p []float64) bool {
	const eps = smoothEps
	zeros := 0
	for _, v := range p {
		if v == 0 {
			zeros++
		}
	}
	nonzeros := len(p) - zeros
	if nonzeros == 0 {
		return false
	}
	eps1 := eps * float64(zeros) / float64(nonzeros)
	for i, v := range p {
		if v == 0 {
			p[i] = eps
		} else {
			p[i] = v - eps1
		}
	}
	return true
}

// kl is scipy.stats.entropy(p, q): both normalised to sum 1, Σ p·ln(p/q), terms with p = 0
// contributing 0 and p > 0 with q = 0 giving +Inf.
func kl(p, q []float64) float64 {
	var sp, sq float64
	for i := range p {
		sp += p[i]
		sq += q[i]
	}
	if sp == 0 || sq == 0 {
		return math.Inf(1)
	}
	var d float64
	for i := range p {
		pi := p[i] / sp
		if pi == 0 {
			continue
		}
		qi := q[i] / sq
		if qi == 0 {
			return math.Inf(1)
		}
		d += pi * math.Log(pi/qi)
	}
	return d
}

func entropyAbs(counts []uint64, edges []float64, nq int) (float32, error) {
	nb := len(counts)
	if nb < nq || nq < 1 {
		return 0, errors.New("entropy calibration: histogram has fewer bins than quantized bins")
	}
	bins := make([]float64, nb)
	for i, c := range counts {
		bins[i] = float64(c)
	}
	if nb > 1 {
		bins[0] = bins[1]
	}
	// Prefix sums (index k: bins before k) of the counts, of the nonzero bins and of c·ln c.
	pc := make([]float64, nb+1)
	pnz := make([]int, nb+1)
	pf := make([]float64, nb+1)
	for j, c := range bins {
		pc[j+1], pnz[j+1], pf[j+1] = pc[j]+c, pnz[j], pf[j]+xlogx(c)
		if c != 0 {
			pnz[j+1]++
		}
	}
	total := pc[nb]
	fast := make([]float64, nb-nq+1)
	for i := nq; i <= nb; i++ {
		fast[i-nq] = absFastKL(bins, pc, pnz, pf, total, i, nq)
	}
	ex := newAbsExact(bins, nq)
	k := pickVerified(fast, true, func(k int) float64 { return ex.kl(k + nq) })
	return float32(edges[k+nq]), nil
}

// absFastKL is the divergence of TensorRT's window [0, i) in O(nq): position j falls in
// merged bin j·nq/i, i.e. merged bin b holds positions [⌈b·i/nq⌉, ⌈(b+1)·i/nq⌉); q is the
// merged bin's mean over its nonzero positions, so Σ p·ln q over a merged bin is its sum
// times ln(mean), and the outliers folded into the last position add theirs.
func absFastKL(bins, pc []float64, pnz []int, pf []float64, total float64, i, nq int) float64 {
	out := total - pc[i] // outliers, folded into position i−1
	if bins[i-1] == 0 && out > 0 || pc[i] == 0 {
		return math.Inf(1) // p > 0 where q = 0, or q all zeros
	}
	a := pf[i-1] + xlogx(bins[i-1]+out) // Σ p·ln p
	var b float64                       // Σ p·ln q
	lo := 0
	for k := 0; k < nq; k++ {
		hi := ((k+1)*i + nq - 1) / nq
		if cnt := pnz[hi] - pnz[lo]; cnt > 0 {
			sum := pc[hi] - pc[lo]
			w := sum
			if hi == i {
				w += out
			}
			b += w * math.Log(sum/float64(cnt))
		}
		lo = hi
	}
	return (a-b)/total + math.Log(pc[i]/total)
}

// absExact is the bin-by-bin divergence of one TensorRT window, as pytorch-quantization
// computes it.
type absExact struct {
	bins, suffix, ref, cand, sums []float64
	cnts                          []int
	nq                            int
}

func newAbsExact(bins []float64, nq int) *absExact {
	nb := len(bins)
	e := &absExact{bins: bins, suffix: make([]float64, nb+1), ref: make([]float64, nb), cand: make([]float64, nb),
		sums: make([]float64, nq), cnts: make([]int, nq), nq: nq}
	for i := nb - 1; i >= 0; i-- {
		e.suffix[i] = e.suffix[i+1] + bins[i]
	}
	return e
}

func (e *absExact) kl(i int) float64 {
	bins, nq := e.bins, e.nq
	clear(e.sums)
	clear(e.cnts)
	// Position j of the window falls in quantized bin j·nq/i (numpy.digitize over
	// linspace(0, i, nq+1), computed exactly in integers).
	for j := 0; j < i; j++ {
		if bins[j] == 0 {
			continue
		}
		b := j * nq / i
		e.sums[b] += bins[j]
		e.cnts[b]++
	}
	for j := 0; j < i; j++ {
		e.cand[j] = 0
		if bins[j] != 0 {
			b := j * nq / i
			e.cand[j] = e.sums[b] / float64(e.cnts[b])
		}
	}
	copy(e.ref, bins[:i])
	e.ref[i-1] += e.suffix[i]
	return kl(e.ref[:i], e.cand[:i])
}
