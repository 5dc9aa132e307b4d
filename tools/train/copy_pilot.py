#!/usr/bin/python3
"""A synthetic find-and-copy task that isolates the step a reader must learn before it can answer
extractive questions, trained on our T5 (model.LumenT5, FiD or LUMEN split) or, as a control, on
PyTorch's own nn.Transformer (pre-norm, learned absolute positions, untied output layer).

Each example: a passage of --passage-len tokens drawn uniformly from ids [3, V), a question made of
two fixed ids (5, 6) followed by a fragment of --fragment consecutive passage tokens, and as the
answer the passage token that follows the fragment (then EOS = 1 for the T5). Nothing but reading
solves it: the answer token is uniform over the vocabulary unless the model finds the fragment in
the passage. Reference levels of the first answer token's cross-entropy (nats):
  uniform   ln(V - 3)                 the model ignores the input
  bag       ln(passage_len)           it spreads its guess over the passage's tokens
  solved    0

  /usr/bin/python3 tools/train/copy_pilot.py --model t5 --vocab 200 --passage-len 8 --steps 3000

prints one JSON line per --log-every steps (training loss of the first answer token, mean over the
interval) and, every --eval-every steps, the first-token loss and exact-copy accuracy on 512 fresh
examples; --out FILE appends the same lines to FILE.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import LumenT5, default_config, parse_mimetic_flag  # noqa: E402

QUESTION_PREFIX = (5, 6)
EOS = 1


def make_batch(n, vocab, passage_len, fragment, gen):
    """n examples -> passages [n, T], questions [n, 2 + fragment], answers [n]."""
    p = torch.randint(3, vocab, (n, passage_len), generator=gen)
    start = torch.randint(0, passage_len - fragment, (n,), generator=gen)
    cols = start[:, None] + torch.arange(fragment)[None, :]
    frag = torch.gather(p, 1, cols)
    answer = p[torch.arange(n), start + fragment]
    q = torch.cat([torch.tensor(QUESTION_PREFIX).expand(n, 2), frag], 1)
    return p, q, answer


class TorchReference(nn.Module):
    """The control: torch.nn.Transformer, 4 heads, pre-norm, no dropout, learned positions."""

    def __init__(self, vocab, d_model, layers, decoder_layers, d_ff, max_len=512):
        super().__init__()
        self.emb = nn.Embedding(vocab, d_model)
        self.pos = nn.Embedding(max_len, d_model)
        self.tr = nn.Transformer(d_model, 4, layers, decoder_layers, d_ff, dropout=0.0,
                                 batch_first=True, norm_first=True)
        self.out = nn.Linear(d_model, vocab)

    def first_token_logits(self, p, q):
        src = torch.cat([q, p], 1)
        x = self.emb(src) + self.pos(torch.arange(src.shape[1]))[None]
        y = self.emb(torch.zeros(src.shape[0], 1, dtype=torch.long)) + self.pos.weight[:1][None]
        return self.out(self.tr(x, y))[:, 0]


class T5Reader(nn.Module):
    def __init__(self, config, alpha):
        super().__init__()
        self.m = LumenT5(config, alpha)

    def batch(self, p, q, answer):
        n = p.shape[0]
        dec_in = torch.zeros(n, 2, dtype=torch.long)
        dec_in[:, 1] = answer
        return dict(q=q, q_mask=torch.ones(q.shape, dtype=torch.bool), p=p[:, None],
                    p_mask=torch.ones(n, 1, p.shape[1], dtype=torch.bool), dec_in=dec_in,
                    labels=torch.stack([answer, torch.full_like(answer, EOS)], 1))

    def logits(self, p, q, answer):
        b = self.batch(p, q, answer)
        enc, mask = self.m.encode(b["q"], b["q_mask"], b["p"], b["p_mask"])
        return self.m.decode(enc, mask, b["dec_in"]), b["labels"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=["t5", "torch"], default="t5")
    ap.add_argument("--vocab", type=int, default=200)
    ap.add_argument("--passage-len", type=int, default=8)
    ap.add_argument("--fragment", type=int, default=3)
    ap.add_argument("--alpha", type=float, default=1.0, help="T5 live fraction (1: FiD)")
    ap.add_argument("--tie", action="store_true", help="T5: tied embeddings (T5 1.0 style)")
    ap.add_argument("--mimetic", metavar="QK,OV,NOISE", type=parse_mimetic_flag,
                    help="T5: LumenT5.mimetic_init(qk, ov, noise) before training")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--d-ff", type=int, default=384)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--decoder-layers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", help="append the JSON lines here too")
    a = ap.parse_args(argv)
    if not (a.passage_len > a.fragment >= 1 and a.vocab > 8):
        ap.error(f"need passage_len > fragment >= 1 and vocab > 8, got passage_len "
                 f"{a.passage_len}, fragment {a.fragment}, vocab {a.vocab}")
    if a.model == "torch" and (a.mimetic or a.tie):
        ap.error("--mimetic and --tie apply to --model t5 only")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed + 1)
    eval_set = make_batch(512, a.vocab, a.passage_len, a.fragment,
                          torch.Generator().manual_seed(a.seed + 2))
    if a.model == "t5":
        config = default_config(d_model=a.d_model, d_kv=a.d_model // 4, num_heads=4, d_ff=a.d_ff,
                                num_layers=a.layers, num_decoder_layers=a.decoder_layers,
                                vocab_size=a.vocab, tie_word_embeddings=a.tie)
        net = T5Reader(config, a.alpha)
        if a.mimetic:
            net.m.mimetic_init(*a.mimetic)
    else:
        net = TorchReference(a.vocab, a.d_model, a.layers, a.decoder_layers, a.d_ff)
    opt = torch.optim.AdamW(net.parameters(), lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    out = open(a.out, "a") if a.out else None

    def emit(rec):
        line = json.dumps(rec)
        print(line, flush=True)
        if out:
            out.write(line + "\n")
            out.flush()

    def forward(p, q, answer):
        """(loss to train on, first-answer-token logits)."""
        if a.model == "t5":
            logits, labels = net.logits(p, q, answer)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
            return loss, logits[:, 0]
        first = net.first_token_logits(p, q)
        return F.cross_entropy(first, answer), first

    @torch.no_grad()
    def evaluate():
        p, q, answer = eval_set
        _, first = forward(p, q, answer)
        return (float(F.cross_entropy(first, answer)),
                float((first.argmax(-1) == answer).float().mean()))

    emit(dict(model=a.model, vocab=a.vocab, passage_len=a.passage_len, fragment=a.fragment,
              params=sum(x.numel() for x in net.parameters()),
              uniform=round(math.log(a.vocab - 3), 4), bag=round(math.log(a.passage_len), 4)))
    t0, cpu0, acc, acc_n = time.time(), time.process_time(), 0.0, 0
    for step in range(1, a.steps + 1):
        for group in opt.param_groups:
            group["lr"] = a.lr * min(1.0, step / a.warmup)
        p, q, answer = make_batch(a.batch, a.vocab, a.passage_len, a.fragment, gen)
        loss, first = forward(p, q, answer)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        acc += float(F.cross_entropy(first.detach(), answer))
        acc_n += 1
        rec = None
        if step % a.log_every == 0 or step == a.steps:
            rec = dict(step=step, first_token_loss=round(acc / acc_n, 4),
                       seconds=round(time.time() - t0, 1),
                       cpu_seconds=round(time.process_time() - cpu0, 1))
            acc, acc_n = 0.0, 0
        if step % a.eval_every == 0 or step == a.steps:
            loss_eval, exact = evaluate()
            rec = dict(rec or dict(step=step), eval_first_token_loss=round(loss_eval, 4),
                       eval_exact=round(exact, 4))
        if rec:
            emit(rec)


if __name__ == "__main__":
    main()
