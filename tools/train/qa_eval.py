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
    e = sum(max(em(p, a) for a in ex["answers"]) for p, ex in zip(preds, examples))
    f = sum(max(f1(p, a) for a in ex["answers"]) for p, ex in zip(preds, examples))
    n = max(1, len(examples))
    return 100.0 * e / n, 100.0 * f / n, preds


def main():
    from train import load_model, with_passages  # noqa: E402

    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=300, help="first n dev questions")
    ap.add_argument("--passages", type=int, default=0,
                    help="passages per question, the gold one among them (0 = all the data has)")
    ap.add_argument("--out", help="write predictions JSON here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    model, meta = load_model(a.ckpt)
    data = torch.load(a.data)
    dev = [with_passages(e, a.passages) for e in data["dev"][: a.n]]
    e, f, preds = evaluate(model, dev, data["meta"]["spm"])
    print(json.dumps(dict(ckpt=a.ckpt, n=len(dev), em=round(e, 2), f1=round(f, 2))))
    if a.out:
        with open(a.out, "w") as fo:
            json.dump([dict(id=x["id"], question=x["question"], answers=x["answers"], pred=p)
                       for x, p in zip(dev, preds)], fo, indent=1)


if __name__ == "__main__":
    main()
