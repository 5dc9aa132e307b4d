#!/usr/bin/env bash
# Builds the passage store that the default config (configs/default.textproto) serves: the SQuAD
# v1.1 dev paragraphs of ../shared (Rajpurkar et al. 2016, CC BY-SA 4.0) as runs of 24 words, a new
# run every 12 words (the input models/squad-reader was trained on: tools/train/README.md),
# memory-encoded by that reader and compressed with the codec the config names. Nothing happens
# when the store exists; the store is built beside its final path and renamed into place, so an
# interrupted build leaves no half store for the server to open.
#   scripts/default_store.sh [STORE_DIR] [more build-store flags, e.g. --limit 3]
# STORE_DIR defaults to the config's store_dir (build/stores/squad-dev). Settings (environment):
# BUILD_DIR (default build; its tools/memoria must be built), MEMORIA_SHARED_DIR (default
# <repo>/../shared), MEMORIA_READER (default models/squad-reader).
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-build}
[[ $BUILD_DIR = /* ]] || BUILD_DIR=$REPO/$BUILD_DIR
SHARED=${MEMORIA_SHARED_DIR:-$(cd "$REPO/.." && pwd)/shared}
READER=${MEMORIA_READER:-$REPO/models/squad-reader}
STORE=${1:-$REPO/build/stores/squad-dev}
shift || true
[ -d "$STORE" ] && exit 0
CORPUS="$SHARED/data/qa/squad-v1.1-dev-part1.json"
[ -f "$CORPUS" ] || { echo "default_store: no $CORPUS (set MEMORIA_SHARED_DIR)" >&2; exit 1; }
mkdir -p "$(dirname "$STORE")"
TMP="$STORE.building.$$"
trap 'rm -rf "$TMP"' EXIT
echo "default_store: building $STORE from $CORPUS (about a minute)" >&2
# The codec must equal store_codec in configs/default.textproto (the server refuses another).
"$BUILD_DIR/tools/memoria" build-store --corpus "$CORPUS" --model "$READER" --store "$TMP" \
  --codec pq:g=32,bits=8 --pq-codebooks "$READER/codebooks.safetensors" \
  --window-words 24 --window-stride 12 --max-tokens 128 "$@" >&2
mv "$TMP" "$STORE"
