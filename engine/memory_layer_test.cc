#include "engine/memory_layer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "base/testing.h"
#include "engine/safetensors.h"
#include "kernels/gemm.h"

namespace memoria {
namespace {

std::unique_ptr<JsonConfig> Json(const std::string& text) {
  auto json = JsonConfig::ParseString(text, "config.json");
  EXPECT_TRUE(json.ok()) << json.status().ToString();
  return std::move(json).value();
}

TEST(ParseMemoryConfigTest, NoMemoryLayers) {
  auto c = ParseMemoryConfig(*Json(R"({"hidden_size": 64, "num_hidden_layers": 2})"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE(c->enabled());
}

TEST(ParseMemoryConfigTest, DefaultsAndResolvedSizes) {
  auto c = ParseMemoryConfig(
      *Json(R"({"hidden_size": 1024, "num_hidden_layers": 24, "memory_layers": [20, 4, 12]})"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->layers, (std::vector<int>{4, 12, 20}));
  EXPECT_TRUE(c->IsMemoryLayer(12));
  EXPECT_FALSE(c->IsMemoryLayer(5));
  EXPECT_EQ(c->n_keys, 1024);
  EXPECT_EQ(c->heads, 4);
  EXPECT_EQ(c->knn, 32);
  EXPECT_EQ(c->k_dim, 512);
  EXPECT_EQ(c->v_dim, 1024);
  EXPECT_TRUE(c->swilu);
  EXPECT_TRUE(c->value_proj);
  EXPECT_FALSE(c->gated);
  EXPECT_TRUE(c->share_values);
  EXPECT_EQ(c->value_table_bytes(), int64_t{1024} * 1024 * 1024 * 4);
}

TEST(ParseMemoryConfigTest, ValueProjectionRule) {
  // As in the reference: a value projection exists with swilu or an explicit memory_v_dim.
  auto plain = ParseMemoryConfig(*Json(
      R"({"hidden_size": 64, "num_hidden_layers": 2, "memory_layers": [1], "memory_swilu": false})"));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(plain->value_proj);
  EXPECT_EQ(plain->v_dim, 64);
  auto projected = ParseMemoryConfig(*Json(
      R"({"hidden_size": 64, "num_hidden_layers": 2, "memory_layers": [1], "memory_swilu": false,
          "memory_v_dim": 48})"));
  ASSERT_TRUE(projected.ok());
  EXPECT_TRUE(projected->value_proj);
  EXPECT_EQ(projected->v_dim, 48);
}

// Bad configs: each is INVALID_ARGUMENT with a message naming the key and the numbers.
TEST(ParseMemoryConfigTest, RejectsBadConfigs) {
  const std::string base = R"("hidden_size": 64, "num_hidden_layers": 4, )";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"("memory_layers": [1], "memory_knn": 40, "memory_n_keys": 32)",
       "memory_knn 40 outside [1, memory_n_keys = 32]"},
      {R"("memory_layers": [1], "memory_knn": 0)", "memory_knn 0"},
      {R"("memory_layers": [1], "memory_k_dim": 31)", "memory_k_dim 31 must be even"},
      {R"("memory_layers": [1], "memory_n_keys": 50000)", "memory_n_keys 50000 outside"},
      {R"("memory_layers": [1], "memory_heads": 0)", "memory_heads 0 outside"},
      {R"("memory_layers": [4])", "memory_layers entry 4 outside [0, num_hidden_layers = 4)"},
      {R"("memory_layers": [-1])", "memory_layers entry -1"},
      {R"("memory_layers": [2, 2])", "memory_layers lists block 2 twice"},
      {R"("memory_layers": [])", "memory_layers is empty"},
      {R"("memory_layers": [1], "memory_v_dim": 0)", "memory_v_dim 0"},
      {R"("memory_layers": [1], "memory_swilu": 3)", "memory_swilu"},
      {R"("memory_layers": "4")", "memory_layers"},
  };
  for (const auto& [fields, want] : cases) {
    auto c = ParseMemoryConfig(*Json("{" + base + fields + "}"));
    ASSERT_FALSE(c.ok()) << fields;
    EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument) << fields;
    EXPECT_NE(c.status().message().find(want), std::string::npos)
        << fields << " -> " << c.status().message();
  }
}

// ---------------------------------------------------------------------------------------------
// Load + Forward against a plain composition of reference kernels on random weights.

struct Tensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
};

class MemoryLayerFixture {
 public:
  MemoryLayerFixture(const std::string& config_json, const MemoryConfig& c, uint32_t seed)
      : rng_(seed), dir_(testing::MakeTempDir("memory_layer_test")) {
    std::ofstream(dir_ + "/config.json") << config_json;
    const int64_t d = c.d, q = c.heads * c.k_dim, v = c.v_dim, slots = c.n_keys * c.n_keys;
    if (c.share_values) Add("model.memory_values.weight", {slots, v}, 1.0f);
    for (int block : c.layers) {
      const std::string p = "model.layers." + std::to_string(block) + ".memory.";
      if (!c.share_values) Add(p + "values.weight", {slots, v}, 1.0f);
      Add(p + "query_proj.weight", {q, d}, 1.0f / std::sqrt(float(d)));
      if (c.query_bias) Add(p + "query_proj.bias", {q}, 0.1f);
      Add(p + "keys", {c.heads, 2, c.n_keys, c.k_dim / 2}, 1.0f / std::sqrt(float(c.k_dim)));
      if (c.value_proj) {
        Add(p + "value_proj.weight", {d, v}, 1.0f / std::sqrt(float(v)));
        if (c.proj_bias) Add(p + "value_proj.bias", {d}, 0.1f);
      }
      if (c.swilu) {
        Add(p + "swilu_projection.weight", {v, d}, 1.0f / std::sqrt(float(d)));
        if (c.proj_bias) Add(p + "swilu_projection.bias", {v}, 0.1f);
      }
      if (c.gated) {
        Add(p + "gate.weight", {1, d}, 1.0f / std::sqrt(float(d)));
        if (c.proj_bias) Add(p + "gate.bias", {1}, 0.1f);
      }
    }
  }
  ~MemoryLayerFixture() { std::filesystem::remove_all(dir_); }

