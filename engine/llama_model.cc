#include "engine/llama_model.h"

#include <chrono>
#include <cmath>
#include <cstring>

#include "base/logging.h"
#include "kernels/attention.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace memoria {

StatusOr<LlamaConfig> LlamaConfig::FromJson(const JsonConfig& json) {
  LlamaConfig c;
  ASSIGN_OR_RETURN(c.hidden_size, json.GetInt("hidden_size"));
  ASSIGN_OR_RETURN(c.intermediate_size, json.GetInt("intermediate_size"));
  ASSIGN_OR_RETURN(int64_t layers, json.GetInt("num_hidden_layers"));
  ASSIGN_OR_RETURN(int64_t heads, json.GetInt("num_attention_heads"));
  ASSIGN_OR_RETURN(int64_t kv_heads, json.GetInt("num_key_value_heads", heads));
  ASSIGN_OR_RETURN(c.vocab_size, json.GetInt("vocab_size"));
  ASSIGN_OR_RETURN(c.max_position_embeddings, json.GetInt("max_position_embeddings", 2048));
  ASSIGN_OR_RETURN(double eps, json.GetDouble("rms_norm_eps", 1e-6));
  ASSIGN_OR_RETURN(c.rope_theta, json.GetDouble("rope_theta", 10000.0));
  ASSIGN_OR_RETURN(c.tie_word_embeddings, json.GetBool("tie_word_embeddings", false));
  ASSIGN_OR_RETURN(int64_t bos, json.GetInt("bos_token_id", 1));
  c.num_layers = static_cast<int>(layers);
  c.num_heads = static_cast<int>(heads);
  c.num_kv_heads = static_cast<int>(kv_heads);
  c.rms_norm_eps = static_cast<float>(eps);
  c.bos_token_id = static_cast<int>(bos);
  if (json.Has("eos_token_id")) {
    ASSIGN_OR_RETURN(std::vector<int64_t> eos, json.GetIntList("eos_token_id"));
    c.eos_token_ids.assign(eos.begin(), eos.end());
  }
  const std::string src = json.source_name();
  auto positive = [&](const char* name, int64_t v) -> Status {
    if (v <= 0) return InvalidArgumentError(src + ": " + name + " must be positive, got " + std::to_string(v));
    return Status::Ok();
  };
  RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  RETURN_IF_ERROR(positive("intermediate_size", c.intermediate_size));
  RETURN_IF_ERROR(positive("num_hidden_layers", c.num_layers));
  RETURN_IF_ERROR(positive("num_attention_heads", c.num_heads));
  RETURN_IF_ERROR(positive("num_key_value_heads", c.num_kv_heads));
  RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  RETURN_IF_ERROR(positive("max_position_embeddings", c.max_position_embeddings));
  if (c.num_heads % c.num_kv_heads != 0) {
    return InvalidArgumentError(src + ": num_attention_heads " + std::to_string(c.num_heads) +
                                " is not a multiple of num_key_value_heads " +
                                std::to_string(c.num_kv_heads));
  }
  if (json.Has("head_dim")) {
    ASSIGN_OR_RETURN(int64_t hd, json.GetInt("head_dim"));
    RETURN_IF_ERROR(positive("head_dim", hd));
    c.head_dim = static_cast<int>(hd);
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      return InvalidArgumentError(src + ": hidden_size " + std::to_string(c.hidden_size) +
                                  " is not a multiple of num_attention_heads " +
                                  std::to_string(c.num_heads));
    }
    c.head_dim = static_cast<int>(c.hidden_size / c.num_heads);
  }
  if (c.head_dim % 2 != 0) {
    return InvalidArgumentError(src + ": head_dim " + std::to_string(c.head_dim) +
                                " must be even for rotary embeddings");
  }
  // null is how HF writes "no scaling"; any scaling changes what positions mean.
  if (json.Has("rope_scaling") && !json.IsNull("rope_scaling")) {
    return UnimplementedError(src + ": rope_scaling is not supported");
  }
  ASSIGN_OR_RETURN(bool attention_bias, json.GetBool("attention_bias", false));
  ASSIGN_OR_RETURN(bool mlp_bias, json.GetBool("mlp_bias", false));
  if (attention_bias || mlp_bias) {
    return UnimplementedError(src + ": attention_bias / mlp_bias are not supported");
  }
  ASSIGN_OR_RETURN(std::string act, json.GetString("hidden_act", "silu"));
  if (act != "silu") return UnimplementedError(src + ": hidden_act '" + act + "' is not supported (silu only)");
  return c;
}

