#!/usr/bin/python3
"""Trains the small T5 LUMEN reader on SQuAD as retrieval-augmented QA (tools/train/README.md).

  /usr/bin/python3 tools/train/train.py --data DATA.pt --out RUN_DIR --mode lumen --minutes 50

Modes (docs/mission.md sections 1-3):
  fid        alpha = 1: the whole encoder at query time over [question; passage] (FiD)
  lumen      alpha (default 1/3) live; memory = encoder layers [0, M) over the passage alone
  lumen_vq   lumen + MEMORY-VQ: PQ layer (--pq-g subspaces, --pq-c codes) between memory and
             live encoder, EMA codebooks, straight-through gradients (model.PQLayer)
  lumen_btr  lumen + BTR calibrated 1-bit memory, straight-through sign (model.BTRLayer)
--freeze-memory keeps the embedding and memory layers fixed (the stored memory does not move);
--init RUN/model.pt starts from another run's weights (e.g. lumen_vq from a lumen run).

Training stops after --minutes of wall time or --steps steps, whichever comes first. RUN_DIR
gets log.jsonl (one line per --log-every steps: step, examples, loss (mean since the last line),
lr, seconds), model.pt (weights + config + mode, written every --save-every steps and at the end;
--resume continues from it with the optimizer state and the data order), and final.json (final
training loss and dev EM/F1 on --eval-n dev questions).
"""
import argparse
import itertools
import json
import math
import os
import random
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from model import LumenT5, collate, default_config, parse_mimetic_flag  # noqa: E402


def compression_of(mode, g, C):
    return {"lumen_vq": ("pq", g, C), "lumen_btr": ("btr",)}.get(mode)


def load_model(path):
    ck = torch.load(path)
    m = ck["meta"]
    compression = compression_of(m["mode"], m.get("pq_g"), m.get("pq_c"))
    model = LumenT5(m["config"], m["alpha"], compression)
    model.load_hf_state_dict(ck["weights"])
    if model.compress is not None and "compress" in ck:
        model.compress.load_state_dict(ck["compress"])
    model.eval()
    return model, m


def save(path, model, meta, opt=None, state=None):
    ck = dict(meta=meta, weights=model.hf_state_dict())
    if model.compress is not None:
        ck["compress"] = model.compress.state_dict()
    if opt is not None:
        ck["opt"] = opt.state_dict()
        ck["state"] = state
    torch.save(ck, path + ".tmp")
    os.replace(path + ".tmp", path)


def answer_in_gold(ex):
    """True when the first answer's ids occur in the (possibly truncated) gold passage."""
    t, p = ex["target"][:-1], ex["passages"][ex["gold"]]
    n = len(t)
    return n > 0 and any(p[i: i + n] == t for i in range(len(p) - n + 1))


def with_passages(ex, k):
    """The example with its gold passage and the first k - 1 distractors (k <= 0: all)."""
    if k <= 0 or k >= len(ex["passages"]):
        return ex
    keep = [ex["gold"]] + [j for j in range(len(ex["passages"])) if j != ex["gold"]][: k - 1]
    keep.sort()
    return dict(ex, passages=[ex["passages"][j] for j in keep],
                titles=[ex["titles"][j] for j in keep], texts=[ex["texts"][j] for j in keep],
                gold=keep.index(ex["gold"]))


def question_prefix(examples):
    """The ids every question starts with (the template's "question: ")."""
    prefix = examples[0]["q"]
    for e in examples[1:200]:
        n = 0
        while n < min(len(prefix), len(e["q"])) and prefix[n] == e["q"][n]:
            n += 1
        prefix = prefix[:n]
    return prefix


def copy_example(ex, prefix, rng):
    """A reading exercise made from a training example's gold passage: the "question" is a
    fragment of 4-10 passage tokens, the answer the 1-5 tokens that follow it. It trains the
    mechanism extractive QA needs (find where the question's words occur, copy what is next to
    them) with unlimited examples; the distractor passages stay as they are."""
    p = ex["passages"][ex["gold"]][:-1]
    frag, ans = rng.randint(4, 10), rng.randint(1, 5)
    if len(p) < frag + ans + 1:
        return ex
    i = rng.randrange(len(p) - frag - ans + 1)
    return dict(ex, q=prefix + p[i: i + frag], target=p[i + frag: i + frag + ans] + [1])


