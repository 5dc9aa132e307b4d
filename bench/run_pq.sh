#!/usr/bin/env bash
# PQ codec vs FAISS (Debian's python3-faiss), same data, same run. Writes bench/results/pq_raw.jsonl
# (one JSON object per side and setting) and prints a markdown table for bench/results/pq.md.
#
#   bench/run_pq.sh [BUILD_DIR]      (default build; needs pq_bench built in Release)
#
# Both sides run on THREADS threads (default 2) with OMP_WAIT_POLICY=PASSIVE, so neither side's
# idle OpenMP workers spin on cores the other needs.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
THREADS=${THREADS:-2}
RUNS=${RUNS:-5}
BENCH=${PQ_BENCH:-$BUILD_DIR/bench/pq_bench}
OUT=bench/results/pq_raw.jsonl
export OMP_WAIT_POLICY=PASSIVE
: > "$OUT"
# d g bits n train_n ours_iters faiss_iters
CONFIGS=(
  "256 32 8 10000 16384 8 25"
  "768 96 8 10000 16384 8 25"
  "768 48 8 10000 16384 8 25"
  "32 4 16 2000 65536 1 1"
)
for c in "${CONFIGS[@]}"; do
  read -r d g bits n tn oi fi <<< "$c"
  data=/tmp/pq_bench_${d}_${n}_${tn}.f32
  ours=$("$BENCH" --d "$d" --g "$g" --bits "$bits" --n "$n" --train-n "$tn" --iters "$oi" \
         --threads "$THREADS" --runs "$RUNS" --btr --data "$data")
  peer=$(/usr/bin/python3 bench/pq_faiss_peer.py --d "$d" --g "$g" --bits "$bits" --n "$n" \
         --train-n "$tn" --iters "$fi" --threads "$THREADS" --runs "$RUNS" --data "$data")
  echo "{\"side\": \"memoria\", \"r\": $ours}" >> "$OUT"
  echo "{\"side\": \"faiss\", \"r\": $peer}" >> "$OUT"
done
/usr/bin/python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| d | g | C | side | iters | train s (cpu s) | held-out rel. MSE | encode vec/s (per cpu s) | decode GB/s (per cpu s) |")
print("|---|---|---|---|---|---|---|---|---|")
for i in range(0, len(rows), 2):
    o, f = rows[i]["r"], rows[i + 1]["r"]
    for side, r in (("memoria", o), ("faiss " + f.get("faiss", ""), f)):
        print(f"| {r['d']} | {r['g']} | {r['C']} | {side} | {r['iters']} | {r['train_s']:.2f} ({r['train_cpu_s']:.2f}) | "
              f"{r['rel_mse']:.4f} | {r['encode_vps']:.0f} ({r['encode_vps_per_cpu_s']:.0f}) | "
              f"{r['decode_gbps']:.2f} ({r['decode_gbps_per_cpu_s']:.2f}) |")
    print(f"| | | | **ratio** | | **{f['train_s'] / o['train_s']:.1f}x** | | **{o['encode_vps'] / f['encode_vps']:.1f}x** | "
          f"**{o['decode_gbps'] / f['decode_gbps']:.1f}x** |")
print()
print("| d | codec | bytes/vector | held-out rel. MSE | encode vec/s | decode GB/s |")
print("|---|---|---|---|---|---|")
for i in range(0, len(rows), 2):
    o = rows[i]["r"]
    print(f"| {o['d']} | pq g={o['g']} C={o['C']} | {o['bytes_per_vector']:.0f} | {o['rel_mse']:.4f} | {o['encode_vps']:.0f} | {o['decode_gbps']:.2f} |")
    if "btr_rel_mse" in o:
        print(f"| {o['d']} | btr (bf16 scale) | {o['btr_bytes_per_vector']:.0f} | {o['btr_rel_mse']:.4f} | {o['btr_encode_vps']:.0f} | {o['btr_decode_gbps']:.2f} |")
PY
