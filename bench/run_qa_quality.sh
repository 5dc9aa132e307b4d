#!/usr/bin/env bash
# SQuAD quality of a T5 reader per memory setting (issue 7 acceptance 1): for each codec, builds a
# passage store of the SQuAD dev paragraphs with `memoria build-store` and scores the reader with
# `memoria eval-qa` (exact match / F1, SQuAD v1.1 normalisation) through the server's answering
# path; plus the FiD baseline (full encoder on text). Writes a markdown table: setting, codec,
# bytes per token, compression ratio vs fp32, EM, F1, tokens/s, with the command, machine and date.
#
#   bench/run_qa_quality.sh MODEL_DIR [--limit N] [--codebooks FILE] [--vq-model DIR]
#                           [--fid-model DIR] [--btr-model DIR] [--name NAME]
#                           [--lumen-model NAME=DIR]...
#
#   MODEL_DIR        the LUMEN reader (config.json + safetensors [+ spiece.model, lumen.json])
#   --limit N        score the first N dev questions (default all)
#   --codebooks F    PQ codebooks [g, C, d/g] trained for MODEL_DIR elsewhere (e.g. jointly):
#                    one more row, imported instead of k-means
#   --vq-model DIR   a LUMEN-VQ reader exported with codebooks.safetensors: its own row, its store
#                    built with those codebooks
#   --fid-model DIR  the FiD-trained reader for the FiD row (default: MODEL_DIR in fid mode)
#   --btr-model DIR  a BTR-trained reader: its own row, btr codec calibrated on its memory
#   --name NAME      what MODEL_DIR's rows call it (default "LUMEN")
#   --lumen-model NAME=DIR  another LUMEN reader: a row "NAME, fp32 memory" (repeatable; e.g. the
#                    same initialisation trained with its memory encoder frozen and not)
#
# Defaults come from MODEL_DIR/lumen.json when the trainer exported one (alpha,
# max_passage_tokens, passages_per_question). Environment overrides:
#   BUILD_DIR (default build-bench; configured if it has no CMakeCache.txt), MEMORIA_SHARED_DIR
#   (../shared), QA (the SQuAD dev part), TOKENIZER (default: each model dir's own), ALPHA,
#   MAX_TOKENS, PASSAGES (default gold+bm25:K, K = passages per question, else 3), PARAGRAPHS
#   (stored paragraphs, default 0 = all: the first N questions need the first paragraphs only),
#   PQ_SETTINGS (default g = d/4, d/8, d/16 at 8 bits and d/8, d/16 at 16 bits), PQ_ITERATIONS
#   (10), TRAIN_TOKENS (memory vectors to fit pq/btr, 131072), THREADS (all cores), MAX_NEW (24),
#   BEAMS (1), EXTRACTIVE (0; 1 = answers restricted to passage spans, eval-qa --extractive),
#   STORE_FLAGS (more build-store flags for every store, e.g. "--window-words 24 --window-stride
#   12"; the FiD row then reads the passages from such a store too), OUT
#   (bench/results/qa_quality.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# The command as it can be pasted back: arguments with spaces or quotes are single-quoted.
COMMAND="bench/run_qa_quality.sh"
for arg in "$@"; do
  if [[ $arg =~ [[:space:]\'\"] ]]; then COMMAND+=" '${arg//\'/\'\\\'\'}'"; else COMMAND+=" $arg"; fi
done
[[ $# -ge 1 && $1 != --* ]] || { sed -n '2,35p' "$0" >&2; exit 2; }
MODEL=$1; shift
LIMIT=0 CODEBOOKS="" VQ_MODEL="" FID_MODEL="" BTR_MODEL="" NAME="LUMEN" OTHER_LUMEN=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --limit) LIMIT=$2; shift 2 ;;
    --codebooks) CODEBOOKS=$2; shift 2 ;;
    --vq-model) VQ_MODEL=$2; shift 2 ;;
    --fid-model) FID_MODEL=$2; shift 2 ;;
    --btr-model) BTR_MODEL=$2; shift 2 ;;
    --name) NAME=$2; shift 2 ;;
    --lumen-model)
      [[ $2 == *=* ]] || { echo "--lumen-model wants NAME=DIR, got '$2'" >&2; exit 2; }
      OTHER_LUMEN+=("$2"); shift 2 ;;
    *) echo "unknown argument '$1'" >&2; exit 2 ;;
  esac
