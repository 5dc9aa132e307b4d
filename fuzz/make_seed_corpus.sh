#!/usr/bin/env bash
# Writes the seed corpus fuzz/corpus/<target>/seed_* : a few small valid and near-valid inputs
# per fuzz target, built from scratch (no files from ../shared). Regression inputs that once
# crashed a target are kept beside them as crash_* and are not touched here.
# Needs python3, protoc (protobuf-compiler) and spm_train (sentencepiece), all from setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=fuzz/corpus
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
for t in safetensors store_value tokenizer model_config corpus request server_config; do
  mkdir -p "$OUT/$t"
  rm -f "$OUT/$t"/seed_*
done

# request: selector byte (0 Generate, 1 Ingest, 2 Get/Delete) + the binary message.
encode() {  # encode <selector> <message type> <name> <text format>
  { printf "\\x$(printf %02x "$1")"; printf '%s' "$4" |
      protoc --encode="memoria.v1.$2" -I proto proto/memoria.proto; } > "$OUT/request/seed_$3"
}
encode 0 GenerateRequest llama_prompt 'prompt: "Once upon a time" params { max_new_tokens: 16 temperature: 0.8 top_k: 40 top_p: 0.9 seed: 7 stop: "." }'
encode 0 GenerateRequest llama_greedy 'prompt: "hi" no_bos: true'
encode 0 GenerateRequest t5_ids 'question: "who wrote it?" passage_ids: "a" passage_ids: "b" params { num_beams: 4 length_penalty: 0.5 }'
encode 0 GenerateRequest t5_retrieve 'question: "where?" retrieve_top_k: 3'
encode 0 GenerateRequest both_paths 'prompt: "x" question: "y" retrieve_top_k: -1 params { max_new_tokens: 100000 top_p: 2 }'
encode 1 IngestRequest passage 'passage { id: "p1" title: "Title" text: "Some text." token_ids: 5 }'
encode 1 IngestRequest empty_id 'passage { text: "no id" }'
encode 2 DeletePassagesRequest delete 'ids: "a" ids: "b"'

# server_config: text format.
cat > "$OUT/server_config/seed_llama" <<'CFG'
listen_address: "127.0.0.1:0"
model_dir: "/nonexistent/model"
model_kind: "llama"
workers: 2
queue_capacity: 8
max_new_tokens: 64
drain_timeout_seconds: 5
CFG
cat > "$OUT/server_config/seed_t5" <<'CFG'
listen_address: "[::1]:50051"
http_port: -1
model_dir: "/nonexistent/t5"
model_kind: "t5"
store_dir: "/nonexistent/store"
store_codec: "pq:g=96,bits=8"
t5 { alpha: 0.5 max_passages: 10 question_prefix: "q: " }
CFG
printf 'model_dir: "m" model_kind: "llama" workers: 300\n' > "$OUT/server_config/seed_bad_workers"
printf 'model_dir: "m" model_kind: "gpt"\nlog_level: "debug"\n' > "$OUT/server_config/seed_bad_kind"
printf 'listen_address: "no-port" model_dir: "m" t5 { alpha: 2 }\n' > "$OUT/server_config/seed_bad_port"

python3 - "$OUT" <<'PY'
import json, struct, sys
out = sys.argv[1]

def put(target, name, data):
    if isinstance(data, str):
        data = data.encode()
    with open(f"{out}/{target}/seed_{name}", "wb") as f:
        f.write(data)

# safetensors: u64 header length | JSON header | data.
def st(header, data=b"", header_len=None):
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h) if header_len is None else header_len) + h + data

f32 = lambda *v: struct.pack(f"<{len(v)}f", *v)
put("safetensors", "f32", st({"w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
                              "__metadata__": {"format": "pt"}}, f32(1, 2, 3, 4)))
put("safetensors", "mixed", st({"a": {"dtype": "BF16", "shape": [3], "data_offsets": [0, 6]},
                                "b": {"dtype": "F16", "shape": [1], "data_offsets": [8, 10]},
                                "s": {"dtype": "F32", "shape": [], "data_offsets": [12, 16]}},
                               bytes(16)))
