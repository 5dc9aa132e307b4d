#!/usr/bin/python3
"""PyTorch peer for bench/iceformer_bench.cc: exact attention time in PyTorch for the same shapes.

Run with the Debian interpreter, which has torch 1.13 (no scaled_dot_product_attention):
    /usr/bin/python3 bench/iceformer_torch_peer.py --n 2048,4096,8192,16384 --heads 1

Attention is matmul -> softmax -> matmul over query chunks (chunk x n scores at a time, so memory
stays O(chunk * n)); causal chunks only multiply the keys they can see. Times are the median of
--reps runs of the attention module alone (inputs prepared beforehand), on --threads threads.
Prints one markdown table row per (mode, n).
"""
import argparse
import math
import statistics
import time

import torch


def attention(q, k, v, causal, chunk):
    """q, k, v: [heads, n, d]. Returns [heads, n, d]."""
    heads, n, d = q.shape
    scale = 1.0 / math.sqrt(d)
    out = torch.empty_like(q)
    for start in range(0, n, chunk):
        end = min(n, start + chunk)
        kv_end = end if causal else n
        s = torch.matmul(q[:, start:end], k[:, :kv_end].transpose(1, 2)) * scale
        if causal:
            # Query i (absolute) sees keys j <= i.
            rows = torch.arange(start, end).unsqueeze(1)
            cols = torch.arange(kv_end).unsqueeze(0)
            s.masked_fill_(cols > rows, float("-inf"))
        out[:, start:end] = torch.matmul(torch.softmax(s, dim=-1), v[:, :kv_end])
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="2048,4096,8192,16384")
    ap.add_argument("--heads", type=int, default=1)
    ap.add_argument("--head_dim", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--modes", default="causal,bidirectional")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__} threads={torch.get_num_threads()} heads={args.heads} "
          f"head_dim={args.head_dim} chunk={args.chunk} reps={args.reps}\n")
    print("| mode | n | torch ms |\n|---|---|---|")
    for mode in args.modes.split(","):
        for n in [int(x) for x in args.n.split(",")]:
            q = torch.randn(args.heads, n, args.head_dim)
            k = torch.randn(args.heads, n, args.head_dim)
            v = torch.randn(args.heads, n, args.head_dim)
            times = []
            with torch.no_grad():
                for _ in range(args.reps):
                    t0 = time.perf_counter()
                    attention(q, k, v, mode == "causal", args.chunk)
                    times.append(time.perf_counter() - t0)
            print(f"| {mode} | {n} | {statistics.median(times) * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
