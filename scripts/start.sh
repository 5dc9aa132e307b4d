#!/usr/bin/env bash
# Installs everything, builds, and starts Memoria's main program on its default setup:
# memoria-server serving the real stories260K model (converted once from ../shared/models into
# build/models/) with configs/default.textproto: gRPC on 127.0.0.1:50051, HTTP probes and
# metrics on 127.0.0.1:8080. Stop it with Ctrl-C or SIGTERM (graceful drain, exit 0).
#   scripts/start.sh [memoria-server flags, e.g. --port 50052 --http-port 8081]
# Settings (environment): MEMORIA_SHARED_DIR (default <repo>/../shared), BUILD_DIR (default build),
# MEMORIA_CONFIG (default configs/default.textproto).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export BUILD_DIR=${BUILD_DIR:-build}
scripts/build.sh
SHARED=${MEMORIA_SHARED_DIR:-$(cd .. && pwd)/shared}
MODEL="$BUILD_DIR/models/stories260K"
if [ ! -f "$MODEL/model.safetensors" ]; then
  "$BUILD_DIR/tools/memoria" convert-llama2c --checkpoint "$SHARED/models/stories260K/stories260K.bin" \
    --tokenizer "$SHARED/models/stories260K/tok512.bin" --out "$MODEL"
fi
exec "$BUILD_DIR/server/memoria-server" --config "${MEMORIA_CONFIG:-configs/default.textproto}" \
  --model "$MODEL" "$@"
