#!/usr/bin/python3
"""Trains a small LLaMA-architecture language model with a long context on the long texts, for
measuring IceFormer on real long-range attention (tools/train/README.md, "Long-context LLaMA").

  /usr/bin/python3 tools/train/train_llama.py data --spm spiece.model --out DATA.pt
  /usr/bin/python3 tools/train/train_llama.py train --data DATA.pt --out RUN_DIR --minutes 60
  /usr/bin/python3 tools/train/train_llama.py export --ckpt RUN_DIR/model.pt --out MODEL_DIR
  /usr/bin/python3 tools/train/train_llama.py selfcheck --out DIR   (tests/llama_trainer_test.cc)

data: documents = WikiText-2 articles (split at their " = Title = " lines, the " @-@ "
tokenisation undone as prepare_data.py does), the SQuAD training articles (paragraphs joined in
order) and tinyshakespeare (one document), each tokenized with the SentencePiece model and ended
with EOS. The held-out split (for evaluation prompts) is the last 10% of tinyshakespeare and
every tenth WikiText-2 article; the rest trains. Windows of --context tokens are drawn at random
from the concatenated training stream (documents follow each other, separated by EOS).

train: LLaMA as Hugging Face defines it (tests/reference/llama_reference.py: RMSNorm, rotate_half
RoPE, grouped-query attention, SwiGLU), tied embeddings, batched, causal; AdamW with warmup and a
cosine decay over the wall-time budget; log.jsonl (step, tokens, loss, held-out loss) and model.pt.

export: config.json + model.safetensors (F32, HF names) + tokenizer.model (the SentencePiece
model), the layout engine/llama_model.h loads, plus heldout_ids.json (the held-out token stream
for evaluation prompts).

The data is CC BY-SA (WikiText-2: Merity et al. 2016, CC BY-SA 3.0; SQuAD v1.1: Rajpurkar et al.
2016, CC BY-SA 4.0); tinyshakespeare is public domain.
"""
import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
from llama_reference import rms_norm, rope_cos_sin, rotate_half  # noqa: E402
from prepare_data import clean, clean_wikitext_line, load_squad, spm_encode  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402

EOS_ID = 1  # the reader tokenizer's eos (train_tokenizer.sh); it also separates documents


def wikitext_articles(path):
    """Articles of WikiText-2: a top-level heading ' = Title = ' starts one."""
    articles, cur = [], []
    with open(path) as f:
        for line in f:
            s = line.strip()
            if s.startswith("= ") and not s.startswith("= =") and s.endswith(" ="):
                if cur:
                    articles.append(cur)
                cur = [s.strip("= ").strip()]
                continue
            cur.append(line)
    if cur:
        articles.append(cur)
    out = []
    for a in articles:
        body = [ln for ln in a[1:] if ln.strip()]
        text = " ".join(clean_wikitext_line(ln) for ln in body if not ln.strip().startswith("="))
        out.append(clean(a[0]) + ". " + text)
    return out


def make_data(a):
    wiki = wikitext_articles(a.wikitext)
    squad = [" ".join(clean(p["context"]) for p in art["paragraphs"]) for art in load_squad(a.squad)]
    with open(a.shakespeare) as f:
        shakes = f.read()
    cut = int(len(shakes) * 0.9)
    cut = shakes.rfind("\n\n", 0, cut) + 2
    # spm_encode reads one line per string, so newlines become spaces (speaker turns stay
    # marked by their "Name:" prefixes).
    shakes_train, shakes_held = clean(shakes[:cut]), clean(shakes[cut:])
    train_docs = [w for i, w in enumerate(wiki) if i % 10 != 9] + squad + [shakes_train]
    held_docs = [w for i, w in enumerate(wiki) if i % 10 == 9] + [shakes_held]
    ids = spm_encode(a.spm, train_docs + held_docs)
    stream = lambda rows: [t for r in rows for t in r + [EOS_ID]]  # noqa: E731
    train = torch.tensor(stream(ids[: len(train_docs)]), dtype=torch.int32)
    held = torch.tensor(stream(ids[len(train_docs):]), dtype=torch.int32)
    meta = dict(spm=os.path.abspath(a.spm), train_docs=len(train_docs), held_docs=len(held_docs),
                wikitext_articles=len(wiki), squad_articles=len(squad))
    torch.save(dict(train=train, held=held, meta=meta), a.out)
    print(f"{len(wiki)} wikitext articles, {len(squad)} squad articles, shakespeare; "
          f"train {len(train)} tokens ({len(train_docs)} docs), held-out {len(held)} tokens "
          f"({len(held_docs)} docs) -> {a.out}")