namespace {

// Stacks matmul weights of equal dtype and width row-wise into one owned weight, so that one
// GEMM computes several projections of the same input (q/k/v; gate/up).
Weight StackRows(const std::vector<const Weight*>& parts) {
  Weight out;
  out.dtype = parts[0]->dtype;
  const int64_t cols = parts[0]->shape[1];
  int64_t rows = 0;
  for (const Weight* w : parts) {
    MEMORIA_CHECK(w->dtype == out.dtype && w->shape[1] == cols, "StackRows: mismatched parts");
    rows += w->shape[0];
  }
  const int64_t elem = DTypeSize(out.dtype);
  auto buffer = std::shared_ptr<char[]>(new char[rows * cols * elem]);
  int64_t offset = 0;
  for (const Weight* w : parts) {
    const int64_t bytes = w->shape[0] * cols * elem;
    std::memcpy(buffer.get() + offset, w->data, bytes);
    offset += bytes;
  }
  out.shape = {rows, cols};
  out.data = buffer.get();
  out.owner = std::shared_ptr<const void>(buffer, buffer.get());
  return out;
}

int64_t WeightBytes(const Weight& w) {
  int64_t n = DTypeSize(w.dtype);
  for (int64_t s : w.shape) n *= s;
  return n;
}

}  // namespace

