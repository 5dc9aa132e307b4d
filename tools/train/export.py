#!/usr/bin/python3
"""Exports a trained reader (train.py's model.pt) to the engine's model-directory layout.

  /usr/bin/python3 tools/train/export.py --ckpt RUN/model.pt --out DIR [--dtype bf16] \
      [--spm spiece.model] [--data DATA.pt --cases 4]

DIR receives
  config.json              Hugging Face T5 config (model_type t5, gated-gelu, untied lm_head)
  model.safetensors        HF tensor names, F32 or BF16 (the engine reads both)
  spiece.model             the SentencePiece tokenizer (pad 0 = decoder start, eos 1, unk 2)
  lumen.json               how the reader was trained: mode, alpha, memory layers, FiD template,
                           max passage tokens, and the store codec it was trained for
  codebooks.safetensors    lumen_vq only: tensor "codebooks" [g, C, d/g] F32, the layout
                           `memoria build-store --codec pq:g=G,bits=8 --pq-codebooks FILE` imports
  btr_calibration.safetensors  lumen_btr only: mu [d], a [d] F32 (kernels/btr_kernels.h; the
                           btr codec's state is mu then a; build-store recalibrates on its sample)
  engine_check/            with --data: a few dev examples with the PyTorch reader's outputs, for
                           the engine comparison in tests/lumen_trainer_test.cc:
                           cases.json (question ids, passage ids, greedy ids up to and excluding
                           EOS, the decoder input [start, greedy..., EOS]) and case<i>_logits.npy
                           [decoder input length, vocab] f32 teacher-forced logits.
The cases are computed with the weights as exported (bf16-rounded for --dtype bf16) and with the
trained compression layer (PQ codebooks / BTR calibration) applied to the passage memory.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "reference"))
from model import collate  # noqa: E402
from safetensors_io import write_safetensors  # noqa: E402
from train import load_model  # noqa: E402


def store_codec(meta):
    if meta["mode"] == "lumen_vq":
        bits = 8 if meta["pq_c"] == 256 else 16
        return f"pq:g={meta['pq_g']},bits={bits}"
    if meta["mode"] == "lumen_btr":
        return "btr"
    return "none"


def write_cases(model, examples, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    cases = []
    eos, start = model.c["eos_token_id"], model.c["decoder_start_token_id"]
    for i, ex in enumerate(examples):
        batch = collate([ex])
        greedy, _ = model.greedy(batch, 24)
        dec_in = [start] + greedy[0] + [eos]
        with torch.no_grad():
            enc, enc_mask = model.encode(batch["q"], batch["q_mask"], batch["p"], batch["p_mask"])
            logits = model.decode(enc, enc_mask, torch.tensor([dec_in]))[0]
        np.save(os.path.join(out_dir, f"case{i}_logits.npy"), logits.float().numpy())
        cases.append(dict(question_ids=ex["q"], passage_ids=ex["passages"], greedy_ids=greedy[0],
                          decoder_input_ids=dec_in, logits=f"case{i}_logits.npy",
                          question=ex.get("question", ""), answers=ex.get("answers", [])))
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(dict(alpha=model.alpha, memory_layers=model.M, cases=cases), f, indent=1)


def export(ckpt, out, dtype="f32", spm=None, examples=None):
    model, meta = load_model(ckpt)
    os.makedirs(out, exist_ok=True)
    c = dict(meta["config"])
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(c, f, indent=1)
    weights = model.hf_state_dict()
    if dtype == "bf16":
        weights = {k: v.bfloat16().float() for k, v in weights.items()}
        model.load_hf_state_dict(weights)
    write_safetensors(os.path.join(out, "model.safetensors"), weights,
                      dtype="BF16" if dtype == "bf16" else "F32")
    if spm:
        shutil.copyfile(spm, os.path.join(out, "spiece.model"))
    dm = meta.get("data_meta", {})
    # The run the weights started from, as "<run dir>/<file>": no machine's paths in an export
    # that may be committed.
    init = meta.get("init")
    init = os.path.join(os.path.basename(os.path.dirname(init)), os.path.basename(init)) if init else None
    info = dict(mode=meta["mode"], alpha=meta["alpha"], memory_layers=model.M,
                live_layers=c["num_layers"] - model.M, freeze_memory=meta["freeze_memory"],
                store_codec=store_codec(meta),
                max_passage_tokens=dm.get("max_passage_tokens"),
                passages_per_question=dm.get("passages"),
                fid_template=dict(question_prefix="question: ", title_prefix="title: ",
                                  context_prefix=" context: "),
                titles="SQuAD article names with '_' replaced by ' '",
                weights_dtype=dtype, init=init)
    if meta["mode"] == "lumen_vq":
        pq = model.compress
        write_safetensors(os.path.join(out, "codebooks.safetensors"), {"codebooks": pq.codebooks})
        info["pq"] = dict(g=pq.g, C=pq.C, bytes_per_token=pq.g * (1 if pq.C <= 256 else 2),
                          codebooks="codebooks.safetensors", tensor="codebooks")
    if meta["mode"] == "lumen_btr":
        b = model.compress
        write_safetensors(os.path.join(out, "btr_calibration.safetensors"), {"mu": b.mu, "a": b.a})
        info["btr"] = dict(calibration="btr_calibration.safetensors",
                           bytes_per_token=c["d_model"] // 8 + 2)
    with open(os.path.join(out, "lumen.json"), "w") as f:
        json.dump(info, f, indent=1)
    if examples:
        write_cases(model, examples, os.path.join(out, "engine_check"))
    return model, info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dtype", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--spm", help="SentencePiece model (default: the data's tokenizer)")
    ap.add_argument("--data", help="prepare_data.py output: dev examples for engine_check/")
    ap.add_argument("--cases", type=int, default=4)
    a = ap.parse_args()
    torch.set_num_threads(2)
    examples, spm = None, a.spm
    if a.data:
        data = torch.load(a.data)
        examples = data["dev"][: a.cases]
        spm = spm or data["meta"]["spm"]
    _, info = export(a.ckpt, a.out, a.dtype, spm, examples)
    sizes = {f: os.path.getsize(os.path.join(a.out, f)) for f in sorted(os.listdir(a.out))
             if os.path.isfile(os.path.join(a.out, f))}
    print(json.dumps(dict(out=a.out, info=info, bytes=sizes)))


if __name__ == "__main__":
    main()
