#!/usr/bin/env bash
# The whole test suite from a fresh Debian 12 machine: install packages, build (Release, warnings
# as errors), run every test with ctest, then the corrupted-input tests again under
# AddressSanitizer + UBSan, and the libFuzzer targets for a bounded time (scripts/fuzz.sh). Prints
# ctest's summary. Exit code 0 only if everything passed.
#
# Settings (environment): MEMORIA_SHARED_DIR (default <repo>/../shared), BUILD_DIR (default build).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export BUILD_DIR=${BUILD_DIR:-build}
scripts/build.sh -DMEMORIA_WERROR=ON -DMEMORIA_BUILD_TESTS=ON -DMEMORIA_BUILD_BENCH=ON
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 900

# Parsers of outside bytes once more under AddressSanitizer + UndefinedBehaviorSanitizer: only the
# test programs that hold Corrupt/Fuzz/Malformed tests (and the CLI one of them runs) are built.
BUILD_TARGETS="engine_test storage_test tools_test e2e_test memoria fuzz_test fuzz_proto_test" BUILD_DIR=${BUILD_DIR}-asan scripts/build.sh -DMEMORIA_WERROR=ON -DMEMORIA_SANITIZE=address,undefined \
  -DMEMORIA_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
ctest --test-dir "${BUILD_DIR}-asan" --output-on-failure -j"$(nproc)" --timeout 900 -R 'Corrupt|Fuzz|Malformed'

# libFuzzer (clang) on every parser of outside bytes, 20 s per target from the committed corpus.
FUZZ_SECONDS=${FUZZ_SECONDS:-20} FUZZ_BUILD_DIR=${BUILD_DIR}-fuzz scripts/fuzz.sh