StatusOr<std::shared_ptr<const LlamaModel>> LlamaModel::Load(const std::string& dir,
                                                             const LlamaLoadOptions& options) {
  auto model = std::shared_ptr<LlamaModel>(new LlamaModel());
  ASSIGN_OR_RETURN(model->model_dir_, ModelDir::Open(dir));
  const ModelDir& md = *model->model_dir_;
  ASSIGN_OR_RETURN(model->config_, LlamaConfig::FromJson(md.config()));
  const LlamaConfig& c = model->config_;
  const int64_t d = c.hidden_size, ff = c.intermediate_size, V = c.vocab_size;

  model->max_sequence_length_ =
      options.max_sequence_length > 0 ? options.max_sequence_length : c.max_position_embeddings;

  ASSIGN_OR_RETURN(model->embed_tokens, md.GetF32("model.embed_tokens.weight", {V, d}));
  ASSIGN_OR_RETURN(model->final_norm, md.GetF32("model.norm.weight", {d}));
  if (c.tie_word_embeddings || !md.Has("lm_head.weight")) {
    if (!c.tie_word_embeddings) {
      return NotFoundError("tensor 'lm_head.weight' is missing from " + dir +
                           " and tie_word_embeddings is false");
    }
    ASSIGN_OR_RETURN(model->lm_head, md.GetMatmulWeight("model.embed_tokens.weight", {V, d}));
  } else {
    ASSIGN_OR_RETURN(model->lm_head, md.GetMatmulWeight("lm_head.weight", {V, d}));
  }
  model->weight_bytes_ = WeightBytes(model->lm_head) + d * 4;

  ASSIGN_OR_RETURN(model->memory_config_, ParseMemoryConfig(md.config()));
  MemoryConfig& mc = model->memory_config_;
  mc.value_dtype = options.memory_value_dtype;
  std::shared_ptr<const SharedValues> shared_values;
  if (mc.enabled() && mc.share_values) {
    ASSIGN_OR_RETURN(shared_values, SharedValues::Load(md, mc));
    model->weight_bytes_ += shared_values->bytes();  // resident, though a token reads only knn rows
  }

  model->layers_.resize(c.num_layers);
  for (int i = 0; i < c.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    Layer& L = model->layers_[i];
    ASSIGN_OR_RETURN(L.input_norm, md.GetF32(p + "input_layernorm.weight", {d}));
    ASSIGN_OR_RETURN(L.post_norm, md.GetF32(p + "post_attention_layernorm.weight", {d}));
    ASSIGN_OR_RETURN(Weight q, md.GetMatmulWeight(p + "self_attn.q_proj.weight", {c.q_dim(), d}));
    ASSIGN_OR_RETURN(Weight k, md.GetMatmulWeight(p + "self_attn.k_proj.weight", {c.kv_dim(), d}));
    ASSIGN_OR_RETURN(Weight v, md.GetMatmulWeight(p + "self_attn.v_proj.weight", {c.kv_dim(), d}));
    ASSIGN_OR_RETURN(L.o_proj, md.GetMatmulWeight(p + "self_attn.o_proj.weight", {d, c.q_dim()}));
    if (q.dtype != k.dtype || q.dtype != v.dtype) {
      return InvalidArgumentError(dir + ": layer " + std::to_string(i) + " mixes dtypes within q/k/v");
    }
    L.qkv = StackRows({&q, &k, &v});
    if (mc.IsMemoryLayer(i)) {
      ASSIGN_OR_RETURN(L.memory, MemoryLayer::Load(md, i, mc, mc.share_values ? shared_values : nullptr));
      model->weight_bytes_ += WeightBytes(L.qkv) + WeightBytes(L.o_proj) + 2 * d * 4;
      if (!mc.share_values) model->weight_bytes_ += mc.value_table_bytes();
      continue;
    }
    ASSIGN_OR_RETURN(Weight gate, md.GetMatmulWeight(p + "mlp.gate_proj.weight", {ff, d}));
    ASSIGN_OR_RETURN(Weight up, md.GetMatmulWeight(p + "mlp.up_proj.weight", {ff, d}));
    ASSIGN_OR_RETURN(L.down_proj, md.GetMatmulWeight(p + "mlp.down_proj.weight", {d, ff}));
    if (gate.dtype != up.dtype) {
      return InvalidArgumentError(dir + ": layer " + std::to_string(i) + " mixes dtypes within gate/up projections");
    }
    L.gate_up = StackRows({&gate, &up});
    model->weight_bytes_ += WeightBytes(L.qkv) + WeightBytes(L.o_proj) + WeightBytes(L.gate_up) +
                            WeightBytes(L.down_proj) + 2 * d * 4;
  }
  model->iceformer_ = options.iceformer;
  model->iceformer_layer_.assign(c.num_layers, false);
  if (options.iceformer.enabled) {
    if (options.iceformer.layers.empty()) {
      for (int i = c.num_layers / 2; i < c.num_layers; ++i) model->iceformer_layer_[i] = true;
    }
    for (int i : options.iceformer.layers) {
      if (i < 0 || i >= c.num_layers) {
        return InvalidArgumentError(dir + ": IceFormer layer " + std::to_string(i) +
                                    " outside [0, " + std::to_string(c.num_layers) + ")");
      }
      model->iceformer_layer_[i] = true;
    }
  }
  model->rope_ = std::make_unique<RopeTable>(c.head_dim, model->max_sequence_length_, c.rope_theta);
  MEMORIA_LOG(kInfo, "loaded LLaMA model from {}: d {} ff {} layers {} heads {}/{} vocab {} ({} MB of weights)",
              dir, d, ff, c.num_layers, c.num_heads, c.num_kv_heads, V, model->weight_bytes_ >> 20);
  return std::shared_ptr<const LlamaModel>(std::move(model));
}

