#!/usr/bin/env python3
"""PyTorch peer for bench/llama_bench: the same model directory, the same thread count, the same
work (prefill of each prompt length; decode of N tokens after a 128-token prompt with a KV cache),
eager PyTorch written from the Hugging Face LLaMA definition (tests/reference/llama_reference.py).
Prints one JSON object of medians."""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from llama_reference import LlamaReference  # noqa: E402
from safetensors_io import read_safetensors  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt-lens", default="512,2048")
    ap.add_argument("--decode-tokens", type=int, default=64)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--linear", choices=["mkldnn", "matmul"], default="mkldnn")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = json.load(open(os.path.join(args.model, "config.json")))
    weights = read_safetensors(os.path.join(args.model, "model.safetensors"))
    # Debian's torch links the generic reference BLAS (about 2 GFLOP/s here), but it carries
    # oneDNN (MKL-DNN): projections go through torch's mkldnn_linear, PyTorch's fastest fp32 CPU
    # path in this build; attention's batched matmuls stay on torch's own kernels.
    blocked = {name: t.to_mkldnn() for name, t in weights.items() if name.endswith("proj.weight")}

    def linear(x, name):
        return torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), blocked[name], None).to_dense()

    model = LlamaReference(cfg, weights, linear=linear if args.linear == "mkldnn" else None)
    rng = np.random.default_rng(0)
    V = cfg["vocab_size"]
    out = {"engine": "pytorch " + torch.__version__ + " (" + args.linear + " projections)", "threads": args.threads, "prefill": {}}
    for n in [int(x) for x in args.prompt_lens.split(",")]:
        ids = rng.integers(3, V, size=n).tolist()
        times = []
        for r in range(args.runs + 1):
            t0 = time.perf_counter()
            model.forward(ids, logits_rows=1)
            if r > 0:
                times.append(time.perf_counter() - t0)
        t = float(np.median(times))
        out["prefill"][str(n)] = {"seconds": t, "tokens_per_s": n / t}
    per_token = []
    for r in range(args.runs + 1):
        cache = [None] * cfg["num_hidden_layers"]
        model.forward(rng.integers(3, V, size=128).tolist(), cache=cache, logits_rows=1)
        t0 = time.perf_counter()
        for _ in range(args.decode_tokens):
            model.forward([int(rng.integers(3, V))], cache=cache, logits_rows=1)
        if r > 0:
            per_token.append((time.perf_counter() - t0) / args.decode_tokens)
    out["decode"] = {"tokens_per_s": 1.0 / float(np.median(per_token))}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
