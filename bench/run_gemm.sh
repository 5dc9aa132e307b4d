#!/usr/bin/env bash
# Runs bench/gemm_bench (and the PyTorch peer, when /usr/bin/python3 has torch) and writes
# bench/results/gemm.md. Usage: bench/run_gemm.sh [build-dir] [threads]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
THREADS=${2:-2}
OUT=bench/results/gemm.md
PEER=$(mktemp)
trap 'rm -f "$PEER"' EXIT
PEER_ARG=()
if /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  /usr/bin/python3 bench/gemm_torch_peer.py "$THREADS" 5 > "$PEER"
  PEER_ARG=(--peer="$PEER")
fi
{
  echo "# GEMM and attention benchmark"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
  FLAGS=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -x -E 'avx2|fma|avx512f|avx512_bf16' | tr '\n' ' ')
  echo "- machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; ISA flags: ${FLAGS}"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- command: bench/run_gemm.sh $BUILD $THREADS  (= $BUILD/bench/gemm_bench --threads=$THREADS ${PEER_ARG[*]:+--peer=torch.txt})"
  echo "- peer: $(/usr/bin/python3 -c 'import torch; print("torch", torch.__version__, "oneDNN linear (mkldnn_linear; this torch links the generic reference BLAS), set_num_threads('"$THREADS"')")' 2>/dev/null || echo none)"
  echo
  "$BUILD/bench/gemm_bench" --threads="$THREADS" "${PEER_ARG[@]}"
} > "$OUT"
echo "wrote $OUT"
