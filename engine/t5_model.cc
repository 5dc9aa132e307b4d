#include "engine/t5_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace memoria {
namespace {

// Rows of the FFN processed per GEMM pair: bounds the [rows, d_ff] intermediate (a 4400-token
// FiD batch would otherwise need 4400 x 4096 floats) while keeping the GEMMs large.
constexpr int64_t kFfnChunkRows = 512;

// Stacks row-major [rows_i, cols] weights into one [sum rows_i, cols] weight so that several
// projections of the same input run as one GEMM. Keeps bf16 when all parts are bf16.
Weight ConcatRows(const std::vector<const Weight*>& parts) {
  const int64_t cols = parts[0]->shape[1];
  int64_t rows = 0;
  bool all_same = true;
  for (const Weight* w : parts) {
    MEMORIA_CHECK(w->shape.size() == 2 && w->shape[1] == cols, "ConcatRows: column mismatch");
    rows += w->shape[0];
    all_same = all_same && w->dtype == parts[0]->dtype;
  }
  const DType dtype = all_same ? parts[0]->dtype : DType::kF32;
  const int64_t esize = DTypeSize(dtype);
  auto buffer = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(rows * cols * esize));
  uint8_t* dst = buffer->data();
  for (const Weight* w : parts) {
    const int64_t n = w->shape[0] * cols;
    if (w->dtype == dtype) {
      std::memcpy(dst, w->data, static_cast<size_t>(n * esize));
    } else {
      ConvertToF32(w->dtype, w->data, reinterpret_cast<float*>(dst), n);
    }
    dst += n * esize;
  }
  Weight out;
  out.dtype = dtype;
  out.shape = {rows, cols};
  out.data = buffer->data();
  out.owner = buffer;
  return out;
}

// splitmix64: a tiny, well-mixed generator; plenty for random test weights.
struct SplitMix64 {
  uint64_t state;
  uint64_t Next() {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double Uniform() {
    return (static_cast<double>(Next() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
  }
};

uint64_t HashName(const std::string& name) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : name) h = (h ^ c) * 1099511628211ull;
  return h;
}

Weight RandomWeight(const std::string& name, const std::vector<int64_t>& shape, uint64_t seed) {
  int64_t n = 1;
  for (int64_t s : shape) n *= s;
  auto buffer = std::make_shared<std::vector<float>>(static_cast<size_t>(n));
  float* x = buffer->data();
  auto ends_with = [&](const char* suffix) {
    const size_t len = std::strlen(suffix);
    return name.size() >= len && name.compare(name.size() - len, len, suffix) == 0;
  };
  double mean = 0.0, stddev = 1.0;
  if (ends_with("layer_norm.weight")) {
    mean = 1.0;
    stddev = 0.1;
  } else if (ends_with("relative_attention_bias.weight")) {
    stddev = 0.5;
  } else if (name != "shared.weight") {
    stddev = 1.0 / std::sqrt(static_cast<double>(shape[1]));
  }
  SplitMix64 rng{seed ^ HashName(name)};
  for (int64_t i = 0; i < n; i += 2) {  // Box-Muller, two normals per pair of uniforms
    const double r = std::sqrt(-2.0 * std::log(rng.Uniform()));
    const double t = 6.283185307179586 * rng.Uniform();
    x[i] = static_cast<float>(mean + stddev * r * std::cos(t));
    if (i + 1 < n) x[i + 1] = static_cast<float>(mean + stddev * r * std::sin(t));
  }
  Weight w;
  w.dtype = DType::kF32;
  w.shape = shape;
  w.data = buffer->data();
  w.owner = buffer;
  return w;
}

// Grows v to at least n elements (never shrinks: scratch is reused across calls).
void Reserve(std::vector<float>* v, int64_t n) {
  if (static_cast<int64_t>(v->size()) < n) v->resize(static_cast<size_t>(n));
}

}  // namespace

