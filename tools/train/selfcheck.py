#!/usr/bin/python3
"""Self-check of the reader trainer on a tiny model (seconds; no data files, no tokenizer).

  /usr/bin/python3 tools/train/selfcheck.py --out DIR

Checks, failing with an AssertionError:
  - the batched, padded LumenT5 at alpha = 1 (FiD) computes what the independent reference
    (tests/reference/t5_reference.py, unpadded, float64) computes: encoder output per passage over
    [question; passage] and decoder logits over the concatenation;
  - padding invariance of the LUMEN split (a batch of two examples = each example alone);
  - two optimisation steps through train.py (subprocess, each mode: fid, lumen, lumen_vq,
    lumen_btr) log finite losses; --resume continues the step count; --freeze-memory leaves
    exactly the embedding and memory layers unchanged (and trains everything else);
  - the PQ layer: k-means++ init fills every code, outputs are codebook rows, the straight-through
    gradient reaches the memory layers;
  - save/reload gives identical outputs; export writes the engine layout;
  - passage selection (gold + k - 1 distractors) and the copy exercises (a passage fragment as
    the question, the tokens after it as the answer), and a training run that uses both;
  - mimetic_init: W_q = W_k with per-head self-score qk, W_o W_v = ov I (noise 0), the chosen
    kinds of attention only, noise mixing the standard initialisation back in; train.py
    --mimetic-init runs;
  - prepare_data.py squad: the examples' gold passages as a SQuAD file, one paragraph per question;
  - copy_pilot.py: its synthetic examples (the answer follows the fragment in the passage) and a
    few steps of it on both models (our T5 and the nn.Transformer control) with finite losses.
DIR then holds one exported model per mode (DIR/<mode>/, with engine_check/ cases), which
tests/lumen_trainer_test.cc loads in the C++ engine and compares with the PyTorch outputs.
"""
import argparse
import json
import os
import random
import subprocess
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "reference"))
from export import export  # noqa: E402
from model import LumenT5, PQLayer, collate, default_config, parse_mimetic_flag  # noqa: E402
from t5_reference import T5  # noqa: E402
from train import load_model  # noqa: E402

TINY = dict(d_model=32, d_kv=8, num_heads=4, d_ff=48, num_layers=3, num_decoder_layers=2,
            vocab_size=64, relative_attention_max_distance=20)


def synthetic_examples(n, k, rng):
    out = []
    for i in range(n):
        q = [rng.randrange(3, 64) for _ in range(rng.randrange(3, 8))]
        ps = [[rng.randrange(3, 64) for _ in range(rng.randrange(8, 30))] + [1] for _ in range(k)]
        gold = rng.randrange(k)
        a = ps[gold][: rng.randrange(1, 4)]
        out.append(dict(id=str(i), question="", answers=["x"], q=q, passages=ps, gold=gold,
                        target=a + [1], titles=[""] * k, texts=[""] * k))
    return out


def close(a, b, tol, what):
    err = (a - b).abs().max().item()
    scale = max(1.0, b.abs().max().item())
    assert err <= tol * scale, f"{what}: max abs diff {err:.3g} (scale {scale:.3g}, tol {tol})"


def check_against_reference(examples):
    torch.manual_seed(3)
    m = LumenT5(default_config(**TINY), alpha=1.0)
    assert m.M == 0
    ref = T5(m.c, m.hf_state_dict())
    batch = collate(examples[:2])
    with torch.no_grad():
        enc, mask = m.encode(batch["q"], batch["q_mask"], batch["p"], batch["p_mask"])
        logits = m.decode(enc, mask, batch["dec_in"])
    for b, ex in enumerate(examples[:2]):
        rows = [ref.encode(ex["q"] + p) for p in ex["passages"]]
        got = enc[b][mask[b]]
        close(got.double(), torch.cat(rows), 1e-4, "FiD encoder vs reference")
        dec_in = [0] + ex["target"][:-1]
        want = ref.decode(torch.cat(rows), dec_in)
        close(logits[b, : len(dec_in)].double(), want, 1e-4, "decoder logits vs reference")