def load_pieces(spm_model):
    """The SentencePiece pieces by id, read from the .vocab file spm_train writes beside the
    .model (piece TAB score, one line per id)."""
    vocab = os.path.splitext(spm_model)[0] + ".vocab"
    with open(vocab, encoding="utf-8") as f:
        return [line.split("\t")[0] for line in f]


WORD_START = "\u2581"  # SentencePiece's mark of a piece that begins a word
# Words a cloze answer does not begin or end with (SQuAD answers are names, numbers and phrases).
CLOZE_STOPWORDS = frozenset(
    "a an the of and or in on at to for from by with as is was are were be been it its this that "
    "which who what when where their his her they he she not but also".split())


def passage_words(ex, pieces):
    """The gold passage's words after its "title: T context:" head, as id lists (a word starts
    at a piece marked as beginning a word)."""
    p = ex["passages"][ex["gold"]][:-1]
    starts = [i for i, t in enumerate(p) if pieces[t].startswith(WORD_START)] + [len(p)]
    words = [p[starts[i]: starts[i + 1]] for i in range(len(starts) - 1)]
    head = 2 + len(ex["titles"][ex["gold"]].split())
    return words[head:]


def word_text(word, pieces):
    return "".join(pieces[t] for t in word).replace(WORD_START, "").lower()