int T5RelativeBucket(int64_t r, bool bidirectional, int num_buckets, int max_distance) {
  int bucket = 0;
  int64_t n;
  if (bidirectional) {
    num_buckets /= 2;
    if (r > 0) bucket += num_buckets;
    n = r < 0 ? -r : r;
  } else {
    n = r < 0 ? -r : 0;
  }
  const int max_exact = num_buckets / 2;
  if (n < max_exact) return bucket + static_cast<int>(n);
  // Evaluated in float32 as HF does (torch.log on a float tensor), so that bucket edges agree.
  float v = std::log(static_cast<float>(n) / static_cast<float>(max_exact));
  v = v / static_cast<float>(std::log(static_cast<double>(max_distance) / max_exact));
  v = v * static_cast<float>(num_buckets - max_exact);
  const int large = std::min(max_exact + static_cast<int>(v), num_buckets - 1);
  return bucket + large;
}

StatusOr<std::shared_ptr<const T5Model>> T5Model::Load(const std::string& dir) {
  auto model_dir = ModelDir::Open(dir);
  if (!model_dir.ok()) return model_dir.status();
  auto config = T5Config::FromJson((*model_dir)->config());
  if (!config.ok()) return config.status();
  std::shared_ptr<T5Model> model(new T5Model());
  model->model_dir_ = std::move(model_dir).value();
  const ModelDir* md = model->model_dir_.get();
  Getter get = [md](const std::string& name, const std::vector<int64_t>& shape,
                    bool matmul) -> StatusOr<Weight> {
    return matmul ? md->GetMatmulWeight(name, shape) : md->GetF32(name, shape);
  };
  Status s = model->Init(*config, get);
  if (!s.ok()) return s.WithContext(dir);
  return std::shared_ptr<const T5Model>(std::move(model));
}

StatusOr<std::shared_ptr<const T5Model>> T5Model::CreateRandom(const T5Config& config,
                                                               uint64_t seed) {
  RETURN_IF_ERROR(config.Validate());
  std::shared_ptr<T5Model> model(new T5Model());
  Getter get = [seed](const std::string& name, const std::vector<int64_t>& shape,
                      bool) -> StatusOr<Weight> { return RandomWeight(name, shape, seed); };
  RETURN_IF_ERROR(model->Init(config, get));
  return std::shared_ptr<const T5Model>(std::move(model));
}