def check_padding_invariance(examples):
    torch.manual_seed(4)
    m = LumenT5(default_config(**TINY), alpha=1.0 / 3.0)
    assert m.M == 2, m.M
    with torch.no_grad():
        both = collate(examples[:2])
        enc, mask = m.encode(both["q"], both["q_mask"], both["p"], both["p_mask"])
        for b in range(2):
            one = collate([examples[b]])
            e1, m1 = m.encode(one["q"], one["q_mask"], one["p"], one["p_mask"])
            close(enc[b][mask[b]], e1[0][m1[0]], 1e-5, "padded vs unpadded LUMEN encoding")


def check_mimetic_init():
    torch.manual_seed(5)
    model = LumenT5(default_config(**TINY), 1.0)
    before = {k: v.clone() for k, v in model.hf_state_dict().items()}
    model.mimetic_init(4.0, 2.0, 0.0, kinds=("encoder_self", "cross"))
    after = model.hf_state_dict()
    d, dk = TINY["d_model"], TINY["d_kv"]
    changed = {k for k in after if not torch.equal(before[k], after[k])}
    cross = [f"decoder.block.{i}.layer.1.EncDecAttention." for i in range(TINY["num_decoder_layers"])]
    enc = [f"encoder.block.{i}.layer.0.SelfAttention." for i in range(TINY["num_layers"])]
    assert changed == {p + w + ".weight" for p in cross + enc for w in "qkvo"}, sorted(changed)
    for p in cross + enc:
        wq, wk, wv, wo = (after[p + w + ".weight"] for w in "qkvo")
        assert torch.equal(wq, wk)
        close(wo @ wv, 2.0 * torch.eye(d), 1e-5, p + " W_o W_v")
        close(wq.T @ wq, (4.0 / dk) * torch.eye(d), 1e-5, p + " W_q^T W_k")
        x = torch.randn(d)
        x = x / x.pow(2).mean().sqrt()
        per_head = (wq @ x).view(-1, dk).pow(2).sum(-1)  # a unit-RMS token scoring itself
        assert abs(float(per_head.mean()) - 4.0) < 2.0, per_head
    model2 = LumenT5(default_config(**TINY), 1.0)
    ref = {k: v.clone() for k, v in model2.hf_state_dict().items()}
    model2.mimetic_init(4.0, 2.0, 0.25)
    p = cross[0] + "v.weight"
    assert not torch.equal(model2.hf_state_dict()[p], ref[p])
    residual = model2.hf_state_dict()[p] - 0.25 * ref[p]  # = 0.75 * orthogonal
    close(residual @ residual.T, 0.75 ** 2 * torch.eye(d), 1e-5, "noise mix")


def check_pq_layer():
    torch.manual_seed(5)
    pq = PQLayer(d=8, g=2, C=4)
    pq.train()
    x = torch.randn(3, 10, 8, requires_grad=True)
    mask = torch.ones(3, 10, dtype=torch.bool)
    y = pq(x, mask)
    assert bool(pq.initialised)
    flat = y.detach().reshape(-1, 2, 4)
    for s in range(2):
        d = (flat[:, s, None, :] - pq.codebooks[s][None]).pow(2).sum(-1).min(-1).values
        assert d.max() < 1e-10, "PQ output is not a codebook row"
    y.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x)), "straight-through gradient"


def check_passage_selection_and_copy_exercises(examples):
    from train import copy_example, question_prefix, with_passages
    for ex in examples[:6]:
        one = with_passages(ex, 1)
        assert one["passages"] == [ex["passages"][ex["gold"]]] and one["gold"] == 0, one
        two = with_passages(ex, 2)
        assert len(two["passages"]) == 2 and two["passages"][two["gold"]] == ex["passages"][ex["gold"]]
        assert with_passages(ex, 0) is ex
    assert question_prefix([dict(q=[5, 6, 9]), dict(q=[5, 6, 2, 3]), dict(q=[5, 6])]) == [5, 6]
    prefix = [5, 6]
    rng = random.Random(1)
    made = 0
    for ex in examples[:6]:
        c = copy_example(ex, prefix, rng)
        if c is ex:
            continue  # passage too short for a fragment + answer
        made += 1
        p = ex["passages"][ex["gold"]]
        frag, ans = c["q"][len(prefix):], c["target"][:-1]
        assert c["q"][: len(prefix)] == prefix, c
        assert c["target"][-1] == 1 and 1 <= len(ans) <= 5 and 4 <= len(frag) <= 10, c
        n = len(frag) + len(ans)
        assert any(p[i: i + n] == frag + ans for i in range(len(p) - n + 1)), (p, frag, ans)
    assert made >= 3, made


