#!/usr/bin/python3
"""SQuAD -> retrieval-augmented QA examples for the LUMEN reader trainer (tools/train/train.py).

Subcommands:
  corpus    OUT.txt   tokenizer training text: training paragraphs, titles, questions and
                      WikiText-2 (its " @-@ " tokenisation undone, "<unk>" dropped), one line each.
  examples  OUT.pt    tokenized examples (needs the SentencePiece model from train_tokenizer.sh).

An example is one SQuAD question with k passages: the gold paragraph and k - 1 distractors drawn
(seeded) from the other paragraphs of the same article (articles with too few paragraphs borrow
from a random other article), in a seeded random order. The text follows the engine's FiD
template (engine/lumen.h FidQuestionIds / FidPassageIds, tools/store_builder.h):
  question ids = Encode("question: " + Q)                      (no EOS)
  passage ids  = Encode("title: " + T + " context: " + P)[:max_passage_tokens - 1] + [EOS]
  target ids   = Encode(answer) + [EOS]                          (the first SQuAD answer)
Titles are the SQuAD article names with "_" replaced by " " (e.g. "Super Bowl 50"); stores built
for the exported reader should use the same titles and --max-passage-tokens.

Tokenisation runs the Debian `spm_encode` binary once over all distinct strings (the image has no
Python sentencepiece module); SentencePiece encodes each line exactly as the engine's Tokenizer
encodes the same string (newlines inside SQuAD text are replaced by spaces first, as one line).

The output .pt holds {"train": [...], "dev": [...], "meta": {...}}; each example is a dict with
id, question, answers (all reference strings, for EM/F1), q (ids), passages (list of id lists),
titles, texts, gold (index of the gold passage), target (ids).

CC BY-SA: SQuAD v1.1 (Rajpurkar et al. 2016) and WikiText-2 (Merity et al. 2016) are licensed
CC BY-SA 4.0 / 3.0; derived files keep that licence.
"""
import argparse
import json
import os
import random
import re
import subprocess
import tempfile

import torch

QUESTION_PREFIX = "question: "
TITLE_PREFIX = "title: "
CONTEXT_PREFIX = " context: "
EOS_ID = 1


def clean(text):
    return " ".join(text.split())


def title_of(article):
    return clean(article["title"].replace("_", " "))


def load_squad(path):
    with open(path) as f:
        return json.load(f)["data"]


def clean_wikitext_line(line):
    """One WikiText-2 line as plain text: its " @-@ " tokenisation undone, "<unk>" dropped."""
    line = line.strip()
    line = line.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    line = line.replace("<unk>", "")
    line = re.sub(r" ([.,;:!?'\)])", r"\1", line).replace("( ", "(")
    return clean(line)


def wikitext_lines(path):
    out = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("="):
                continue
            out.append(clean_wikitext_line(line))
    return out


def write_corpus(args):
    lines = []
    for article in load_squad(args.train):
        lines.append(title_of(article))
        for p in article["paragraphs"]:
            lines.append(clean(p["context"]))
            lines.extend(clean(qa["question"]) for qa in p["qas"])
    lines.extend(wikitext_lines(args.wikitext))
    with open(args.out, "w") as f:
        for line in lines:
            if line:
                f.write(line + "\n")
    print(f"{len(lines)} lines -> {args.out}")


