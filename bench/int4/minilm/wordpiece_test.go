package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/optimctl/optimctl/pkg/testassets"
)

// Expected ids from Hugging Face tokenizers 0.22 (BertTokenizerFast with the model's
// tokenizer.json) on the same strings: accents folded, punctuation and CJK split, a
// zero-width space (Cf) dropped, an unknown ideograph as [UNK].
func TestWordPieceMatchesHuggingFace(t *testing.T) {
	vocab := testassets.Path(t, "models/minilm/vocab.txt")
	f, err := os.Open(vocab)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wp, err := readVocab(f)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		text string
		want []int64
	}{
		{"Call me Ishmael. Some years ago—never mind how long precisely—",
			[]int64{2655, 2033, 2003, 22444, 2884, 1012, 2070, 2086, 3283, 1517, 2196, 2568, 2129, 2146, 10785, 1517}},
		{"Café Naïve résumé; Ahab's WHALE!!", []int64{7668, 15743, 13746, 1025, 6289, 7875, 1005, 1055, 13156, 999, 999}},
		{"the 1851 novel 白鯨 x\u200by", []int64{1996, 8792, 3117, 1915, 100, 1060, 2100}},
	} {
		if got := wp.tokenize(tc.text); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestLatinBaseTable(t *testing.T) {
	if len(latinBase) != 0x180-0xC0 {
		t.Fatalf("latinBase has %d entries, want %d", len(latinBase), 0x180-0xC0)
	}
	for in, want := range map[string]string{"àéîõü": "aeiou", "ČŠŽ": "CSZ", "æøß": "æøß", "ÿŸ": "yY"} {
		if got := stripAccents(in); got != want {
			t.Errorf("stripAccents(%q) = %q, want %q", in, got, want)
		}
	}
}