Status T5Model::Init(const T5Config& config, const Getter& get) {
  config_ = config;
  const int64_t d = config.d_model, inner = config.inner_dim(), ff = config.d_ff;
  const int64_t V = config.vocab_size;
  const int H = config.num_heads, nb = config.relative_attention_num_buckets;

  ASSIGN_OR_RETURN(shared_, get("shared.weight", {V, d}, false));
  if (config.tie_word_embeddings) {
    lm_head_ = shared_;
  } else {
    ASSIGN_OR_RETURN(lm_head_, get("lm_head.weight", {V, d}, true));
  }
  ASSIGN_OR_RETURN(enc_final_norm_, get("encoder.final_layer_norm.weight", {d}, false));
  ASSIGN_OR_RETURN(dec_final_norm_, get("decoder.final_layer_norm.weight", {d}, false));

  auto load_ffn = [&](const std::string& prefix, Ffn* f) -> Status {
    if (config.gated_ffn) {
      ASSIGN_OR_RETURN(Weight wi0, get(prefix + "wi_0.weight", {ff, d}, true));
      ASSIGN_OR_RETURN(Weight wi1, get(prefix + "wi_1.weight", {ff, d}, true));
      f->wi = ConcatRows({&wi0, &wi1});
    } else {
      ASSIGN_OR_RETURN(f->wi, get(prefix + "wi.weight", {ff, d}, true));
    }
    ASSIGN_OR_RETURN(f->wo, get(prefix + "wo.weight", {d, ff}, true));
    return Status::Ok();
  };
  auto load_qkv = [&](const std::string& prefix, Weight* qkv, Weight* o) -> Status {
    ASSIGN_OR_RETURN(Weight q, get(prefix + "q.weight", {inner, d}, true));
    ASSIGN_OR_RETURN(Weight k, get(prefix + "k.weight", {inner, d}, true));
    ASSIGN_OR_RETURN(Weight v, get(prefix + "v.weight", {inner, d}, true));
    *qkv = ConcatRows({&q, &k, &v});
    ASSIGN_OR_RETURN(*o, get(prefix + "o.weight", {d, inner}, true));
    return Status::Ok();
  };

  enc_layers_.resize(config.num_layers);
  for (int i = 0; i < config.num_layers; ++i) {
    const std::string p = fmt::format("encoder.block.{}.layer.", i);
    EncoderLayer& L = enc_layers_[i];
    ASSIGN_OR_RETURN(L.attn_norm, get(p + "0.layer_norm.weight", {d}, false));
    ASSIGN_OR_RETURN(L.ffn_norm, get(p + "1.layer_norm.weight", {d}, false));
    RETURN_IF_ERROR(load_qkv(p + "0.SelfAttention.", &L.qkv, &L.o));
    RETURN_IF_ERROR(load_ffn(p + "1.DenseReluDense.", &L.ffn));
  }
  dec_layers_.resize(config.num_decoder_layers);
  for (int i = 0; i < config.num_decoder_layers; ++i) {
    const std::string p = fmt::format("decoder.block.{}.layer.", i);
    DecoderLayer& L = dec_layers_[i];
    ASSIGN_OR_RETURN(L.self_norm, get(p + "0.layer_norm.weight", {d}, false));
    ASSIGN_OR_RETURN(L.cross_norm, get(p + "1.layer_norm.weight", {d}, false));
    ASSIGN_OR_RETURN(L.ffn_norm, get(p + "2.layer_norm.weight", {d}, false));
    RETURN_IF_ERROR(load_qkv(p + "0.SelfAttention.", &L.self_qkv, &L.self_o));
    const std::string c = p + "1.EncDecAttention.";
    ASSIGN_OR_RETURN(L.cross_q, get(c + "q.weight", {inner, d}, true));
    ASSIGN_OR_RETURN(Weight ck, get(c + "k.weight", {inner, d}, true));
    ASSIGN_OR_RETURN(Weight cv, get(c + "v.weight", {inner, d}, true));
    L.cross_kv = ConcatRows({&ck, &cv});
    ASSIGN_OR_RETURN(L.cross_o, get(c + "o.weight", {d, inner}, true));
    RETURN_IF_ERROR(load_ffn(p + "2.DenseReluDense.", &L.ffn));
  }

  // Relative bias tables indexed by r = key - query. Buckets are constant for |r| >= max_distance
  // (the log term reaches num_buckets - 1 there), so a table over [-max_distance, max_distance]
  // with the kernel's end clamping is exact for any sequence length.
  const int md = config.relative_attention_max_distance;
  ASSIGN_OR_RETURN(
      Weight enc_rel,
      get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", {nb, H}, false));
  ASSIGN_OR_RETURN(
      Weight dec_rel,
      get("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", {nb, H}, false));
  const int64_t enc_len = 2 * static_cast<int64_t>(md) + 1;
  enc_bias_values_.assign(static_cast<size_t>(H * enc_len), 0.0f);
  for (int64_t r = -md; r <= md; ++r) {
    const int b = T5RelativeBucket(r, /*bidirectional=*/true, nb, md);
    for (int h = 0; h < H; ++h) enc_bias_values_[h * enc_len + (r + md)] = enc_rel.f32()[b * H + h];
  }
  // Decoder (causal): only r <= 0 is ever visible; r > 0 clamps onto the r = 0 entry.
  const int64_t dec_len = static_cast<int64_t>(md) + 1;
  dec_bias_values_.assign(static_cast<size_t>(H * dec_len), 0.0f);
  for (int64_t r = -md; r <= 0; ++r) {
    const int b = T5RelativeBucket(r, /*bidirectional=*/false, nb, md);
    for (int h = 0; h < H; ++h) dec_bias_values_[h * dec_len + (r + md)] = dec_rel.f32()[b * H + h];
  }
  enc_bias_ = RelativeBias{enc_bias_values_.data(), -md, enc_len};
  dec_bias_ = RelativeBias{dec_bias_values_.data(), -md, dec_len};
  return Status::Ok();
}

Status T5Model::Embed(const int* ids, int64_t n, float* h) const {
  const int64_t d = config_.d_model;
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= config_.vocab_size) {
      return InvalidArgumentError(fmt::format(
          "token id {} at position {} outside vocabulary [0, {})", ids[i], i, config_.vocab_size));
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    std::memcpy(h + i * d, shared_.f32() + static_cast<int64_t>(ids[i]) * d,
                static_cast<size_t>(d) * sizeof(float));
  }
  return Status::Ok();
}

