#!/usr/bin/env bash
# memoria-server's T5/LUMEN path under load (issue 6 acceptance 7, "the LUMEN path, each codec"):
# makes a random T5 (Hugging Face layout, stories-free: the Llama 2 SentencePiece tokenizer of
# ../shared), builds one store per codec from SQuAD passages with `memoria build-store`, starts
# memoria-server on each store and runs server_bench's concurrency sweep with a question and
# fixed passage ids. Writes bench/results/server_lumen.md (raw JSON under bench/results/server/).
#   bench/run_server_lumen_bench.sh [runs=3]
# Environment: BUILD_DIR (default build-bench), MEMORIA_SHARED_DIR (default ../shared),
# SWEEP_SECONDS (default 5), PASSAGES (stored, default 64), CODECS (default "none pq:g=16,bits=8 btr").
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
PY=/usr/bin/python3
BUILD_DIR=${BUILD_DIR:-build-bench}
SHARED=${MEMORIA_SHARED_DIR:-../shared}
SWEEP_SECONDS=${SWEEP_SECONDS:-5}
PASSAGES=${PASSAGES:-64}
CODECS=${CODECS:-"none pq:g=16,bits=8 btr"}
OUT=bench/results/server
mkdir -p "$OUT"

nice -n 10 cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DMEMORIA_BUILD_TESTS=ON \
  -DMEMORIA_BUILD_BENCH=ON >/dev/null
nice -n 10 cmake --build "$BUILD_DIR" -j2 --target server_bench memoria-server memoria >/dev/null
export MEMORIA_BUILD_DIR=$PWD/$BUILD_DIR
BENCH="$BUILD_DIR/bench/server_bench"
TOK="$SHARED/models/llama2-tokenizer/tokenizer.model"

WORK=$(mktemp -d /tmp/memoria-server-lumen-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# Random original-family T5 from the test reference's weight recipe, sized so that a request over
# 4 passages takes tens of ms: d 256, 6 encoder layers (alpha 1/3 -> 2 live, 4 in memory), 2
# decoder layers, vocabulary 32000 for the Llama 2 tokenizer (EOS 2, as tests/build_store_cli_test).
$PY - "$WORK/t5" <<'PYEOF'
import json, os, sys
sys.path.insert(0, "tests/reference")
import t5_reference as t5
from safetensors_io import write_safetensors
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
c = t5.make_config("orig")
c.update(d_model=256, d_kv=64, num_heads=4, d_ff=1024, num_layers=6, num_decoder_layers=2,
         vocab_size=32000, eos_token_id=2, relative_attention_max_distance=128)
json.dump(c, open(os.path.join(out, "config.json"), "w"), indent=1)
write_safetensors(os.path.join(out, "model.safetensors"), t5.make_weights(c, 7))
PYEOF

QUESTION="Which NFL team represented the AFC at Super Bowl 50?"
IDS="Super_Bowl_50/0,Super_Bowl_50/1,Super_Bowl_50/2,Super_Bowl_50/3"
LOAD_BEFORE=$(cat /proc/loadavg)
START=$(date -u +%FT%TZ)
names=()
for codec in $CODECS; do
  name=lumen_$(echo "$codec" | tr -c 'a-z0-9\n' '_')
  names+=("$name")
  "$BUILD_DIR"/tools/memoria build-store --corpus "$SHARED/data/qa/squad-v1.1-dev-part1.json" \
    --limit "$PASSAGES" --model "$WORK/t5" --tokenizer "$TOK" --store "$WORK/store_$name" \
    --codec "$codec" --threads 2 --pq-iterations 8 > "$WORK/build_$name.log" 2>&1
  echo "sweep: LUMEN $codec" >&2
  # A failing path (e.g. UNIMPLEMENTED on a server without the T5 path) still writes its JSON:
  # the errors by code are the result.
  "$BENCH" --mode sweep --model "$WORK/t5" --tokenizer "$TOK" --store "$WORK/store_$name" \
    --workers 2 --queue-capacity 16 --threads 2 --clients 1,4,16 --duration-s "$SWEEP_SECONDS" \
    --runs "$RUNS" --max-new-tokens 8 --warmup-requests 10 --question "$QUESTION" \
    --passage-ids "$IDS" > "$OUT/$name.json" || echo "server_bench failed for $codec" >&2
done
LOAD_AFTER=$(cat /proc/loadavg)
CPU=$(lscpu | grep -E '^(Model name|CPU\(s\)):' | sed -E 's/  +/ /g' | paste -sd ';' -)

$PY - "$OUT" "$RUNS" "$CPU" "$LOAD_BEFORE" "$LOAD_AFTER" "$START" "$SWEEP_SECONDS" "$PASSAGES" \
  "$QUESTION" "$IDS" "${names[@]}" > bench/results/server_lumen.md <<'PYEOF'
import json, os, sys
out, runs, cpu, lb, la, start, secs, passages, question, ids, *names = sys.argv[1:]
print("# memoria-server, T5/LUMEN path under load\n")
print(f"Command: `bench/run_server_lumen_bench.sh {runs}` (run started {start}). Machine: {cpu}; load "
      f"average before `{lb}`, after `{la}` — **shared with other engineers' builds**, figures are noisy.\n")
print(f"Model: random T5 (original family, d 256, 6 encoder layers with alpha 1/3 -> 4 memory + 2 live, "
      f"2 decoder layers, vocab 32000, Llama 2 tokenizer). Store: the first {passages} SQuAD v1.1 dev "
      "passages, built per codec with `memoria build-store`. Request: question "
      f"\"{question}\" over passage ids {ids} (no retriever), greedy, max_new_tokens 8 (EOS may end it "
      f"earlier). Server: 2 workers x 1 thread, queue capacity 16. Median of {runs} runs of {secs} s; "
      "errors summed over runs.\n")
print("| codec | clients | requests/s | p50 ms | p90 ms | p99 ms | errors (all runs) |")
print("|---|---|---|---|---|---|---|")
for name in names:
    path = f"{out}/{name}.json"
    if not os.path.exists(path) or os.path.getsize(path) == 0:
        print(f"| {name} | - | - | - | - | - | server_bench failed (see the run's stderr) |")
        continue
    d = json.load(open(path))
    for p in d["phases"]:
        m = p["median"]
        e = ", ".join(f"{k} {v}" for k, v in sorted(m["errors_all_runs"].items())) or "0"
        print(f"| {name.removeprefix('lumen_')} | {m['clients']} | {m['requests_per_s']:.1f} | {m['p50_ms']:.1f} | "
              f"{m['p90_ms']:.1f} | {m['p99_ms']:.1f} | {e} |")
print("\nRaw JSON: `bench/results/server/lumen_*.json`.")
PYEOF
echo "wrote bench/results/server_lumen.md" >&2
