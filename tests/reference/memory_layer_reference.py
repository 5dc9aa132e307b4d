#!/usr/bin/env python3
"""Independent PyTorch reference for product-key memory layers ("Memory Layers at Scale"), written
from the definition: query = one linear layer to heads x k_dim; per head two sets of n_keys
half-keys; top-knn per half; top-knn of the knn x knn sums (slot = i1 * n_keys + i2); softmax;
EmbeddingBag (sum) of the value rows over all heads; Memory+ (swilu):
value_proj(lookup(x) * silu(swilu_projection(x))); a value projection alone when memory_v_dim is
given; optional sigmoid gate; one value table shared by all memory layers.

Tensor names and config keys are those documented in engine/memory_layer.h. Needs Debian's
python3-torch and python3-numpy only (run with /usr/bin/python3).

Layer mode (default) writes into DIR:
  config.json          hidden_size, num_hidden_layers and the memory_* keys
  model.safetensors    the memory tensors of every memory layer (f32)
  x.npy                [tokens, hidden] f32 layer input
  out_{block}.npy      [tokens, hidden] f32 output of block {block}'s memory layer (no residual)
Full-model mode (--full-model) writes a tiny LLaMA (HF naming, rotate_half RoPE, GQA, SwiGLU,
RMSNorm) whose --layers blocks use a memory layer instead of the MLP:
  config.json, model.safetensors, prompt_ids.json ([ids]), logits.npy ([prompt_len, vocab]),
  hidden_{i}.npy ([prompt_len, hidden], the residual stream after block i)

  memory_layer_reference.py --out DIR [--hidden 48 --layers 1,3 --num-layers 4 --n-keys 16
      --heads 2 --knn 4 --k-dim 16 --v-dim -1 --no-swilu --gated --no-share-values
      --no-query-bias --no-proj-bias --tokens 9 --seed 0]
  memory_layer_reference.py --out DIR --full-model [--vocab 97 --attn-heads 4 --kv-heads 2
      --ff 96 --prompt-len 12 ...memory options]
"""
import argparse
import json
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from safetensors_io import write_safetensors


def save_npy(path, t):
    np.save(path, np.ascontiguousarray(t.detach().numpy(), dtype="<f4"))


class Memory:
    """The memory layer of one block, reading the (possibly shared) value table."""

    def __init__(self, cfg, w, block):
        self.cfg = cfg
        p = f"model.layers.{block}.memory."
        self.p, self.w = p, w
        self.values = w["model.memory_values.weight" if cfg["memory_share_values"] else p + "values.weight"]

    def linear(self, x, name, bias):
        y = x @ self.w[self.p + name + ".weight"].T
        return y + self.w[self.p + name + ".bias"] if bias else y

    @torch.no_grad()
    def forward(self, x):
        c = self.cfg
        heads, k_dim, knn, n_keys = c["memory_heads"], c["memory_k_dim"], c["memory_knn"], c["memory_n_keys"]
        half = k_dim // 2
        bs = x.shape[0]
        query = self.linear(x, "query_proj", c["memory_query_bias"]).view(bs, heads, k_dim)
        keys = self.w[self.p + "keys"]  # [heads, 2, n_keys, half]
        s1 = torch.einsum("bhd,hkd->bhk", query[:, :, :half], keys[:, 0])
        s2 = torch.einsum("bhd,hkd->bhk", query[:, :, half:], keys[:, 1])
        s1, i1 = s1.topk(knn, dim=2)
        s2, i2 = s2.topk(knn, dim=2)
        all_scores = (s1.unsqueeze(3) + s2.unsqueeze(2)).view(bs, heads, knn * knn)
        all_indices = (i1.unsqueeze(3) * n_keys + i2.unsqueeze(2)).view(bs, heads, knn * knn)
        scores, best = all_scores.topk(knn, dim=2)
        indices = all_indices.gather(2, best)
        weights = F.softmax(scores, dim=-1)
        out = F.embedding_bag(indices.view(bs, heads * knn), self.values,
                              per_sample_weights=weights.view(bs, heads * knn), mode="sum")
        proj_bias = c["memory_proj_bias"]
        if c["memory_swilu"]:
            out = self.linear(out * F.silu(self.linear(x, "swilu_projection", proj_bias)),
                              "value_proj", proj_bias)
        elif c["memory_v_dim"] > 0:
            out = self.linear(out, "value_proj", proj_bias)
        if c["memory_gated"]:
            out = torch.sigmoid(self.linear(x, "gate", proj_bias)) * out
        return out