void T5Model::FfnAccumulate(const ThreadPool& pool, const Ffn& ffn, const float* x, int64_t rows,
                            float* out, std::vector<float>* scratch) const {
  const int64_t d = config_.d_model, ff = config_.d_ff;
  const bool gated = config_.gated_ffn;
  const int64_t width = gated ? 2 * ff : ff;
  const int64_t chunk = std::min(rows, kFfnChunkRows);
  Reserve(scratch, chunk * width);
  float* buf = scratch->data();
  const Activation act = config_.ffn_activation;
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t m = std::min(chunk, rows - r0);
    MatmulTransB(pool, m, width, d, x + r0 * d, d, ffn.wi.data, ffn.wi.dtype, d, buf, width);
    pool.ParallelFor(m, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        float* row = buf + r * width;
        // Gated: act(wi_0 x) * (wi_1 x), written over the wi_0 half of the row.
        if (gated) {
          GatedActivate(act, row, row + ff, row, ff);
        } else {
          Activate(act, row, row, ff);
        }
      }
    });
    MatmulTransB(pool, m, d, ff, buf, width, ffn.wo.data, ffn.wo.dtype, ff, out + r0 * d, d,
                 /*accumulate=*/true);
  }
}

void T5Model::EncoderLayers(const ThreadPool& pool, int first, int last,
                            const std::vector<int64_t>& offsets, float* h,
                            T5EncoderScratch* s) const {
  // Without a check nothing can fail.
  (void)EncoderLayers(pool, first, last, offsets, h, s, std::function<Status()>());
}

Status T5Model::EncoderLayers(const ThreadPool& pool, int first, int last,
                              const std::vector<int64_t>& offsets, float* h, T5EncoderScratch* s,
                              const std::function<Status()>& check) const {
  MEMORIA_CHECK(0 <= first && first <= last && last <= config_.num_layers,
                fmt::format("encoder layers [{}, {}) of {}", first, last, config_.num_layers));
  MEMORIA_CHECK(!offsets.empty() && offsets[0] == 0, "encoder offsets must start at 0");
  if (first == last) return Status::Ok();
  const int64_t rows = offsets.back();
  if (rows == 0) return Status::Ok();
  const int64_t d = config_.d_model, inner = config_.inner_dim();
  const float eps = config_.layer_norm_epsilon;
  Reserve(&s->norm, rows * d);
  Reserve(&s->qkv, rows * 3 * inner);
  Reserve(&s->attn, rows * inner);
  float* norm = s->norm.data();
  float* qkv = s->qkv.data();
  float* attn = s->attn.data();
  for (int l = first; l < last; ++l) {
    if (check) RETURN_IF_ERROR(check());
    const EncoderLayer& L = enc_layers_[l];
    RmsNorm(pool, h, d, L.attn_norm.f32(), norm, d, rows, d, eps);
    MatmulTransB(pool, rows, 3 * inner, d, norm, d, L.qkv.data, L.qkv.dtype, d, qkv, 3 * inner);
    for (size_t seq = 0; seq + 1 < offsets.size(); ++seq) {
      const int64_t begin = offsets[seq], len = offsets[seq + 1] - begin;
      if (len <= 0) continue;
      AttentionParams p;
      p.q_len = len;
      p.kv_len = len;
      p.n_heads = config_.num_heads;
      p.n_kv_heads = config_.num_heads;
      p.head_dim = static_cast<int>(config_.d_kv);
      p.scale = 1.0f;
      p.causal = false;
      p.bias = enc_bias_;
      const float* base = qkv + begin * 3 * inner;
      Attention(pool, p, base, 3 * inner, base + inner, 3 * inner, base + 2 * inner, 3 * inner,
                attn + begin * inner, inner);
    }
    MatmulTransB(pool, rows, d, inner, attn, inner, L.o.data, L.o.dtype, inner, h, d,
                 /*accumulate=*/true);
    RmsNorm(pool, h, d, L.ffn_norm.f32(), norm, d, rows, d, eps);
    FfnAccumulate(pool, L.ffn, norm, rows, h, &s->ff);
  }
  return Status::Ok();
}

void T5Model::EncoderFinalNorm(const ThreadPool& pool, float* h, int64_t rows) const {
  if (rows <= 0) return;
  const int64_t d = config_.d_model;
  RmsNorm(pool, h, d, enc_final_norm_.f32(), h, d, rows, d, config_.layer_norm_epsilon);
}

