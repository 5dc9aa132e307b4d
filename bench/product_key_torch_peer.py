#!/usr/bin/env python3
"""PyTorch peer for bench/product_key_bench.cc: the same memory layer (Memory+ with swilu, shared
value table of n_keys^2 rows) run by PyTorch's CPU kernels (einsum scores, topk, embedding_bag),
using the forward of tests/reference/memory_layer_reference.py. Prints one JSON object:
  {"torch": version, "threads": n, "dtype": "f32", "decode_tokens_per_s": x,
   "batch": B, "batch_tokens_per_s": y}
Timings are medians over --reps runs after one warm-up (wall clock, or process CPU time with
--clock cpu). Run with Debian's /usr/bin/python3.
"""
import argparse
import json
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
from memory_layer_reference import Memory  # noqa: E402


CLOCK = time.perf_counter


def median_seconds(fn, reps):
    fn()
    times = []
    for _ in range(reps):
        t0 = CLOCK()
        fn()
        times.append(CLOCK() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--d", type=int, default=1024)
    ap.add_argument("--n-keys", type=int, default=1024)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--knn", type=int, default=32)
    ap.add_argument("--k-dim", type=int, default=512)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--decode-steps", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="cpu: process CPU time (meaningful with --threads 1 on a shared machine)")
    args = ap.parse_args()
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    torch.set_num_threads(args.threads)
    d, heads, k_dim, n_keys = args.d, args.heads, args.k_dim, args.n_keys
    cfg = {"hidden_size": d, "memory_layers": [0], "memory_n_keys": n_keys, "memory_heads": heads,
           "memory_knn": args.knn, "memory_k_dim": k_dim, "memory_v_dim": -1, "memory_swilu": True,
           "memory_gated": False, "memory_share_values": True, "memory_query_bias": True,
           "memory_proj_bias": True}
    p = "model.layers.0.memory."
    # uniform_ touches every page: an untouched table would read the shared zero page and time
    # nothing but the cache.
    w = {
        "model.memory_values.weight": torch.empty(n_keys * n_keys, d).uniform_(-0.03, 0.03),
        p + "query_proj.weight": torch.empty(heads * k_dim, d).uniform_(-0.03, 0.03),
        p + "query_proj.bias": torch.zeros(heads * k_dim),
        p + "keys": torch.empty(heads, 2, n_keys, k_dim // 2).uniform_(-0.1, 0.1),
        p + "value_proj.weight": torch.empty(d, d).uniform_(-0.03, 0.03),
        p + "value_proj.bias": torch.zeros(d),
        p + "swilu_projection.weight": torch.empty(d, d).uniform_(-0.03, 0.03),
        p + "swilu_projection.bias": torch.zeros(d),
    }
    layer = Memory(cfg, w, 0)
    gen = torch.Generator().manual_seed(0)
    xs = torch.randn(args.decode_steps, 1, d, generator=gen)
    xb = torch.randn(args.batch, d, generator=gen)

    def decode():
        for x in xs:
            layer.forward(x)

    decode_s = median_seconds(decode, args.reps) / args.decode_steps
    batch_s = median_seconds(lambda: layer.forward(xb), args.reps)
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "dtype": "f32",
                      "decode_tokens_per_s": 1.0 / decode_s, "batch": args.batch,
                      "batch_tokens_per_s": args.batch / batch_s}))


if __name__ == "__main__":
    main()