def check_cloze_exercises(examples, out_dir):
    from train import CLOZE_STOPWORDS, cloze_example, load_pieces, passage_words
    # A vocabulary whose even ids begin words; id 4 is the function word "the".
    spm = os.path.join(out_dir, "cloze_spiece.model")
    with open(os.path.splitext(spm)[0] + ".vocab", "w", encoding="utf-8") as f:
        for i in range(64):
            f.write(("\u2581" if i % 2 == 0 else "") + ("the" if i == 4 else f"p{i}") + "\t0\n")
    pieces = load_pieces(spm)
    assert len(pieces) == 64 and pieces[4] == "\u2581the" and pieces[5] == "p5", pieces[:6]
    assert "the" in CLOZE_STOPWORDS
    # The "title: T context:" head (2 + title words) is not part of the passage's words.
    ex = dict(passages=[[2, 3, 6, 8, 10, 12, 13, 1]], gold=0, titles=["T"])
    assert passage_words(ex, pieces) == [[10], [12, 13]], passage_words(ex, pieces)
    prefix = [5, 6]
    rng = random.Random(3)
    made = 0
    for ex in examples:
        ex = dict(ex, q=prefix + [4, 9, 11, 2] + ex["q"])
        c = cloze_example(ex, prefix, pieces, rng)
        if c is ex:
            continue
        made += 1
        words = passage_words(ex, pieces)
        ans = c["target"][:-1]
        assert c["target"][-1] == 1 and c["q"][: len(prefix)] == prefix, c
        # The answer is 1-3 whole passage words, not beginning or ending with "the".
        spans = [(i, n) for n in (1, 2, 3) for i in range(len(words) - n + 1)
                 if sum(words[i: i + n], []) == ans]
        assert any(words[i] != [4] and words[i + n - 1] != [4] for i, n in spans), (words, ans)
        # The question is the real question's first word [4, 9, 11] plus other passage words.
        body = c["q"][len(prefix):]
        at = [i for i in range(len(body) - 2) if body[i: i + 3] == [4, 9, 11]]
        assert at, body
        i = at[0]
        rest = body[:i] + body[i + 3:]
        assert rest and all(t in sum(words, []) for t in rest), (body, words)
    assert made >= len(examples) // 2, made
    return spm


def check_span_answers(examples, pieces):
    """span_answers picks, among all runs of 1..max_words context words, the one whose answer
    loss (model.loss: mean over the span's ids and EOS) times its length is smallest."""
    from qa_eval import span_answers
    from train import passage_words, with_passages
    torch.manual_seed(4)
    model = LumenT5(default_config(**TINY), 1.0 / 3.0)
    model.eval()
    for ex in examples[:3]:
        ex = with_passages(ex, 1)
        words = passage_words(ex, pieces)
        got = span_answers(model, [ex], pieces, max_words=3)[0]
        best, best_nll = None, float("inf")
        for i in range(len(words)):
            for n in range(1, min(3, len(words) - i) + 1):
                span = sum(words[i: i + n], [])
                with torch.no_grad():
                    nll = float(model.loss(collate([dict(ex, target=span + [1])]))) * (len(span) + 1)
                if nll < best_nll - 1e-4:
                    best, best_nll = span, nll
        assert got == best, (got, best)
    from qa_eval import random_spans
    picked = random_spans(examples[:6], pieces, seed=3)
    assert picked == random_spans(examples[:6], pieces, seed=3), "random_spans is seeded"
    for ex, span in zip(examples[:6], picked):
        words = passage_words(ex, pieces)
        assert any(sum(words[i: i + n], []) == span for n in range(1, 5)
                   for i in range(len(words) - n + 1)), (span, words)


