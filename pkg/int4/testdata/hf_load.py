#!/usr/bin/env python3
"""Outside referee for optimctl's checkpoints: Hugging Face transformers (with GPTQModel as its
GPTQ/AWQ backend) loads the float checkpoint and a quantized one on CPU and runs both over
token windows, independently of optimctl's Go code.

    hf_load.py FLOAT_DIR QUANT_DIR DATA.npz N  ->  JSON on stdout:
        {"float_ppl": ..., "quant_ppl": ..., "kernel": class of the first q_proj,
         "logit_cosine": mean over positions of cos(float logits, quantized logits)}

Exit status 3 when torch, transformers or gptqmodel cannot be imported (the caller skips).
"""
import json
import os
import sys


def main():
    # GPTQModel prints banners on stdout: keep the real stdout for the JSON alone.
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    try:
        import numpy as np
        import torch
        import transformers  # noqa: F401
        import gptqmodel  # noqa: F401
        from transformers import AutoModelForCausalLM
    except Exception as e:  # the caller skips: the referee is not installed here
        print("missing: %s" % e, file=sys.stderr)
        sys.exit(3)
    float_dir, quant_dir, data, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.manual_seed(0)
    ids = torch.from_numpy(np.load(data)["input_ids"][:n])

    def run(model):
        with torch.no_grad():
            lg = model(ids).logits.double()
        lp = torch.log_softmax(lg, -1)
        nll = -lp[:, :-1].gather(-1, ids[:, 1:, None]).sum()
        return float(torch.exp(nll / (ids.shape[0] * (ids.shape[1] - 1)))), lg

    f = AutoModelForCausalLM.from_pretrained(float_dir, dtype=torch.float32)
    pf, lf = run(f)
    del f
    q = AutoModelForCausalLM.from_pretrained(quant_dir, device_map="cpu")
    kernel = type(q.model.layers[0].self_attn.q_proj).__name__
    pq, lq = run(q)
    cos = torch.nn.functional.cosine_similarity(lf, lq, dim=-1).mean()
    json.dump({"float_ppl": pf, "quant_ppl": pq, "kernel": kernel, "logit_cosine": float(cos)}, out)
    out.flush()


if __name__ == "__main__":
    main()
