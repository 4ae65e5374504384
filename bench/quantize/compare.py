#!/usr/bin/env python3
"""Side by side: onnxruntime.quantization vs optimctl quantize on the PP-OCR models.

For each model and mode, every tool runs in its own process under /usr/bin/time -v,
--repeat times: the table gives the fastest wall time (the machine is shared; the minimum
is the run least disturbed by others) and the median peak RSS. Both tools calibrate on the same tensors: optimctl's image reader
writes them to an .npz first (bench/quantize/dumpdata), and ORT's CalibrationDataReader
reads that file. Every output model is then judged against the FP32 model on the same 30
real photos (agreement) and timed in ONNX Runtime (same session options for all).

    python3 bench/quantize/compare.py [--repeat 3] [--markdown] [--modes static,entropy,dynamic,fp16]

Needs: `make setup` (models, images, ORT library), Go, and python3 with numpy, onnx and
onnxruntime (pip install numpy onnx onnxruntime).
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("OPTIMCTL_CACHE", os.path.join(ROOT, ".cache"))
MODELS = {
    "cls": dict(path=os.path.join(CACHE, "models/ocr/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
                pre="resize=48x192,mean=0.5/0.5/0.5,std=0.5/0.5/0.5", shape="x=1,3,48,192"),
    "det": dict(path=os.path.join(CACHE, "models/ocr/ch_PP-OCRv4_det_infer.onnx"),
                pre="resize=320x320,mean=0.485/0.456/0.406,std=0.229/0.224/0.225", shape="x=1,3,320,320"),
}
IMAGES = os.path.join(CACHE, "images")


# ---------------------------------------------------------------- workers (subprocesses)

def worker(args):
    """Runs one onnxruntime.quantization call; the parent measures this process."""
    import numpy as np
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_dynamic, quantize_static)
    kind, model, npz, out = args[:4]
    if kind == "prep":  # ORT's recommended preparation: opset 13 for per-channel Q/DQ, then quant_pre_process
        import onnx
        from onnx import version_converter
        from onnxruntime.quantization.shape_inference import quant_pre_process
        m = onnx.load(model)
        if m.opset_import[0].version < 13:
            m = version_converter.convert_version(m, 13)
        tmp = out + ".v13.onnx"
        onnx.save(m, tmp)
        quant_pre_process(tmp, out, skip_symbolic_shape=True)
        os.remove(tmp)
        return
    if kind == "dynamic":
        quantize_dynamic(model, out, per_channel=True, weight_type=QuantType.QInt8)
        return
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[args[4]]
    x = np.load(npz)["x"]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.i = 0

        def get_next(self):
            if self.i >= len(x):
                return None
            self.i += 1
            return {"x": x[self.i - 1:self.i]}

    quantize_static(model, out, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=method)


# ---------------------------------------------------------------- measurement

def timed(cmd):
    """Runs cmd under /usr/bin/time -v; returns (ok, wall seconds, peak RSS MiB, stderr tail)."""
    t0 = time.perf_counter()
    p = subprocess.run(["/usr/bin/time", "-v"] + cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    rss = int(m.group(1)) / 1024 if m else float("nan")
    tail = "\n".join(l for l in p.stderr.splitlines() if "Command being timed" not in l)[-400:]
    return p.returncode == 0, wall, rss, tail


def agreement(ref, cand, x, kind):
    """Agreement of cand with ref on every sample: classifier worst/mean cosine and top-1;
    detector cosine of all maps together and IoU of the text masks at DB's 0.3."""
    import numpy as np
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.log_severity_level = 3
    r = ort.InferenceSession(ref, so)
    c = ort.InferenceSession(cand, so)
    cos, top, dot, na, nb, inter, union, mae = [], 0, 0.0, 0.0, 0.0, 0, 0, []
    for i in range(len(x)):
        a = r.run(None, {"x": x[i:i + 1]})[0].astype(np.float64)
        b = c.run(None, {"x": x[i:i + 1]})[0].astype(np.float64)
        d, p, q = float((a * b).sum()), float((a * a).sum()), float((b * b).sum())
        dot, na, nb = dot + d, na + p, nb + q
        cos.append(1.0 if p == q == 0 else (d / (p * q) ** 0.5 if p > 0 and q > 0 else 0.0))
        top += int(a.argmax() == b.argmax())
        inter += int(((a > 0.3) & (b > 0.3)).sum())
        union += int(((a > 0.3) | (b > 0.3)).sum())
        mae.append(float(np.abs(a - b).mean()))
    res = {"global_cosine": dot / (na * nb) ** 0.5, "mean_abs_err": statistics.mean(mae)}
    if kind == "cls":
        res.update(worst_cosine=min(cos), mean_cosine=statistics.mean(cos), top1=top / len(x))
    else:
        res.update(mask_iou=inter / union if union else 1.0)
    return res


def latencies(paths, x, rounds=5, runs=30):
    """p50 latency (ms) of each model with ORT's default optimisations and 2 threads,
    interleaved in rounds so a busy moment hits every model alike; best round wins."""
    import numpy as np
    import onnxruntime as ort
    sess = {}
    for p in paths:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.intra_op_num_threads = 2
        sess[p] = ort.InferenceSession(p, so)
        for _ in range(5):
            sess[p].run(None, {"x": x[:1]})
    best = {p: float("inf") for p in paths}
    for _ in range(rounds):
        for p in paths:
            ts = []
            for k in range(runs):
                xi = x[k % len(x):k % len(x) + 1]
                t = time.perf_counter()
                sess[p].run(None, {"x": xi})
                ts.append(time.perf_counter() - t)
            best[p] = min(best[p], 1000 * float(np.median(ts)))
    return best


