// Writes a random-weight T5 model directory in the Hugging Face layout (config.json +
// model.safetensors), loadable by T5Model::Load. For tests and benchmarks of the corpus->store
// pipeline: no public T5 checkpoint is available on our machines (../shared/models/README.md).
//
// Weights (f32, deterministic in seed): shared.weight ~ N(0, 1); linear weights [out, in] ~
// N(0, 1/in); layer norms 1 + N(0, 0.1); relative position biases N(0, 0.5) -- the distributions
// of T5Model::CreateRandom, so activations keep a realistic O(1) scale through the layers (the
// values themselves differ: a different generator).
// The config is written with T5Config's fields under HF's names; feed_forward_proj is
// "gated-gelu" (v1.1) when config.gated_ffn, else "relu" (only these two families are written).
//
// Errors: INVALID_ARGUMENT for an invalid config (T5Config::Validate) or an FFN activation other
// than the two families; INTERNAL when a file cannot be written. The directory is created.
#pragma once

#include <cstdint>
#include <string>

#include "base/status.h"
#include "engine/t5_config.h"

namespace memoria {

Status WriteRandomT5ModelDir(const T5Config& config, uint64_t seed, const std::string& dir);

// The tiny T5 v1.1 shape the pipeline and server tests use: the LLaMA-2 SentencePiece vocabulary
// (32000 pieces, EOS = its </s> id 2), d_model 32, 4 heads of 8, d_ff 48, gated-gelu, untied
// head. 3 encoder layers give 2 memory + 1 live layer at LUMEN's default alpha 1/3; 2 give 1 + 1.
T5Config TinyTestT5Config(int encoder_layers, int decoder_layers);

}  // namespace memoria
