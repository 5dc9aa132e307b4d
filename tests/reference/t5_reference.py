#!/usr/bin/python3
"""PyTorch reference for the T5 engine: seeded random weights, outputs to compare against.

Writes into --out:
  config.json, model.safetensors   a Hugging Face-layout T5 with random float32 weights
  cases.json                       inputs, greedy ids, beam-search results (ids and scores)
  encoder_output.npy               [enc_len, d_model] encoder output after the final norm
  decoder_logits.npy               [dec_len, vocab] teacher-forced logits for decoder_input_ids

The model is written from the Hugging Face modeling_t5 definitions (no transformers package is
needed): RMS norm without mean subtraction, unscaled attention, relative position buckets
(bidirectional in the encoder, causal in the decoder, table in layer 0 shared by the stack, none in
cross-attention), FFN relu (original T5) or gated gelu_new (v1.1), tied head with the d_model^-0.5
rescale (original T5) or untied lm_head (v1.1). It computes in float64 and recomputes the whole
prefix at every generation step (no cache), so the engine's incremental decoder and KV-cache
reordering are checked against a straightforward computation.

Beam search reproduces Hugging Face's classic BeamSearchScorer (see engine/beam_search.h).

Run with Debian's python (python3-torch): /usr/bin/python3 t5_reference.py --out DIR --family orig
"""
import argparse
import json
import math
import os

import numpy as np
import torch

from safetensors_io import write_safetensors

FAMILIES = {
    # Original T5: ReLU FFN, tied embeddings (rescaled before the head).
    "orig": dict(feed_forward_proj="relu", tie_word_embeddings=True),
    # T5 v1.1 / Flan: gated-GELU (tanh) FFN, untied lm_head.
    "v11": dict(feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}


def make_config(family):
    c = dict(
        model_type="t5",
        d_model=48,
        d_kv=16,
        num_heads=4,  # inner dim 64 != d_model on purpose
        d_ff=96,
        num_layers=3,
        num_decoder_layers=2,
        vocab_size=64,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=40,
        layer_norm_epsilon=1e-6,
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
        is_encoder_decoder=True,
    )
    c.update(FAMILIES[family])
    return c


def make_weights(c, seed):
    g = torch.Generator().manual_seed(seed)
    d, inner, ff, V, nb, H = (c["d_model"], c["num_heads"] * c["d_kv"], c["d_ff"], c["vocab_size"],
                              c["relative_attention_num_buckets"], c["num_heads"])
    gated = c["feed_forward_proj"].startswith("gated")
    w = {}

    def lin(name, out_f, in_f):
        # Output projections are larger so that the layers, not the residual input embedding,
        # dominate the logits (a tied head otherwise just repeats the input token).
        scale = 2.5 if name.endswith(("o.weight", "wo.weight")) else 1.0
        w[name] = scale * torch.randn(out_f, in_f, generator=g) / math.sqrt(in_f)

    def norm(name):
        w[name] = 1.0 + 0.1 * torch.randn(d, generator=g)

    # A tied head reads the same table the input comes from: keep it small against the layers'
    # outputs, or generation degenerates into repeating the previous token.
    w["shared.weight"] = (0.3 if c["tie_word_embeddings"] else 1.0) * torch.randn(V, d, generator=g)
    for stack, n_layers in (("encoder", c["num_layers"]), ("decoder", c["num_decoder_layers"])):
        for i in range(n_layers):
            p = f"{stack}.block.{i}.layer."
            for x in "qkvo":
                lin(p + f"0.SelfAttention.{x}.weight", d if x == "o" else inner, inner if x == "o" else d)
            if i == 0:
                w[p + "0.SelfAttention.relative_attention_bias.weight"] = 0.5 * torch.randn(nb, H, generator=g)
            norm(p + "0.layer_norm.weight")
            f = 1
            if stack == "decoder":
                for x in "qkvo":
                    lin(p + f"1.EncDecAttention.{x}.weight", d if x == "o" else inner,
                        inner if x == "o" else d)
                norm(p + "1.layer_norm.weight")
                f = 2
            if gated:
                lin(p + f"{f}.DenseReluDense.wi_0.weight", ff, d)
                lin(p + f"{f}.DenseReluDense.wi_1.weight", ff, d)
            else:
                lin(p + f"{f}.DenseReluDense.wi.weight", ff, d)
            lin(p + f"{f}.DenseReluDense.wo.weight", d, ff)
            norm(p + f"{f}.layer_norm.weight")
        norm(f"{stack}.final_layer_norm.weight")
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = 0.5 * torch.randn(V, d, generator=g)
    # Make EOS a frequent candidate so that beam search closes hypotheses early.
    head = "shared.weight" if c["tie_word_embeddings"] else "lm_head.weight"
    w[head][c["eos_token_id"]] *= 3.0
    return {k: v.float().contiguous() for k, v in w.items()}


def bucket(rel, bidirectional, num_buckets, max_distance):
    """HF T5Attention._relative_position_bucket (float32 log, as HF)."""
    buckets = torch.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        buckets += (rel > 0).long() * num_buckets
        rel = rel.abs()
    else:
        rel = -torch.min(rel, torch.zeros_like(rel))
    max_exact = num_buckets // 2
    small = rel < max_exact
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact) *
                         (num_buckets - max_exact)).to(torch.long)
    large = torch.min(large, torch.full_like(large, num_buckets - 1))
    return buckets + torch.where(small, rel, large)


