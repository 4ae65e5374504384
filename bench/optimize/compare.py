#!/usr/bin/env python3
"""Side-by-side: `optimctl optimize` against onnxsim, onnxslim and onnxoptimizer.

For every real model (the PP-OCR models from `make setup` and the ONNX "light" models), each
tool optimizes the same file with the same fixed input shapes where the tool takes them, and
the table shows the node count after each tool, the time each took, and whether the
outputs still match the original in ONNX Runtime (seeded random inputs, max abs error,
"ok" when <= 1e-4 * max(1, max |reference|)).

Timing: every tool runs in its own process and is timed inside it from loading the model to
having written the result (interpreter start-up and imports are not counted; for optimctl
it is the `seconds` of its JSON report, which covers the same span and includes the fsync
of its atomic write). --repeat N reports the fastest of N runs.

Needs: python packages onnx, onnxruntime, onnxsim, onnxslim, onnxoptimizer (pip install them
into a virtualenv), and the optimctl binary (`make build`, or --optimctl PATH). When the
Python packages are missing the script says so and exits 0.

    python3 -m venv /tmp/optvenv
    /tmp/optvenv/bin/pip install onnx onnxruntime onnxsim onnxslim onnxoptimizer
    make build
    /tmp/optvenv/bin/python bench/optimize/compare.py [--markdown] [--models cls,det,...]
"""

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CACHE = os.environ.get("OPTIMCTL_CACHE", os.path.join(ROOT, ".cache"))
LIGHT = os.path.join(CACHE, "onnx-wheel", "onnx", "backend", "test", "data", "light")
OCR = os.path.join(CACHE, "models", "ocr")

# name, path, input shapes, whether the tools are told the shapes (fixing dynamic
# dimensions lets shape arithmetic fold; "-dyn" rows keep the model dynamic and only feed
# these shapes when comparing outputs).
_OCR = [
    ("ocr-cls", "ch_ppocr_mobile_v2.0_cls_infer.onnx", {"x": [1, 3, 48, 192]}),
    ("ocr-det", "ch_PP-OCRv4_det_infer.onnx", {"x": [1, 3, 640, 640]}),
    ("ocr-rec", "ch_PP-OCRv4_rec_infer.onnx", {"x": [1, 3, 48, 320]}),
]
MODELS = [(n, os.path.join(OCR, f), s, True) for n, f, s in _OCR] + \
    [(n + "-dyn", os.path.join(OCR, f), s, False) for n, f, s in _OCR] + [
    (n, os.path.join(LIGHT, "light_%s.onnx" % n), None, False)
    for n in ["resnet50", "densenet121", "inception_v1", "inception_v2", "squeezenet",
              "vgg19", "shufflenet", "zfnet512", "bvlc_alexnet"]
]

TOOLS = ["optimctl", "onnxsim", "onnxslim", "onnxoptimizer"]
PY_PACKAGES = ["onnx", "onnxruntime", "onnxsim", "onnxslim", "onnxoptimizer", "numpy"]


def worker(tool, src, dst, shapes):
    """Runs one Python tool in this process; prints {"seconds", "nodes"} as JSON."""
    import onnx

    shapes = json.loads(shapes) if shapes != "null" else None
    t0 = time.perf_counter()
    model = onnx.load(src)
    if tool == "onnxsim":
        import onnxsim

        out, _ = onnxsim.simplify(model, overwrite_input_shapes=shapes)
    elif tool == "onnxslim":
        import onnxslim

        kw = {}
        if shapes:
            kw["input_shapes"] = ["%s:%s" % (k, ",".join(map(str, v))) for k, v in shapes.items()]
        out = onnxslim.slim(model, **kw)
    elif tool == "onnxoptimizer":
        import onnxoptimizer

        out = onnxoptimizer.optimize(model)
    else:
        raise SystemExit("unknown tool " + tool)
    onnx.save(out, dst)
    print(json.dumps({"seconds": time.perf_counter() - t0, "nodes": len(out.graph.node)}))


def run_tool(tool, src, dst, shapes, optimctl):
    """Returns (nodes_after, seconds) or raises RuntimeError with the tool's message."""
    if tool == "optimctl":
        cmd = [optimctl, "optimize", src, "-o", dst, "--json"]
        for k, v in (shapes or {}).items():
            cmd += ["--shape", "%s=%s" % (k, ",".join(map(str, v)))]
    else:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", tool, src, dst, json.dumps(shapes)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError((p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1][:120])
    if tool == "optimctl":
        r = json.loads(p.stdout)
        return r["nodes_after"], r["seconds"]
    r = json.loads(p.stdout.strip().splitlines()[-1])
    return r["nodes"], r["seconds"]


def node_count(path):
    import onnx

    return len(onnx.load(path, load_external_data=False).graph.node)


