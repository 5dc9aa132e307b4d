#!/usr/bin/python3
"""SQuAD exact match / F1 of the PyTorch reader on dev examples (greedy answers).

  /usr/bin/python3 tools/train/qa_eval.py --ckpt RUN/model.pt --data DATA.pt --n 300 [--passages 1]

SQuAD v1.1 normalisation (official evaluate-v1.1.py): lower case, drop punctuation and the
articles a/an/the, collapse whitespace; EM and F1 take the max over the reference answers.
Answers are detokenized with Debian's `spm_decode` (no Python sentencepiece module here).
"""
import argparse
import collections
import json
import os
import random
import re
import string
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import collate  # noqa: E402


def normalize(s):
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def f1(pred, ref):
    p, r = normalize(pred).split(), normalize(ref).split()
    common = collections.Counter(p) & collections.Counter(r)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(r)
    return 2 * precision * recall / (precision + recall)


def em(pred, ref):
    return float(normalize(pred) == normalize(ref))


def spm_decode(model, rows):
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "ids.txt")
        with open(src, "w") as f:
            for r in rows:
                f.write(" ".join(str(i) for i in r) + "\n")
        cmd = ["spm_decode", f"--model={model}", "--input_format=id", f"--input={src}"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    lines = out.split("\n")[: len(rows)]
    assert len(lines) == len(rows)
    return lines


def evaluate(model, examples, spm, batch_size=16, max_new_tokens=24):
    """Returns (em %, f1 %, predictions list)."""
    if not examples:
        return 0.0, 0.0, []
    model.eval()
    ids = []
    for i in range(0, len(examples), batch_size):
        out, _ = model.greedy(collate(examples[i: i + batch_size]), max_new_tokens)
        ids.extend(out)
    preds = spm_decode(spm, ids)
    e, f = scores(preds, examples)
    return e, f, preds


def scores(preds, examples):
    """(EM %, F1 %) of answer strings, each against its example's references (the best one)."""
    e = sum(max(em(p, a) for a in ex["answers"]) for p, ex in zip(preds, examples))
    f = sum(max(f1(p, a) for a in ex["answers"]) for p, ex in zip(preds, examples))
    n = max(1, len(examples))
    return 100.0 * e / n, 100.0 * f / n


def span_answers(model, examples, pieces, max_words=8):
    """The passage span each example's reader scores highest: every run of 1..max_words words of
    the gold passage's context (train.passage_words) is scored by its teacher-forced log
    probability with EOS, log P(span, EOS | question, passages), and the best one is the answer
    (ids). A diagnostic of reading in PyTorch only: it separates where the reader looks from how
    well it spells, while the engine's greedy and beam decoding are unconstrained."""
    import torch.nn.functional as F
    from train import passage_words
    model.eval()
    out = []
    with torch.no_grad():
        for ex in examples:
            words = passage_words(ex, pieces)
            spans = [sum(words[i: i + n], []) for i in range(len(words))
                     for n in range(1, min(max_words, len(words) - i) + 1)]
            if not spans:
                out.append([])
                continue
            b = collate([ex])
            enc, mask = model.encode(b["q"], b["q_mask"], b["p"], b["p_mask"])
            S, T = len(spans), max(len(x) for x in spans) + 1
            dec_in = torch.zeros(S, T, dtype=torch.long)  # decoder start 0, then the span
            labels = torch.full((S, T), -100, dtype=torch.long)
            for j, x in enumerate(spans):
                dec_in[j, 1: len(x) + 1] = torch.tensor(x)
                labels[j, : len(x) + 1] = torch.tensor(x + [model.c["eos_token_id"]])
            logits = model.decode(enc.expand(S, -1, -1), mask.expand(S, -1), dec_in)
            nll = F.cross_entropy(logits.reshape(S * T, -1), labels.reshape(-1),
                                  ignore_index=-100, reduction="none").reshape(S, T).sum(1)
            out.append(spans[int(nll.argmin())])
    return out


def random_spans(examples, pieces, seed, max_words=4):
    """The chance baseline of span_answers: per example a seeded random run of 1..max_words
    context words (uniform length, uniform start among the runs of that length)."""
    from train import passage_words
    rng = random.Random(seed)
    out = []
    for ex in examples:
        words = passage_words(ex, pieces)
        n = min(rng.randint(1, max_words), len(words))
        i = rng.randrange(len(words) - n + 1) if words else 0
        out.append(sum(words[i: i + n], []))
    return out


def passage_use(model, examples, batch_size=32):
    """Whether the reader reads its passages: the mean cross-entropy of the first answer token and
    of all answer tokens (teacher forced) with each example's own passages and with those of the
    next example, and the RMS of the encoder output. Equal losses = the passages are ignored."""
    import torch.nn.functional as F
    model.eval()
    other = [dict(e, passages=examples[(i + 1) % len(examples)]["passages"])
             for i, e in enumerate(examples)]
    res = {}
    with torch.no_grad():
        for name, exs in (("own", examples), ("other", other)):
            first = every = tokens = 0.0
            sq = rows = 0.0
            for i in range(0, len(exs), batch_size):
                b = collate(exs[i: i + batch_size])
                enc, mask = model.encode(b["q"], b["q_mask"], b["p"], b["p_mask"])
                logits = model.decode(enc, mask, b["dec_in"])
                first += F.cross_entropy(logits[:, 0], b["labels"][:, 0], reduction="sum").item()
                every += F.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                         b["labels"].reshape(-1), ignore_index=-100,
                                         reduction="sum").item()
                tokens += (b["labels"] != -100).sum().item()
                sq += enc[mask].pow(2).sum().item()
                rows += mask.sum().item() * enc.shape[-1]
            res[name + "_first_token_ce"] = round(first / len(exs), 4)
            res[name + "_answer_ce"] = round(every / tokens, 4)
            if name == "own":
                res["encoder_output_rms"] = round((sq / rows) ** 0.5, 4)
    return res


