#!/usr/bin/env bash
# PQ codebook training vs FAISS at equal distortion: FAISS's k-means (random seeding, 25
# iterations, its default) once per setting, ours (k-means++ seeding + Lloyd) at several iteration
# counts, same data file, same threads; prints a markdown table for bench/results/pq_training.md
# with, per setting, the fewest iterations of ours whose held-out relative MSE is at or below
# FAISS's and the training-time ratio there. Training is timed REPEATS times per side (default 3)
# and the median taken.
#
#   bench/run_pq_training.sh [BUILD_DIR]      (default build; needs pq_bench built in Release)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
OURS_ITERS=${OURS_ITERS:-"4 8 12 16 25"}
BENCH=${PQ_BENCH:-$BUILD_DIR/bench/pq_bench}
OUT=${OUT:-bench/results/pq_training_raw.jsonl}
export OMP_WAIT_POLICY=PASSIVE
: > "$OUT"
echo "# $(date -u +%FT%TZ) load: $(cat /proc/loadavg)" >&2
# d g bits n train_n
CONFIGS=(
  "256 32 8 10000 16384"
  "768 96 8 10000 16384"
  "768 48 8 10000 16384"
)
for c in "${CONFIGS[@]}"; do
  read -r d g bits n tn <<< "$c"
  data=/tmp/pq_bench_${d}_${n}_${tn}.f32
  for rep in $(seq "$REPEATS"); do
    # pq_bench writes the data file on its first run; FAISS reads the same file.
    for it in $OURS_ITERS; do
      r=$("$BENCH" --d "$d" --g "$g" --bits "$bits" --n "$n" --train-n "$tn" --iters "$it" \
          --threads "$THREADS" --runs 1 --data "$data")
      echo "{\"side\": \"memoria\", \"rep\": $rep, \"r\": $r}" >> "$OUT"
    done
    r=$(/usr/bin/python3 bench/pq_faiss_peer.py --d "$d" --g "$g" --bits "$bits" --n "$n" \
        --train-n "$tn" --iters 25 --threads "$THREADS" --runs 1 --data "$data")
    echo "{\"side\": \"faiss\", \"rep\": $rep, \"r\": $r}" >> "$OUT"
  done
done
echo "# done $(date -u +%FT%TZ) load: $(cat /proc/loadavg)" >&2
/usr/bin/python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
groups = {}
for row in rows:
    r = row["r"]
    key = (r["d"], r["g"], r["C"], row["side"], r["iters"])
    groups.setdefault(key, []).append(r)
def med(rs, k):
    return statistics.median(x[k] for x in rs)
print("| d | g | C | side | iters | train s (median) | train cpu s | held-out rel. MSE |")
print("|---|---|---|---|---|---|---|---|")
settings = sorted({k[:3] for k in groups}, key=lambda k: (k[0], -k[1]))
summary = []
for s in settings:
    faiss = [v for k, v in groups.items() if k[:3] == s and k[3] == "faiss"][0]
    f_t, f_mse = med(faiss, "train_s"), med(faiss, "rel_mse")
    print(f"| {s[0]} | {s[1]} | {s[2]} | faiss | 25 | {f_t:.2f} | {med(faiss, 'train_cpu_s'):.2f} | {f_mse:.4f} |")
    ours = sorted(((k[4], v) for k, v in groups.items() if k[:3] == s and k[3] == "memoria"))
    best = None
    for it, v in ours:
        t, mse = med(v, "train_s"), med(v, "rel_mse")
        print(f"| | | | memoria | {it} | {t:.2f} | {med(v, 'train_cpu_s'):.2f} | {mse:.4f} |")
        if best is None and mse <= f_mse:
            best = (it, t, mse)
    summary.append((s, f_t, f_mse, best))
print()
print("| d | g | C | FAISS (25 iters) | ours, fewest iters at <= FAISS's error | training speedup at equal error |")
print("|---|---|---|---|---|---|")
for s, f_t, f_mse, best in summary:
    if best is None:
        print(f"| {s[0]} | {s[1]} | {s[2]} | {f_t:.2f} s, {f_mse:.4f} | none of the iteration counts reaches it | - |")
    else:
        it, t, mse = best
        print(f"| {s[0]} | {s[1]} | {s[2]} | {f_t:.2f} s, {f_mse:.4f} | {it} iters: {t:.2f} s, {mse:.4f} | **{f_t / t:.1f}x** |")
PY