  void Add(const std::string& name, std::vector<int64_t> shape, float scale) {
    Tensor t;
    t.shape = std::move(shape);
    int64_t n = 1;
    for (int64_t s : t.shape) n *= s;
    std::normal_distribution<float> normal(0.0f, scale);
    t.data.resize(n);
    for (auto& x : t.data) x = normal(rng_);
    tensors_[name] = std::move(t);
  }
  void Write(const std::vector<std::string>& skip = {}) {
    std::vector<TensorToWrite> out;
    for (const auto& [name, t] : tensors_) {
      if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
      out.push_back({name, DType::kF32, t.shape, t.data.data()});
    }
    ASSERT_TRUE(WriteSafetensors(dir_ + "/model.safetensors", out).ok());
  }
  const std::vector<float>& Get(const std::string& name) { return tensors_.at(name).data; }
  const std::string& dir() const { return dir_; }

 private:
  std::mt19937 rng_;
  std::string dir_;
  std::map<std::string, Tensor> tensors_;
};

// y[t, n] = x[t, :] . W[n, :] + b[n]  in double.
std::vector<double> Linear(const std::vector<double>& x, int64_t tokens, int64_t in,
                           const std::vector<float>& w, const std::vector<float>* b, int64_t outf) {
  std::vector<double> y(tokens * outf);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t o = 0; o < outf; ++o) {
      double s = b ? (*b)[o] : 0.0;
      for (int64_t i = 0; i < in; ++i) s += x[t * in + i] * w[o * in + i];
      y[t * outf + o] = s;
    }
  }
  return y;
}