def check_squad_export(out_dir):
    rng = random.Random(9)
    examples = synthetic_examples(5, 3, rng)
    for i, ex in enumerate(examples):
        ex["question"] = f"question {i}?"
        ex["titles"] = [f"T{i % 2}", "other", "other"]
        ex["texts"] = [f"passage {i} {j} holds answer{i}" for j in range(3)]
        ex["answers"] = [f"answer{i}"]
        ex["titles"][ex["gold"]] = f"T{i % 2}"
    data_path = os.path.join(out_dir, "squad_examples.pt")
    torch.save(dict(train=[], dev=examples, meta={}), data_path)
    out = os.path.join(out_dir, "squad_export.json")
    r = subprocess.run([sys.executable, os.path.join(HERE, "prepare_data.py"), "squad", data_path,
                        out, "--n", "4"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    squad = json.load(open(out))
    assert [a["title"] for a in squad["data"]] == ["T0", "T1"], squad
    seen = []
    for article in squad["data"]:
        for para in article["paragraphs"]:
            (qa,) = para["qas"]
            ex = examples[int(qa["id"])]
            assert article["title"] == ex["titles"][ex["gold"]]
            assert para["context"] == ex["texts"][ex["gold"]] and qa["question"] == ex["question"]
            (ans,) = qa["answers"]
            assert para["context"][ans["answer_start"]:].startswith(ans["text"]), (para, ans)
            seen.append(qa["id"])
    assert sorted(seen) == ["0", "1", "2", "3"], seen


def check_copy_pilot(out_dir):
    from copy_pilot import main as copy_pilot_main, make_batch
    p, q, answer = make_batch(64, 50, 9, 3, torch.Generator().manual_seed(3))
    assert p.shape == (64, 9) and q.shape == (64, 5) and answer.shape == (64,)
    for i in range(64):
        row, frag = p[i].tolist(), q[i, 2:].tolist()
        assert q[i, :2].tolist() == [5, 6] and min(row) >= 3 and max(row) < 50
        hits = [j for j in range(9 - 3) if row[j: j + 3] == frag]
        assert any(row[j + 3] == int(answer[i]) for j in hits), (row, frag, int(answer[i]))
    for model in ("t5", "torch"):
        path = os.path.join(out_dir, f"copy_pilot_{model}.jsonl")
        if os.path.exists(path):
            os.remove(path)
        copy_pilot_main(["--model", model, "--vocab", "20", "--passage-len", "6", "--d-model", "16",
                         "--d-ff", "24", "--layers", "2", "--decoder-layers", "1", "--batch", "4",
                         "--steps", "3", "--log-every", "1", "--eval-every", "3", "--out", path])
        recs = [json.loads(line) for line in open(path)]
        assert [r.get("step") for r in recs[1:]] == [1, 2, 3], recs
        last = recs[-1]
        assert all(r["first_token_loss"] == r["first_token_loss"] for r in recs[1:]), recs
        assert 0.0 <= last["eval_exact"] <= 1.0 and last["eval_first_token_loss"] > 0.0, last


def run_train(data, out, mode, extra=()):
    cmd = [sys.executable, os.path.join(HERE, "train.py"), "--data", data, "--out", out, "--mode",
           mode, "--config", json.dumps(TINY), "--batch", "8", "--eval-n", "0", "--log-every", "1",
           "--warmup", "1", "--pq-g", "4", "--pq-c", "256", "--threads", "1", *extra]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd)}\n{r.stdout}\n{r.stderr}"
    with open(os.path.join(out, "log.jsonl")) as f:
        return [json.loads(line) for line in f]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(7)
    examples = synthetic_examples(24, 3, rng)
    data = os.path.join(a.out, "data.pt")
    torch.save(dict(train=examples, dev=examples[:4],
                    meta=dict(spm="", max_passage_tokens=32, passages=3)), data)

    check_against_reference(examples)
    check_padding_invariance(examples)
    check_pq_layer()

    for mode in ("fid", "lumen", "lumen_vq", "lumen_btr"):
        run = os.path.join(a.out, "run_" + mode)
        log = run_train(data, run, mode, ["--steps", "2"])
        assert [r["step"] for r in log] == [1, 2], log
        assert all(r["loss"] == r["loss"] and r["loss"] < 100 for r in log), log
        model, meta = load_model(os.path.join(run, "model.pt"))
        assert meta["mode"] == mode
        # Reload gives the same numbers as an export/reload round trip.
        exp_model, info = export(os.path.join(run, "model.pt"), os.path.join(a.out, mode),
                                 examples=examples[:3])
        assert info["memory_layers"] == (0 if mode == "fid" else 2), info
        with open(os.path.join(a.out, mode, "engine_check", "cases.json")) as f:
            assert len(json.load(f)["cases"]) == 3
        for f in ("config.json", "model.safetensors", "lumen.json"):
            assert os.path.getsize(os.path.join(a.out, mode, f)) > 0, f
        if mode == "lumen_vq":
            assert os.path.exists(os.path.join(a.out, mode, "codebooks.safetensors"))
            assert model.compress.codebooks.abs().sum() > 0
        if mode == "lumen_btr":
            assert os.path.exists(os.path.join(a.out, mode, "btr_calibration.safetensors"))
        batch = collate(examples[:2])
        with torch.no_grad():
            l1 = model.loss(batch)
            l2 = exp_model.loss(batch)
        assert torch.equal(l1, l2), (float(l1), float(l2))

    # Resume continues the step count; a fresh run from --init changes weights, except the
    # memory side under --freeze-memory.
    log = run_train(data, os.path.join(a.out, "run_lumen"), "lumen", ["--steps", "3", "--resume"])
    assert [r["step"] for r in log] == [1, 2, 3], log
    base, _ = load_model(os.path.join(a.out, "run_lumen", "model.pt"))
    run_train(data, os.path.join(a.out, "run_frozen"), "lumen",
              ["--steps", "2", "--freeze-memory", "--init",
               os.path.join(a.out, "run_lumen", "model.pt")])
    frozen, _ = load_model(os.path.join(a.out, "run_frozen", "model.pt"))
    sb, sf = base.hf_state_dict(), frozen.hf_state_dict()
    mem = set(base.memory_parameter_names())
    for k in sb:
        same = torch.equal(sb[k], sf[k])
        assert same == (k in mem), f"{k}: frozen={k in mem} but unchanged={same}"
    check_passage_selection_and_copy_exercises(examples)
    log = run_train(data, os.path.join(a.out, "run_copy"), "lumen",
                    ["--steps", "2", "--train-passages", "1", "--eval-passages", "1",
                     "--copy-frac", "0.5"])
    assert [r["step"] for r in log] == [1, 2], log
    spm = check_cloze_exercises(examples, a.out)
    from train import load_pieces
    check_span_answers(examples, load_pieces(spm))
    cloze_data = os.path.join(a.out, "data_cloze.pt")
    torch.save(dict(train=examples, dev=examples[:4],
                    meta=dict(spm=spm, max_passage_tokens=32, passages=3)), cloze_data)
    log = run_train(cloze_data, os.path.join(a.out, "run_cloze"), "lumen",
                    ["--steps", "2", "--train-passages", "1", "--copy-frac", "0.3",
                     "--cloze-frac", "0.5"])
    assert [r["step"] for r in log] == [1, 2], log
    check_mimetic_init()
    assert parse_mimetic_flag("2,3,0.1") == (2.0, 3.0, 0.1)
    for bad in ("2,3", "2,3,x", "2,3,1.5"):
        try:
            parse_mimetic_flag(bad)
            raise AssertionError(f"parse_mimetic_flag accepted '{bad}'")
        except argparse.ArgumentTypeError as e:
            assert bad in str(e), e
    cmd = [sys.executable, os.path.join(HERE, "train.py"), "--data", data, "--out",
           os.path.join(a.out, "run_mimetic_init"), "--init",
           os.path.join(a.out, "run_lumen", "model.pt"), "--mimetic-init", "2,3,0.1"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "not with --init" in r.stderr, (r.returncode, r.stderr)
    log = run_train(data, os.path.join(a.out, "run_mimetic"), "fid",
                    ["--steps", "2", "--mimetic-init", "2,3,0.1"])
    assert [r["step"] for r in log] == [1, 2], log
    check_squad_export(a.out)
    check_copy_pilot(a.out)
    print(f"selfcheck ok: {a.out}")


if __name__ == "__main__":
    main()