def default_config(**kw):
    c = dict(architectures=["LlamaForCausalLM"], model_type="llama", hidden_size=128,
             intermediate_size=384, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=8000, max_position_embeddings=2048,
             rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=True, bos_token_id=1,
             eos_token_id=EOS_ID, hidden_act="silu", torch_dtype="float32")
    c.update(kw)
    return c


class Llama(torch.nn.Module):
    """Batched, trainable LLaMA with HF parameter names (dots stored as '__')."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        d, ff, V = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
        self.h, self.kvh = c["num_attention_heads"], c["num_key_value_heads"]
        self.hd = d // self.h
        self.p = torch.nn.ParameterDict()
        g = torch.Generator().manual_seed(0)

        def add(name, shape, std=None):
            t = torch.ones(shape) if std is None else torch.randn(*shape, generator=g) * std
            self.p[name.replace(".", "__")] = torch.nn.Parameter(t)

        add("model.embed_tokens.weight", (V, d), 0.02)
        L = c["num_hidden_layers"]
        for i in range(L):
            p = f"model.layers.{i}."
            add(p + "self_attn.q_proj.weight", (self.h * self.hd, d), 0.02)
            add(p + "self_attn.k_proj.weight", (self.kvh * self.hd, d), 0.02)
            add(p + "self_attn.v_proj.weight", (self.kvh * self.hd, d), 0.02)
            add(p + "self_attn.o_proj.weight", (d, self.h * self.hd), 0.02 / math.sqrt(2 * L))
            add(p + "mlp.gate_proj.weight", (ff, d), 0.02)
            add(p + "mlp.up_proj.weight", (ff, d), 0.02)
            add(p + "mlp.down_proj.weight", (d, ff), 0.02 / math.sqrt(2 * L))
            add(p + "input_layernorm.weight", (d,))
            add(p + "post_attention_layernorm.weight", (d,))
        add("model.norm.weight", (d,))

    def w(self, name):
        return self.p[name.replace(".", "__")]

    def forward(self, ids):
        """ids [B, T] -> logits [B, T, V]."""
        B, T = ids.shape
        c, hd, eps = self.c, self.hd, self.c["rms_norm_eps"]
        x = F.embedding(ids, self.w("model.embed_tokens.weight"))
        cos, sin = rope_cos_sin(torch.arange(T), hd, c["rope_theta"])
        mask = torch.full((T, T), float("-inf")).triu(1)
        groups = self.h // self.kvh
        for i in range(c["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = rms_norm(x, self.w(p + "input_layernorm.weight"), eps)
            q = (h @ self.w(p + "self_attn.q_proj.weight").T).view(B, T, self.h, hd).transpose(1, 2)
            k = (h @ self.w(p + "self_attn.k_proj.weight").T).view(B, T, self.kvh, hd).transpose(1, 2)
            v = (h @ self.w(p + "self_attn.v_proj.weight").T).view(B, T, self.kvh, hd).transpose(1, 2)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            k = k.repeat_interleave(groups, dim=1)
            v = v.repeat_interleave(groups, dim=1)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, dim=-1) @ v
            x = x + att.transpose(1, 2).reshape(B, T, -1) @ self.w(p + "self_attn.o_proj.weight").T
            h = rms_norm(x, self.w(p + "post_attention_layernorm.weight"), eps)
            gate = h @ self.w(p + "mlp.gate_proj.weight").T
            up = h @ self.w(p + "mlp.up_proj.weight").T
            x = x + (F.silu(gate) * up) @ self.w(p + "mlp.down_proj.weight").T
        x = rms_norm(x, self.w("model.norm.weight"), eps)
        return x @ self.w("model.embed_tokens.weight").T

    def loss(self, ids):
        logits = self.forward(ids[:, :-1])
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                               ids[:, 1:].reshape(-1).long())

    def hf_state_dict(self):
        return {k.replace("__", "."): v.detach().clone() for k, v in self.p.items()}


@torch.no_grad()
def heldout_loss(model, held, context, n_windows):
    """Mean next-token loss over n_windows fixed, evenly spaced held-out windows."""
    model.eval()
    step = max(1, (len(held) - context - 1) // n_windows)
    total = 0.0
    for i in range(n_windows):
        s = i * step
        total += float(model.loss(held[s: s + context + 1].long()[None]))
    model.train()
    return total / n_windows


def train(a):
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    data = torch.load(a.data)
    tr, held = data["train"], data["held"]
    config = default_config(max_position_embeddings=a.context, **json.loads(a.config))
    model = Llama(config)
    if a.init:
        # Continue another run's weights (e.g. short-context training, then the long context).
        init = torch.load(a.init)
        for k, v in init["weights"].items():
            model.p[k.replace(".", "__")].data.copy_(v)
    ckpt = os.path.join(a.out, "model.pt")
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
    rng = random.Random(a.seed)
    log = open(os.path.join(a.out, "log.jsonl"), "a")
    print(f"params {n_params / 1e6:.2f}M train tokens {len(tr)} held-out {len(held)} "
          f"context {a.context} batch {a.batch}", flush=True)
    start, cpu0 = time.time(), time.process_time()
    step, acc, acc_n = 0, 0.0, 0

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        t = min(1.0, (time.time() - start) / (a.minutes * 60))
        return a.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))

    while time.time() - start < a.minutes * 60:
        rows = [rng.randrange(len(tr) - a.context - 1) for _ in range(a.batch)]
        ids = torch.stack([tr[s: s + a.context + 1].long() for s in rows])
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step)
        loss = model.loss(ids)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        acc += float(loss)
        acc_n += 1
        if step % a.log_every == 0:
            rec = dict(step=step, tokens=step * a.batch * a.context, loss=round(acc / acc_n, 4),
                       lr=lr_at(step), seconds=round(time.time() - start, 1),
                       cpu_seconds=round(time.process_time() - cpu0, 1))
            if step % (a.log_every * a.eval_every) == 0:
                rec["heldout_loss"] = round(heldout_loss(model, held, a.context, 4), 4)
                torch.save(dict(config=config, weights=model.hf_state_dict(), args=vars(a)), ckpt)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
            acc, acc_n = 0.0, 0
    torch.save(dict(config=config, weights=model.hf_state_dict(), args=vars(a)), ckpt)
    final = dict(params=n_params, steps=step, tokens=step * a.batch * a.context,
                 seconds=round(time.time() - start, 1),
                 cpu_seconds=round(time.process_time() - cpu0, 1),
                 heldout_loss=round(heldout_loss(model, held, a.context, 16), 4))
    final["heldout_perplexity"] = round(math.exp(final["heldout_loss"]), 2)
    with open(os.path.join(a.out, "final.json"), "w") as f:
        json.dump(final, f, indent=1)
    print(json.dumps(final), flush=True)


def export(a):
    ck = torch.load(a.ckpt)
    data = torch.load(ck["args"]["data"])
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(ck["config"], f, indent=1)
    write_safetensors(os.path.join(a.out, "model.safetensors"), ck["weights"], "F32")
    if data["meta"].get("spm"):
        shutil.copyfile(data["meta"]["spm"], os.path.join(a.out, "tokenizer.model"))
    with open(os.path.join(a.out, "heldout_ids.json"), "w") as f:
        json.dump(data["held"].tolist(), f)
    print(f"exported -> {a.out}")


def window_perplexity(model, ids, context, windows):
    """Perplexity over `windows` windows of `context` tokens placed as `memoria eval-lm` places
    them (evenly spaced, the first at 0, the last ending at the stream's end), every position."""
    span = len(ids) - context
    total = 0.0
    with torch.no_grad():
        for w in range(windows):
            s = 0 if windows == 1 else span * w // (windows - 1)
            total += float(model.loss(ids[s: s + context].long()[None])) * (context - 1)
    return math.exp(total / (windows * (context - 1)))


def selfcheck(a):
    """Seconds-scale check of data -> train -> export on a tiny model and a random token stream:
    the loss falls over a few steps on a repetitive stream, and the export holds the PyTorch
    perplexity of fixed windows (pytorch_perplexity.json) for tests/llama_trainer_test.cc to
    compare with the engine's (`memoria eval-lm` placement)."""
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(3)
    motif = torch.randint(3, 50, (37,), generator=g)
    stream = motif.repeat(60)  # learnable: a 37-token cycle
    noise = torch.rand(len(stream), generator=g) < 0.1
    stream = torch.where(noise, torch.randint(3, 50, stream.shape, generator=g), stream)
    data_path = os.path.join(a.out, "data.pt")
    torch.save(dict(train=stream[:1800].to(torch.int32), held=stream[1800:].to(torch.int32),
                    meta=dict(spm=None)), data_path)
    run = os.path.join(a.out, "run")
    config = json.dumps(dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, vocab_size=50))
    subprocess.run([sys.executable, os.path.abspath(__file__), "train", "--data", data_path,
                    "--out", run, "--config", config, "--context", "64", "--batch", "8",
                    "--lr", "1e-2", "--warmup", "2", "--minutes", "0.25", "--log-every", "5",
                    "--eval-every", "1000", "--threads", "1"], check=True, capture_output=True)
    losses = [json.loads(line)["loss"] for line in open(os.path.join(run, "log.jsonl"))]
    assert len(losses) >= 2 and losses[-1] < losses[0] - 0.5, losses
    model_dir = os.path.join(a.out, "model")
    subprocess.run([sys.executable, os.path.abspath(__file__), "export", "--ckpt",
                    os.path.join(run, "model.pt"), "--out", model_dir], check=True,
                   capture_output=True)
    ck = torch.load(os.path.join(run, "model.pt"))
    model = Llama(ck["config"])
    for k, v in ck["weights"].items():
        model.p[k.replace(".", "__")].data.copy_(v)
    held = torch.tensor(json.load(open(os.path.join(model_dir, "heldout_ids.json"))))
    ppl = window_perplexity(model, held, 64, 3)
    with open(os.path.join(model_dir, "pytorch_perplexity.json"), "w") as f:
        json.dump(dict(context=64, windows=3, perplexity=ppl), f)
    print(f"selfcheck ok: loss {losses[0]} -> {losses[-1]}, held-out perplexity {ppl:.4f}")


