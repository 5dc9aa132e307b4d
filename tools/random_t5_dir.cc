#include "tools/random_t5_dir.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <vector>

#include "engine/safetensors.h"

namespace memoria {

Status WriteRandomT5ModelDir(const T5Config& c, uint64_t seed, const std::string& dir) {
  RETURN_IF_ERROR(c.Validate());
  const bool v11 = c.gated_ffn && c.ffn_activation == Activation::kGeluTanh;
  const bool orig = !c.gated_ffn && c.ffn_activation == Activation::kRelu;
  if (!v11 && !orig) {
    return InvalidArgumentError("WriteRandomT5ModelDir writes only T5 (relu) or T5 v1.1 "
                                "(gated-gelu) configs");
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return InternalError("cannot create " + dir + ": " + ec.message());

  nlohmann::json j = {{"model_type", "t5"},
                      {"vocab_size", c.vocab_size},
                      {"d_model", c.d_model},
                      {"d_kv", c.d_kv},
                      {"d_ff", c.d_ff},
                      {"num_heads", c.num_heads},
                      {"num_layers", c.num_layers},
                      {"num_decoder_layers", c.num_decoder_layers},
                      {"relative_attention_num_buckets", c.relative_attention_num_buckets},
                      {"relative_attention_max_distance", c.relative_attention_max_distance},
                      {"layer_norm_epsilon", c.layer_norm_epsilon},
                      {"feed_forward_proj", v11 ? "gated-gelu" : "relu"},
                      {"tie_word_embeddings", c.tie_word_embeddings},
                      {"decoder_start_token_id", c.decoder_start_token_id},
                      {"pad_token_id", c.pad_token_id},
                      {"eos_token_id", c.eos_token_id}};
  {
    std::ofstream f(dir + "/config.json");
    f << j.dump(2) << "\n";
    if (!f) return InternalError("cannot write " + dir + "/config.json");
  }

  // Owned buffers first, TensorToWrite views after (the vector must not reallocate under them).
  struct Tensor {
    std::string name;
    std::vector<int64_t> shape;
    std::vector<float> data;
  };
  std::vector<Tensor> tensors;
  std::mt19937_64 rng(seed);
  auto add = [&](const std::string& name, std::vector<int64_t> shape, double mean, double stddev) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::normal_distribution<float> g{static_cast<float>(mean), static_cast<float>(stddev)};
    Tensor t{name, std::move(shape), std::vector<float>(size_t(n))};
    for (auto& v : t.data) v = g(rng);
    tensors.push_back(std::move(t));
  };
  const int64_t d = c.d_model, inner = c.inner_dim(), ff = c.d_ff, V = c.vocab_size;
  auto linear = [&](const std::string& name, int64_t out, int64_t in) {
    add(name, {out, in}, 0.0, 1.0 / std::sqrt(double(in)));
  };
  auto norm = [&](const std::string& name) { add(name, {d}, 1.0, 0.1); };
  auto attention = [&](const std::string& p) {
    linear(p + "q.weight", inner, d);
    linear(p + "k.weight", inner, d);
    linear(p + "v.weight", inner, d);
    linear(p + "o.weight", d, inner);
  };
  auto ffn = [&](const std::string& p) {
    if (c.gated_ffn) {
      linear(p + "wi_0.weight", ff, d);
      linear(p + "wi_1.weight", ff, d);
    } else {
      linear(p + "wi.weight", ff, d);
    }
    linear(p + "wo.weight", d, ff);
  };
  add("shared.weight", {V, d}, 0.0, 1.0);
  if (!c.tie_word_embeddings) linear("lm_head.weight", V, d);
  norm("encoder.final_layer_norm.weight");
  norm("decoder.final_layer_norm.weight");
  const int64_t nb = c.relative_attention_num_buckets, H = c.num_heads;
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "encoder.block." + std::to_string(i) + ".layer.";
    norm(p + "0.layer_norm.weight");
    norm(p + "1.layer_norm.weight");
    attention(p + "0.SelfAttention.");
    ffn(p + "1.DenseReluDense.");
    if (i == 0) add(p + "0.SelfAttention.relative_attention_bias.weight", {nb, H}, 0.0, 0.5);
  }
  for (int i = 0; i < c.num_decoder_layers; ++i) {
    const std::string p = "decoder.block." + std::to_string(i) + ".layer.";
    norm(p + "0.layer_norm.weight");
    norm(p + "1.layer_norm.weight");
    norm(p + "2.layer_norm.weight");
    attention(p + "0.SelfAttention.");
    attention(p + "1.EncDecAttention.");
    ffn(p + "2.DenseReluDense.");
    if (i == 0) add(p + "0.SelfAttention.relative_attention_bias.weight", {nb, H}, 0.0, 0.5);
  }
  std::vector<TensorToWrite> views;
  for (const auto& t : tensors) views.push_back({t.name, DType::kF32, t.shape, t.data.data()});
  return WriteSafetensors(dir + "/model.safetensors", views);
}

T5Config TinyTestT5Config(int encoder_layers, int decoder_layers) {
  T5Config c;
  c.vocab_size = 32000;
  c.d_model = 32;
  c.d_kv = 8;
  c.num_heads = 4;
  c.d_ff = 48;
  c.num_layers = encoder_layers;
  c.num_decoder_layers = decoder_layers;
  c.gated_ffn = true;
  c.ffn_activation = Activation::kGeluTanh;
  c.tie_word_embeddings = false;
  c.eos_token_id = 2;
  return c;
}

}  // namespace memoria
