#!/usr/bin/env python3
"""Side by side: onnxruntime.quantization.matmul_nbits_quantizer vs optimctl's INT4 on
all-MiniLM-L6-v2 (the ONNX graph `make assets-int4` builds).

Tools, each in its own process under /usr/bin/time -v (wall time, peak RSS):
  ORT default   MatMulNBitsQuantizer + DefaultWeightOnlyQuantConfig (ORT's C++ blockwise RTN)
  ORT rtn       RTNWeightOnlyQuantConfig (the vendored neural-compressor RTN)
  ORT gptq      GPTQWeightOnlyQuantConfig (vendored neural-compressor GPTQ), reading calib.npz
  optimctl      rtn, gptq, awq (`optimctl int4`, what `quantize --mode int4` runs)
All use block (group) size G, asymmetric 4-bit unless the tool name ends in -sym; GPTQ tools calibrate on the same 64 windows
of 128 tokens (calib.npz). Every output is judged against the float model on the 64
held-out sentences of eval.npz: cosine of the sentence embeddings (mean and worst), and
timed in ONNX Runtime (batch 1, 2 threads, default optimisations, p50).
RTN throughput = float weight bytes quantized (10.6 M weights × 4 B) / wall time.

    python3 bench/int4/compare.py [--groups 32,128] [--repeat 3] [--markdown]

Needs: `make setup assets-int4`, Go, python3 with numpy, onnx, onnx_ir and onnxruntime.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("OPTIMCTL_CACHE", os.path.join(ROOT, ".cache"))
MODEL_DIR = os.path.join(CACHE, "models", "minilm")
MODEL = os.path.join(MODEL_DIR, "model.onnx")
CALIB = os.path.join(MODEL_DIR, "calib.npz")
EVAL = os.path.join(MODEL_DIR, "eval.npz")
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
FLOAT_WEIGHT_BYTES = 10616832 * 4


def feeds(npz, i):
    return {k: npz[k][i:i + 1] for k in INPUTS}


# ---------------------------------------------------------------- worker (subprocess)

def worker(args):
    import numpy as np
    import onnx
    from onnxruntime.quantization import CalibrationDataReader
    from onnxruntime.quantization import matmul_nbits_quantizer as mq
    kind, group, out = args[0], int(args[1]), args[2]
    sym = kind.endswith("-sym")
    kind = kind.removesuffix("-sym")
    model = onnx.load(MODEL)
    if kind == "default":
        cfg = mq.DefaultWeightOnlyQuantConfig(block_size=group, is_symmetric=sym)
    elif kind == "rtn":
        cfg = mq.RTNWeightOnlyQuantConfig()
    else:
        calib = np.load(CALIB)

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.i = 0

            def get_next(self):
                if self.i >= len(calib["input_ids"]):
                    return None
                self.i += 1
                return feeds(calib, self.i - 1)

            def __deepcopy__(self, memo):
                return Reader()

        cfg = mq.GPTQWeightOnlyQuantConfig(calibration_data_reader=Reader(), percdamp=0.01, block_size=128)
    q = mq.MatMulNBitsQuantizer(model, block_size=group, is_symmetric=sym, algo_config=cfg)
    q.process()
    q.model.save_model_to_file(out, use_external_data_format=False)


# ---------------------------------------------------------------- measurement

def timed(cmd):
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    tail = "\n".join(l for l in p.stderr.splitlines() if "Command being timed" not in l and not l.startswith("\t"))[-600:]
    return p.returncode == 0, wall, rss, tail


def session(path, basic):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.intra_op_num_threads = 2
    if basic:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(path, so)


def embeddings(path):
    import numpy as np
    s = session(path, basic=True)
    d = np.load(EVAL)
    return np.concatenate([s.run(["sentence_embedding"], feeds(d, i))[0] for i in range(len(d["input_ids"]))])


def agreement(ref, cand):
    import numpy as np
    cos = (ref * cand).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(cand, axis=1)
    return float(cos.mean()), float(cos.min())


def latencies(paths, rounds=5, runs=32):
    """p50 latency (ms), models interleaved in rounds; best round wins."""
    import numpy as np
    d = np.load(EVAL)
    sess = {p: session(p, basic=False) for p in paths}
    for s in sess.values():
        for i in range(3):
            s.run(None, feeds(d, i))
    best = {p: float("inf") for p in paths}
    for _ in range(rounds):
        for p, s in sess.items():
            ts = []
            for k in range(runs):
                t = time.perf_counter()
                s.run(None, feeds(d, k % len(d["input_ids"])))
                ts.append(time.perf_counter() - t)
            best[p] = min(best[p], 1000 * float(np.median(ts)))
    return best


# ---------------------------------------------------------------- driver

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", default="128,32")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each fast tool (median wall and RSS)")
    ap.add_argument("--tools", default="ort-default,ort-rtn,ort-gptq,ort-rtn-sym,ort-gptq-sym,"
                    "optimctl-rtn,optimctl-gptq,optimctl-awq,optimctl-rtn-sym,optimctl-gptq-sym")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--keep", help="keep the outputs in this folder")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="optimctl-int4-compare-")
    os.makedirs(work, exist_ok=True)
    binary = os.path.join(work, "optimctl")
    subprocess.run(["go", "build", "-o", binary, "./cmd/optimctl"], cwd=ROOT, check=True)
    ortlib = os.path.join(CACHE, "ort", "libonnxruntime.so.1")
    ref = embeddings(MODEL)
    rows, outs = [], [MODEL]
    for group in [int(g) for g in a.groups.split(",")]:
        for tool in a.tools.split(","):
            out = os.path.join(work, "%s.g%d.onnx" % (tool, group))
            if tool.startswith("ort-"):
                cmd = [sys.executable, __file__, "--worker", tool[4:], str(group), out]
            else:
                algo = tool.split("-")[1]
                cmd = [binary, "--ort-lib", ortlib, "--json", "int4", MODEL, "-o", out, "--algo", algo,
                       "--group-size", str(group), "--symmetric=%s" % ("true" if tool.endswith("-sym") else "false")]
                if algo != "rtn":
                    cmd += ["--calib", CALIB]
            slow = "gptq" in tool or "awq" in tool
            walls, rsss = [], []
            for _ in range(1 if slow else a.repeat):
                ok, wall, rss, tail = timed(cmd)
                if not ok:
                    print("%s g%d failed: %s" % (tool, group, tail), file=sys.stderr)
                    break
                walls.append(wall)
                rsss.append(rss)
            if not walls:
                errs = [l for l in tail.splitlines() if "Error" in l]
                rows.append(dict(tool=tool, group=group, failed=errs[-1].strip() if errs else "failed"))
                continue
            mean, worst = agreement(ref, embeddings(out))
            wall = statistics.median(walls)
            rows.append(dict(tool=tool, group=group, wall_s=wall, peak_rss_mib=statistics.median(rsss),
                             cosine_mean=mean, cosine_min=worst, size_bytes=os.path.getsize(out),
                             gbps=FLOAT_WEIGHT_BYTES / wall / 1e9 if not slow else None, path=out))
            outs.append(out)
    lat = latencies(outs)
    for r in rows:
        if "path" in r:
            r["p50_ms"] = lat[r.pop("path")]
    if a.markdown:
        print("float model: %d bytes, p50 %.2f ms\n" % (os.path.getsize(MODEL), lat[MODEL]))
        print("| tool | group | wall (s) | peak RSS (MiB) | RTN GB/s | cosine mean | cosine min | size (MB) | p50 (ms) |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in rows:
            if "failed" in r:
                print("| %s | %d | failed: %s | | | | | | |" % (r["tool"], r["group"], r["failed"][-90:]))
                continue
            print("| %s | %d | %.2f | %.0f | %s | %.4f | %.4f | %.1f | %.2f |" % (
                r["tool"], r["group"], r["wall_s"], r["peak_rss_mib"], "%.2f" % r["gbps"] if r["gbps"] else "–",
                r["cosine_mean"], r["cosine_min"], r["size_bytes"] / 1e6, r["p50_ms"]))
    else:
        print(json.dumps({"float_p50_ms": lat[MODEL], "rows": rows}, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