bool LlamaModel::UsesIceformer(int layer, int64_t q_len, int64_t kv_len) const {
  return iceformer_layer_[layer] && q_len > 1 && kv_len >= iceformer_.min_kv_len;
}

LlamaSession::LlamaSession(std::shared_ptr<const LlamaModel> model, const ThreadPool* pool,
                           int64_t prefill_chunk)
    : model_(std::move(model)), pool_(pool), prefill_chunk_(std::max<int64_t>(1, prefill_chunk)) {
  const LlamaConfig& c = model_->config();
  const int64_t cache = int64_t(c.num_layers) * model_->max_sequence_length() * c.kv_dim();
  k_cache_.resize(cache);
  v_cache_.resize(cache);
  const int64_t n = prefill_chunk_;
  x_.resize(n * c.hidden_size);
  normed_.resize(n * c.hidden_size);
  qkv_.resize(n * (c.q_dim() + 2 * c.kv_dim()));
  attn_.resize(n * c.q_dim());
  gate_up_.resize(n * 2 * c.intermediate_size);
  act_.resize(n * c.intermediate_size);
  if (model_->memory_config().enabled()) memory_out_.resize(n * c.hidden_size);
}

Status LlamaSession::Forward(const int* ids, int64_t n, int64_t logits_rows, float* logits) {
  const LlamaConfig& c = model_->config();
  if (n <= 0) return InvalidArgumentError("forward needs at least one token, got " + std::to_string(n));
  if (logits_rows < 0 || logits_rows > n) {
    return InvalidArgumentError("logits_rows " + std::to_string(logits_rows) + " outside [0, " +
                                std::to_string(n) + "]");
  }
  if (length_ + n > model_->max_sequence_length()) {
    return OutOfRangeError("sequence of " + std::to_string(length_) + " + " + std::to_string(n) +
                           " tokens exceeds the maximum length " +
                           std::to_string(model_->max_sequence_length()));
  }
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= c.vocab_size) {
      return InvalidArgumentError("token id " + std::to_string(ids[i]) + " at position " +
                                  std::to_string(i) + " is outside the vocabulary [0, " +
                                  std::to_string(c.vocab_size) + ")");
    }
  }
  for (int64_t begin = 0; begin < n; begin += prefill_chunk_) {
    const int64_t chunk = std::min(prefill_chunk_, n - begin);
    // Logit rows that fall inside this chunk (the last logits_rows of the whole input).
    const int64_t first_logit_token = n - logits_rows;
    const int64_t rows_here = std::max<int64_t>(0, begin + chunk - std::max(first_logit_token, begin));
    float* out = rows_here > 0 ? logits + (std::max(first_logit_token, begin) - first_logit_token) * c.vocab_size : nullptr;
    ForwardChunk(ids + begin, chunk, rows_here, out);
  }
  return Status::Ok();
}