std::vector<float> ReferenceForward(MemoryLayerFixture& f, const MemoryConfig& c, int block,
                                    const std::vector<float>& x, int64_t tokens) {
  const std::string p = "model.layers." + std::to_string(block) + ".memory.";
  const int64_t d = c.d, q_dim = c.heads * c.k_dim, v = c.v_dim;
  std::vector<double> xd(x.begin(), x.end());
  std::vector<double> q =
      Linear(xd, tokens, d, f.Get(p + "query_proj.weight"),
             c.query_bias ? &f.Get(p + "query_proj.bias") : nullptr, q_dim);
  std::vector<float> qf(q.begin(), q.end());
  const std::vector<float>& values =
      f.Get(c.share_values ? "model.memory_values.weight" : p + "values.weight");
  std::vector<uint16_t> bf16;
  const void* vdata = values.data();
  if (c.value_dtype == DType::kBF16) {
    bf16.resize(values.size());
    ConvertF32ToBf16(values.data(), bf16.data(), values.size());
    vdata = bf16.data();
  }
  std::vector<float> m(tokens * v);
  ProductKeyLookupReference(c.kernel_params(), qf.data(), tokens, f.Get(p + "keys").data(), vdata,
                            c.value_dtype, m.data(), v);
  std::vector<double> y(m.begin(), m.end());
  if (c.swilu) {
    std::vector<double> s = Linear(xd, tokens, d, f.Get(p + "swilu_projection.weight"),
                                   c.proj_bias ? &f.Get(p + "swilu_projection.bias") : nullptr, v);
    for (size_t i = 0; i < y.size(); ++i) y[i] *= s[i] / (1.0 + std::exp(-s[i]));
  }
  if (c.value_proj) {
    y = Linear(y, tokens, v, f.Get(p + "value_proj.weight"),
               c.proj_bias ? &f.Get(p + "value_proj.bias") : nullptr, d);
  }
  if (c.gated) {
    std::vector<double> g = Linear(xd, tokens, d, f.Get(p + "gate.weight"),
                                   c.proj_bias ? &f.Get(p + "gate.bias") : nullptr, 1);
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t i = 0; i < d; ++i) y[t * d + i] *= 1.0 / (1.0 + std::exp(-g[t]));
    }
  }
  return std::vector<float>(y.begin(), y.end());
}

struct LayerCase {
  std::string name;
  std::string memory_json;  // memory_* keys
  DType value_dtype;
  int64_t tokens;
};

std::ostream& operator<<(std::ostream& os, const LayerCase& c) { return os << c.name; }

class MemoryLayerTest : public ::testing::TestWithParam<LayerCase> {};

TEST_P(MemoryLayerTest, MatchesReferenceComposition) {
  const LayerCase& lc = GetParam();
  const std::string config_json = R"({"hidden_size": 48, "num_hidden_layers": 4, )" +
                                  lc.memory_json + "}";
  auto parsed = ParseMemoryConfig(*Json(config_json));
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  MemoryConfig c = *parsed;
  c.value_dtype = lc.value_dtype;
  MemoryLayerFixture f(config_json, c, 99);
  f.Write();
  auto dir = ModelDir::Open(f.dir());
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();

  std::shared_ptr<const SharedValues> shared;
  if (c.share_values) {
    auto values = SharedValues::Load(**dir, c);
    ASSERT_TRUE(values.ok()) << values.status().ToString();
    shared = *values;
    EXPECT_EQ(shared->dtype(), c.value_dtype);
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(lc.tokens * c.d);
  for (auto& e : x) e = normal(rng);
  ThreadPool pool(2);
  MemoryLayer::Scratch scratch;
  for (int block : c.layers) {
    auto layer = MemoryLayer::Load(**dir, block, c, shared);
    ASSERT_TRUE(layer.ok()) << layer.status().ToString();
    std::vector<float> out(lc.tokens * c.d, 123.0f);
    (*layer)->Forward(pool, x.data(), lc.tokens, out.data(), &scratch);
    const std::vector<float> want = ReferenceForward(f, c, block, x, lc.tokens);
    EXPECT_LE(testing::MaxAbsDiff(out.data(), want.data(), out.size()), 2e-5)
        << "block " << block;
    EXPECT_GT((*layer)->MacsPerToken(), 0);
    EXPECT_GT((*layer)->BytesPerDecodedToken(), 0);
    // Decode: one token at a time gives the same rows as the batch.
    for (int64_t t = 0; t < lc.tokens; t += 3) {
      std::vector<float> one(c.d);
      (*layer)->Forward(pool, x.data() + t * c.d, 1, one.data(), &scratch);
      EXPECT_LE(testing::MaxAbsDiff(one.data(), out.data() + t * c.d, c.d), 1e-5) << "token " << t;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Variants, MemoryLayerTest,
    ::testing::Values(
        LayerCase{"MemoryPlusGated",
                  R"("memory_layers": [1, 3], "memory_n_keys": 12, "memory_heads": 2,
                     "memory_knn": 5, "memory_k_dim": 16, "memory_gated": true)",
                  DType::kF32, 7},
        LayerCase{"MemoryPlusBf16Values",
                  R"("memory_layers": [2], "memory_n_keys": 12, "memory_heads": 3,
                     "memory_knn": 4, "memory_k_dim": 8, "memory_v_dim": 40)",
                  DType::kBF16, 5},
        LayerCase{"PlainLookupNoBias",
                  R"("memory_layers": [0], "memory_n_keys": 10, "memory_heads": 2,
                     "memory_knn": 3, "memory_k_dim": 12, "memory_swilu": false,
                     "memory_query_bias": false)",
                  DType::kF32, 4},
        LayerCase{"ValueProjOwnTables",
                  R"("memory_layers": [0, 2], "memory_n_keys": 8, "memory_heads": 1,
                     "memory_knn": 8, "memory_k_dim": 6, "memory_swilu": false,
                     "memory_v_dim": 20, "memory_share_values": false, "memory_proj_bias": false,
                     "memory_gated": true)",
                  DType::kF32, 6}),
    [](const ::testing::TestParamInfo<LayerCase>& info) { return info.param.name; });

