#!/usr/bin/env bash
# Codec reconstruction quality on real representations (issue 4, acceptance 2). Regenerates
#   bench/results/codec_quality.md      stories260K hidden states over WikiText-2 (default), or
#   bench/results/codec_quality_t5.md   with MEMORY_STORE=DIR: the memory vectors of a `none`
#                                       store built by `memoria build-store` with a trained T5
#                                       reader (commands in that file's notes)
# The tables, the command and the PQ-vs-BTR verdicts come from the program; the "## Notes" section
# at the end is written by hand and kept.
#
#   bench/run_codec_quality.sh [BUILD_DIR]     (default build; needs codec_quality_bench)
#
# C = 65536 k-means is the slow part (~n * 65536 * d flops per Lloyd pass, ~2-3 min per depth on
# 2 cores); ITERS16 (default 1) sets its passes.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${1:-build}
export OMP_WAIT_POLICY=PASSIVE
if [ -n "${MEMORY_STORE:-}" ]; then
  OUT=bench/results/codec_quality_t5.md
  SOURCE=(--memory-store "$MEMORY_STORE" --tokens "${TOKENS:-145398}")
else
  OUT=bench/results/codec_quality.md
  SOURCE=(--shared ../shared --tokens "${TOKENS:-98304}" --layers "${LAYERS:-1,3,5}")
fi
notes=""
if [ -f "$OUT" ]; then notes=$(sed -n '/^## Notes/,$p' "$OUT"); fi
"$BUILD_DIR/bench/codec_quality_bench" "${SOURCE[@]}" --iters "${ITERS:-10}" --c65536 \
  --iters16 "${ITERS16:-1}" --threads "${THREADS:-2}" > "$OUT.tmp"
if [ -n "$notes" ]; then printf '%s\n' "$notes" >> "$OUT.tmp"; fi
mv "$OUT.tmp" "$OUT"
echo "wrote $OUT"
