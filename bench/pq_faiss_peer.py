#!/usr/bin/python3
"""FAISS peer for bench/pq_bench.cc: the same data file, the same measurements.

Run with Debian's python3 (python3-faiss 1.7.3, python3-numpy), not a virtualenv's python:

    /usr/bin/python3 bench/pq_faiss_peer.py --d 768 --g 96 --bits 8 --n 20000 --train-n 65536 \
        --iters 25 --threads 2 --runs 5 --data /tmp/pq_data.f32

The data file is written by pq_bench (rows = train_n + n, float32, row-major). Prints one JSON
object with the keys pq_bench prints (train_s, train_cpu_s, train_mse, encode_vps, decode_vps,
decode_gbps, rel_mse, encode_vps_per_cpu_s, decode_gbps_per_cpu_s). FAISS samples max_points_per_centroid = 256 training vectors per centroid, like ours.
"""
import argparse
import json
import statistics
import time

import faiss
import numpy as np


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--d", type=int, default=768)
    p.add_argument("--g", type=int, default=96)
    p.add_argument("--bits", type=int, default=8)
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--train-n", type=int, default=65536)
    p.add_argument("--iters", type=int, default=25)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--data", required=True)
    a = p.parse_args()

    faiss.omp_set_num_threads(a.threads)
    data = np.fromfile(a.data, dtype=np.float32).reshape(a.train_n + a.n, a.d)
    train, x = data[: a.train_n], np.ascontiguousarray(data[a.train_n:])

    pq = faiss.ProductQuantizer(a.d, a.g, a.bits)
    pq.cp.niter = a.iters
    pq.cp.max_points_per_centroid = 256
    t0, c0 = time.perf_counter(), time.process_time()
    pq.train(train)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    enc, dec, enc_cpu, dec_cpu = [], [], [], []
    pq.compute_codes(x[:256])  # warm-up
    for _ in range(a.runs):
        t0, c0 = time.perf_counter(), time.process_time()
        codes = pq.compute_codes(x)
        enc.append(time.perf_counter() - t0)
        enc_cpu.append(time.process_time() - c0)
        t0, c0 = time.perf_counter(), time.process_time()
        out = pq.decode(codes)
        dec.append(time.perf_counter() - t0)
        dec_cpu.append(time.process_time() - c0)
    err = float(((out.astype(np.float64) - x) ** 2).sum())
    ref = float((x.astype(np.float64) ** 2).sum())
    # Training distortion on the training rows, as pq_bench reports it.
    sample = train[: min(a.train_n, 256 << a.bits)]
    rec = pq.decode(pq.compute_codes(sample))
    train_mse = float(((rec.astype(np.float64) - sample) ** 2).sum(axis=1).mean())
    e, dc = statistics.median(enc), statistics.median(dec)
    print(json.dumps({
        "faiss": faiss.__version__, "d": a.d, "g": a.g, "C": 1 << a.bits, "n": a.n,
        "iters": a.iters, "threads": a.threads, "train_s": train_s, "train_cpu_s": train_cpu_s,
        "train_mse": train_mse,
        "encode_vps": a.n / e, "decode_vps": a.n / dc, "decode_gbps": a.n * a.d * 4 / dc / 1e9,
        "rel_mse": err / ref,
        "encode_vps_per_cpu_s": a.n / statistics.median(enc_cpu),
        "decode_gbps_per_cpu_s": a.n * a.d * 4 / statistics.median(dec_cpu) / 1e9,
    }))


if __name__ == "__main__":
    main()
