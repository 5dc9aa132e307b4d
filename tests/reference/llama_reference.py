#!/usr/bin/env python3
"""Independent PyTorch reference for the LLaMA architecture, written from the Hugging Face
definition (modeling_llama): RMSNorm, rotate_half RoPE, grouped-query attention (query head h
reads KV head h // (n_heads // n_kv_heads)), SwiGLU MLP, tied or untied head.

Used by tests (seeded random weights -> logits to compare with the C++ engine) and by the
benchmark peer (same weights, timed). Needs Debian's python3-torch and python3-numpy only.

  llama_reference.py --out DIR [--layers 4 --hidden 256 --heads 8 --kv-heads 2 --ff 688
                     --vocab 1000 --prompt-len 2048 --seed 0 --tied]
writes DIR/config.json, DIR/model.safetensors, DIR/prompt_ids.json and DIR/logits.npy
([prompt_len, vocab] float32, logits at every prompt position).
"""
import argparse
import json
import math
import os

import numpy as np
import torch

from safetensors_io import write_safetensors


def random_llama(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    d, ff, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd

    def normal(shape, std):
        return torch.randn(*shape, generator=g) * std

    w = {"model.embed_tokens.weight": normal((V, d), 1.0)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w[p + "self_attn.q_proj.weight"] = normal((qd, d), 1 / math.sqrt(d))
        w[p + "self_attn.k_proj.weight"] = normal((kvd, d), 1 / math.sqrt(d))
        w[p + "self_attn.v_proj.weight"] = normal((kvd, d), 1 / math.sqrt(d))
        w[p + "self_attn.o_proj.weight"] = normal((d, qd), 1 / math.sqrt(qd))
        w[p + "mlp.gate_proj.weight"] = normal((ff, d), 1 / math.sqrt(d))
        w[p + "mlp.up_proj.weight"] = normal((ff, d), 1 / math.sqrt(d))
        w[p + "mlp.down_proj.weight"] = normal((d, ff), 1 / math.sqrt(ff))
        w[p + "input_layernorm.weight"] = 1 + normal((d,), 0.1)
        w[p + "post_attention_layernorm.weight"] = 1 + normal((d,), 0.1)
    w["model.norm.weight"] = 1 + normal((d,), 0.1)
    if not cfg["tie_word_embeddings"]:
        w["lm_head.weight"] = normal((V, d), 1 / math.sqrt(d))
    return w


def rms_norm(x, weight, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return x * torch.rsqrt(variance + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope_cos_sin(positions, head_dim, theta):
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(positions.float(), inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


class LlamaReference:
    """Forward pass with an optional KV cache: a list with one entry per layer, None before the
    first call, then a (k, v) pair of [n_kv_heads, tokens, head_dim] tensors."""

    def __init__(self, cfg, weights, linear=None):
        """linear(x, name) -> x @ weights[name].T; a peer benchmark may pass a faster one."""
        self.cfg, self.w = cfg, weights
        self.linear = linear or (lambda x, name: x @ weights[name].T)
        self.heads = cfg["num_attention_heads"]
        self.kv_heads = cfg["num_key_value_heads"]
        self.hd = cfg["hidden_size"] // self.heads
        self.eps = cfg["rms_norm_eps"]
        self.theta = cfg["rope_theta"]
        self.head = weights["model.embed_tokens.weight"] if cfg["tie_word_embeddings"] else weights["lm_head.weight"]

    @torch.no_grad()
    def forward(self, ids, cache=None, logits_rows=None):
        w, hd = self.w, self.hd
        start = 0 if cache is None or cache[0] is None else cache[0][0].shape[1]
        n = len(ids)
        x = w["model.embed_tokens.weight"][torch.tensor(ids)]
        cos, sin = rope_cos_sin(torch.arange(start, start + n), hd, self.theta)
        causal = torch.full((n, start + n), float("-inf")).triu(start + 1)
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms_norm(x, w[p + "input_layernorm.weight"], self.eps)
            q = self.linear(h, p + "self_attn.q_proj.weight").view(n, self.heads, hd).transpose(0, 1)
            k = self.linear(h, p + "self_attn.k_proj.weight").view(n, self.kv_heads, hd).transpose(0, 1)
            v = self.linear(h, p + "self_attn.v_proj.weight").view(n, self.kv_heads, hd).transpose(0, 1)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache is not None:
                if cache[i] is not None:
                    k = torch.cat((cache[i][0], k), dim=1)
                    v = torch.cat((cache[i][1], v), dim=1)
                cache[i] = (k, v)
            groups = self.heads // self.kv_heads
            k_rep = k.repeat_interleave(groups, dim=0)
            v_rep = v.repeat_interleave(groups, dim=0)
            scores = q @ k_rep.transpose(1, 2) / math.sqrt(hd) + causal
            attn = torch.softmax(scores, dim=-1) @ v_rep
            attn = attn.transpose(0, 1).reshape(n, self.heads * hd)
            x = x + self.linear(attn, p + "self_attn.o_proj.weight")
            h = rms_norm(x, w[p + "post_attention_layernorm.weight"], self.eps)
            gate = self.linear(h, p + "mlp.gate_proj.weight")
            up = self.linear(h, p + "mlp.up_proj.weight")
            x = x + self.linear(torch.nn.functional.silu(gate) * up, p + "mlp.down_proj.weight")
        if logits_rows is not None:
            x = x[n - logits_rows:]
        return rms_norm(x, w["model.norm.weight"], self.eps) @ self.head.T


def make_config(args):
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "hidden_size": args.hidden, "intermediate_size": args.ff,
        "num_hidden_layers": args.layers, "num_attention_heads": args.heads,
        "num_key_value_heads": args.kv_heads, "vocab_size": args.vocab,
        "max_position_embeddings": max(args.prompt_len + 64, 2048), "rms_norm_eps": 1e-5,
        "rope_theta": args.rope_theta, "tie_word_embeddings": args.tied,
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "torch_dtype": "float32",
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--ff", type=int, default=688)
    ap.add_argument("--vocab", type=int, default=1000)
    ap.add_argument("--prompt-len", type=int, default=2048)
    ap.add_argument("--rope-theta", type=float, default=10000.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tied", action="store_true")
    ap.add_argument("--no-logits", action="store_true", help="write the model only")
    args = ap.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    os.makedirs(args.out, exist_ok=True)
    cfg = make_config(args)
    weights = random_llama(cfg, args.seed)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(args.out, "model.safetensors"), weights)
    if args.no_logits:
        return
    rng = np.random.default_rng(args.seed)
    ids = [1] + rng.integers(3, args.vocab, size=args.prompt_len - 1).tolist()
    with open(os.path.join(args.out, "prompt_ids.json"), "w") as f:
        json.dump(ids, f)
    logits = LlamaReference(cfg, weights).forward(ids)
    np.save(os.path.join(args.out, "logits.npy"), logits.numpy().astype(np.float32))


if __name__ == "__main__":
    main()
