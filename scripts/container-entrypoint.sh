#!/bin/sh
# Entrypoint of the Memoria container image (see Dockerfile, scripts/container.sh).
# Converts the stories260K llama2.c checkpoint from the read-only shared data mounted at
# $MEMORIA_SHARED_DIR (default /shared) into $MEMORIA_MODEL_DIR once, then execs memoria-server
# with $MEMORIA_CONFIG and any arguments given to the container (memoria-server flags).
# Nothing is downloaded. Environment: MEMORIA_SHARED_DIR, MEMORIA_MODEL_DIR, MEMORIA_CONFIG,
# MEMORIA_HTTP_PORT (moves the HTTP port; the image's HEALTHCHECK follows it).
# A first argument that is not a flag runs that command instead (e.g. `memoria help`).
set -eu
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then exec "$@"; fi

SHARED=${MEMORIA_SHARED_DIR:-/shared}
MODEL=${MEMORIA_MODEL_DIR:-/var/lib/memoria/models/stories260K}
CONFIG=${MEMORIA_CONFIG:-/opt/memoria/configs/container.textproto}

if [ ! -f "$MODEL/model.safetensors" ]; then
  SRC="$SHARED/models/stories260K"
  if [ ! -f "$SRC/stories260K.bin" ] || [ ! -f "$SRC/tok512.bin" ]; then
    echo "memoria-entrypoint: no model at $MODEL and no $SRC/stories260K.bin + tok512.bin;" \
         "mount the shared data read-only at $SHARED (docker run -v /path/to/shared:$SHARED:ro)" >&2
    exit 2
  fi
  echo "memoria-entrypoint: converting $SRC into $MODEL" >&2
  mkdir -p "$(dirname "$MODEL")"
  memoria convert-llama2c --checkpoint "$SRC/stories260K.bin" --tokenizer "$SRC/tok512.bin" \
    --out "$MODEL.tmp.$$"
  rm -rf "$MODEL" && mv "$MODEL.tmp.$$" "$MODEL"
fi

set -- --config "$CONFIG" --model "$MODEL" "$@"
if [ -n "${MEMORIA_HTTP_PORT:-}" ]; then set -- "$@" --http-port "$MEMORIA_HTTP_PORT"; fi
exec memoria-server "$@"
