#!/usr/bin/python3
"""Peer figures for bench/gemm_bench.cc: PyTorch GFLOP/s for the same Linear shapes.

Debian's torch links the generic reference BLAS (about 2 GFLOP/s), so the peer is torch's oneDNN
linear (torch._C._nn.mkldnn_linear on weights converted once with to_mkldnn), PyTorch's fastest
fp32 CPU path in this build; the input's conversion to and from oneDNN's layout is timed with it.

Run with the system interpreter that has torch (/usr/bin/python3). Prints "M N K gflops" lines,
the format gemm_bench --peer=FILE reads. Same method as gemm_bench: x @ W.T with W in [N, K]
(a Linear layer), f32, median of RUNS timed calls after one warm-up; M = 1 cycles through enough
copies of W to exceed 512 MiB so that every call reads W from memory.
"""
import sys
import time

import torch

THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
RUNS = max(5, int(sys.argv[2]) if len(sys.argv) > 2 else 5)
QUICK = "--quick" in sys.argv

torch.set_num_threads(THREADS)
torch.manual_seed(0)


def median_seconds(fn, runs):
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]


def main():
    ms = [1, 32] if QUICK else [1, 32, 512, 2048]
    nks = [768, 2048, 3072]
    with torch.no_grad():
        for m in ms:
            for n in nks:
                for k in nks:
                    a = torch.rand(m, k) * 2 - 1

                    def linear(w):
                        return torch._C._nn.mkldnn_linear(a.to_mkldnn(), w, None).to_dense()

                    if m == 1:
                        copies = max(2, (512 << 20) // (n * k * 4) + 1)
                        ws = [(torch.rand(n, k) * 2 - 1).to_mkldnn() for _ in range(copies)]
                        state = {"i": 0}

                        def step():
                            linear(ws[state["i"]])
                            state["i"] = (state["i"] + 1) % copies

                        s = median_seconds(step, RUNS * 4)
                        del ws
                    else:
                        w = (torch.rand(n, k) * 2 - 1).to_mkldnn()
                        s = median_seconds(lambda: linear(w), RUNS)
                    print(f"{m} {n} {k} {2.0 * m * n * k / s * 1e-9:.2f}", flush=True)


if __name__ == "__main__":
    main()