def cloze_example(ex, prefix, pieces, rng):
    """A cloze question made from a training example's gold passage (unsupervised QA in the
    manner of Lewis et al. 2019): the answer is a span of 1-3 passage words that neither begins
    nor ends with a function word, the question is the first word of the example's real question
    (its wh-word, usually) with up to 6 words of context from each side of the span, a fifth of
    them dropped, either in passage order with the wh-word in the gap ("... built in what by ...")
    or with the wh-word first. Unlike a copy exercise the answer can lie before or after the words
    the question shares with the passage, as in SQuAD, and the exercises are unlimited. Returns ex
    unchanged when the passage offers no such span."""
    words = passage_words(ex, pieces)
    body = ex["q"][len(prefix):]
    if not body:
        return ex
    wh = body[:1] + list(itertools.takewhile(lambda t: not pieces[t].startswith(WORD_START),
                                             body[1:]))
    for _ in range(5):
        span = rng.randint(1, 3)
        if len(words) < span + 2:
            return ex
        a = rng.randrange(len(words) - span + 1)
        if (word_text(words[a], pieces) not in CLOZE_STOPWORDS
                and word_text(words[a + span - 1], pieces) not in CLOZE_STOPWORDS):
            break
    else:
        return ex
    left = words[max(0, a - rng.randint(0, 6)): a]
    right = words[a + span: a + span + rng.randint(0, 6)]
    left = [w for w in left if rng.random() >= 0.2]
    right = [w for w in right if rng.random() >= 0.2]
    if len(left) + len(right) < 2:
        return ex
    parts = left + [wh] + right if rng.random() < 0.5 else [wh] + left + right
    answer = [t for w in words[a: a + span] for t in w]
    return dict(ex, q=prefix + [t for w in parts for t in w], target=answer + [1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--mode", choices=["fid", "lumen", "lumen_vq", "lumen_btr"], default="lumen")
    ap.add_argument("--alpha", type=float, default=1.0 / 3.0, help="live fraction (fid: 1)")
    ap.add_argument("--freeze-memory", action="store_true")
    ap.add_argument("--pq-g", type=int, default=32)
    ap.add_argument("--pq-c", type=int, default=256, choices=[256, 65536],
                    help="codes per subspace: the store's pq codec has 8-bit or 16-bit ids")
    ap.add_argument("--init", help="model.pt to start from (weights only)")
    ap.add_argument("--resume", action="store_true", help="continue OUT/model.pt")
    ap.add_argument("--config", default="{}", help="JSON overrides of model.default_config")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--decay-steps", type=int, default=0,
                    help="cosine decay horizon in steps; 0: over the --minutes wall-time budget "
                         "(the step count a shared machine allows is not known in advance)")
    ap.add_argument("--min-lr-frac", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=10 ** 9)
    ap.add_argument("--minutes", type=float, default=50.0)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--eval-n", type=int, default=300)
    ap.add_argument("--answerable-only", action="store_true",
                    help="train only on questions whose answer survives passage truncation")
    ap.add_argument("--train-passages", type=int, default=0,
                    help="passages per training question: gold + the first k-1 distractors "
                         "(0: all the data has)")
    ap.add_argument("--eval-passages", type=int, default=0, help="the same for the dev questions")
    ap.add_argument("--copy-frac", type=float, default=0.0,
                    help="fraction of each batch replaced by copy exercises (copy_example)")
    ap.add_argument("--cloze-frac", type=float, default=0.0,
                    help="fraction of each batch replaced by cloze questions (cloze_example)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-norm-decay", action="store_true",
                    help="no weight decay on the RMSNorm weights")
    ap.add_argument("--fix-encoder-final-norm", action="store_true",
                    help="keep encoder.final_layer_norm.weight at its initial 1.0: from scratch, the "
                         "decoder otherwise learns to scale the encoder output down to ~0.09 before "
                         "it has learned to read it, and then gets too little signal from it")
    ap.add_argument("--mimetic-init", metavar="QK,OV,NOISE", type=parse_mimetic_flag,
                    help="from scratch only: LumenT5.mimetic_init(qk, ov, noise) on every attention "
                         "layer (with tied embeddings the reader then learns find-and-copy in "
                         "hundreds of steps instead of not at all; tools/train/README.md)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if a.mimetic_init and (a.init or a.resume):
        ap.error("--mimetic-init initialises a model from scratch: not with --init or --resume")
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    ckpt = os.path.join(a.out, "model.pt")
    data = torch.load(a.data)
    train = data["train"]
    if a.answerable_only:
        train = [e for e in train if answer_in_gold(e)]
    train = [with_passages(e, a.train_passages) for e in train]
    q_prefix = question_prefix(train)
    copy_rng = random.Random(a.seed + 7)
    cloze_rng = random.Random(a.seed + 11)
    pieces = load_pieces(data["meta"]["spm"]) if a.cloze_frac > 0 else []
    if a.copy_frac + a.cloze_frac > 1:
        ap.error("--copy-frac + --cloze-frac must be at most 1")

    def exercise(e):
        """e, or in its place a copy exercise (probability copy_frac) or a cloze question
        (cloze_frac)."""
        u = copy_rng.random()
        if u < a.copy_frac:
            return copy_example(e, q_prefix, copy_rng)
        if u < a.copy_frac + a.cloze_frac:
            return cloze_example(e, q_prefix, pieces, cloze_rng)
        return e
    alpha = 1.0 if a.mode == "fid" else a.alpha

    torch.manual_seed(a.seed)
    state = dict(step=0, epoch=0, pos=0, seconds=0.0)
    if a.resume:
        ck = torch.load(ckpt)
        meta = ck["meta"]
        model, _ = load_model(ckpt)
        state = ck["state"]
    else:
        if a.init:
            base, base_meta = load_model(a.init)
            config = base_meta["config"]
        else:
            config = default_config(**json.loads(a.config))
        meta = dict(config=config, alpha=alpha, mode=a.mode, freeze_memory=a.freeze_memory,
                    pq_g=a.pq_g, pq_c=a.pq_c, init=a.init, data=os.path.abspath(a.data),
                    data_meta=data["meta"], args=vars(a))
        model = LumenT5(config, alpha, compression_of(a.mode, a.pq_g, a.pq_c))
        if a.init:
            model.load_hf_state_dict(base.hf_state_dict())
        elif a.mimetic_init:
            model.mimetic_init(*a.mimetic_init)
    model.train()
    frozen = set(model.memory_parameter_names()) if meta["freeze_memory"] else set()
    if a.fix_encoder_final_norm:
        frozen.add("encoder.final_layer_norm.weight")
    decayed, undecayed = [], []
    for k, p in model.p.items():
        p.requires_grad_(k.replace("__", ".") not in frozen)
        if p.requires_grad:
            (undecayed if a.no_norm_decay and "layer_norm" in k else decayed).append(p)
    groups = [dict(params=decayed)] + ([dict(params=undecayed, weight_decay=0.0)] if undecayed else [])
    opt = torch.optim.AdamW(groups, lr=a.lr, betas=(0.9, 0.98), weight_decay=0.01)
    if a.resume:
        opt.load_state_dict(ck["opt"])

    def lr_at(step):
        if step < a.warmup:
            return a.lr * (step + 1) / a.warmup
        if a.decay_steps > 0:
            t = min(1.0, (step - a.warmup) / max(1, a.decay_steps - a.warmup))
        else:
            t = min(1.0, (time.time() - run_start) / (a.minutes * 60))
        return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))

    def order(epoch):
        idx = list(range(len(train)))
        random.Random(a.seed * 1000 + epoch).shuffle(idx)
        return idx

    perm = order(state["epoch"])
    log = open(os.path.join(a.out, "log.jsonl"), "a")
    n_params = sum(p.numel() for p in model.parameters())
    print(f"mode {a.mode} alpha {alpha:.3f} memory layers {model.M}/{meta['config']['num_layers']} "
          f"params {n_params / 1e6:.2f}M train examples {len(train)} "
          f"frozen {len(frozen)} tensors", flush=True)
    start = time.time() - state["seconds"]
    run_start = time.time()
    # CPU seconds of this process (all threads), over resumes: on a shared machine wall time
    # says little about the work done.
    cpu_base, cpu0 = state.get("cpu_seconds", 0.0), time.process_time()

    def cpu_total():
        return cpu_base + time.process_time() - cpu0

    acc, acc_n, last_loss = 0.0, 0, float("nan")
    while state["step"] < a.steps and (time.time() - run_start) < a.minutes * 60:
        if state["pos"] + a.batch > len(perm):
            state["epoch"] += 1
            state["pos"] = 0
            perm = order(state["epoch"])
        chosen = [train[i] for i in perm[state["pos"]: state["pos"] + a.batch]]
        if a.copy_frac > 0 or a.cloze_frac > 0:
            chosen = [exercise(e) for e in chosen]
        batch = collate(chosen)
        state["pos"] += a.batch
        for group in opt.param_groups:
            group["lr"] = lr_at(state["step"])
        loss = model.loss(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decayed + undecayed, 1.0)
        opt.step()
        state["step"] += 1
        acc += float(loss)
        acc_n += 1
        if state["step"] % a.log_every == 0:
            last_loss = acc / acc_n
            rec = dict(step=state["step"], examples=state["step"] * a.batch,
                       loss=round(last_loss, 4),
                       lr=lr_at(state["step"]), seconds=round(time.time() - start, 1),
                       cpu_seconds=round(cpu_total(), 1))
            if model.compress is not None and hasattr(model.compress, "resets"):
                rec["pq_resets"] = model.compress.resets
            log.write(json.dumps(rec) + "\n")
            log.flush()
            print(json.dumps(rec), flush=True)
            acc, acc_n = 0.0, 0
        if state["step"] % a.save_every == 0:
            state["seconds"] = time.time() - start
            state["cpu_seconds"] = cpu_total()
            save(ckpt, model, meta, opt, state)
    if acc_n:
        last_loss = acc / acc_n
    state["seconds"] = time.time() - start
    state["cpu_seconds"] = cpu_total()
    eval_cpu0 = time.process_time()
    save(ckpt, model, meta, opt, state)

    from qa_eval import evaluate
    dev = [with_passages(e, a.eval_passages) for e in data["dev"][: a.eval_n]]
    t0 = time.time()
    em, f1, preds = evaluate(model, dev, data["meta"]["spm"])
    final = dict(mode=a.mode, alpha=alpha, steps=state["step"], examples=state["step"] * a.batch,
                 train_seconds=round(state["seconds"], 1),
                 train_cpu_seconds=round(state["cpu_seconds"], 1), final_loss=round(last_loss, 4),
                 dev_n=len(dev), dev_passages=len(dev[0]["passages"]) if dev else 0, dev_em=round(em, 2), dev_f1=round(f1, 2),
                 eval_seconds=round(time.time() - t0, 1),
                 eval_cpu_seconds=round(time.process_time() - eval_cpu0, 1))
    with open(os.path.join(a.out, "final.json"), "w") as f:
        json.dump(final, f, indent=1)
    with open(os.path.join(a.out, "dev_predictions.json"), "w") as f:
        json.dump([dict(id=x["id"], question=x["question"], answers=x["answers"], pred=p)
                   for x, p in zip(dev, preds)], f, indent=1)
    print(json.dumps(final), flush=True)


if __name__ == "__main__":
    main()