StatusOr<std::vector<float>> T5Model::Encode(const ThreadPool& pool,
                                             const std::vector<int>& ids) const {
  const int64_t n = static_cast<int64_t>(ids.size());
  if (n == 0) return InvalidArgumentError("T5 encoder input is empty");
  std::vector<float> h(static_cast<size_t>(n * config_.d_model));
  RETURN_IF_ERROR(Embed(ids.data(), n, h.data()));
  T5EncoderScratch scratch;
  EncoderLayers(pool, 0, config_.num_layers, {0, n}, h.data(), &scratch);
  EncoderFinalNorm(pool, h.data(), n);
  return h;
}

Status T5Model::StartDecoder(const ThreadPool& pool, const float* enc, int64_t enc_len,
                             int num_seqs, int64_t max_len, int64_t max_step_tokens,
                             T5DecoderState* st, const T5IceformerSettings& iceformer) const {
  if (enc_len <= 0 || num_seqs <= 0 || max_len <= 0 || max_step_tokens <= 0) {
    return InvalidArgumentError(fmt::format(
        "T5 decoder: enc_len {}, num_seqs {}, max_len {}, max_step_tokens {} must all be > 0",
        enc_len, num_seqs, max_len, max_step_tokens));
  }
  const int64_t d = config_.d_model, inner = config_.inner_dim();
  const int layers = config_.num_decoder_layers;
  st->num_seqs_ = num_seqs;
  st->max_len_ = max_len;
  st->max_step_tokens_ = std::min(max_step_tokens, max_len);
  st->enc_len_ = enc_len;
  st->length_ = 0;
  st->attention_seconds_ = 0;
  st->cross_kv_.resize(layers);
  st->self_k_.resize(layers);
  st->self_v_.resize(layers);
  const int64_t cache = static_cast<int64_t>(num_seqs) * max_len * inner;
  for (int l = 0; l < layers; ++l) {
    st->cross_kv_[l].resize(static_cast<size_t>(enc_len * 2 * inner));
    const Weight& w = dec_layers_[l].cross_kv;
    MatmulTransB(pool, enc_len, 2 * inner, d, enc, d, w.data, w.dtype, d, st->cross_kv_[l].data(),
                 2 * inner);
    st->self_k_[l].resize(static_cast<size_t>(cache));
    st->self_v_[l].resize(static_cast<size_t>(cache));
  }
  st->cross_iceformer_ = iceformer.enabled && enc_len >= iceformer.min_keys;
  st->cross_index_builds_ = 0;
  if (st->cross_iceformer_) {
    // Built after every layer's cross K/V exists: the indices reference those rows in place.
    st->cross_index_.resize(layers);
    for (int l = 0; l < layers; ++l) {
      st->cross_index_[l].Build(pool, st->cross_kv_[l].data(), enc_len, config_.num_heads,
                                static_cast<int>(config_.d_kv), 2 * inner, iceformer.options);
      ++st->cross_index_builds_;
    }
  } else {
    st->cross_index_.clear();  // frees a previous request's indices
  }
  const int64_t rows = static_cast<int64_t>(num_seqs) * st->max_step_tokens_;
  const int64_t width = config_.gated_ffn ? 2 * config_.d_ff : config_.d_ff;
  st->x_.resize(static_cast<size_t>(rows * d));
  st->norm_.resize(static_cast<size_t>(rows * d));
  st->qkv_.resize(static_cast<size_t>(rows * 3 * inner));
  st->attn_.resize(static_cast<size_t>(rows * inner));
  st->ff_.resize(static_cast<size_t>(std::min(rows, kFfnChunkRows) * width));
  st->last_.resize(static_cast<size_t>(num_seqs * d));
  st->reorder_tmp_.clear();
  return Status::Ok();
}

