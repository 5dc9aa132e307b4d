#!/usr/bin/env bash
# Installs every Debian package Memoria needs to build, test and run. Idempotent: packages already
# present are left alone. Runs as root, or through sudo when available.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libdnnl-dev ocl-icd-opencl-dev opencl-c-headers  # oneDNN: GEMM (its CMake config looks for OpenCL)
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler  # API and config
  librocksdb-dev                                # passage memory store
  libspdlog-dev libfmt-dev                      # logging
  libgtest-dev libgmock-dev libbenchmark-dev    # tests and micro-benchmarks
  libsentencepiece-dev sentencepiece            # tokenizer
  nlohmann-json3-dev                            # config.json and safetensors headers
  python3 python3-torch python3-numpy python3-faiss  # independent references in tests, peers in bench
  libopenblas0-pthread                          # BLAS for torch/numpy: the reference BLAS runs ~5 GFLOP/s
  python3-grpcio python3-protobuf               # the Python client in the server end-to-end test
  clang libclang-rt-14-dev libomp-dev           # libFuzzer targets under ASan + UBSan (scripts/fuzz.sh)
  openssl                                       # test certificates of the server TLS tests
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
