// Converts a llama2.c checkpoint (karpathy/llama2.c, legacy "version 0" export) and its
// tokenizer.bin into a Hugging Face style model directory that ModelDir and LlamaModel load:
//   <out_dir>/config.json        LlamaForCausalLM config (float32)
//   <out_dir>/model.safetensors  f32 weights under Hugging Face names
//   <out_dir>/tokenizer.model    a SentencePiece BPE model rebuilt from tokenizer.bin
//
// Checkpoint layout (little endian): 7 x int32 header
//   dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len
// then f32 arrays, hs = dim / n_heads, kv_dim = n_kv_heads * hs, L = n_layers:
//   token_embedding_table [vocab, dim]      -> model.embed_tokens.weight
//   rms_att_weight        [L, dim]          -> model.layers.{i}.input_layernorm.weight
//   wq                    [L, dim, dim]     -> model.layers.{i}.self_attn.q_proj.weight (permuted)
//   wk                    [L, kv_dim, dim]  -> model.layers.{i}.self_attn.k_proj.weight (permuted)
//   wv                    [L, kv_dim, dim]  -> model.layers.{i}.self_attn.v_proj.weight
//   wo                    [L, dim, dim]     -> model.layers.{i}.self_attn.o_proj.weight
//   rms_ffn_weight        [L, dim]          -> model.layers.{i}.post_attention_layernorm.weight
//   w1                    [L, hidden, dim]  -> model.layers.{i}.mlp.gate_proj.weight
//   w2                    [L, dim, hidden]  -> model.layers.{i}.mlp.down_proj.weight
//   w3                    [L, hidden, dim]  -> model.layers.{i}.mlp.up_proj.weight
//   rms_final_weight      [dim]             -> model.norm.weight
//   freq_cis_real, freq_cis_imag [seq_len * hs / 2] each (skipped: RoPE is recomputed)
//   wcls                  [vocab, dim]      -> lm_head.weight, present only when the header's
//                                              vocab_size is negative (unshared classifier)
// The file size must equal exactly what the header implies.
//
// RoPE layout: llama2.c rotates interleaved pairs (2i, 2i+1) of each head; Hugging Face LLaMA
// (and our engine) rotates (i, i + hs/2). As in Hugging Face's convert_llama_weights_to_hf.py,
// q and k rows are permuted per head so that the same model computes the same attention:
//   new_row(h, j, i) = h*hs + j*(hs/2) + i  <-  old_row = h*hs + 2*i + j,  i < hs/2, j in {0, 1}
// i.e. w.view(n_heads, hs/2, 2, dim).transpose(1, 2).reshape(n_heads*hs, dim).
//
// tokenizer.bin layout: int32 max_token_length, then for each of |vocab_size| tokens:
// f32 score, int32 byte length, bytes. llama2.c's export replaced SentencePiece's U+2581 with
// ' ' and wrote BOS/EOS as "\n<s>\n" / "\n</s>\n"; the rebuilt model maps ' ' back to U+2581,
// id 0 to UNKNOWN "<unk>", ids 1 and 2 to CONTROL "<s>" / "</s>", "<0xNN>" to BYTE pieces
// (byte fallback on when all 256 are present) and the rest to NORMAL pieces with their scores.
// Trainer/normaliser settings follow llama2.c's vocabulary training and the LLaMA-2 tokenizer:
// BPE, split_digits, identity normalisation, add_dummy_prefix, no removal of extra whitespace
// (so encoding matches llama2.c's run.c encode(), which keeps every space).
//
// Errors: NOT_FOUND for a missing input; DATA_LOSS, with the numbers, for an inconsistent header
// (non-positive sizes, dim not divisible by n_heads, n_heads not divisible by n_kv_heads, odd
// head size), a size mismatch or a malformed tokenizer.bin; UNIMPLEMENTED for llama2.c's newer
// versioned exports ("ak42" magic).
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"

namespace memoria {

// The checkpoint header, validated.
struct Llama2cConfig {
  int dim = 0;
  int hidden_dim = 0;
  int n_layers = 0;
  int n_heads = 0;
  int n_kv_heads = 0;
  int vocab_size = 0;  // always positive here; see shared_classifier
  int seq_len = 0;
  bool shared_classifier = true;  // false when the file's vocab_size was negative
  int head_size() const { return dim / n_heads; }
  // Bytes the checkpoint must have, header included.
  int64_t ExpectedFileBytes() const;
};

// Reads and validates the header of `checkpoint_path` against its size.
StatusOr<Llama2cConfig> ReadLlama2cConfig(const std::string& checkpoint_path);

// Builds a serialised SentencePiece ModelProto from a llama2.c tokenizer.bin holding
// `vocab_size` tokens (the protobuf wire format written directly; see the mapping above).
StatusOr<std::string> BuildSentencePieceModelFromLlama2c(const std::string& tokenizer_bin_path,
                                                         int vocab_size);

// Writes config.json, model.safetensors and (when tokenizer_bin_path is not empty)
// tokenizer.model into out_dir, creating it if needed. Files are written whole and renamed into
// place. The written tokenizer is loaded back as a check (INTERNAL if SentencePiece rejects it).
Status ConvertLlama2c(const std::string& checkpoint_path, const std::string& tokenizer_bin_path,
                      const std::string& out_dir);

}  // namespace memoria