def exercise_exact(model, examples, batch_size=16):
    """Fraction of examples whose greedy ids equal the target ids (without EOS)."""
    model.eval()
    hits = 0
    for i in range(0, len(examples), batch_size):
        chunk = examples[i: i + batch_size]
        out, _ = model.greedy(collate(chunk), max(len(e["target"]) for e in chunk))
        hits += sum(list(o) == e["target"][:-1] for o, e in zip(out, chunk))
    return hits / max(1, len(examples))


def main():
    from train import copy_example, load_model, question_prefix, with_passages  # noqa: E402

    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=300, help="first n dev questions")
    ap.add_argument("--passages", type=int, default=0,
                    help="passages per question, the gold one among them (0 = all the data has)")
    ap.add_argument("--exercises", action="store_true",
                    help="score reading exercises made from the dev passages instead (train.py "
                         "--copy-frac): the share of exactly copied answers, by token ids")
    ap.add_argument("--passage-use", action="store_true",
                    help="also print the losses with each question's own passages vs another's "
                         "(does the reader read?)")
    ap.add_argument("--spans", action="store_true",
                    help="answer with the best-scoring span of up to 8 words of the gold passage "
                         "(span_answers; a PyTorch-only diagnostic, not what the engine decodes)")
    ap.add_argument("--random-spans", type=int, metavar="SEED",
                    help="the chance baseline of --spans: a seeded random span of 1-4 words")
    ap.add_argument("--out", help="write predictions JSON here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    model, meta = load_model(a.ckpt)
    data = torch.load(a.data)
    dev = [with_passages(e, a.passages) for e in data["dev"][: a.n]]
    if a.exercises:
        rng = random.Random(5)
        prefix = question_prefix(data["dev"])
        dev = [copy_example(e, prefix, rng) for e in dev]
    if a.passage_use:
        print(json.dumps(dict(ckpt=a.ckpt, n=len(dev), exercises=a.exercises,
                              **passage_use(model, dev))))
    if a.exercises:
        print(json.dumps(dict(ckpt=a.ckpt, n=len(dev), exercises_exact=round(
            100.0 * exercise_exact(model, dev), 2))))
        return
    if a.spans or a.random_spans is not None:
        from train import load_pieces
        pieces = load_pieces(data["meta"]["spm"])
        ids = (random_spans(dev, pieces, a.random_spans) if a.random_spans is not None
               else span_answers(model, dev, pieces))
        preds = spm_decode(data["meta"]["spm"], ids)
        e, f = scores(preds, dev)
    else:
        e, f, preds = evaluate(model, dev, data["meta"]["spm"])
    print(json.dumps(dict(ckpt=a.ckpt, n=len(dev), spans=a.spans, random_spans=a.random_spans,
                          em=round(e, 2), f1=round(f, 2))))
    if a.out:
        with open(a.out, "w") as fo:
            json.dump([dict(id=x["id"], question=x["question"], answers=x["answers"], pred=p)
                       for x, p in zip(dev, preds)], fo, indent=1)


if __name__ == "__main__":
    main()