put("safetensors", "overlap", st({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                  "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}},
                                 bytes(12)))
put("safetensors", "bad_len", st({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
                                 bytes(4), header_len=1 << 40))
put("safetensors", "big_shape", st({"a": {"dtype": "F32", "shape": [1 << 40, 1 << 40],
                                          "data_offsets": [0, 4]}}, bytes(4)))

# store_value: mode byte, then per mode (fuzz/store_value_fuzzer.cc).
crc_placeholder = b"\0\0\0\0"
def memory_value(codec_id, tokens, dim, codes, version=1):
    payload = bytes([codec_id]) + struct.pack("<III", tokens, dim, len(codes)) + codes
    return b"M" + bytes([version]) + payload + crc_placeholder
def text_value(title, text, ids):
    t, x = title.encode(), text.encode()
    payload = struct.pack("<I", len(t)) + t + struct.pack("<I", len(x)) + x + \
        struct.pack("<I", len(ids)) + struct.pack(f"<{len(ids)}i", *ids)
    return b"P\x01" + payload + crc_placeholder
put("store_value", "spec_json_pq", b"\0" + json.dumps({"id": "pq", "dim": 768, "g": 96, "bits": 8}).encode())
put("store_value", "spec_json_none", b"\0" + json.dumps({"id": "none", "dim": 8, "dtype": "bf16"}).encode())
put("store_value", "spec_json_btr", b"\0" + json.dumps({"id": "btr", "dim": 12, "scale_bytes": 4}).encode())
put("store_value", "spec_json_huge_dim", b"\0" + json.dumps({"id": "none", "dim": 2**31 - 1, "dtype": "f32"}).encode())
put("store_value", "spec_json_float_g", b"\0" + json.dumps({"id": "pq", "dim": 64, "g": 8.5, "bits": 8}).encode())
put("store_value", "spec_text_pq", b"\1" + struct.pack("<i", 768) + b"pq:g=96,bits=16")
put("store_value", "spec_text_btr", b"\1" + struct.pack("<i", 64) + b"btr:scale=f32")
no_state = b"\0\0"
# memory values: codec index (kSpecs), fix-CRC flag, u16 state length + state, value.
put("store_value", "mem_none_f32", b"\2\0\1" + no_state + memory_value(0, 2, 8, f32(*range(16))))
put("store_value", "mem_none_bf16", b"\2\1\1" + no_state + memory_value(0, 1, 8, bytes(16)))
put("store_value", "mem_pq8", b"\2\2\1" + no_state + memory_value(1, 3, 8, bytes(range(12))))
put("store_value", "mem_pq8_pad", b"\2\3\1" + no_state + memory_value(1, 1, 6, b"\1\2\3\4"))
put("store_value", "mem_pq16", b"\2\4\1" + no_state + memory_value(1, 2, 4, bytes(range(8))))
put("store_value", "mem_btr", b"\2\5\1" + no_state + memory_value(2, 2, 8, b"\xa5\x5a" + f32(0)[2:] * 2))
btr_state = f32(*([0.5] * 16 + [1.0] * 16))  # btr:scale=f32, d=12 -> d8=16: mu, a
put("store_value", "mem_btr_f32_state", b"\2\6\1" + struct.pack("<H", len(btr_state)) + btr_state +
    memory_value(2, 1, 12, b"\xff\x0f" + f32(2.0)))
# btr:merge=0.5 (d=12 -> 2 bytes of bits + bf16 scale per kept token): 4 tokens merged to 2,
# blob = u32 n | u32 m | A-token flags | u16 B partner per merged A | codes of m tokens
# (storage/btr_merge.h): A tokens 0 and 1 (positions 0, 2) merge into B tokens 0 and 1 (1, 3).
merged = struct.pack("<II", 4, 2) + b"\x03" + struct.pack("<2H", 0, 1) + b"\xa5\x05\x5a\x0a" + b"\x80\x3f" * 2
put("store_value", "mem_btr_merged", b"\2\7\1" + no_state + memory_value(2, 4, 12, merged))
put("store_value", "spec_text_btr_merge", b"\1" + struct.pack("<i", 64) + b"btr:scale=f32,merge=0.2")
put("store_value", "mem_bad_crc", b"\2\0\0" + no_state + memory_value(0, 1, 8, bytes(32)))
put("store_value", "mem_newer", b"\2\0\1" + no_state + memory_value(0, 1, 8, bytes(32), version=9))
put("store_value", "text", b"\3\1" + text_value("Title", "Some text", [1, 2, 3]))
put("store_value", "text_empty", b"\3\1" + text_value("", "", []))
put("store_value", "text_short", b"\3\1" + b"P\x01\xff\xff\xff\x00" + crc_placeholder)
def index_record(key, kind, payload):  # mode 5: crc fix, u16-prefixed key, framed value
    return b"\5\1" + struct.pack("<H", len(key)) + key + kind + b"\x01" + payload + crc_placeholder
put("store_value", "bm25_doc", index_record(b"dp1", b"D", struct.pack("<QI", 3, 2) +
                                             b"\x02of" + struct.pack("<I", 1) + b"\x03sea" + struct.pack("<I", 2)))
put("store_value", "bm25_doc_overrun", index_record(b"dp1", b"D", struct.pack("<QI", 3, 9) + b"\xffab"))
put("store_value", "bm25_posting", index_record(b"psea\0p1", b"T", struct.pack("<IQ", 2, 3)))
put("store_value", "bm25_totals", index_record(b"t", b"B", struct.pack("<QQ", 1, 3)))
cb = f32(*([0.25] * (4 * 256 * 2)))  # pq:g=4,bits=8, d=8: [4, 256, 2]
put("store_value", "codebooks", b"\4\0" + st({"codebooks": {"dtype": "F32", "shape": [4, 256, 2],
                                                         "data_offsets": [0, len(cb)]}}, cb))
put("store_value", "codebooks_shape", b"\4\1" + st({"codebooks": {"dtype": "BF16", "shape": [4, 256, 1],
                                                               "data_offsets": [0, 2048]}}, bytes(2048)))

# model_config: config.json texts.
put("model_config", "llama", json.dumps({
    "model_type": "llama", "hidden_size": 64, "intermediate_size": 172, "num_hidden_layers": 2,
    "num_attention_heads": 8, "num_key_value_heads": 4, "vocab_size": 512, "max_position_embeddings": 256,
    "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "bos_token_id": 1, "eos_token_id": [2, 3],
    "rope_scaling": None, "tie_word_embeddings": False}))
put("model_config", "t5", json.dumps({
    "model_type": "t5", "d_model": 64, "d_kv": 8, "d_ff": 128, "num_layers": 2, "num_decoder_layers": 2,
    "num_heads": 8, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "vocab_size": 100, "layer_norm_epsilon": 1e-6, "feed_forward_proj": "gated-gelu",
    "decoder_start_token_id": 0, "eos_token_id": 1, "pad_token_id": 0, "tie_word_embeddings": False}))
put("model_config", "memory", json.dumps({
    "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 4, "memory_layers": [1, 2],
    "memory_n_keys": 16, "memory_knn": 4, "memory_heads": 2, "memory_k_dim": 32}))
put("model_config", "wrong_types", '{"hidden_size": "64", "eos_token_id": 2.5, "num_hidden_layers": -1}')
put("model_config", "not_object", '[1, 2, 3]')
put("model_config", "truncated", '{"model_type": "t5", "d_model": 5')

# corpus: first byte bit 0 = SQuAD, bits 1-2 = limit.
put("corpus", "jsonl", b"\0" + b'{"id": "a", "title": "T", "text": "x"}\n\n{"id": 7, "text": "y"}\n')
put("corpus", "jsonl_limit", b"\2" + b'{"id": "a", "text": "x"}\n{"id": "b", "text": "y"}\n')
put("corpus", "jsonl_dup", b"\0" + b'{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
put("corpus", "jsonl_bad", b"\0" + b'{"id": "", "text": 5}\n{not json\n')
put("corpus", "squad", b"\1" + json.dumps({"version": "1.1", "data": [
    {"title": "Some_Page", "paragraphs": [{"context": "First.", "qas": []}, {"context": "Second."}]},
    {"title": "Other", "paragraphs": []}]}).encode())
put("corpus", "squad_bad", b"\1" + b'{"data": [{"title": 3, "paragraphs": {}}]}')
PY

# tokenizer: a tiny BPE model trained from a few lines (identity normalisation keeps it small),
# its truncation, and a model with its first bytes flipped.
printf 'the cat sat on the mat\nthe dog ate the cake\nhello world, hello there\n\xc3\xa9t\xc3\xa9 12.5%%\n' > "$TMP/text.txt"
# Run in $TMP with relative names: the model stores its trainer spec, paths included.
(cd "$TMP" && spm_train --input=text.txt --model_prefix=tiny --vocab_size=290 --model_type=bpe --hard_vocab_limit=false \
  --normalization_rule_name=identity --byte_fallback=true --character_coverage=1.0 \
  --minloglevel=2 --num_threads=1 >spm.log 2>&1) || { cat "$TMP/spm.log" >&2; exit 1; }
cp "$TMP/tiny.model" "$OUT/tokenizer/seed_bpe"
(cd "$TMP" && spm_train --input=text.txt --model_prefix=uni --vocab_size=40 --model_type=unigram --hard_vocab_limit=false \
  --normalization_rule_name=identity --minloglevel=2 --num_threads=1 >spm.log 2>&1) ||
  { cat "$TMP/spm.log" >&2; exit 1; }
cp "$TMP/uni.model" "$OUT/tokenizer/seed_unigram"
head -c 200 "$TMP/tiny.model" > "$OUT/tokenizer/seed_truncated"
python3 -c "import sys; b=bytearray(open(sys.argv[1],'rb').read()); b[0]^=0xff; b[5]^=0x55; open(sys.argv[2],'wb').write(b)" \
  "$TMP/tiny.model" "$OUT/tokenizer/seed_flipped"

du -sh "$OUT"
