#!/usr/bin/env python3
"""Dequantizes every Linear of a GPTQ or AutoAWQ ("gemm") checkpoint with numpy, following
the published layouts (AutoGPTQ's / GPTQModel's torch QuantLinear and AutoAWQ's
unpack_awq + reverse_awq_order), independently of optimctl's Go code.

    read_quantized.py CHECKPOINT_DIR  ->  JSON on stdout:
        {"quant_method": ..., "layers": {prefix: {"n": N, "k": K, "sha256": hex of the
         float32 [N, K] weight in C order, "max_abs": ..., "v1_carry_fields": zero points
         that GPTQModel's v1→v2 word addition would corrupt}}}

Only numpy is needed: the safetensors header is parsed by hand.
"""
import hashlib
import json
import struct
import sys

import numpy as np

DT = {"F32": np.float32, "F16": np.float16, "BF16": None, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__" or DT.get(info["dtype"]) is None:
            continue
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DT[info["dtype"]]).reshape(info["shape"])
    return out


def unpack_cols(packed, bits):
    """int32 [R, C] -> [R, C * 32/bits], value j of word (r, c) at bits [j*bits, (j+1)*bits)."""
    pf = 32 // bits
    shifts = np.arange(0, 32, bits, dtype=np.uint32)
    u = packed.view(np.uint32)
    vals = (u[:, :, None] >> shifts[None, None, :]) & np.uint32((1 << bits) - 1)
    return vals.reshape(packed.shape[0], packed.shape[1] * pf).astype(np.int32)


def gptq(t, prefix, cfg):
    bits = cfg["bits"]
    qweight, qzeros = t[prefix + ".qweight"], t[prefix + ".qzeros"]
    scales, g_idx = t[prefix + ".scales"].astype(np.float32), t[prefix + ".g_idx"].astype(np.int64)
    # qweight [K/pf, N] is packed along K: unpack rows.
    q = unpack_cols(np.ascontiguousarray(qweight.T), bits).T  # [K, N]
    z = unpack_cols(qzeros, bits)  # [G, N]
    carries = 0
    if cfg.get("checkpoint_format", "gptq") == "gptq":
        z = (z + 1) & ((1 << bits) - 1)  # v1 stores z - 1 (AutoGPTQ's torch kernel masks)
        # GPTQModel converts v1 to v2 by adding 0x11111111 (4-bit) to whole int32 words; a
        # stored 2^bits - 1 then carries into the next field. Count the fields that differ.
        ones = sum(1 << s for s in range(0, 32, bits))
        added = (qzeros.view(np.uint32).astype(np.uint64) + ones).astype(np.uint32).view(np.int32)
        carries = int((unpack_cols(added, bits) != z).sum())
    w = (q - z[g_idx]).astype(np.float32) * scales[g_idx]  # [K, N]
    return w.T, carries


AWQ_REVERSE_ORDER = [0, 4, 1, 5, 2, 6, 3, 7]


def awq(t, prefix, cfg):
    qweight, qzeros, scales = t[prefix + ".qweight"], t[prefix + ".qzeros"], t[prefix + ".scales"].astype(np.float32)
    q, z = unpack_cols(qweight, 4), unpack_cols(qzeros, 4)  # [K, N], [G, N] in packing order
    n = q.shape[1]
    rev = np.arange(n).reshape(-1, 8)[:, AWQ_REVERSE_ORDER].reshape(-1)
    q, z = q[:, rev], z[:, rev]
    group = q.shape[0] // scales.shape[0]
    g = np.arange(q.shape[0]) // group
    w = (q - z[g]).astype(np.float32) * scales[g]
    return w.T, 0


def main():
    d = sys.argv[1]
    cfg = json.load(open(d + "/config.json"))["quantization_config"]
    t = load(d + "/model.safetensors")
    fn = {"gptq": gptq, "awq": awq}[cfg["quant_method"]]
    layers = {}
    for name in sorted(t):
        if not name.endswith(".qweight"):
            continue
        prefix = name[: -len(".qweight")]
        w, carries = fn(t, prefix, cfg)
        w = np.ascontiguousarray(w, dtype=np.float32)
        layers[prefix] = {"n": w.shape[0], "k": w.shape[1], "sha256": hashlib.sha256(w.tobytes()).hexdigest(),
                          "max_abs": float(np.abs(w).max()), "v1_carry_fields": carries}
    json.dump({"quant_method": cfg["quant_method"], "layers": layers}, sys.stdout)


if __name__ == "__main__":
    main()
