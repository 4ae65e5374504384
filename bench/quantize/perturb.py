#!/usr/bin/env python3
"""How much of a quantized classifier's agreement with FP32 is rounding luck?

Multiplies every activation scale of each QDQ model (the scale initializers of its
QuantizeLinear nodes, shared with their DequantizeLinear) by (1 + rel·N(0, 1)), far below
anything calibration can resolve, and reports top-1 agreement and mean cosine of the
softmax output against the FP32 model for several seeds. When the spread across seeds is
as wide as the gap between two tools, the gap is noise, not method.

    python3 bench/quantize/perturb.py FP32.onnx DATA.npz MODEL.onnx [MODEL.onnx ...] [--rel 1e-5] [--seeds 8]

DATA.npz holds the input "x" (axis 0 = samples), as bench/quantize/dumpdata writes it.
Needs numpy, onnx and onnxruntime.
"""
import argparse

import numpy as np
import onnx
import onnxruntime as ort
from onnx import numpy_helper


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("reference")
    ap.add_argument("data")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rel", type=float, default=1e-5)
    ap.add_argument("--seeds", type=int, default=8)
    a = ap.parse_args()
    x = np.load(a.data)["x"]
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref = ort.InferenceSession(a.reference, so)
    want = [ref.run(None, {"x": x[i:i + 1]})[0].ravel().astype(np.float64) for i in range(len(x))]

    def score(model):
        s = ort.InferenceSession(model.SerializeToString(), so)
        cos, top = [], 0
        for i in range(len(x)):
            r = want[i]
            c = s.run(None, {"x": x[i:i + 1]})[0].ravel().astype(np.float64)
            cos.append(float(r @ c / np.sqrt((r @ r) * (c @ c))))
            top += int(r.argmax() == c.argmax())
        return top, float(np.mean(cos))

    for path in a.models:
        m = onnx.load(path)
        scales = {n.input[1] for n in m.graph.node if n.op_type == "QuantizeLinear"}
        runs = []
        for seed in range(a.seeds):
            rng = np.random.default_rng(seed)
            p = onnx.ModelProto()
            p.CopyFrom(m)
            for t in p.graph.initializer:
                if t.name in scales:
                    v = numpy_helper.to_array(t)
                    v = (v * (1 + a.rel * rng.standard_normal(v.shape))).astype(np.float32)
                    t.CopyFrom(numpy_helper.from_array(v, t.name))
            runs.append(score(p))
        top, cos = score(m)
        tops = [r[0] for r in runs]
        coss = [r[1] for r in runs]
        print("%s: top-1 %d/%d, mean cos %.4f; scales ×(1 + %g·N(0,1)), %d seeds: top-1 %d..%d (average %.2f)/%d, "
              "mean cos %.4f..%.4f (average %.4f)" % (path, top, len(x), cos, a.rel, a.seeds, min(tops), max(tops),
                                                     np.mean(tops), len(x), min(coss), max(coss), np.mean(coss)))


if __name__ == "__main__":
    main()