done
PY=/usr/bin/python3
BUILD_DIR=${BUILD_DIR:-build-bench}
SHARED=${MEMORIA_SHARED_DIR:-../shared}
QA=${QA:-$SHARED/data/qa/squad-v1.1-dev-part1.json}
OUT=${OUT:-bench/results/qa_quality.md}
THREADS=${THREADS:-0}
MAX_NEW=${MAX_NEW:-24}
BEAMS=${BEAMS:-1}
EXTRACTIVE=${EXTRACTIVE:-0}
read -r -a STORE_FLAGS <<< "${STORE_FLAGS:-}"
PQ_ITERATIONS=${PQ_ITERATIONS:-10}
TRAIN_TOKENS=${TRAIN_TOKENS:-131072}
PARAGRAPHS=${PARAGRAPHS:-0}

# lumen.json / config.json values, or "" when absent.
json_field() { $PY -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")
except OSError: print("")' "$1" "$2"; }
ALPHA=${ALPHA:-$(json_field "$MODEL/lumen.json" alpha)}; ALPHA=${ALPHA:-0.3333333333333333}
MAX_TOKENS=${MAX_TOKENS:-$(json_field "$MODEL/lumen.json" max_passage_tokens)}; MAX_TOKENS=${MAX_TOKENS:-256}
PER_QUESTION=$(json_field "$MODEL/lumen.json" passages_per_question)
PASSAGES=${PASSAGES:-gold+bm25:${PER_QUESTION:-3}}
D=$(json_field "$MODEL/config.json" d_model)
[[ -n $D ]] || { echo "no d_model in $MODEL/config.json" >&2; exit 1; }
PQ_SETTINGS=${PQ_SETTINGS:-"pq:g=$((D / 4)),bits=8 pq:g=$((D / 8)),bits=8 pq:g=$((D / 16)),bits=8 pq:g=$((D / 8)),bits=16 pq:g=$((D / 16)),bits=16"}

if [[ ! -f $BUILD_DIR/CMakeCache.txt ]]; then
  nice -n 10 cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
nice -n 10 cmake --build "$BUILD_DIR" -j2 --target memoria >/dev/null
MEMORIA=$BUILD_DIR/tools/memoria

WORK=$(mktemp -d /tmp/memoria-qa-quality-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
# The stored paragraphs: the whole QA file, or its first PARAGRAPHS paragraphs as JSONL with the
# ids build-store gives SQuAD paragraphs ("<title>/<index>", tools/corpus_reader.h).
CORPUS=$QA
CORPUS_DESC="every paragraph of the QA file"
if [[ $PARAGRAPHS -gt 0 ]]; then
  CORPUS=$WORK/corpus.jsonl
  CORPUS_DESC="the first $PARAGRAPHS paragraphs of the QA file"
  $PY - "$QA" "$PARAGRAPHS" > "$CORPUS" <<'PYEOF'
import json, sys
data, n = json.load(open(sys.argv[1]))["data"], int(sys.argv[2])
for a in data:
    for i, p in enumerate(a["paragraphs"]):
        if n == 0:
            sys.exit(0)
        n -= 1
        print(json.dumps({"id": f"{a['title']}/{i}", "title": a["title"].replace("_", " "), "text": p["context"]}))
PYEOF
fi

if [[ ${#STORE_FLAGS[@]} -gt 0 ]]; then CORPUS_DESC="$CORPUS_DESC, stored with build-store ${STORE_FLAGS[*]}"; fi
TOK_FLAGS=()
if [[ -n ${TOKENIZER:-} ]]; then TOK_FLAGS=(--tokenizer "$TOKENIZER"); fi
EVAL_FLAGS=(--qa "$QA" --limit "$LIMIT" --passages "$PASSAGES" --threads "$THREADS" --max-new-tokens "$MAX_NEW" --beams "$BEAMS")
if [[ $EXTRACTIVE == 1 ]]; then EVAL_FLAGS+=(--extractive); fi

# row NAME MODEL_DIR CODEC [build-store flags...]: builds the store, evaluates; failures are rows.
rows=()
row() {
  local name=$1 model=$2 codec=$3; shift 3
  local store=$WORK/store_${#rows[@]}
  rows+=("$name")
  local i=$((${#rows[@]} - 1))
  echo "$codec" > "$WORK/codec_$i.txt"
  echo "[qa-quality] $name: build-store --codec $codec $*" >&2
  if ! "$MEMORIA" build-store --corpus "$CORPUS" --model "$model" "${TOK_FLAGS[@]}" --store "$store" \
      --codec "$codec" --alpha "$ALPHA" --max-tokens "$MAX_TOKENS" --train-tokens "$TRAIN_TOKENS" \
      --pq-iterations "$PQ_ITERATIONS" --threads "$THREADS" --no-sync "${STORE_FLAGS[@]}" "$@" \
      > "$WORK/build_$i.log" 2>&1; then
    tail -1 "$WORK/build_$i.log" > "$WORK/error_$i.txt"
    return 0
  fi
  echo "[qa-quality] $name: eval-qa" >&2
  "$MEMORIA" eval-qa --model "$model" "${TOK_FLAGS[@]}" --store "$store" --alpha "$ALPHA" "${EVAL_FLAGS[@]}" \
    --report "$WORK/report_$i.json" > "$WORK/eval_$i.log" 2>&1 || tail -1 "$WORK/eval_$i.log" > "$WORK/error_$i.txt"
  rm -rf "$store"
}

LOAD_BEFORE=$(cat /proc/loadavg)
START=$(date -u +%FT%TZ)
# FiD: the full encoder on the same paragraphs' text (no store), or with STORE_FLAGS on the
# passages of such a store (codec none: only its token ids are read).
FID_NAME="FiD"
[[ -n $FID_MODEL ]] || { FID_MODEL=$MODEL; FID_NAME="FiD (the LUMEN reader's weights run as FiD)"; }
rows+=("$FID_NAME")
echo "[qa-quality] $FID_NAME: eval-qa --mode fid" >&2
FID_SOURCE=(--corpus "$CORPUS" --max-tokens "$MAX_TOKENS")
if [[ ${#STORE_FLAGS[@]} -gt 0 ]]; then
  FID_SOURCE=(--store "$WORK/fid_store")
  "$MEMORIA" build-store --corpus "$CORPUS" --model "$FID_MODEL" "${TOK_FLAGS[@]}" --store "$WORK/fid_store" \
    --codec none --alpha 1 --max-tokens "$MAX_TOKENS" --threads "$THREADS" --no-sync "${STORE_FLAGS[@]}" \
    > "$WORK/build_0.log" 2>&1 || tail -1 "$WORK/build_0.log" > "$WORK/error_0.txt"
fi
"$MEMORIA" eval-qa --mode fid --model "$FID_MODEL" "${TOK_FLAGS[@]}" "${FID_SOURCE[@]}" \
  "${EVAL_FLAGS[@]}" --report "$WORK/report_0.json" > "$WORK/eval_0.log" 2>&1 \
  || tail -1 "$WORK/eval_0.log" >> "$WORK/error_0.txt"
rm -rf "$WORK/fid_store"

row "$NAME, fp32 memory" "$MODEL" none
for other in "${OTHER_LUMEN[@]}"; do row "${other%%=*}, fp32 memory" "${other#*=}" none; done
row "$NAME, bf16 memory" "$MODEL" none:bf16
for pq in $PQ_SETTINGS; do row "$NAME + PQ (k-means on the frozen reader's memory)" "$MODEL" "$pq"; done
row "$NAME + BTR (offline calibration)" "$MODEL" btr
if [[ -n $CODEBOOKS ]]; then
  GC=$($PY - "$CODEBOOKS" <<'PYEOF'
import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
g, c, _ = h["codebooks"]["shape"]; print(f"pq:g={g},bits={16 if c > 256 else 8}")
PYEOF
)
  row "$NAME + imported codebooks ($(basename "$CODEBOOKS"))" "$MODEL" "$GC" --pq-codebooks "$CODEBOOKS"
fi
if [[ -n $VQ_MODEL ]]; then
  VQ_CODEC=$($PY - "$VQ_MODEL/lumen.json" <<'PYEOF'
import json, sys
pq = json.load(open(sys.argv[1]))["pq"]
print(f"pq:g={pq['g']},bits={16 if pq['C'] > 256 else 8}")
PYEOF
)
  row "LUMEN-VQ (jointly trained codebooks)" "$VQ_MODEL" "$VQ_CODEC" --pq-codebooks "$VQ_MODEL/codebooks.safetensors"
fi
if [[ -n $BTR_MODEL ]]; then
  row "BTR-trained reader, btr codec (offline calibration)" "$BTR_MODEL" btr
fi
LOAD_AFTER=$(cat /proc/loadavg)
CPU=$(lscpu | grep -E '^(Model name|CPU\(s\)):' | sed -E 's/  +/ /g' | paste -sd ';' -)

mkdir -p "$(dirname "$OUT")"
$PY - "$WORK" "$COMMAND" "$START" "$CPU" "$LOAD_BEFORE" "$LOAD_AFTER" "$MODEL" "$QA" "$CORPUS_DESC" \
  "$ALPHA" "$MAX_TOKENS" "$PASSAGES" "$MAX_NEW" "$BEAMS" "$EXTRACTIVE" "$PQ_ITERATIONS" "$TRAIN_TOKENS" \
  "$NAME" "${rows[@]}" > "$OUT" <<'PYEOF'
import json, os, sys
(work, command, start, cpu, lb, la, model, qa, corpus, alpha, max_tokens, passages, max_new, beams,
 extractive, iterations, train_tokens, reader_name, *names) = sys.argv[1:]
reports = {}
for i in range(len(names)):
    p = os.path.join(work, f"report_{i}.json")
    if os.path.exists(p):
        reports[i] = json.load(open(p))
base = next((r for i, r in reports.items() if r["mode"] == "lumen" and r["codec"].startswith("none(") and r["codec"].endswith("f32)")), None)
print("# SQuAD v1.1 dev: reader quality per memory setting\n")
print(f"Command: `{command}` (run started {start}). Machine: {cpu}; load average before `{lb}`, "
      f"after `{la}`.\n")
q = next(iter(reports.values()), {}).get("questions", "?")
print(f"Reader: `{model}`. Questions: the first {q} of `{qa}`; stored passages: {corpus}. "
      f"Passages per question: `{passages}` (gold: the question's own passage; bm25:K: the K best "
      f"by BM25 over the stored passages). LUMEN alpha {float(alpha):.4g}; passage parts truncated to {max_tokens} tokens; "
      f"{'greedy' if beams == '1' else f'{beams} beams'}"
      f"{', extractive (answers restricted to spans of the passages read)' if extractive == '1' else ''}, "
      f"at most {max_new} answer tokens. "
      f"Codecs fitted by `memoria build-store` on up to {train_tokens} memory vectors of the stored "
      f"paragraphs ({iterations} k-means iterations). EM / F1: SQuAD v1.1 normalisation, "
      "`memoria eval-qa`. Tokens/s: answer = generated ids per second of decoding; encoder = "
      "question + passage ids per second of the (live) encoder.\n")
print(f"| setting | codec | bytes/token | ratio vs fp32 | EM | F1 | EM vs {reader_name}, fp32 memory | answer tokens/s | encoder tokens/s |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for i, name in enumerate(names):
    r = reports.get(i)
    if r is None:
        err = open(os.path.join(work, f"error_{i}.txt")).read().strip() if os.path.exists(os.path.join(work, f"error_{i}.txt")) else "no report"
        p = os.path.join(work, f"codec_{i}.txt")
        codec = open(p).read().strip() if os.path.exists(p) else ""
        print(f"| {name} | {codec} | | | | | | | failed: {err.replace('|', '/')} |")
        continue
    rate = lambda n, s: f"{n / s:.0f}" if s > 0 else "-"
    if r["mode"] == "fid":
        codec, bpt, ratio = "text (full encoder at query time)", "-", "-"
    else:
        codec, bpt, ratio = r["codec"], str(r["bytes_per_token"]), f"{r['ratio_vs_fp32']:.1f}x"
    delta = f"{r['exact_match'] - base['exact_match']:+.2f}" if base and r["mode"] == "lumen" else "-"
    print(f"| {name} | {codec} | {bpt} | {ratio} | {r['exact_match']:.2f} | {r['f1']:.2f} | {delta} | "
          f"{rate(r['answer_tokens'], r['decoder_seconds'])} | {rate(r['encoder_tokens'], r['encoder_seconds'])} |")
print()
print("Bytes per token are the codec's code bytes (CodecSpec::BytesPerToken, as `memoria inspect-store` "
      "prints them); fp32 memory is 4 d bytes per token.")
PYEOF
echo "[qa-quality] wrote $OUT" >&2
