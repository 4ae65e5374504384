package main

import (
	"bufio"
	"fmt"
	"io"
	"strings"
	"unicode"
)

// wordPiece is BERT's uncased tokenizer (BasicTokenizer + WordpieceTokenizer of Hugging
// Face's BertTokenizer with do_lower_case=True, tokenize_chinese_chars=True, and accents
// stripped as lower-casing implies):
//
//  1. drop NUL, U+FFFD and control characters; every whitespace becomes a space;
//  2. put spaces around CJK ideographs;
//  3. split on whitespace; lower-case each word and strip accents (Latin-1 and Latin
//     Extended-A letters fold to their base letter: the texts used here need no more of NFD);
//  4. split each word on punctuation (ASCII symbols count as punctuation, as in BERT);
//  5. WordPiece: longest vocabulary match first, continuations prefixed "##"; a word with no
//     segmentation, or longer than 100 characters, becomes [UNK].
type wordPiece struct {
	vocab map[string]int64
	unk   int64
	cls   int64
	sep   int64
	pad   int64
}

func readVocab(r io.Reader) (*wordPiece, error) {
	wp := &wordPiece{vocab: map[string]int64{}}
	sc := bufio.NewScanner(r)
	var i int64
	for sc.Scan() {
		wp.vocab[strings.TrimRight(sc.Text(), "\r")] = i
		i++
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, sp := range []struct {
		tok string
		dst *int64
	}{{"[UNK]", &wp.unk}, {"[CLS]", &wp.cls}, {"[SEP]", &wp.sep}, {"[PAD]", &wp.pad}} {
		id, ok := wp.vocab[sp.tok]
		if !ok {
			return nil, fmt.Errorf("vocab has no %s", sp.tok)
		}
		*sp.dst = id
	}
	return wp, nil
}

// tokenize returns the word-piece ids of text (without [CLS]/[SEP]).
func (wp *wordPiece) tokenize(text string) []int64 {
	var ids []int64
	for _, word := range basicTokens(text) {
		ids = append(ids, wp.pieces(word)...)
	}
	return ids
}

func (wp *wordPiece) pieces(word string) []int64 {
	rs := []rune(word)
	if len(rs) > 100 {
		return []int64{wp.unk}
	}
	var out []int64
	for start := 0; start < len(rs); {
		end := len(rs)
		found := int64(-1)
		for ; end > start; end-- {
			s := string(rs[start:end])
			if start > 0 {
				s = "##" + s
			}
			if id, ok := wp.vocab[s]; ok {
				found = id
				break
			}
		}
		if found < 0 {
			return []int64{wp.unk}
		}
		out = append(out, found)
		start = end
	}
	return out
}

func basicTokens(text string) []string {
	var clean strings.Builder
	for _, r := range text {
		switch {
		case r == 0 || r == 0xFFFD || isControl(r):
			continue
		case isWhitespace(r):
			clean.WriteByte(' ')
		case isCJK(r):
			clean.WriteByte(' ')
			clean.WriteRune(r)
			clean.WriteByte(' ')
		default:
			clean.WriteRune(r)
		}
	}
	var out []string
	for _, w := range strings.Fields(clean.String()) {
		w = stripAccents(strings.ToLower(w))
		var cur []rune
		for _, r := range w {
			if isPunct(r) {
				if len(cur) > 0 {
					out = append(out, string(cur))
					cur = cur[:0]
				}
				out = append(out, string(r))
				continue
			}
			cur = append(cur, r)
		}
		if len(cur) > 0 {
			out = append(out, string(cur))
		}
	}
	return out
}

func isWhitespace(r rune) bool {
	return r == ' ' || r == '\t' || r == '\n' || r == '\r' || unicode.Is(unicode.Zs, r)
}

func isControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	return unicode.In(r, unicode.Cc, unicode.Cf)
}

func isPunct(r rune) bool {
	if (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126) {
		return true
	}
	return unicode.IsPunct(r)
}

func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) || (r >= 0x3400 && r <= 0x4DBF) || (r >= 0x20000 && r <= 0x2A6DF) ||
		(r >= 0x2A700 && r <= 0x2B73F) || (r >= 0x2B740 && r <= 0x2B81F) || (r >= 0x2B820 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) || (r >= 0x2F800 && r <= 0x2FA1F)
}

// latinBase folds U+00C0..U+017F to base letters ("" keeps the rune: ×, ÷, ß, æ, ð, þ, …),
// what NFD followed by dropping combining marks gives for these blocks.
const latinBase = "AAAAAA_CEEEEIIII_NOOOOO__UUUUY__aaaaaa_ceeeeiiii_nooooo__uuuuy_y" +
	"AaAaAaCcCcCcCcDd__EeEeEeEeEeGgGgGgGgHh__IiIiIiIiI___JjKk_LlLlLl_" +
	"___NnNnNn___OoOoOo__RrRrRrSsSsSsSsTtTt__UuUuUuUuUuUuWwYyYZzZzZz_"

func stripAccents(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0xC0 && r <= 0x17F {
			if c := latinBase[r-0xC0]; c != '_' {
				b.WriteByte(c)
				continue
			}
		}
		if unicode.Is(unicode.Mn, r) {
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}