def memory_tensors(cfg, g):
    """Seeded random memory weights for every memory layer (and the shared table)."""
    d = cfg["hidden_size"]
    heads, k_dim, n_keys = cfg["memory_heads"], cfg["memory_k_dim"], cfg["memory_n_keys"]
    v = cfg["memory_v_dim"] if cfg["memory_v_dim"] > 0 else d
    value_proj = cfg["memory_swilu"] or cfg["memory_v_dim"] > 0

    def normal(shape, std):
        return torch.randn(*shape, generator=g) * std

    w = {}
    if cfg["memory_share_values"]:
        w["model.memory_values.weight"] = normal((n_keys * n_keys, v), v ** -0.5)
    for block in cfg["memory_layers"]:
        p = f"model.layers.{block}.memory."
        if not cfg["memory_share_values"]:
            w[p + "values.weight"] = normal((n_keys * n_keys, v), v ** -0.5)
        w[p + "query_proj.weight"] = normal((heads * k_dim, d), d ** -0.5)
        if cfg["memory_query_bias"]:
            w[p + "query_proj.bias"] = normal((heads * k_dim,), 0.1)
        # Keys uniform in +-1/sqrt(k_dim) as in the reference init, scaled up so that scores
        # spread and the selection is well separated.
        w[p + "keys"] = (torch.rand(heads, 2, n_keys, k_dim // 2, generator=g) * 2 - 1) * 4 / math.sqrt(k_dim)
        if value_proj:
            w[p + "value_proj.weight"] = normal((d, v), v ** -0.5)
            if cfg["memory_proj_bias"]:
                w[p + "value_proj.bias"] = normal((d,), 0.1)
        if cfg["memory_swilu"]:
            w[p + "swilu_projection.weight"] = normal((v, d), d ** -0.5)
            if cfg["memory_proj_bias"]:
                w[p + "swilu_projection.bias"] = normal((v,), 0.1)
        if cfg["memory_gated"]:
            w[p + "gate.weight"] = normal((1, d), d ** -0.5)
            if cfg["memory_proj_bias"]:
                w[p + "gate.bias"] = normal((1,), 0.1)
    return w


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def llama_tensors(cfg, g):
    d, ff, vocab = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd

    def normal(shape, std):
        return torch.randn(*shape, generator=g) * std

    w = {"model.embed_tokens.weight": normal((vocab, d), 1.0)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "input_layernorm.weight"] = 1 + normal((d,), 0.1)
        w[p + "self_attn.q_proj.weight"] = normal((qd, d), d ** -0.5)
        w[p + "self_attn.k_proj.weight"] = normal((kvd, d), d ** -0.5)
        w[p + "self_attn.v_proj.weight"] = normal((kvd, d), d ** -0.5)
        w[p + "self_attn.o_proj.weight"] = normal((d, qd), qd ** -0.5)
        w[p + "post_attention_layernorm.weight"] = 1 + normal((d,), 0.1)
        if i not in cfg["memory_layers"]:
            w[p + "mlp.gate_proj.weight"] = normal((ff, d), d ** -0.5)
            w[p + "mlp.up_proj.weight"] = normal((ff, d), d ** -0.5)
            w[p + "mlp.down_proj.weight"] = normal((d, ff), ff ** -0.5)
    w["model.norm.weight"] = 1 + normal((d,), 0.1)
    w["lm_head.weight"] = normal((vocab, d), d ** -0.5)
    return w


@torch.no_grad()
def llama_forward(cfg, w, ids):
    """Logits [n, vocab] and the residual stream after each block."""
    n, d = len(ids), cfg["hidden_size"]
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd, eps = d // heads, cfg["rms_norm_eps"]
    inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(torch.arange(n, dtype=torch.float64), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos().float(), emb.sin().float()
    mask = torch.full((n, n), float("-inf")).triu(1)
    x = w["model.embed_tokens.weight"][torch.tensor(ids)]
    hidden = []
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms_norm(x, w[p + "input_layernorm.weight"], eps)
        q = (h @ w[p + "self_attn.q_proj.weight"].T).view(n, heads, hd).transpose(0, 1)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).view(n, kv_heads, hd).transpose(0, 1)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).view(n, kv_heads, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(heads // kv_heads, dim=0)
        v = v.repeat_interleave(heads // kv_heads, dim=0)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, dim=-1) @ v
        x = x + att.transpose(0, 1).reshape(n, heads * hd) @ w[p + "self_attn.o_proj.weight"].T
        h = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
        if i in cfg["memory_layers"]:
            x = x + Memory(cfg, w, i).forward(h)
        else:
            gate = h @ w[p + "mlp.gate_proj.weight"].T
            up = h @ w[p + "mlp.up_proj.weight"].T
            x = x + (F.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
        hidden.append(x)
    logits = rms_norm(x, w["model.norm.weight"], eps) @ w["lm_head.weight"].T
    return logits, hidden


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=48)
    ap.add_argument("--num-layers", type=int, default=4)
    ap.add_argument("--layers", default="1,3", help="memory layer block indices, comma separated")
    ap.add_argument("--n-keys", type=int, default=16)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--knn", type=int, default=4)
    ap.add_argument("--k-dim", type=int, default=16)
    ap.add_argument("--v-dim", type=int, default=-1)
    ap.add_argument("--no-swilu", action="store_true")
    ap.add_argument("--gated", action="store_true")
    ap.add_argument("--no-share-values", action="store_true")
    ap.add_argument("--no-query-bias", action="store_true")
    ap.add_argument("--no-proj-bias", action="store_true")
    ap.add_argument("--tokens", type=int, default=9, help="layer mode: rows of x")
    ap.add_argument("--full-model", action="store_true")
    ap.add_argument("--vocab", type=int, default=97)
    ap.add_argument("--attn-heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=96)
    ap.add_argument("--prompt-len", type=int, default=12)
    args = ap.parse_args()

    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    cfg = {
        "hidden_size": args.hidden,
        "num_hidden_layers": args.num_layers,
        "memory_layers": [int(s) for s in args.layers.split(",") if s],
        "memory_n_keys": args.n_keys,
        "memory_heads": args.heads,
        "memory_knn": args.knn,
        "memory_k_dim": args.k_dim,
        "memory_v_dim": args.v_dim,
        "memory_swilu": not args.no_swilu,
        "memory_gated": args.gated,
        "memory_share_values": not args.no_share_values,
        "memory_query_bias": not args.no_query_bias,
        "memory_proj_bias": not args.no_proj_bias,
    }
    g = torch.Generator().manual_seed(args.seed)
    if args.full_model:
        cfg.update({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama",
            "vocab_size": args.vocab, "intermediate_size": args.ff,
            "num_attention_heads": args.attn_heads, "num_key_value_heads": args.kv_heads,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
            "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
            "hidden_act": "silu",
        })
        w = llama_tensors(cfg, g)
        w.update(memory_tensors(cfg, g))
        ids = torch.randint(0, args.vocab, (args.prompt_len,), generator=g).tolist()
        logits, hidden = llama_forward(cfg, w, ids)
        with open(os.path.join(args.out, "prompt_ids.json"), "w") as f:
            json.dump(ids, f)
        save_npy(os.path.join(args.out, "logits.npy"), logits)
        for i, h in enumerate(hidden):
            save_npy(os.path.join(args.out, f"hidden_{i}.npy"), h)
    else:
        w = memory_tensors(cfg, g)
        x = torch.randn(args.tokens, args.hidden, generator=g)
        save_npy(os.path.join(args.out, "x.npy"), x)
        for block in cfg["memory_layers"]:
            save_npy(os.path.join(args.out, f"out_{block}.npy"), Memory(cfg, w, block).forward(x))
    write_safetensors(os.path.join(args.out, "model.safetensors"), w)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


if __name__ == "__main__":
    main()