Status T5Model::DecoderStep(const ThreadPool& pool, const int* tokens, int64_t q_len, bool all_rows,
                            T5DecoderState* st, float* logits) const {
  if (q_len <= 0 || q_len > st->max_step_tokens_) {
    return OutOfRangeError(fmt::format("T5 decoder step of {} tokens; this state allows 1..{}",
                                       q_len, st->max_step_tokens_));
  }
  if (st->length_ + q_len > st->max_len_) {
    return OutOfRangeError(fmt::format("T5 decoder: {} cached + {} new tokens exceed max_len {}",
                                       st->length_, q_len, st->max_len_));
  }
  const int64_t d = config_.d_model, inner = config_.inner_dim();
  const int64_t n = st->num_seqs_, rows = n * q_len, t0 = st->length_, max_len = st->max_len_;
  const float eps = config_.layer_norm_epsilon;
  float* x = st->x_.data();
  float* norm = st->norm_.data();
  float* qkv = st->qkv_.data();
  float* attn = st->attn_.data();
  RETURN_IF_ERROR(Embed(tokens, rows, x));

  AttentionParams self;
  self.q_len = q_len;
  self.kv_len = t0 + q_len;
  self.n_heads = config_.num_heads;
  self.n_kv_heads = config_.num_heads;
  self.head_dim = static_cast<int>(config_.d_kv);
  self.scale = 1.0f;
  self.causal = true;
  self.q_offset = t0;
  self.bias = dec_bias_;
  AttentionParams cross = self;
  cross.q_len = rows;
  cross.kv_len = st->enc_len_;
  cross.causal = false;
  cross.q_offset = 0;
  cross.bias = RelativeBias{};

  for (int l = 0; l < config_.num_decoder_layers; ++l) {
    const DecoderLayer& L = dec_layers_[l];
    float* ck = st->self_k_[l].data();
    float* cv = st->self_v_[l].data();
    // Self-attention with the cache.
    RmsNorm(pool, x, d, L.self_norm.f32(), norm, d, rows, d, eps);
    MatmulTransB(pool, rows, 3 * inner, d, norm, d, L.self_qkv.data, L.self_qkv.dtype, d, qkv,
                 3 * inner);
    for (int64_t s = 0; s < n; ++s) {
      for (int64_t j = 0; j < q_len; ++j) {
        const float* src = qkv + (s * q_len + j) * 3 * inner;
        const int64_t dst = (s * max_len + t0 + j) * inner;
        std::memcpy(ck + dst, src + inner, static_cast<size_t>(inner) * sizeof(float));
        std::memcpy(cv + dst, src + 2 * inner, static_cast<size_t>(inner) * sizeof(float));
      }
    }
    auto attention_start = std::chrono::steady_clock::now();
    for (int64_t s = 0; s < n; ++s) {
      Attention(pool, self, qkv + s * q_len * 3 * inner, 3 * inner, ck + s * max_len * inner, inner,
                cv + s * max_len * inner, inner, attn + s * q_len * inner, inner);
    }
    st->attention_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - attention_start).count();
    MatmulTransB(pool, rows, d, inner, attn, inner, L.self_o.data, L.self_o.dtype, inner, x, d,
                 /*accumulate=*/true);
    // Cross-attention: all rows of all sequences share the encoder K/V.
    RmsNorm(pool, x, d, L.cross_norm.f32(), norm, d, rows, d, eps);
    MatmulTransB(pool, rows, inner, d, norm, d, L.cross_q.data, L.cross_q.dtype, d, qkv, inner);
    const float* kv = st->cross_kv_[l].data();
    attention_start = std::chrono::steady_clock::now();
    if (st->cross_iceformer_) {
      st->cross_index_[l].Attend(pool, cross.n_heads, cross.scale, qkv, rows, inner, kv + inner,
                                 2 * inner, attn, inner);
    } else {
      Attention(pool, cross, qkv, inner, kv, 2 * inner, kv + inner, 2 * inner, attn, inner);
    }
    st->attention_seconds_ +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - attention_start).count();
    MatmulTransB(pool, rows, d, inner, attn, inner, L.cross_o.data, L.cross_o.dtype, inner, x, d,
                 /*accumulate=*/true);
    // FFN.
    RmsNorm(pool, x, d, L.ffn_norm.f32(), norm, d, rows, d, eps);
    FfnAccumulate(pool, L.ffn, norm, rows, x, &st->ff_);
  }

  // Final norm (and the tied head's rescale) only on the rows whose logits are wanted.
  float* head_in;
  int64_t m;
  if (all_rows) {
    RmsNorm(pool, x, d, dec_final_norm_.f32(), norm, d, rows, d, eps);
    head_in = norm;
    m = rows;
  } else {
    float* last = st->last_.data();
    RmsNorm(pool, x + (q_len - 1) * d, q_len * d, dec_final_norm_.f32(), last, d, n, d, eps);
    head_in = last;
    m = n;
  }
  if (config_.tie_word_embeddings) {
    // HF T5ForConditionalGeneration: sequence_output * d_model**-0.5 before the tied lm_head.
    const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(d)));
    for (int64_t i = 0; i < m * d; ++i) head_in[i] *= scale;
  }
  MatmulTransB(pool, m, config_.vocab_size, d, head_in, d, lm_head_.data, lm_head_.dtype, d, logits,
               config_.vocab_size);
  st->length_ += q_len;
  return Status::Ok();
}

