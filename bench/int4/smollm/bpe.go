package main

import (
	"fmt"
	"strings"
	"unicode"
)

// bpe is GPT-2's byte-level BPE with SmolLM's pre-tokenizer (llama.cpp "smollm"): digits are
// split off one by one, then GPT-2's pattern
//
//	's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//
// splits words (written out by hand: Go's regexp has no lookahead); each word's bytes are
// mapped to GPT-2's printable alphabet and merged by rank.
type bpe struct {
	ids   map[string]int64
	ranks map[[2]string]int
	b2u   [256]string
}

func newBPE(tokens, merges []string) (*bpe, error) {
	t := &bpe{ids: make(map[string]int64, len(tokens)), ranks: make(map[[2]string]int, len(merges))}
	for i, s := range tokens {
		t.ids[s] = int64(i)
	}
	for i, m := range merges {
		a, b, ok := strings.Cut(m, " ")
		if !ok {
			return nil, fmt.Errorf("merge %d %q has no space", i, m)
		}
		t.ranks[[2]string{a, b}] = i
	}
	// GPT-2's bytes_to_unicode: printable bytes stand for themselves, the others for 256+n.
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			t.b2u[b] = string(rune(b))
		} else {
			t.b2u[b] = string(rune(256 + n))
			n++
		}
	}
	return t, nil
}

func (t *bpe) encode(text string) ([]int64, error) {
	var out []int64
	for _, w := range preTokenize(text) {
		syms := make([]string, 0, len(w))
		for _, c := range []byte(w) {
			syms = append(syms, t.b2u[c])
		}
		for len(syms) > 1 {
			best, at := -1, -1
			for i := 0; i+1 < len(syms); i++ {
				if r, ok := t.ranks[[2]string{syms[i], syms[i+1]}]; ok && (best < 0 || r < best) {
					best, at = r, i
				}
			}
			if at < 0 {
				break
			}
			syms[at] += syms[at+1]
			syms = append(syms[:at+1], syms[at+2:]...)
		}
		for _, s := range syms {
			id, ok := t.ids[s]
			if !ok {
				return nil, fmt.Errorf("symbol %q of %q is not in the vocabulary", s, w)
			}
			out = append(out, id)
		}
	}
	return out, nil
}

func preTokenize(text string) []string {
	var out []string
	rs := []rune(text)
	start := 0
	for i, r := range rs {
		if unicode.IsNumber(r) {
			out = append(out, gpt2Split(rs[start:i])...)
			out = append(out, string(r))
			start = i + 1
		}
	}
	return append(out, gpt2Split(rs[start:])...)
}

type class int

const (
	clsSpace class = iota
	clsLetter
	clsNumber
	clsOther
)

func classOf(r rune) class {
	switch {
	case unicode.IsSpace(r):
		return clsSpace
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	}
	return clsOther
}

func gpt2Split(rs []rune) []string {
	var out []string
	n := len(rs)
	for i := 0; i < n; {
		if rs[i] == '\'' {
			matched := false
			for _, c := range []string{"s", "t", "re", "ve", "m", "ll", "d"} {
				if i+1+len(c) <= n && string(rs[i+1:i+1+len(c)]) == c {
					out = append(out, "'"+c)
					i += 1 + len(c)
					matched = true
					break
				}
			}
			if matched {
				continue
			}
		}
		j := i
		if rs[j] == ' ' && j+1 < n && classOf(rs[j+1]) != clsSpace {
			j++
		}
		if c := classOf(rs[j]); c != clsSpace {
			k := j + 1
			for k < n && classOf(rs[k]) == c {
				k++
			}
			out = append(out, string(rs[i:k]))
			i = k
			continue
		}
		// Whitespace run [i, k): all of it at the end of the text; otherwise all but the last
		// character (which, if a space, prefixes the next word; else stands alone).
		k := i
		for k < n && classOf(rs[k]) == clsSpace {
			k++
		}
		switch {
		case k == n:
			out = append(out, string(rs[i:k]))
			i = k
		case k-1 > i:
			out = append(out, string(rs[i:k-1]))
			i = k - 1
		default:
			out = append(out, string(rs[i:k]))
			i = k
		}
	}
	return out
}
