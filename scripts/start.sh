#!/usr/bin/env bash
# Installs everything, builds, and starts Memoria's main program on its default setup: the real
# stories260K model (converted once from ../shared/models into build/models/) completing a prompt.
#   scripts/start.sh ["prompt text"]
# Settings (environment): MEMORIA_SHARED_DIR (default <repo>/../shared), BUILD_DIR (default build).
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
exec "$BUILD_DIR/tools/memoria" generate --model "$MODEL" --prompt "${1:-Once upon a time}" \
  --max-new-tokens 200 --stats
