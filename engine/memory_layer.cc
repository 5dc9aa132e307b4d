#include "engine/memory_layer.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>

#include "kernels/elementwise.h"
#include "kernels/gemm.h"

namespace memoria {
namespace {

Status CheckRange(const std::string& key, int64_t value, int64_t lo, int64_t hi,
                  const std::string& hi_name) {
  if (value < lo || value > hi) {
    return InvalidArgumentError(key + " " + std::to_string(value) + " outside [" +
                                std::to_string(lo) + ", " + hi_name + "]");
  }
  return Status::Ok();
}

// y[r, :] += bias for rows r of width n.
void AddBias(const Weight& bias, float* y, int64_t rows, int64_t n) {
  if (bias.data == nullptr) return;
  for (int64_t r = 0; r < rows; ++r) AddInPlace(y + r * n, bias.f32(), n);
}

std::string LayerPrefix(int block) { return "model.layers." + std::to_string(block) + ".memory."; }

}  // namespace

bool MemoryConfig::IsMemoryLayer(int block) const {
  return std::binary_search(layers.begin(), layers.end(), block);
}

ProductKeyParams MemoryConfig::kernel_params() const {
  ProductKeyParams p;
  p.heads = heads;
  p.n_keys = n_keys;
  p.k_dim = k_dim;
  p.knn = knn;
  p.v_dim = v_dim;
  return p;
}

StatusOr<MemoryConfig> ParseMemoryConfig(const JsonConfig& json) {
  MemoryConfig c;
  auto fail = [&json](const Status& s) { return s.WithContext(json.source_name()); };
  if (!json.Has("memory_layers")) return c;
  ASSIGN_OR_RETURN(std::vector<int64_t> layers, json.GetIntList("memory_layers"));
  ASSIGN_OR_RETURN(c.d, json.GetInt("hidden_size"));
  ASSIGN_OR_RETURN(const int64_t num_layers, json.GetInt("num_hidden_layers"));
  ASSIGN_OR_RETURN(c.n_keys, json.GetInt("memory_n_keys", c.n_keys));
  ASSIGN_OR_RETURN(c.heads, json.GetInt("memory_heads", c.heads));
  ASSIGN_OR_RETURN(c.knn, json.GetInt("memory_knn", c.knn));
  ASSIGN_OR_RETURN(c.k_dim, json.GetInt("memory_k_dim", c.k_dim));
  ASSIGN_OR_RETURN(const int64_t v_dim, json.GetInt("memory_v_dim", -1));
  ASSIGN_OR_RETURN(c.swilu, json.GetBool("memory_swilu", c.swilu));
  ASSIGN_OR_RETURN(c.gated, json.GetBool("memory_gated", c.gated));
  ASSIGN_OR_RETURN(c.share_values, json.GetBool("memory_share_values", c.share_values));
  ASSIGN_OR_RETURN(c.query_bias, json.GetBool("memory_query_bias", c.query_bias));
  ASSIGN_OR_RETURN(c.proj_bias, json.GetBool("memory_proj_bias", c.proj_bias));

  if (c.d < 1) return fail(InvalidArgumentError("hidden_size " + std::to_string(c.d) + " < 1"));
  if (v_dim != -1 && v_dim < 1) {
    return fail(InvalidArgumentError("memory_v_dim " + std::to_string(v_dim) +
                                     " must be -1 (hidden_size) or >= 1"));
  }
  c.v_dim = v_dim > 0 ? v_dim : c.d;
  c.value_proj = c.swilu || v_dim > 0;
  // Same rules as the kernel, reported with the config.json key names.
  if (layers.empty()) return fail(InvalidArgumentError("memory_layers is empty"));
  Status s = CheckRange("memory_n_keys", c.n_keys, 1, 46340, "46340 (n_keys^2 must fit int32)");
  if (s.ok()) s = CheckRange("memory_heads", c.heads, 1, 1 << 20, std::to_string(1 << 20));
  if (s.ok()) {
    s = CheckRange("memory_knn", c.knn, 1, c.n_keys, "memory_n_keys = " + std::to_string(c.n_keys));
  }
  if (s.ok() && (c.k_dim < 2 || c.k_dim % 2 != 0)) {
    s = InvalidArgumentError("memory_k_dim " + std::to_string(c.k_dim) + " must be even and >= 2");
  }
  if (!s.ok()) return fail(s);
  std::sort(layers.begin(), layers.end());
  for (size_t i = 0; i < layers.size(); ++i) {
    if (layers[i] < 0 || layers[i] >= num_layers) {
      return fail(InvalidArgumentError("memory_layers entry " + std::to_string(layers[i]) +
                                       " outside [0, num_hidden_layers = " +
                                       std::to_string(num_layers) + ")"));
    }
    if (i > 0 && layers[i] == layers[i - 1]) {
      return fail(InvalidArgumentError("memory_layers lists block " + std::to_string(layers[i]) +
                                       " twice"));
    }
    c.layers.push_back(static_cast<int>(layers[i]));
  }
  return c;
}

StatusOr<std::shared_ptr<const SharedValues>> SharedValues::Load(const ModelDir& dir,
                                                                 const MemoryConfig& config,
                                                                 const std::string& name) {
  if (config.value_dtype != DType::kF32 && config.value_dtype != DType::kBF16) {
    return InvalidArgumentError(std::string("memory value table dtype must be f32 or bf16, got ") +
                                DTypeName(config.value_dtype));
  }
  auto values = std::shared_ptr<SharedValues>(new SharedValues());
  values->rows_ = config.n_keys * config.n_keys;
  values->v_dim_ = config.v_dim;
  values->dtype_ = config.value_dtype;
  ASSIGN_OR_RETURN(values->f32_, dir.GetF32(name, {values->rows_, values->v_dim_}));
  if (config.value_dtype == DType::kF32) {
    values->data_ = values->f32_.data;
  } else {
    const int64_t n = values->rows_ * values->v_dim_;
    std::shared_ptr<uint16_t[]> bf16(new uint16_t[n]);
    ConvertF32ToBf16(values->f32_.f32(), bf16.get(), n);
    values->owned_ = std::shared_ptr<const void>(bf16, bf16.get());
    values->data_ = bf16.get();
    values->f32_ = Weight();  // drop the f32 copy (or our reference to the mapping)
  }
  return std::shared_ptr<const SharedValues>(std::move(values));
}

std::shared_ptr<const SharedValues> SharedValues::View(const void* data, DType dtype, int64_t rows,
                                                       int64_t v_dim) {
  auto values = std::shared_ptr<SharedValues>(new SharedValues());
  values->data_ = data;
  values->dtype_ = dtype;
  values->rows_ = rows;
  values->v_dim_ = v_dim;
  return values;
}

StatusOr<std::unique_ptr<MemoryLayer>> MemoryLayer::Load(const ModelDir& dir, int block,
                                                         const MemoryConfig& config,
                                                         std::shared_ptr<const SharedValues> values) {
  if (!config.IsMemoryLayer(block)) {
    return InvalidArgumentError("block " + std::to_string(block) + " is not in memory_layers");
  }
  const std::string prefix = LayerPrefix(block);
  if (config.share_values) {
    if (values == nullptr) {
      return InvalidArgumentError("memory layer " + std::to_string(block) +
                                  ": memory_share_values is set but no shared table was given");
    }
  } else {
    if (values != nullptr) {
      return InvalidArgumentError("memory layer " + std::to_string(block) +
                                  ": memory_share_values is false but a shared table was given");
    }
    ASSIGN_OR_RETURN(values, SharedValues::Load(dir, config, prefix + "values.weight"));
  }
  if (values->rows() != config.n_keys * config.n_keys || values->v_dim() != config.v_dim ||
      (values->dtype() != DType::kF32 && values->dtype() != DType::kBF16)) {
    return InvalidArgumentError("memory layer " + std::to_string(block) + ": value table is [" +
                                std::to_string(values->rows()) + ", " +
                                std::to_string(values->v_dim()) + "] " + DTypeName(values->dtype()) +
                                ", expected [" + std::to_string(config.n_keys * config.n_keys) +
                                ", " + std::to_string(config.v_dim) + "] f32 or bf16");
  }

  std::unique_ptr<MemoryLayer> layer(new MemoryLayer());
  layer->config_ = config;
  layer->block_ = block;
  layer->values_ = std::move(values);
  const int64_t d = config.d, q = config.heads * config.k_dim, v = config.v_dim;
  ASSIGN_OR_RETURN(layer->query_proj_, dir.GetMatmulWeight(prefix + "query_proj.weight", {q, d}));
  if (config.query_bias) {
    ASSIGN_OR_RETURN(layer->query_bias_, dir.GetF32(prefix + "query_proj.bias", {q}));
  }
  ASSIGN_OR_RETURN(layer->keys_, dir.GetF32(prefix + "keys", {config.heads, 2, config.n_keys,
                                                              config.k_dim / 2}));
  if (config.value_proj) {
    ASSIGN_OR_RETURN(layer->value_proj_, dir.GetMatmulWeight(prefix + "value_proj.weight", {d, v}));
    if (config.proj_bias) {
      ASSIGN_OR_RETURN(layer->value_bias_, dir.GetF32(prefix + "value_proj.bias", {d}));
    }
  }
  if (config.swilu) {
    ASSIGN_OR_RETURN(layer->swilu_proj_,
                     dir.GetMatmulWeight(prefix + "swilu_projection.weight", {v, d}));
    if (config.proj_bias) {
      ASSIGN_OR_RETURN(layer->swilu_bias_, dir.GetF32(prefix + "swilu_projection.bias", {v}));
    }
  }
  if (config.gated) {
    ASSIGN_OR_RETURN(layer->gate_, dir.GetF32(prefix + "gate.weight", {1, d}));
    if (config.proj_bias) {
      ASSIGN_OR_RETURN(layer->gate_bias_, dir.GetF32(prefix + "gate.bias", {1}));
    }
  }
  return layer;
}

void MemoryLayer::Forward(const ThreadPool& pool, const float* x, int64_t tokens, float* out,
                          Scratch* scratch) const {
  if (tokens <= 0) return;
  const MemoryConfig& c = config_;
  const int64_t d = c.d, q_dim = c.heads * c.k_dim, v = c.v_dim;
  auto grow = [](std::vector<float>* b, int64_t n) {
    if (static_cast<int64_t>(b->size()) < n) b->resize(n);
  };
  grow(&scratch->query, tokens * q_dim);
  MatmulTransB(pool, tokens, q_dim, d, x, d, query_proj_.data, query_proj_.dtype, d,
               scratch->query.data(), q_dim);
  AddBias(query_bias_, scratch->query.data(), tokens, q_dim);

  // Without a value projection the lookup (v_dim == d) is the output itself.
  float* lookup = out;
  if (c.value_proj) {
    grow(&scratch->lookup, tokens * v);
    lookup = scratch->lookup.data();
  }
  ProductKeyLookup(pool, c.kernel_params(), scratch->query.data(), tokens, keys_.f32(),
                   values_->data(), values_->dtype(), lookup, v, &scratch->pk);

  if (c.swilu) {
    grow(&scratch->swilu, tokens * v);
    float* s = scratch->swilu.data();
    MatmulTransB(pool, tokens, v, d, x, d, swilu_proj_.data, swilu_proj_.dtype, d, s, v);
    AddBias(swilu_bias_, s, tokens, v);
    GatedActivate(Activation::kSilu, s, lookup, lookup, tokens * v);
  }
  if (c.value_proj) {
    MatmulTransB(pool, tokens, d, v, lookup, v, value_proj_.data, value_proj_.dtype, v, out, d);
    AddBias(value_bias_, out, tokens, d);
  }
  if (c.gated) {
    const float* g = gate_.f32();
    const float b = gate_bias_.data != nullptr ? gate_bias_.f32()[0] : 0.0f;
    pool.ParallelFor(tokens, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const float* xt = x + t * d;
        float dot = 0.0f;
        for (int64_t i = 0; i < d; ++i) dot += xt[i] * g[i];
        const float gate = 1.0f / (1.0f + std::exp(-(dot + b)));
        float* ot = out + t * d;
        for (int64_t i = 0; i < d; ++i) ot[i] *= gate;
      }
    });
  }
}

int64_t MemoryLayer::MacsPerToken() const {
  const MemoryConfig& c = config_;
  int64_t macs = c.d * c.heads * c.k_dim;           // query_proj
  macs += c.heads * c.n_keys * c.k_dim;             // scores vs both half-key sets
  macs += c.heads * c.knn * c.v_dim;                // weighted value rows
  if (c.swilu) macs += c.d * c.v_dim;               // swilu_projection
  if (c.value_proj) macs += c.v_dim * c.d;          // value_proj
  if (c.gated) macs += c.d;
  return macs;
}

int64_t MemoryLayer::BytesPerDecodedToken() const {
  const MemoryConfig& c = config_;
  int64_t bytes = c.d * c.heads * c.k_dim * DTypeSize(query_proj_.dtype);
  bytes += c.heads * c.n_keys * c.k_dim * 4;
  bytes += c.heads * c.knn * c.v_dim * DTypeSize(values_->dtype());
  if (c.swilu) bytes += c.d * c.v_dim * DTypeSize(swilu_proj_.dtype);
  if (c.value_proj) bytes += c.v_dim * c.d * DTypeSize(value_proj_.dtype);
  if (c.gated) bytes += c.d * 4;
  return bytes;
}

}  // namespace memoria
