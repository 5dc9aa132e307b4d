#!/usr/bin/env bash
# Codec reconstruction quality on stories260K hidden states over WikiText-2 (issue 4, acceptance 2).
# Regenerates bench/results/codec_quality.md: the tables, the command and the PQ-vs-BTR verdicts
# come from the program; the "## Notes" section at the end is written by hand and kept.
#
#   bench/run_codec_quality.sh [BUILD_DIR]     (default build; needs codec_quality_bench)
#
# C = 65536 k-means is the slow part (~n * 65536 * d flops per Lloyd pass, ~2-3 min per depth on
# 2 cores); ITERS16 (default 1) sets its passes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
OUT=bench/results/codec_quality.md
export OMP_WAIT_POLICY=PASSIVE
notes=""
if [ -f "$OUT" ]; then notes=$(sed -n '/^## Notes/,$p' "$OUT"); fi
"$BUILD_DIR/bench/codec_quality_bench" --shared ../shared --tokens "${TOKENS:-98304}" \
  --layers "${LAYERS:-1,3,5}" --iters "${ITERS:-10}" --c65536 --iters16 "${ITERS16:-1}" \
  --threads "${THREADS:-2}" > "$OUT.tmp"
if [ -n "$notes" ]; then printf '%s\n' "$notes" >> "$OUT.tmp"; fi
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"
