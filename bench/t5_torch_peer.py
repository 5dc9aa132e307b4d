#!/usr/bin/python3
"""PyTorch peer for bench/t5_lumen_bench: the same FiD / LUMEN query work in eager PyTorch.

A T5 v1.1-shaped model with random float32 weights (no transformers package needed; the forward
follows HF modeling_t5: RMS norm, unscaled attention with relative position bias, gated-GELU FFN,
untied head). One query = encode k passages of (question + passage) tokens as one padded batch
[k, len] (what HF FiD does), then greedy decoding of n tokens with a self-attention KV cache and
the cross-attention K/V computed once. LUMEN (alpha < 1): the question alone through the memory
layers, the precomputed passage memory (held in RAM) concatenated after it, the live layers over
[k, len] as one batch.

Matmuls: Debian's python3-torch links the netlib reference BLAS (torch.matmul on a [1000, 768] x
[768, 2048] product runs at ~1 GFLOP/s here), which would make any comparison meaningless. The
linear layers therefore run through the oneDNN build bundled in torch (torch._C._nn.mkldnn_linear
with weights pre-converted to the mkldnn layout), the fastest float32 GEMM this torch offers;
attention products (q k^T and p v, ~5% of the FLOPs) stay on torch.matmul.

Prints one JSON object: median and all latencies in seconds per mode.
Run with Debian's python3-torch: /usr/bin/python3 bench/t5_torch_peer.py --threads 2
"""
import argparse
import json
import math
import statistics
import time

import torch


def linear(x, w):
    """x [..., in] @ w^T with w a mkldnn [out, in] weight (oneDNN inner product)."""
    shape = x.shape
    y = torch._C._nn.mkldnn_linear(x.reshape(-1, shape[-1]).contiguous().to_mkldnn(), w, None)
    return y.to_dense().view(*shape[:-1], w.shape[0])