def main():
    shared = os.path.join(HERE, "..", "..", "..", "shared", "data")
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("--spm", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--wikitext", default=os.path.join(shared, "longtext/wikitext2_test.txt"))
    d.add_argument("--shakespeare",
                   default=os.path.join(shared, "longtext/tinyshakespeare_input.txt"))
    d.add_argument("--squad", default=os.path.join(shared, "qa/squad-v1.1-du-split.json"))
    t = sub.add_parser("train")
    t.add_argument("--data", required=True)
    t.add_argument("--out", required=True)
    t.add_argument("--config", default="{}", help="JSON overrides of default_config")
    t.add_argument("--context", type=int, default=2048)
    t.add_argument("--init", help="model.pt of another run to start from (weights only)")
    t.add_argument("--batch", type=int, default=4)
    t.add_argument("--lr", type=float, default=3e-3)
    t.add_argument("--warmup", type=int, default=50)
    t.add_argument("--minutes", type=float, default=60.0)
    t.add_argument("--log-every", type=int, default=10)
    t.add_argument("--eval-every", type=int, default=5, help="held-out loss every N log lines")
    t.add_argument("--seed", type=int, default=1)
    t.add_argument("--threads", type=int, default=1)
    e = sub.add_parser("export")
    e.add_argument("--ckpt", required=True)
    e.add_argument("--out", required=True)
    c = sub.add_parser("selfcheck")
    c.add_argument("--out", required=True)
    a = ap.parse_args()
    {"data": make_data, "train": train, "export": export, "selfcheck": selfcheck}[a.cmd](a)


if __name__ == "__main__":
    main()
