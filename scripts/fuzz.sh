#!/usr/bin/env bash
# The libFuzzer targets of fuzz/ under AddressSanitizer + UndefinedBehaviorSanitizer: builds them
# with clang (RelWithDebInfo, only the fuzz targets and the libraries they link) and runs each for
# a bounded time on a scratch copy of its committed corpus fuzz/corpus/<target>/. Exit code 0
# only if no target crashed, leaked, timed out or ran out of memory; the failing input is kept
# under the work directory and its path printed (add it to fuzz/corpus/<target>/ as crash_<name>
# once the bug is fixed, so fuzz_test replays it in every build).
#
# Settings (environment):
#   FUZZ_SECONDS    seconds per target (default 30)
#   FUZZ_TARGETS    space-separated target names (default: all, see fuzz/CMakeLists.txt)
#   FUZZ_BUILD_DIR  clang build directory (default build-fuzz)
#   FUZZ_WORK       scratch directory for the working corpus and artifacts (default: a new temp dir)
#   FUZZ_MERGE=1    merge inputs that add coverage back into fuzz/corpus/ (off: the repo's corpus
#                   is only read)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${FUZZ_SECONDS:-30}
BUILD=${FUZZ_BUILD_DIR:-build-fuzz}
TARGETS=${FUZZ_TARGETS:-"request safetensors store_value tokenizer server_config model_config corpus"}
WORK=${FUZZ_WORK:-$(mktemp -d -t memoria-fuzz.XXXXXX)}

start=$(date +%s)
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DMEMORIA_BUILD_FUZZERS=ON -DMEMORIA_SANITIZE=address,undefined -DMEMORIA_WERROR=ON \
    -DMEMORIA_BUILD_TESTS=OFF -DMEMORIA_BUILD_BENCH=OFF
fi
cmake --build "$BUILD" -j"$(nproc)" --target memoria_fuzzers
echo "fuzz: build took $(( $(date +%s) - start )) s"

# Leaks fail the run (also per input: -detect_leaks); UBSan findings abort with a stack trace.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in $TARGETS; do
  corpus="$WORK/corpus/$t"
  mkdir -p "$corpus" "$WORK/artifacts"
  cp -r "fuzz/corpus/$t/." "$corpus/"
  echo "fuzz: $t for ${SECONDS_PER_TARGET} s ($(ls "$corpus" | wc -l) seed inputs)"
  # -timeout: seconds one input may take; -rss_limit_mb: the whole process (ASan shadow
  # included); -max_len: large enough for the tokenizer and codebook seeds.
  if ! "$BUILD/fuzz/${t}_fuzzer" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 \
      -rss_limit_mb=2560 -max_len=16384 -detect_leaks=1 -print_final_stats=1 \
      -artifact_prefix="$WORK/artifacts/$t-" "$corpus" > "$WORK/$t.log" 2>&1; then
    failed+=("$t")
    tail -n 60 "$WORK/$t.log"
    echo "fuzz: $t FAILED; log $WORK/$t.log, input(s): $(ls "$WORK/artifacts/$t-"* 2>/dev/null | tr '\n' ' ')"
  else
    grep -E "^stat::number_of_executed_units|^stat::new_units_added" "$WORK/$t.log" | tr '\n' ' '
    echo
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    "$BUILD/fuzz/${t}_fuzzer" -merge=1 "fuzz/corpus/$t" "$corpus" > "$WORK/$t.merge.log" 2>&1
  fi
done
echo "fuzz: total $(( $(date +%s) - start )) s, work dir $WORK"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED targets: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: all targets passed (0 crashes, 0 leaks)"