class T5:
    def __init__(self, c, w):
        self.c = c
        self.w = {k: v.double() for k, v in w.items()}
        self.H, self.dk = c["num_heads"], c["d_kv"]
        self.gated = c["feed_forward_proj"].startswith("gated")

    def norm(self, x, name):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.w[name] * (x * torch.rsqrt(var + self.c["layer_norm_epsilon"]))

    def attn(self, x, kv, p, bias):
        H, dk = self.H, self.dk
        q = (x @ self.w[p + "q.weight"].T).view(-1, H, dk).transpose(0, 1)
        k = (kv @ self.w[p + "k.weight"].T).view(-1, H, dk).transpose(0, 1)
        v = (kv @ self.w[p + "v.weight"].T).view(-1, H, dk).transpose(0, 1)
        s = q @ k.transpose(1, 2)  # no 1/sqrt(d_kv): T5
        if bias is not None:
            s = s + bias
        o = torch.softmax(s, -1) @ v
        return o.transpose(0, 1).reshape(x.shape[0], H * dk) @ self.w[p + "o.weight"].T

    def position_bias(self, stack, q_len, k_len, bidirectional, causal):
        rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
        b = bucket(rel, bidirectional, self.c["relative_attention_num_buckets"],
                   self.c["relative_attention_max_distance"])
        table = self.w[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        bias = table[b].permute(2, 0, 1)  # [H, q, k]
        if causal:
            bias = bias + torch.triu(torch.full((q_len, k_len), float("-inf"), dtype=bias.dtype), 1)
        return bias

    def ffn(self, x, p):
        if self.gated:
            g = x @ self.w[p + "wi_0.weight"].T
            g = 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * g.pow(3))))
            h = g * (x @ self.w[p + "wi_1.weight"].T)
        else:
            h = torch.relu(x @ self.w[p + "wi.weight"].T)
        return h @ self.w[p + "wo.weight"].T

    def encode(self, ids):
        x = self.w["shared.weight"][torch.tensor(ids)]
        bias = self.position_bias("encoder", len(ids), len(ids), True, False)
        for i in range(self.c["num_layers"]):
            p = f"encoder.block.{i}.layer."
            x = x + self.attn(self.norm(x, p + "0.layer_norm.weight"),
                              self.norm(x, p + "0.layer_norm.weight"), p + "0.SelfAttention.", bias)
            x = x + self.ffn(self.norm(x, p + "1.layer_norm.weight"), p + "1.DenseReluDense.")
        return self.norm(x, "encoder.final_layer_norm.weight")

    def decode(self, enc, ids):
        x = self.w["shared.weight"][torch.tensor(ids)]
        bias = self.position_bias("decoder", len(ids), len(ids), False, True)
        for i in range(self.c["num_decoder_layers"]):
            p = f"decoder.block.{i}.layer."
            n = self.norm(x, p + "0.layer_norm.weight")
            x = x + self.attn(n, n, p + "0.SelfAttention.", bias)
            x = x + self.attn(self.norm(x, p + "1.layer_norm.weight"), enc, p + "1.EncDecAttention.", None)
            x = x + self.ffn(self.norm(x, p + "2.layer_norm.weight"), p + "2.DenseReluDense.")
        x = self.norm(x, "decoder.final_layer_norm.weight")
        if self.c["tie_word_embeddings"]:
            return (x * self.c["d_model"] ** -0.5) @ self.w["shared.weight"].T
        return x @ self.w["lm_head.weight"].T

    def greedy(self, enc, n):
        ids = [self.c["decoder_start_token_id"]]
        for _ in range(n):
            ids.append(int(self.decode(enc, ids)[-1].argmax()))
        return ids[1:]

    def beam_search(self, enc, num_beams, length_penalty, max_new_tokens):
        """HF classic BeamSearchScorer, batch 1, early_stopping=False."""
        B, eos = num_beams, self.c["eos_token_id"]
        V = self.c["vocab_size"]
        seqs = [[self.c["decoder_start_token_id"]] for _ in range(B)]
        scores = torch.full((B,), -1e9, dtype=torch.float64)
        scores[0] = 0.0
        hyps, worst = [], 1e9  # (score, tokens, with_eos)
        max_length, cur_len, done = 1 + max_new_tokens, 1, False

        def add(tokens, sum_logprobs, with_eos):
            nonlocal worst
            score = sum_logprobs / (len(tokens) ** length_penalty)
            if len(hyps) < B or score > worst:
                hyps.append((score, list(tokens), with_eos))
                if len(hyps) > B:
                    hyps.remove(min(hyps, key=lambda h: h[0]))
                    worst = min(h[0] for h in hyps)
                else:
                    worst = min(score, worst)

        while cur_len < max_length:
            logits = torch.stack([self.decode(enc, s)[-1] for s in seqs])
            cand = (torch.log_softmax(logits, -1) + scores[:, None]).view(-1)
            top_scores, top_idx = torch.topk(cand, 2 * B)
            nxt = []
            for rank in range(2 * B):
                beam, tok, sc = int(top_idx[rank]) // V, int(top_idx[rank]) % V, float(top_scores[rank])
                if tok == eos:
                    if rank >= B:
                        continue
                    add(seqs[beam], sc, True)
                else:
                    nxt.append((sc, tok, beam))
                if len(nxt) == B:
                    break
            if len(hyps) >= B and worst >= float(top_scores[0]) / (cur_len ** length_penalty):
                done = True
            seqs = [seqs[b] + [t] for (_, t, b) in nxt]
            scores = torch.tensor([s for (s, _, _) in nxt], dtype=torch.float64)
            cur_len += 1
            if done:
                break
        if not done:
            for b in range(B):
                add(seqs[b], float(scores[b]), False)
        best = max(hyps, key=lambda h: h[0])
        return best[1][1:] + ([eos] if best[2] else []), best[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--family", choices=sorted(FAMILIES), default="orig")
    ap.add_argument("--seed", type=int, default=1234)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(a.seed)
    c = make_config(a.family)
    w = make_weights(c, a.seed)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    write_safetensors(os.path.join(a.out, "model.safetensors"), w)

    g = torch.Generator().manual_seed(a.seed + 1)
    V = c["vocab_size"]
    # 70 encoder tokens: beyond max_distance 40 so the bucket clamp is exercised.
    enc_ids = (torch.randint(2, V, (69,), generator=g)).tolist() + [c["eos_token_id"]]
    # 30 decoder tokens: causal log buckets (distance >= 16) up to the clamp.
    dec_ids = [c["decoder_start_token_id"]] + torch.randint(2, V, (29,), generator=g).tolist()
    m = T5(c, w)
    with torch.no_grad():
        enc = m.encode(enc_ids)
        logits = m.decode(enc, dec_ids)
        greedy = m.greedy(enc, 12)
        beams = []
        for nb, lp, n in ((4, 1.0, 12), (3, 0.0, 10), (4, 2.0, 14), (2, 0.6, 8)):
            ids, score = m.beam_search(enc, nb, lp, n)
            beams.append(dict(num_beams=nb, length_penalty=lp, max_new_tokens=n, ids=ids, score=score))
    np.save(os.path.join(a.out, "encoder_output.npy"), enc.float().numpy())
    np.save(os.path.join(a.out, "decoder_logits.npy"), logits.float().numpy())
    with open(os.path.join(a.out, "cases.json"), "w") as f:
        json.dump(dict(family=a.family, encoder_input_ids=enc_ids, decoder_input_ids=dec_ids,
                       greedy_ids=greedy, beams=beams), f, indent=1)


if __name__ == "__main__":
    main()