def spm_encode(model, strings):
    """Token ids of each string (one spm_encode process for all)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.txt")
        with open(src, "w") as f:
            for s in strings:
                assert "\n" not in s
                f.write(s + "\n")
        cmd = ["spm_encode", f"--model={model}", "--output_format=id", f"--input={src}"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = out.split("\n")[: len(strings)]
    assert len(rows) == len(strings), (len(rows), len(strings))
    return [[int(t) for t in r.split()] for r in rows]


def word_window(text, words, rng, must_hold=None):
    """A run of `words` whitespace-separated words of `text` (all of it when shorter). With
    must_hold = (start, end) character offsets, the run holds those characters, at a seeded
    random place inside the run."""
    spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    if len(spans) <= words:
        return text
    if must_hold is None:
        first = rng.randrange(len(spans) - words + 1)
    else:
        a = next(i for i, (s, e) in enumerate(spans) if e > must_hold[0])
        b = next((i for i, (s, e) in enumerate(spans) if e >= must_hold[1]), len(spans) - 1)
        lo, hi = max(0, b - words + 1), min(a, len(spans) - words)
        first = rng.randrange(lo, hi + 1) if lo <= hi else a
    last = min(first + words, len(spans)) - 1
    return text[spans[first][0]:spans[last][1]]


def build_examples(data, k, rng, split, window_words=0):
    """Untokenized examples: question, answers, passages (title, text), gold index. With
    window_words > 0 every passage is cut to a run of that many words: the gold one around its
    first answer, distractors at random."""
    articles = []
    for article in data:
        t = title_of(article)
        articles.append([(t, clean(p["context"])) for p in article["paragraphs"]])
    examples = []
    for ai, article in enumerate(data):
        for pi, p in enumerate(article["paragraphs"]):
            others = [x for j, x in enumerate(articles[ai]) if j != pi]
            for qa in p["qas"]:
                pool = list(others)
                while len(pool) < k - 1:
                    pool.extend(articles[rng.randrange(len(articles))])
                    pool = [x for x in pool if x != articles[ai][pi]]
                gold = articles[ai][pi]
                passages = rng.sample(pool, k - 1)
                if window_words > 0:
                    answer = qa["answers"][0]
                    start = answer["answer_start"]
                    gold = (gold[0], word_window(gold[1], window_words, rng,
                                                 (start, start + len(answer["text"]))))
                    passages = [(t, word_window(x, window_words, rng)) for t, x in passages]
                passages.append(gold)
                rng.shuffle(passages)
                examples.append(dict(
                    id=qa["id"], split=split, question=clean(qa["question"]),
                    answers=[a["text"] for a in qa["answers"]],
                    titles=[x[0] for x in passages], texts=[x[1] for x in passages],
                    gold=passages.index(gold)))
    return examples


def write_examples(args):
    rng = random.Random(args.seed)
    train = build_examples(load_squad(args.train), args.passages, rng, "train", args.window_words)
    dev = build_examples(load_squad(args.dev), args.passages, rng, "dev", args.window_words)
    strings, index = [], {}

    def slot(s):
        if s not in index:
            index[s] = len(strings)
            strings.append(s)
        return index[s]

    for ex in train + dev:
        ex["_q"] = slot(QUESTION_PREFIX + ex["question"])
        ex["_p"] = [slot(TITLE_PREFIX + t + CONTEXT_PREFIX + x)
                    for t, x in zip(ex["titles"], ex["texts"])]
        ex["_a"] = slot(clean(ex["answers"][0]))
    ids = spm_encode(args.spm, strings)
    truncated = total = 0
    for ex in train + dev:
        ex["q"] = ids[ex.pop("_q")]
        ps = []
        for j in ex.pop("_p"):
            p = ids[j][: args.max_passage_tokens - 1] + [EOS_ID]
            truncated += len(ids[j]) + 1 > args.max_passage_tokens
            total += 1
            ps.append(p)
        ex["passages"] = ps
        ex["target"] = ids[ex.pop("_a")][: args.max_answer_tokens - 1] + [EOS_ID]
    meta = dict(seed=args.seed, passages=args.passages, max_passage_tokens=args.max_passage_tokens,
                window_words=args.window_words,
                max_answer_tokens=args.max_answer_tokens, spm=os.path.abspath(args.spm),
                truncated_passages=truncated, passages_total=total)
    torch.save(dict(train=train, dev=dev, meta=meta), args.out)
    ql = sorted(len(e["q"]) for e in train)
    pl = sorted(len(p) for e in train for p in e["passages"])
    print(f"train {len(train)} dev {len(dev)} examples; question tokens median {ql[len(ql) // 2]} "
          f"max {ql[-1]}; passage tokens median {pl[len(pl) // 2]}; "
          f"{truncated}/{total} passages truncated to {args.max_passage_tokens} -> {args.out}")


def write_squad(args):
    """The gold passages of examples as a SQuAD v1.1 file: one paragraph per question (its gold
    passage as prepare_data cut it, e.g. a --window-words window) holding that question, grouped
    by article title. `memoria build-store` + `memoria eval-qa --passages gold` on it then see the
    inputs qa_eval.py scores with --passages 1, so the engine's EM/F1 compare with PyTorch's."""
    data = torch.load(args.data)
    examples = data[args.split][: args.n] if args.n > 0 else data[args.split]
    articles = {}
    for ex in examples:
        g = ex["gold"]
        title, text = ex["titles"][g], ex["texts"][g]
        articles.setdefault(title, []).append(dict(
            context=text, qas=[dict(id=ex["id"], question=ex["question"],
                                    answers=[dict(text=a, answer_start=max(0, text.find(a)))
                                             for a in ex["answers"]])]))
    out = dict(version="1.1", source=f"{os.path.abspath(args.data)} {args.split} "
               f"(SQuAD v1.1, Rajpurkar et al. 2016, CC BY-SA 4.0)",
               data=[dict(title=t, paragraphs=ps) for t, ps in articles.items()])
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"{len(examples)} questions in {len(articles)} articles -> {args.out}")


def main():
    shared = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared")
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("corpus")
    c.add_argument("out")
    e = sub.add_parser("examples")
    e.add_argument("out")
    e.add_argument("--spm", required=True, help="SentencePiece model (train_tokenizer.sh)")
    e.add_argument("--passages", type=int, default=3, help="passages per question (1 gold)")
    e.add_argument("--max-passage-tokens", type=int, default=160)
    e.add_argument("--max-answer-tokens", type=int, default=24)
    e.add_argument("--seed", type=int, default=17)
    e.add_argument("--window-words", type=int, default=0,
                   help="cut every passage to this many words (gold: around the answer; 0 = whole)")
    q = sub.add_parser("squad", help="examples' gold passages as a SQuAD file (write_squad)")
    q.add_argument("data", help="examples file written by the examples command")
    q.add_argument("out")
    q.add_argument("--split", choices=["train", "dev"], default="dev")
    q.add_argument("--n", type=int, default=300, help="first n examples (0: all)")
    for p in (c, e):
        p.add_argument("--train", default=os.path.join(shared, "data/qa/squad-v1.1-du-split.json"))
        p.add_argument("--dev", default=os.path.join(shared, "data/qa/squad-v1.1-dev-part1.json"))
        p.add_argument("--wikitext",
                       default=os.path.join(shared, "data/longtext/wikitext2_test.txt"))
    args = ap.parse_args()
    if args.cmd == "corpus":
        write_corpus(args)
    elif args.cmd == "squad":
        write_squad(args)
    else:
        write_examples(args)


if __name__ == "__main__":
    main()