class T5Peer:
    def __init__(self, d=768, d_kv=64, heads=12, d_ff=2048, enc_layers=12, dec_layers=12,
                 vocab=32128, buckets=32, max_distance=128, seed=0):
        g = torch.Generator().manual_seed(seed)
        inner = heads * d_kv
        self.d, self.H, self.dk, self.nb, self.md = d, heads, d_kv, buckets, max_distance

        def lin(o, i):
            return torch.randn(o, i, generator=g) / math.sqrt(i)

        def norm():
            return 1.0 + 0.1 * torch.randn(d, generator=g)

        self.shared = torch.randn(vocab, d, generator=g)
        self.lm_head = lin(vocab, d)
        self.enc = [dict(n1=norm(), qkv=lin(3 * inner, d), o=lin(d, inner), n2=norm(),
                         wi=lin(2 * d_ff, d), wo=lin(d, d_ff)) for _ in range(enc_layers)]
        self.dec = [dict(n1=norm(), qkv=lin(3 * inner, d), o=lin(d, inner), n2=norm(),
                         cq=lin(inner, d), ckv=lin(2 * inner, d), co=lin(d, inner), n3=norm(),
                         wi=lin(2 * d_ff, d), wo=lin(d, d_ff)) for _ in range(dec_layers)]
        self.enc_rel = 0.5 * torch.randn(buckets, heads, generator=g)
        self.dec_rel = 0.5 * torch.randn(buckets, heads, generator=g)
        self.enc_norm, self.dec_norm = norm(), norm()
        self.d_ff = d_ff
        # oneDNN layout for every matmul weight (see the module docstring).
        self.lm_head = self.lm_head.to_mkldnn()
        for L in self.enc + self.dec:
            for k in ("qkv", "o", "cq", "ckv", "co", "wi", "wo"):
                if k in L:
                    L[k] = L[k].to_mkldnn()

    @staticmethod
    def rms(x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))

    def bucket(self, rel, bidirectional):
        nb, b = self.nb, torch.zeros_like(rel)
        if bidirectional:
            nb //= 2
            b += (rel > 0).long() * nb
            rel = rel.abs()
        else:
            rel = -torch.min(rel, torch.zeros_like(rel))
        me = nb // 2
        large = me + (torch.log(rel.float().clamp(min=1) / me) / math.log(self.md / me) * (nb - me)).long()
        return b + torch.where(rel < me, rel, torch.clamp(large, max=nb - 1))

    def bias(self, table, q_pos, k_len, bidirectional):
        rel = torch.arange(k_len)[None, :] - q_pos[:, None]
        return table[self.bucket(rel, bidirectional)].permute(2, 0, 1)  # [H, q, k]

    def heads(self, x):  # [B, n, inner] -> [B, H, n, dk]
        return x.view(x.shape[0], x.shape[1], self.H, self.dk).transpose(1, 2)

    def merge(self, x):
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.H * self.dk)

    def ffn(self, x, L):
        h = linear(x, L["wi"])
        g, u = h[..., :self.d_ff], h[..., self.d_ff:]
        return linear(torch.nn.functional.gelu(g, approximate="tanh") * u, L["wo"])

    def encoder_layers(self, h, layers):  # h: [B, n, d]
        n = h.shape[1]
        bias = self.bias(self.enc_rel, torch.arange(n), n, True)
        for L in layers:
            q, k, v = linear(self.rms(h, L["n1"]), L["qkv"]).chunk(3, -1)
            s = self.heads(q) @ self.heads(k).transpose(-1, -2) + bias
            h = h + linear(self.merge(torch.softmax(s, -1) @ self.heads(v)), L["o"])
            h = h + self.ffn(self.rms(h, L["n2"]), L)
        return h

    def generate(self, enc, new_tokens):  # enc: [1, N, d] (all passages concatenated)
        cross = [(self.heads(a), self.heads(b)) for a, b in
                 (linear(enc, L["ckv"]).chunk(2, -1) for L in self.dec)]
        cache = [[None, None] for _ in self.dec]
        tok, out = 0, []
        for t in range(new_tokens):
            x = self.shared[tok].view(1, 1, -1)
            bias = self.bias(self.dec_rel, torch.tensor([t]), t + 1, False)
            for L, (ck, cv), c in zip(self.dec, cross, cache):
                q, k, v = linear(self.rms(x, L["n1"]), L["qkv"]).chunk(3, -1)
                k, v = self.heads(k), self.heads(v)
                c[0] = k if c[0] is None else torch.cat([c[0], k], 2)
                c[1] = v if c[1] is None else torch.cat([c[1], v], 2)
                s = self.heads(q) @ c[0].transpose(-1, -2) + bias
                x = x + linear(self.merge(torch.softmax(s, -1) @ c[1]), L["o"])
                q = self.heads(linear(self.rms(x, L["n2"]), L["cq"]))
                x = x + linear(self.merge(torch.softmax(q @ ck.transpose(-1, -2), -1) @ cv), L["co"])
                x = x + self.ffn(self.rms(x, L["n3"]), L)
            logits = linear(self.rms(x, self.dec_norm)[0, -1:], self.lm_head)[0]
            tok = int(logits.argmax())
            out.append(tok)
        return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--passages", type=int, default=20)
    ap.add_argument("--passage_tokens", type=int, default=200)
    ap.add_argument("--question_tokens", type=int, default=20)
    ap.add_argument("--new_tokens", type=int, default=20)
    ap.add_argument("--alpha", type=float, default=1.0 / 3.0)
    ap.add_argument("--modes", default="fid,lumen")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    m = T5Peer()
    vocab = m.shared.shape[0]
    q_ids = torch.randint(2, vocab, (a.question_tokens,))
    p_ids = torch.randint(2, vocab, (a.passages, a.passage_tokens))
    n_live = round(a.alpha * len(m.enc))
    n_mem = len(m.enc) - n_live
    result = dict(threads=a.threads, torch=torch.__version__, live_layers=n_live)
    with torch.no_grad():
        # LUMEN's stored memory: MemEnc(P) computed offline, held in RAM.
        memory = m.encoder_layers(m.shared[p_ids], m.enc[:n_mem])

        def fid():
            ids = torch.cat([q_ids.expand(a.passages, -1), p_ids], 1)
            h = m.rms(m.encoder_layers(m.shared[ids], m.enc), m.enc_norm)
            return m.generate(h.reshape(1, -1, m.d), a.new_tokens)

        def lumen():
            qm = m.encoder_layers(m.shared[q_ids][None], m.enc[:n_mem])
            h = torch.cat([qm.expand(a.passages, -1, -1), memory], 1)
            h = m.rms(m.encoder_layers(h, m.enc[n_mem:]), m.enc_norm)
            return m.generate(h.reshape(1, -1, m.d), a.new_tokens)

        modes = [(n, fn) for n, fn in (("fid", fid), ("lumen", lumen)) if n in a.modes.split(",")]
        times = {n: [] for n, _ in modes}
        for _, fn in modes:
            fn()  # warm-up
        for _ in range(a.reps):  # alternate modes so that load changes hit both alike
            for n, fn in modes:
                t0 = time.perf_counter()
                fn()
                times[n].append(time.perf_counter() - t0)
        for n, t in times.items():
            result[n] = dict(median_s=statistics.median(t), all_s=t)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
