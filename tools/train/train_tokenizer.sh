#!/bin/bash
# Trains the reader's SentencePiece tokenizer (Debian's spm_train) on the SQuAD training
# paragraphs, titles and questions plus WikiText-2.
#   tools/train/train_tokenizer.sh OUT_DIR [VOCAB_SIZE]
# Writes OUT_DIR/corpus.txt and OUT_DIR/spiece.{model,vocab}. T5 conventions: pad 0 (also the
# decoder start token), eos 1, unk 2, no bos; unigram model; byte fallback so every character
# round-trips (no unk ids for rare characters).
set -euo pipefail
out=${1:?usage: train_tokenizer.sh OUT_DIR [VOCAB_SIZE]}
vocab=${2:-8000}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"
/usr/bin/python3 "$here/prepare_data.py" corpus "$out/corpus.txt"
spm_train --input="$out/corpus.txt" --model_prefix="$out/spiece" --vocab_size="$vocab" \
  --model_type=unigram --character_coverage=1.0 --byte_fallback=true \
  --pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 \
  --pad_piece='<pad>' --eos_piece='</s>' --unk_piece='<unk>' \
  --num_threads=2 --seed_sentencepiece_size=300000 --minloglevel=1
echo "tokenizer: $out/spiece.model (vocab $vocab)"
