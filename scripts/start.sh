#!/usr/bin/env bash
# Installs everything, builds, and starts Memoria's main program on its default setup:
# memoria-server with configs/default.textproto, our SQuAD reader (models/squad-reader) answering
# from a compressed store of the SQuAD dev paragraphs (built once from ../shared by
# scripts/default_store.sh into build/stores/squad-dev): gRPC on 127.0.0.1:50051, HTTP probes and
# metrics on 127.0.0.1:8080. Ask it from another shell:
#   build/tools/memoria ask --question "Which NFL team represented the AFC at Super Bowl 50?" --extractive
# Stop it with Ctrl-C or SIGTERM (graceful drain, exit 0).
#   scripts/start.sh [memoria-server flags, e.g. --port 50052 --http-port 8081]
# Settings (environment): MEMORIA_SHARED_DIR (default <repo>/../shared), BUILD_DIR (default build),
# MEMORIA_CONFIG (default configs/default.textproto; configs/stories260k.textproto serves the
# stories260K LLaMA model, converted once from ../shared/models into build/models/).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export BUILD_DIR=${BUILD_DIR:-build}
scripts/build.sh
SHARED=${MEMORIA_SHARED_DIR:-$(cd .. && pwd)/shared}
CONFIG=${MEMORIA_CONFIG:-configs/default.textproto}
if [ "$CONFIG" = configs/default.textproto ]; then
  MEMORIA_SHARED_DIR=$SHARED scripts/default_store.sh
fi
ARGS=()
if [ "$CONFIG" = configs/stories260k.textproto ]; then
  MODEL="$BUILD_DIR/models/stories260K"
  if [ ! -f "$MODEL/model.safetensors" ]; then
    "$BUILD_DIR/tools/memoria" convert-llama2c --checkpoint "$SHARED/models/stories260K/stories260K.bin" \
      --tokenizer "$SHARED/models/stories260K/tok512.bin" --out "$MODEL"
  fi
  ARGS=(--model "$MODEL")
fi
exec "$BUILD_DIR/server/memoria-server" --config "$CONFIG" "${ARGS[@]}" "$@"
