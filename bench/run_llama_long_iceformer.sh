#!/usr/bin/env bash
# IceFormer on a trained long-context LLaMA (issue 7 acceptance 2): perplexity, next-token
# agreement and KL of IceFormer in the upper half of the layers vs exact attention, at each
# context length, with the attention-kernel time of each (`memoria eval-lm`, tools/eval_lm.h).
# Writes a markdown table with the command, machine and date, and the JSON reports beside it.
#
#   bench/run_llama_long_iceformer.sh MODEL_DIR
#
#   MODEL_DIR   LLaMA model dir from tools/train/train_llama.py export (config.json,
#               model.safetensors, tokenizer.model, heldout_ids.json: the held-out token stream)
# Environment overrides: BUILD_DIR (default build-bench; configured if it has no CMakeCache.txt),
#   CONTEXTS (default "2048 4096"), WINDOWS (8), KS (IceFormer top-k values, 0 = the k(n) schedule;
#   default "0,10,20,50"), EXACT_UP_TO (queries seeing <= this many keys stay exact; 256),
#   BUDGETS (search budgets "candidates_per_k:visits_per_k", each a run; default
#   "1000:10000 20:200 4:40": an exhaustive search (what top-k truncation alone costs),
#   the walk's former default and a small one), SEARCH (scan, the default, or walk: how the DCI
#   index finds candidates, kernels/dci_index.h; visits bound the walk only), LAYERS (upper),
#   THREADS (all cores), OUT (bench/results/llama_long_iceformer.md).
set -euo pipefail
cd "$(dirname "$0")/.."
COMMAND="bench/run_llama_long_iceformer.sh $*"
[[ $# -eq 1 ]] || { sed -n '2,17p' "$0" >&2; exit 2; }
MODEL=$1
BUILD_DIR=${BUILD_DIR:-build-bench}
CONTEXTS=${CONTEXTS:-2048 4096}
WINDOWS=${WINDOWS:-8}
KS=${KS:-0,10,20,50}
EXACT_UP_TO=${EXACT_UP_TO:-256}
BUDGETS=${BUDGETS:-1000:10000 20:200 4:40}
SEARCH=${SEARCH:-scan}
LAYERS=${LAYERS:-upper}
THREADS=${THREADS:-0}
OUT=${OUT:-bench/results/llama_long_iceformer.md}
REPORTS=${OUT%.md}
mkdir -p "$REPORTS"

if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEMORIA_BUILD_TESTS=OFF >/dev/null
fi
cmake --build "$BUILD_DIR" -j2 --target memoria >/dev/null
MEMORIA=$BUILD_DIR/tools/memoria

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RUNS=()
for ctx in $CONTEXTS; do
  for budget in $BUDGETS; do
    "$MEMORIA" eval-lm --model "$MODEL" --ids "$MODEL/heldout_ids.json" --context "$ctx" \
      --windows "$WINDOWS" --iceformer-k "$KS" --iceformer-exact-up-to "$EXACT_UP_TO" \
      --iceformer-candidates-per-k "${budget%%:*}" --iceformer-visits-per-k "${budget##*:}" \
      --iceformer-search "$SEARCH" --iceformer-layers "$LAYERS" --threads "$THREADS" \
      --report "$REPORTS/ctx${ctx}_budget${budget/:/x}.json"
    RUNS+=("$ctx:$budget")
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

/usr/bin/python3 - "$OUT" "$REPORTS" "$COMMAND" "$LOAD_BEFORE" "$LOAD_AFTER" "$EXACT_UP_TO" \
  "$SEARCH" "${RUNS[@]}" <<'EOF'
import json, os, sys, time
out, reports, command, load_before, load_after, exact_up_to, search, *runs = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows = []
for run in runs:
    ctx, budget = run.split(":", 1)
    r = json.load(open(os.path.join(reports, f"ctx{ctx}_budget{budget.replace(':', 'x')}.json")))
    exact = r["results"][0]
    for s in r["results"]:
        speed = exact["attention_seconds"] / s["attention_seconds"] if s["attention_seconds"] else 0
        b = budget.replace(":", " / ") if s["iceformer"] else "-"
        rows.append(f"| {r['context']} | {s['name']} | {b} | {s['top_k'] or '-'} | "
                    f"{','.join(map(str, s['layers'])) or '-'} | {s['perplexity']:.3f} | "
                    f"{100 * exact['perplexity'] / s['perplexity']:.2f}% | {s['agreement']:.4f} | "
                    f"{s['kl']:.5f} | {s['attention_seconds']:.3f} | {speed:.2f}x |")
    head = r
with open(out, "w") as f:
    f.write(f"""# IceFormer on a trained long-context LLaMA: quality vs exact attention

Model: `{head['model_dir']}` (fingerprint 0x{head['model_fingerprint']:016x}): {head['num_layers']}
layers, {head['num_heads']} query / {head['num_kv_heads']} KV heads of dim {head['head_dim']}, vocab
{head['vocab']}. Text: its held-out stream ({head['stream_tokens']} tokens of WikiText-2 articles
and tinyshakespeare that training never saw), {head['windows']} windows per context, evenly
spaced; every position of a window scored (next-token perplexity over all of them). IceFormer in
the layers listed; queries that see more than {exact_up_to} keys are searched (the others exact);
search: {search} (kernels/dci_index.h); budget = candidates_per_k / visits_per_k (k0 = c k
admitted candidates, k1 = v k visited entries, the walk only);
agreement = argmax equal to the exact model's; KL = mean KL(exact || IceFormer) in nats;
"score kept" = exact perplexity / IceFormer perplexity. Attention seconds: the attention kernels
of all layers (IceFormer's index builds included), summed over windows; speedup vs exact.

Command: `{command}` (each context: `memoria eval-lm --model MODEL --ids MODEL/heldout_ids.json
--context N --windows W --iceformer-k KS --iceformer-exact-up-to E --iceformer-candidates-per-k C
--iceformer-visits-per-k V --iceformer-search S --iceformer-layers L`)
Machine: {cpu}, {os.cpu_count()} cores, {head['threads']} threads; load average before
{load_before}, after {load_after}. Date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.
Reports: `{reports}/ctx*.json`.

| context | setting | budget | k | IceFormer layers | perplexity | score kept | agreement | KL | attention s | speedup |
|---|---|---|---|---|---|---|---|---|---|---|
""")
    f.write("\n".join(rows) + "\n")
print(f"-> {out}")
EOF
