#!/usr/bin/env python3
"""Independent numpy forward pass of a Hugging Face BERT checkpoint with sentence-transformers'
mean pooling and L2 normalisation, straight from model.safetensors and config.json.

    bert_ref.py MODEL_DIR DATA.npz N  ->  JSON {"sentence_embedding": [[...], ...]} on stdout

The safetensors header is parsed by hand (8-byte length, JSON, raw little-endian data), so
nothing but numpy is needed. Used by pkg/int4's tests to check the ONNX graph that
bench/int4/minilm builds from the same weights.
"""
import json
import math
import struct
import sys

import numpy as np


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32}[info["dtype"]]
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"])
    return out


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * g + b


def erf(x):
    return np.vectorize(math.erf)(x)


def main():
    model_dir, npz, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    cfg = json.load(open(f"{model_dir}/config.json"))
    w = {k: v.astype(np.float64) if v.dtype != np.int64 else v for k, v in load_safetensors(f"{model_dir}/model.safetensors").items()}
    d = np.load(npz)
    ids, mask, tt = d["input_ids"][:count], d["attention_mask"][:count], d["token_type_ids"][:count]
    heads, hidden, eps = cfg["num_attention_heads"], cfg["hidden_size"], cfg["layer_norm_eps"]
    hd = hidden // heads
    b, s = ids.shape
    x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.token_type_embeddings.weight"][tt] \
        + w["embeddings.position_embeddings.weight"][np.arange(s)][None]
    x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
    add_mask = (1.0 - mask[:, None, None, :].astype(np.float64)) * -1e30

    def lin(name, v):
        return v @ w[name + ".weight"].T + w[name + ".bias"]

    for l in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{l}"
        split = lambda t: t.reshape(b, s, heads, hd).transpose(0, 2, 1, 3)
        q = split(lin(p + ".attention.self.query", x))
        k = split(lin(p + ".attention.self.key", x))
        v = split(lin(p + ".attention.self.value", x))
        sc = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + add_mask
        sc = np.exp(sc - sc.max(-1, keepdims=True))
        pr = sc / sc.sum(-1, keepdims=True)
        c = (pr @ v).transpose(0, 2, 1, 3).reshape(b, s, hidden)
        x1 = layer_norm(lin(p + ".attention.output.dense", c) + x,
                        w[p + ".attention.output.LayerNorm.weight"], w[p + ".attention.output.LayerNorm.bias"], eps)
        h = lin(p + ".intermediate.dense", x1)
        h = 0.5 * h * (1 + erf(h / math.sqrt(2)))
        x = layer_norm(lin(p + ".output.dense", h) + x1,
                       w[p + ".output.LayerNorm.weight"], w[p + ".output.LayerNorm.bias"], eps)
    m = mask[..., None].astype(np.float64)
    e = (x * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    e = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)
    json.dump({"sentence_embedding": e.tolist()}, sys.stdout)


if __name__ == "__main__":
    main()