# ---------------------------------------------------------------- driver

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3, help="runs of each tool (fastest wall time, median RSS)")
    ap.add_argument("--modes", default="static,entropy,dynamic,fp16")
    ap.add_argument("--models", default="cls,det")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--keep", help="keep the output models in this folder")
    a = ap.parse_args()
    import numpy as np

    work = a.keep or tempfile.mkdtemp(prefix="optimctl-qcompare-")
    os.makedirs(work, exist_ok=True)
    binary = os.path.join(work, "optimctl")
    subprocess.run(["go", "build", "-o", binary, "./cmd/optimctl"], cwd=ROOT, check=True)
    ortlib = os.path.join(CACHE, "ort", "libonnxruntime.so.1")
    rows = []
    for name in a.models.split(","):
        mdl = MODELS[name]
        npz = os.path.join(work, name + ".npz")
        subprocess.run(["go", "run", "./bench/quantize/dumpdata", "-model", mdl["path"], "-data", IMAGES,
                        "-preprocess", mdl["pre"], "-shape", mdl["shape"], "-o", npz], cwd=ROOT, check=True)
        x = np.load(npz)["x"]
        prepped = os.path.join(work, name + ".ortprep.onnx")
        ok, prep_wall, prep_rss, tail = timed([sys.executable, __file__, "--worker", "prep", mdl["path"], npz, prepped])
        if not ok:
            print("ORT preparation failed:", tail, file=sys.stderr)
            prepped = None
        outs = []
        for mode in a.modes.split(","):
            method = {"static": "minmax", "entropy": "entropy"}.get(mode)
            jobs = []
            if mode in ("static", "entropy", "dynamic"):
                kind = "dynamic" if mode == "dynamic" else "static"
                extra = [method] if method else []
                jobs.append(("ORT " + kind, mdl["path"], [sys.executable, __file__, "--worker", kind, mdl["path"], npz], extra))
                if prepped:
                    jobs.append(("ORT " + kind + " (prepared)", prepped, [sys.executable, __file__, "--worker", kind, prepped, npz], extra))
            ocmd = [binary, "--ort-lib", ortlib, "-q", "quantize", mdl["path"], "--mode", "static" if method else mode]
            if method:
                ocmd += ["--per-channel", "--calib", IMAGES, "--preprocess", mdl["pre"], "--shape", mdl["shape"], "--calib-method", method]
            elif mode == "dynamic":
                ocmd += ["--per-channel"]
            jobs.append(("optimctl", mdl["path"], ocmd, []))
            for tool, src, cmd, extra in jobs:
                out = os.path.join(work, "%s.%s.%s.onnx" % (name, mode, re.sub(r"\W+", "_", tool)))
                full = cmd + [out] + extra if tool.startswith("ORT") else cmd + ["-o", out]
                walls, rsss, ok = [], [], True
                for _ in range(a.repeat if not (mode == "entropy" and tool.startswith("ORT")) else 1):
                    ok, wall, rss, tail = timed(full)
                    if not ok:
                        print("%s %s %s failed: %s" % (name, mode, tool, tail), file=sys.stderr)
                        break
                    walls.append(wall)
                    rsss.append(rss)
                row = dict(model=name, mode=mode, tool=tool, ok=ok)
                if ok:
                    row.update(wall_s=min(walls), peak_rss_mib=statistics.median(rsss),
                               size_kib=os.path.getsize(out) / 1024, out=out)
                    try:
                        row.update(agreement(mdl["path"], out, x, name))
                    except Exception as e:  # an invalid model is a result, not a crash
                        row.update(ok=False, error=str(e).splitlines()[0][:160])
                    if row["ok"]:
                        outs.append(out)
                rows.append(row)
        lat = latencies([mdl["path"]] + outs, x)
        for row in rows:
            if row.get("out") in lat:
                row["latency_ms"] = lat[row["out"]]
        rows.append(dict(model=name, mode="fp32", tool="(reference)", ok=True, size_kib=os.path.getsize(mdl["path"]) / 1024,
                         latency_ms=lat[mdl["path"]], prep_wall_s=prep_wall, prep_rss_mib=prep_rss))
    if a.markdown:
        print(markdown(rows))
    else:
        print(json.dumps(rows, indent=1))
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)


def fmt(v, f):
    return "—" if v is None else f % v


def markdown(rows):
    out = ["| model | mode | tool | wall s | peak RSS MiB | size KiB | agreement with FP32 | ORT p50 ms |",
           "|---|---|---|---:|---:|---:|---|---:|"]
    for r in rows:
        if not r["ok"]:
            out.append("| %s | %s | %s | | | | failed: %s | |" % (r["model"], r["mode"], r["tool"], r.get("error", "")))
            continue
        if r["model"] == "cls":
            agr = "worst cos %s, mean cos %s, top-1 %s" % (fmt(r.get("worst_cosine"), "%.4f"), fmt(r.get("mean_cosine"), "%.4f"), fmt(r.get("top1"), "%.3f"))
        else:
            agr = "cos %s, mask IoU %s, MAE %s" % (fmt(r.get("global_cosine"), "%.4f"), fmt(r.get("mask_iou"), "%.3f"), fmt(r.get("mean_abs_err"), "%.5f"))
        if r["mode"] == "fp32":
            agr = "ORT prep (opset 13 + quant_pre_process): %.2f s, %.0f MiB" % (r["prep_wall_s"], r["prep_rss_mib"])
        out.append("| %s | %s | %s | %s | %s | %.0f | %s | %s |" % (r["model"], r["mode"], r["tool"], fmt(r.get("wall_s"), "%.2f"),
                                                                   fmt(r.get("peak_rss_mib"), "%.0f"), r["size_kib"], agr, fmt(r.get("latency_ms"), "%.2f")))
    return "\n".join(out)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
    else:
        main()