void T5Model::ReorderCache(const std::vector<int>& parents, T5DecoderState* st) const {
  const int64_t n = st->num_seqs_;
  MEMORIA_CHECK(static_cast<int64_t>(parents.size()) == n, "ReorderCache: one parent per sequence");
  bool identity = true;
  for (int64_t i = 0; i < n; ++i) {
    MEMORIA_CHECK(parents[i] >= 0 && parents[i] < n, "ReorderCache: parent out of range");
    identity = identity && parents[i] == i;
  }
  if (identity || st->length_ == 0) return;
  const int64_t inner = config_.inner_dim(), len = st->length_, max_len = st->max_len_;
  const size_t seq_bytes = static_cast<size_t>(len * inner) * sizeof(float);
  // Sized once for the longest cache, so reordering never allocates after the first step.
  Reserve(&st->reorder_tmp_, n * max_len * inner);
  float* tmp = st->reorder_tmp_.data();
  for (int l = 0; l < config_.num_decoder_layers; ++l) {
    for (std::vector<float>* cache : {&st->self_k_[l], &st->self_v_[l]}) {
      float* c = cache->data();
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(tmp + i * len * inner, c + parents[i] * max_len * inner, seq_bytes);
      }
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(c + i * max_len * inner, tmp + i * len * inner, seq_bytes);
      }
    }
  }
}

namespace {

// Adapts a T5 decoder state to the searches' one-token-per-beam interface.
class T5StepModel : public StepModel {
 public:
  T5StepModel(const T5Model& model, const ThreadPool& pool, T5DecoderState* state)
      : model_(model), pool_(pool), state_(state) {}
  int64_t vocab_size() const override { return model_.config().vocab_size; }
  Status Step(const std::vector<int>& tokens, float* logits) override {
    return model_.DecoderStep(pool_, tokens.data(), 1, /*all_rows=*/false, state_, logits);
  }
  void Reorder(const std::vector<int>& parents) override { model_.ReorderCache(parents, state_); }

 private:
  const T5Model& model_;
  const ThreadPool& pool_;
  T5DecoderState* state_;
};

}  // namespace

StatusOr<GenerationResult> T5Generate(const T5Model& model, const ThreadPool& pool,
                                      const float* enc, int64_t enc_len,
                                      const T5GenerationOptions& options, T5DecoderState* state,
                                      const SearchStepHook* on_step,
                                      const TokenConstraint* constraint) {
  if (options.max_new_tokens < 1 || options.num_beams < 1) {
    return InvalidArgumentError(
        fmt::format("T5 generation: max_new_tokens {} and num_beams {} must be >= 1",
                    options.max_new_tokens, options.num_beams));
  }
  if (options.extractive && constraint == nullptr) {
    return InvalidArgumentError(
        "T5 generation: extractive answers need the passages' token ids (a span constraint)");
  }
  if (options.extractive && !options.stop_at_eos) {
    return InvalidArgumentError("T5 generation: an extractive answer ends at EOS (stop_at_eos)");
  }
  const T5Config& c = model.config();
  RETURN_IF_ERROR(model.StartDecoder(pool, enc, enc_len, options.num_beams,
                                     options.max_new_tokens + 1, 1, state, options.iceformer));
  T5StepModel step(model, pool, state);
  if (options.num_beams == 1) {
    return GreedySearch(c.decoder_start_token_id, options.stop_at_eos ? c.eos_token_id : -1,
                        options.max_new_tokens, &step, on_step, constraint);
  }
  BeamSearchOptions b;
  b.num_beams = options.num_beams;
  b.length_penalty = options.length_penalty;
  b.max_new_tokens = options.max_new_tokens;
  b.start_token_id = c.decoder_start_token_id;
  b.eos_token_id = options.stop_at_eos ? c.eos_token_id : -1;
  return BeamSearch(b, &step, on_step, constraint);
}

}  // namespace memoria
