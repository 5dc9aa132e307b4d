#include "engine/t5_config.h"

#include <fmt/format.h>

namespace memoria {

StatusOr<Activation> ParseHfActivation(const std::string& name) {
  if (name == "relu") return Activation::kRelu;
  if (name == "gelu") return Activation::kGeluErf;
  if (name == "gelu_new" || name == "gelu_pytorch_tanh" || name == "gelu_fast") {
    return Activation::kGeluTanh;
  }
  if (name == "silu" || name == "swish") return Activation::kSilu;
  return InvalidArgumentError(
      fmt::format("unsupported T5 activation '{}' (expected relu, gelu, gelu_new, silu)", name));
}

StatusOr<T5Config> T5Config::FromJson(const JsonConfig& json) {
  T5Config c;
  ASSIGN_OR_RETURN(c.vocab_size, json.GetInt("vocab_size", c.vocab_size));
  ASSIGN_OR_RETURN(c.d_model, json.GetInt("d_model", c.d_model));
  ASSIGN_OR_RETURN(c.d_kv, json.GetInt("d_kv", c.d_kv));
  ASSIGN_OR_RETURN(c.d_ff, json.GetInt("d_ff", c.d_ff));
  ASSIGN_OR_RETURN(int64_t heads, json.GetInt("num_heads", c.num_heads));
  ASSIGN_OR_RETURN(int64_t layers, json.GetInt("num_layers", c.num_layers));
  ASSIGN_OR_RETURN(int64_t dec_layers, json.GetInt("num_decoder_layers", layers));
  ASSIGN_OR_RETURN(int64_t buckets,
                   json.GetInt("relative_attention_num_buckets", c.relative_attention_num_buckets));
  ASSIGN_OR_RETURN(int64_t max_dist, json.GetInt("relative_attention_max_distance",
                                                 c.relative_attention_max_distance));
  ASSIGN_OR_RETURN(double eps, json.GetDouble("layer_norm_epsilon", c.layer_norm_epsilon));
  c.num_heads = static_cast<int>(heads);
  c.num_layers = static_cast<int>(layers);
  c.num_decoder_layers = static_cast<int>(dec_layers);
  c.relative_attention_num_buckets = static_cast<int>(buckets);
  c.relative_attention_max_distance = static_cast<int>(max_dist);
  c.layer_norm_epsilon = static_cast<float>(eps);

  ASSIGN_OR_RETURN(std::string proj, json.GetString("feed_forward_proj", "relu"));
  std::string act_name = proj;
  c.gated_ffn = false;
  if (proj.rfind("gated-", 0) == 0) {
    c.gated_ffn = true;
    act_name = proj.substr(6);
  } else if (proj.find('-') != std::string::npos) {
    return InvalidArgumentError(fmt::format(
        "{}: feed_forward_proj '{}' is not '<act>' or 'gated-<act>'", json.source_name(), proj));
  }
  // HF: "gated-gelu" is an alias kept for the v1.1 checkpoints and means gelu_new (tanh).
  if (proj == "gated-gelu") act_name = "gelu_new";
  auto act = ParseHfActivation(act_name);
  if (!act.ok()) return act.status().WithContext(json.source_name());
  c.ffn_activation = *act;

  ASSIGN_OR_RETURN(c.tie_word_embeddings, json.GetBool("tie_word_embeddings", true));
  ASSIGN_OR_RETURN(int64_t start, json.GetInt("decoder_start_token_id", c.decoder_start_token_id));
  ASSIGN_OR_RETURN(int64_t pad, json.GetInt("pad_token_id", c.pad_token_id));
  c.decoder_start_token_id = static_cast<int>(start);
  c.pad_token_id = static_cast<int>(pad);
  if (json.Has("eos_token_id")) {
    ASSIGN_OR_RETURN(std::vector<int64_t> eos, json.GetIntList("eos_token_id"));
    if (!eos.empty()) c.eos_token_id = static_cast<int>(eos[0]);
  }
  Status s = c.Validate();
  if (!s.ok()) return s.WithContext(json.source_name());
  return c;
}

Status T5Config::Validate() const {
  auto positive = [](const char* name, int64_t v) -> Status {
    if (v <= 0) return InvalidArgumentError(fmt::format("T5 config: {} = {} must be > 0", name, v));
    return Status::Ok();
  };
  RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  RETURN_IF_ERROR(positive("d_model", d_model));
  RETURN_IF_ERROR(positive("d_kv", d_kv));
  RETURN_IF_ERROR(positive("d_ff", d_ff));
  RETURN_IF_ERROR(positive("num_heads", num_heads));
  RETURN_IF_ERROR(positive("num_layers", num_layers));
  RETURN_IF_ERROR(positive("num_decoder_layers", num_decoder_layers));
  RETURN_IF_ERROR(positive("relative_attention_num_buckets", relative_attention_num_buckets));
  // Bidirectional buckets use half the table, and each half needs an exact part of >= 1 bucket.
  if (relative_attention_num_buckets < 4) {
    return InvalidArgumentError(
        fmt::format("T5 config: relative_attention_num_buckets = {} must be >= 4",
                    relative_attention_num_buckets));
  }
  if (relative_attention_max_distance <= relative_attention_num_buckets / 2) {
    return InvalidArgumentError(fmt::format(
        "T5 config: relative_attention_max_distance = {} must exceed num_buckets / 2 = {}",
        relative_attention_max_distance, relative_attention_num_buckets / 2));
  }
  auto in_vocab = [&](const char* name, int id) -> Status {
    if (id < 0 || id >= vocab_size) {
      return InvalidArgumentError(
          fmt::format("T5 config: {} = {} outside vocabulary [0, {})", name, id, vocab_size));
    }
    return Status::Ok();
  };
  RETURN_IF_ERROR(in_vocab("decoder_start_token_id", decoder_start_token_id));
  RETURN_IF_ERROR(in_vocab("eos_token_id", eos_token_id));
  return Status::Ok();
}

T5Config T5Config::BaseV11() {
  T5Config c;
  c.vocab_size = 32128;
  c.d_model = 768;
  c.d_kv = 64;
  c.d_ff = 2048;
  c.num_heads = 12;
  c.num_layers = 12;
  c.num_decoder_layers = 12;
  c.gated_ffn = true;
  c.ffn_activation = Activation::kGeluTanh;
  c.tie_word_embeddings = false;
  return c;
}

}  // namespace memoria