void LlamaSession::ForwardChunk(const int* ids, int64_t n, int64_t logits_rows, float* logits) {
  const LlamaModel& m = *model_;
  const LlamaConfig& c = m.config();
  const ThreadPool& pool = *pool_;
  const int64_t d = c.hidden_size, ff = c.intermediate_size;
  const int64_t q_dim = c.q_dim(), kv_dim = c.kv_dim(), qkv_w = q_dim + 2 * kv_dim;
  const int64_t max_seq = m.max_sequence_length();
  const int64_t pos = length_;

  const float* embed = m.embed_tokens.f32();
  for (int64_t t = 0; t < n; ++t) std::memcpy(&x_[t * d], embed + int64_t(ids[t]) * d, d * sizeof(float));

  AttentionParams ap;
  ap.q_len = n;
  ap.kv_len = pos + n;
  ap.n_heads = c.num_heads;
  ap.n_kv_heads = c.num_kv_heads;
  ap.head_dim = c.head_dim;
  ap.scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  ap.causal = true;
  ap.q_offset = pos;

  for (int li = 0; li < c.num_layers; ++li) {
    const LlamaModel::Layer& L = m.layers_[li];
    float* k_cache = &k_cache_[int64_t(li) * max_seq * kv_dim];
    float* v_cache = &v_cache_[int64_t(li) * max_seq * kv_dim];

    RmsNorm(pool, x_.data(), d, L.input_norm.f32(), normed_.data(), d, n, d, c.rms_norm_eps);
    MatmulTransB(pool, n, qkv_w, d, normed_.data(), d, L.qkv.data, L.qkv.dtype, d, qkv_.data(), qkv_w);
    ApplyRope(*m.rope_, qkv_.data(), n, qkv_w, c.num_heads, pos);
    ApplyRope(*m.rope_, qkv_.data() + q_dim, n, qkv_w, c.num_kv_heads, pos);
    for (int64_t t = 0; t < n; ++t) {
      std::memcpy(k_cache + (pos + t) * kv_dim, &qkv_[t * qkv_w + q_dim], kv_dim * sizeof(float));
      std::memcpy(v_cache + (pos + t) * kv_dim, &qkv_[t * qkv_w + q_dim + kv_dim], kv_dim * sizeof(float));
    }
    const bool iceformer = m.UsesIceformer(li, n, ap.kv_len);
    const auto attention_start = std::chrono::steady_clock::now();
    if (iceformer) {
      // The index is built over all kv_len keys of this chunk (a chunked prompt rebuilds it per
      // chunk, so long prompts should use a prefill_chunk as long as the prompt).
      IceformerAttention(pool, ap, m.iceformer_.attention, qkv_.data(), qkv_w, k_cache, kv_dim,
                         v_cache, kv_dim, attn_.data(), q_dim);
    } else {
      Attention(pool, ap, qkv_.data(), qkv_w, k_cache, kv_dim, v_cache, kv_dim, attn_.data(),
                q_dim);
    }
    attention_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - attention_start).count();
    if (observer_ != nullptr) {
      observer_->OnAttention(li, ap, qkv_.data(), qkv_w, k_cache, v_cache, kv_dim, attn_.data(),
                             q_dim, iceformer);
    }
    // x += o_proj(attn): the residual add is the GEMM's accumulate.
    MatmulTransB(pool, n, d, q_dim, attn_.data(), q_dim, L.o_proj.data, L.o_proj.dtype, q_dim,
                 x_.data(), d, /*accumulate=*/true);

    RmsNorm(pool, x_.data(), d, L.post_norm.f32(), normed_.data(), d, n, d, c.rms_norm_eps);
    if (L.memory) {
      L.memory->Forward(pool, normed_.data(), n, memory_out_.data(), &memory_scratch_);
      AddInPlace(x_.data(), memory_out_.data(), n * d);
      continue;
    }
    MatmulTransB(pool, n, 2 * ff, d, normed_.data(), d, L.gate_up.data, L.gate_up.dtype, d,
                 gate_up_.data(), 2 * ff);
    for (int64_t t = 0; t < n; ++t) {
      GatedActivate(Activation::kSilu, &gate_up_[t * 2 * ff], &gate_up_[t * 2 * ff + ff], &act_[t * ff], ff);
    }
    MatmulTransB(pool, n, d, ff, act_.data(), ff, L.down_proj.data, L.down_proj.dtype, ff, x_.data(),
                 d, /*accumulate=*/true);
  }
  length_ += n;

  if (logits_rows > 0) {
    const float* last = &x_[(n - logits_rows) * d];
    RmsNorm(pool, last, d, m.final_norm.f32(), normed_.data(), d, logits_rows, d, c.rms_norm_eps);
    MatmulTransB(pool, logits_rows, c.vocab_size, d, normed_.data(), d, m.lm_head.data,
                 m.lm_head.dtype, d, logits, c.vocab_size);
  }
}

}  // namespace memoria