// Missing or misshapen tensors and inconsistent arguments are errors naming the tensor.
TEST(MemoryLayerLoadTest, Errors) {
  const std::string config_json =
      R"({"hidden_size": 16, "num_hidden_layers": 2, "memory_layers": [1], "memory_n_keys": 4,
          "memory_heads": 2, "memory_knn": 2, "memory_k_dim": 4, "memory_gated": true})";
  MemoryConfig c = *ParseMemoryConfig(*Json(config_json));
  MemoryLayerFixture f(config_json, c, 3);
  f.Add("model.layers.1.memory.keys", {2, 2, 4, 3}, 1.0f);  // wrong half size
  f.Write({"model.layers.1.memory.gate.bias"});
  auto dir = ModelDir::Open(f.dir());
  ASSERT_TRUE(dir.ok()) << dir.status().ToString();
  auto values = SharedValues::Load(**dir, c);
  ASSERT_TRUE(values.ok()) << values.status().ToString();

  auto bad_keys = MemoryLayer::Load(**dir, 1, c, *values);
  ASSERT_FALSE(bad_keys.ok());
  EXPECT_EQ(bad_keys.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_keys.status().message().find("model.layers.1.memory.keys"), std::string::npos)
      << bad_keys.status().message();

  auto not_memory = MemoryLayer::Load(**dir, 0, c, *values);
  ASSERT_FALSE(not_memory.ok());
  EXPECT_NE(not_memory.status().message().find("block 0 is not in memory_layers"),
            std::string::npos);

  auto no_table = MemoryLayer::Load(**dir, 1, c, nullptr);
  ASSERT_FALSE(no_table.ok());
  EXPECT_NE(no_table.status().message().find("no shared table"), std::string::npos);

  std::vector<float> small(16 * 16);
  auto wrong_table = MemoryLayer::Load(**dir, 1, c, SharedValues::View(small.data(), DType::kF32,
                                                                        16, 16 + 1));
  ASSERT_FALSE(wrong_table.ok());
  EXPECT_NE(wrong_table.status().message().find("value table is [16, 17] f32, expected [16, 16]"),
            std::string::npos)
      << wrong_table.status().message();

  MemoryConfig other = c;
  other.n_keys = 5;
  auto missing = SharedValues::Load(**dir, other);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kInvalidArgument);

  // With the keys fixed, the gate bias is what is missing.
  MemoryLayerFixture g(config_json, c, 3);
  g.Write({"model.layers.1.memory.gate.bias"});
  auto dir2 = ModelDir::Open(g.dir());
  ASSERT_TRUE(dir2.ok());
  auto no_bias = MemoryLayer::Load(**dir2, 1, c, *SharedValues::Load(**dir2, c));
  ASSERT_FALSE(no_bias.ok());
  EXPECT_EQ(no_bias.status().code(), StatusCode::kNotFound);
  EXPECT_NE(no_bias.status().message().find("model.layers.1.memory.gate.bias"), std::string::npos);
}

}  // namespace
}  // namespace memoria