def max_error(ref_path, cand_path, shapes):
    """Max abs error between two models on seeded random inputs, and the reference's max."""
    import numpy as np
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    a = ort.InferenceSession(ref_path, so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(cand_path, so, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(42)
    feeds = {}
    for i in a.get_inputs():
        shp = (shapes or {}).get(i.name) or [d if isinstance(d, int) else 1 for d in i.shape]
        feeds[i.name] = rng.standard_normal(shp).astype(np.float32)
    names = [o.name for o in a.get_outputs()]
    ra = a.run(names, feeds)
    rb = b.run(names, feeds)
    err = max(float(np.abs(x.astype(np.float64) - y).max()) for x, y in zip(ra, rb))
    ref = max(float(np.abs(x).max()) for x in ra)
    return err, ref


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(*sys.argv[2:6])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--optimctl", default=os.path.join(ROOT, "bin", "optimctl"), help="optimctl binary")
    ap.add_argument("--models", default="", help="comma-separated subset of: " + ",".join(m[0] for m in MODELS))
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    ap.add_argument("--keep", default="", help="folder to keep the optimized models in")
    ap.add_argument("--repeat", type=int, default=1, help="run each tool this many times and report the fastest")
    args = ap.parse_args()

    missing = [p for p in PY_PACKAGES if importlib.util.find_spec(p) is None]
    if missing:
        print("compare.py: Python packages missing: %s -- nothing compared.\n"
              "Install them, e.g.: python3 -m venv /tmp/optvenv && /tmp/optvenv/bin/pip install %s\n"
              "then run this script with /tmp/optvenv/bin/python." % (", ".join(missing), " ".join(PY_PACKAGES)))
        return 0
    if not os.access(args.optimctl, os.X_OK):
        print("compare.py: optimctl binary not found at %s (run `make build` or pass --optimctl) -- nothing compared." % args.optimctl)
        return 0
    want = set(filter(None, args.models.split(",")))
    models = [m for m in MODELS if not want or m[0] in want]
    models = [m for m in models if os.path.exists(m[1])]
    if not models:
        print("compare.py: no models found under %s (run `make setup`) -- nothing compared." % CACHE)
        return 0

    out_dir = args.keep or tempfile.mkdtemp(prefix="optimize-compare-")
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for name, path, shapes, fix in models:
        row = {"model": name, "before": node_count(path)}
        for tool in TOOLS:
            dst = os.path.join(out_dir, "%s.%s.onnx" % (name, tool))
            try:
                runs = [run_tool(tool, path, dst, shapes if fix else None, args.optimctl)
                        for _ in range(max(1, args.repeat))]
                nodes, secs = runs[0][0], min(r[1] for r in runs)
                err, ref = max_error(path, dst, shapes)
                ok = err <= 1e-4 * max(1.0, ref)
                row[tool] = {"nodes": nodes, "seconds": secs, "err": err, "ok": ok}
            except Exception as e:  # a tool failing on a model is a result, not a crash
                row[tool] = {"error": str(e)}
            if not args.keep and os.path.exists(dst):
                os.remove(dst)
        rows.append(row)
        print_row(row, args.markdown, first=len(rows) == 1)
    if args.markdown:
        print_summary(rows)
    return 0


def cell(r, key):
    if "error" in r:
        return "error"
    if key == "nodes":
        return str(r["nodes"])
    if key == "seconds":
        return "%.2f" % r["seconds"]
    return "%s %.1e" % ("ok" if r["ok"] else "FAIL", r["err"])


def print_row(row, markdown, first):
    tools = TOOLS
    if markdown:
        if first:
            print("| model | nodes before | " + " | ".join("nodes %s" % t for t in tools) + " | "
                  + " | ".join("s %s" % t for t in tools) + " | " + " | ".join("match %s" % t for t in tools) + " |")
            print("|" + "---|" * (2 + 3 * len(tools)))
        print("| %s | %d | %s | %s | %s |" % (
            row["model"], row["before"],
            " | ".join(cell(row[t], "nodes") for t in tools),
            " | ".join(cell(row[t], "seconds") for t in tools),
            " | ".join(cell(row[t], "match") for t in tools)), flush=True)
        return
    if first:
        print("%-13s %6s  %s  %s  %s" % ("model", "before",
                                         " ".join("%8s" % t[:8] for t in tools),
                                         " ".join("%8s" % ("s " + t[:6]) for t in tools),
                                         " ".join("%14s" % ("match " + t[:7]) for t in tools)))
    for t in tools:
        if "error" in row[t]:
            print("  %s on %s: %s" % (t, row["model"], row[t]["error"]), file=sys.stderr)
    print("%-13s %6d  %s  %s  %s" % (
        row["model"], row["before"],
        " ".join("%8s" % cell(row[t], "nodes") for t in tools),
        " ".join("%8s" % cell(row[t], "seconds") for t in tools),
        " ".join("%14s" % cell(row[t], "match") for t in tools)), flush=True)


def print_summary(rows):
    """Where optimctl is not the smallest or not the fastest."""
    print()
    for row in rows:
        ours = row["optimctl"]
        if "error" in ours:
            print("- %s: optimctl failed: %s" % (row["model"], ours["error"]))
            continue
        others = [(t, row[t]) for t in TOOLS[1:] if "error" not in row[t] and row[t]["ok"]]
        fewer = [t for t, r in others if r["nodes"] < ours["nodes"]]
        faster = [t for t, r in others if r["seconds"] < ours["seconds"]]
        if fewer:
            print("- %s: fewer nodes with %s" % (row["model"], ", ".join(fewer)))
        if faster:
            print("- %s: faster: %s" % (row["model"], ", ".join(faster)))


if __name__ == "__main__":
    sys.exit(main())
