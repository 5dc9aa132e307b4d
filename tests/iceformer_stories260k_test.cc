// IceFormer on a real model: stories260K (../shared/models/stories260K, converted by the
// llama2c converter) over 512-token WikiText-2 prompts (its trained length), queries/keys/values
// captured per layer through LlamaAttentionObserver.
//   - k-NN recall of the true top-k keys (by q.k over each query's visible keys) on the real keys,
//     against brute force, at a search budget that is far from exhaustive.
//   - Per-layer relative L2 error of the IceFormer output vs exact attention on the real
//     q/k/v, split into the part the top-k truncation causes (exhaustive search, same k) and
//     the part the search adds.
//   - The model with IceFormer in its upper half vs the exact model: next-token (argmax)
//     agreement and mean KL(exact || iceformer) of the next-token distributions.
//   - IceFormer stays off by default, and the per-layer switch selects exactly the asked layers.
// The model has head_dim 8, 8 query / 4 KV heads and 5 layers; prompts are BOS + 511 tokens.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine/llama_model.h"
#include "engine/tokenizer.h"
#include "kernels/attention.h"
#include "kernels/iceformer_attention.h"
#include "tests/test_helpers.h"
#include "tools/llama2c_converter.h"

namespace memoria {
namespace {

constexpr int64_t kPromptLen = 512;
constexpr int kNumPrompts = 4;

// The IceFormer settings of these tests: the default structure of the search (kScan: m = 6,
// L = 1; kWalk: m = 2, L = 1, 80 k visits; both 24 norm bands of ratio 0.97, the first 4 keys
// always scored)
// and exact attention for queries that see <= 64 keys, causal blocks of 32 positions. Both get
// 8 k candidates: at most candidates_per_k * k * L = 240 of the <= 512 visible keys are admitted
// (plus the 4 first keys and the keys of norm bands that hold <= k keys), so recall is earned by
// the search. (At head_dim 8 the top-30 of a few hundred keys is a loose set: the default 5 k,
// tuned at head_dim 128, gives the scan recall 0.981 here.)
IceformerOptions TestOptions(DciSearch search = DciSearch::kScan) {
  IceformerOptions o;
  o.exact_up_to = 64;
  o.causal_block = 32;
  o.candidates_per_k = 8;
  if (search == DciSearch::kWalk) {
    o.search = DciSearch::kWalk;
    o.num_simple = 2;
    o.visits_per_k = 80;
  }
  return o;
}

// Copies of one layer's attention inputs/outputs for the full-length chunk.
struct Captured {
  AttentionParams p;
  std::vector<float> q, k, v, out;  // q/out: [q_len, q_dim]; k/v: [kv_len, kv_dim]
  bool iceformer = false;
};

class CaptureObserver : public LlamaAttentionObserver {
 public:
  explicit CaptureObserver(int layers) : layers_(layers) {}
  void OnAttention(int layer, const AttentionParams& p, const float* q, int64_t q_stride,
                   const float* k, const float* v, int64_t kv_stride, const float* out,
                   int64_t out_stride, bool iceformer) override {
    Captured& c = layers_[layer];
    c.p = p;
    c.iceformer = iceformer;
    const int64_t qd = int64_t{p.n_heads} * p.head_dim, kd = int64_t{p.n_kv_heads} * p.head_dim;
    c.q.resize(p.q_len * qd);
    c.out.resize(p.q_len * qd);
    c.k.resize(p.kv_len * kd);
    c.v.resize(p.kv_len * kd);
    for (int64_t i = 0; i < p.q_len; ++i) {
      std::copy(q + i * q_stride, q + i * q_stride + qd, &c.q[i * qd]);
      std::copy(out + i * out_stride, out + i * out_stride + qd, &c.out[i * qd]);
    }
    for (int64_t j = 0; j < p.kv_len; ++j) {
      std::copy(k + j * kv_stride, k + j * kv_stride + kd, &c.k[j * kd]);
      std::copy(v + j * kv_stride, v + j * kv_stride + kd, &c.v[j * kd]);
    }
  }
  std::vector<Captured> layers_;
};

double RelL2(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double{a[i]} - ref[i]) * (double{a[i]} - ref[i]);
    den += double{ref[i]} * ref[i];
  }
  return std::sqrt(num / den);
}

class IceformerStories260KTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::SharedDirAvailable()) return;
    dir_ = new std::string(testing::MakeTempDir("memoria-ice-stories260k"));
    convert_status_ = new Status(
        ConvertLlama2c(testing::SharedPath("models/stories260K/stories260K.bin"),
                       testing::SharedPath("models/stories260K/tok512.bin"), *dir_));
    prompts_ = new std::vector<std::vector<int>>();
    if (!convert_status_->ok()) return;
    auto tokenizer = Tokenizer::Open(*dir_ + "/tokenizer.model");
    if (!tokenizer.ok()) return;
    std::ifstream in(testing::SharedPath("data/longtext/wikitext2_test.txt"));
    std::stringstream ss;
    ss << in.rdbuf();
    const std::string text = ss.str();
    // Four windows from far-apart parts of the file (different articles).
    for (int i = 0; i < kNumPrompts && text.size() > 20000; ++i) {
      const size_t at = text.size() / kNumPrompts * i;
      std::vector<int> ids = (*tokenizer)->Encode(text.substr(at, 12000), /*add_bos=*/false, false);
      if (static_cast<int64_t>(ids.size()) < kPromptLen - 1) continue;
      ids.resize(kPromptLen - 1);
      ids.insert(ids.begin(), 1);  // BOS, as in training
      prompts_->push_back(std::move(ids));
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    delete convert_status_;
    delete prompts_;
  }

  // Runs prompt `index` through a session of `model`, capturing every layer; logits of all
  // positions into *logits ([512, vocab]) when not null.
  static std::vector<Captured> Run(const std::shared_ptr<const LlamaModel>& model, int index,
                                   std::vector<float>* logits) {
    ThreadPool pool(2);
    LlamaSession session(model, &pool, kPromptLen);
    CaptureObserver observer(model->config().num_layers);
    session.set_attention_observer(&observer);
    std::vector<float> local;
    std::vector<float>* out = logits != nullptr ? logits : &local;
    out->assign(kPromptLen * model->config().vocab_size, 0.0f);
    Status st = session.Forward((*prompts_)[index], kPromptLen, out->data());
    EXPECT_TRUE(st.ok()) << st.ToString();
    return std::move(observer.layers_);
  }

  static std::string* dir_;
  static Status* convert_status_;
  static std::vector<std::vector<int>>* prompts_;
};
std::string* IceformerStories260KTest::dir_ = nullptr;
Status* IceformerStories260KTest::convert_status_ = nullptr;
std::vector<std::vector<int>>* IceformerStories260KTest::prompts_ = nullptr;

#define REQUIRE_MODEL_AND_PROMPTS()                                   \
  MEMORIA_REQUIRE_SHARED();                                           \
  ASSERT_TRUE(convert_status_->ok()) << convert_status_->ToString(); \
  ASSERT_EQ(static_cast<int>(prompts_->size()), kNumPrompts)

TEST_F(IceformerStories260KTest, RecallOfTrueTopKOnRealKeys) {
  REQUIRE_MODEL_AND_PROMPTS();
  auto model = LlamaModel::Load(*dir_);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ThreadPool pool(2);
  for (const DciSearch search : {DciSearch::kScan, DciSearch::kWalk}) {
    const bool scan = search == DciSearch::kScan;
    const IceformerOptions o = TestOptions(search);
    const int64_t k = IceformerTopK(o, kPromptLen);
    ASSERT_EQ(k, 30);
    // The budget is well below an exhaustive scan (see TestOptions).
    ASSERT_LT(int64_t{o.candidates_per_k} * k * o.num_composite, kPromptLen / 2);
    int64_t hits_all = 0, total_all = 0;
    for (int prompt = 0; prompt < kNumPrompts; ++prompt) {
      const std::vector<Captured> layers = Run(*model, prompt, nullptr);
      for (size_t li = 0; li < layers.size(); ++li) {
        const Captured& c = layers[li];
        ASSERT_EQ(c.p.kv_len, kPromptLen);
        ASSERT_FALSE(c.iceformer);  // default options: exact everywhere
        const int d = c.p.head_dim, group = c.p.n_heads / c.p.n_kv_heads;
        const int64_t qd = int64_t{c.p.n_heads} * d, kd = int64_t{c.p.n_kv_heads} * d;
        std::vector<float> out(c.out.size());
        IceformerTrace trace;
        IceformerAttention(pool, c.p, o, c.q.data(), qd, c.k.data(), kd, c.v.data(), kd,
                           out.data(), qd, &trace);
        ASSERT_EQ(trace.k, k);
        int64_t hits = 0, total = 0;
        std::vector<std::pair<float, int32_t>> all;
        for (int h = 0; h < c.p.n_heads; ++h) {
          const int g = h / group;
          for (int64_t i = 0; i < c.p.q_len; ++i) {
            const int32_t* got = &trace.ids[(h * c.p.q_len + i) * k];
            const int64_t limit = i + 1;
            if (limit <= o.exact_up_to) {
              EXPECT_EQ(got[0], -1);  // computed exactly, not searched
              continue;
            }
            all.resize(limit);
            for (int64_t j = 0; j < limit; ++j) {
              float s = 0.0f;
              for (int t = 0; t < d; ++t) s += c.q[i * qd + h * d + t] * c.k[j * kd + g * d + t];
              all[j] = {-s, static_cast<int32_t>(j)};
            }
            std::nth_element(all.begin(), all.begin() + (k - 1), all.end());
            // Hits = returned keys scoring at least the true k-th score (a returned key that ties
            // the k-th true score is as good as the true one).
            const float kth = -all[k - 1].first;
            for (int64_t r = 0; r < k; ++r) {
              if (got[r] < 0) continue;
              const float* key = &c.k[got[r] * kd + g * d];
              float s = 0.0f;
              for (int t = 0; t < d; ++t) s += c.q[i * qd + h * d + t] * key[t];
              hits += s >= kth;
            }
            total += k;
          }
        }
        const char* name = scan ? "scan" : "walk";
        std::printf("%s, prompt %d layer %zu: recall@%ld %.4f over %ld keys\n", name, prompt, li,
                    static_cast<long>(k), static_cast<double>(hits) / total,
                    static_cast<long>(total));
        // Measured: scan 0.988 .. 1.000, walk 0.995 .. 1.000.
        EXPECT_GE(static_cast<double>(hits) / total, 0.98)
            << name << ", prompt " << prompt << " layer " << li;
        hits_all += hits;
        total_all += total;
      }
    }
    const double recall = static_cast<double>(hits_all) / total_all;
    std::printf("%s: overall recall@%ld on stories260K keys: %.4f (%ld keys)\n",
                scan ? "scan" : "walk", static_cast<long>(k), recall,
                static_cast<long>(total_all));
    // Measured: scan 0.9983, walk 0.9989 (the target: >= 0.99). With the former 16 norm
    // bands of ratio 0.95: 0.9786 and 0.9876.
    EXPECT_GE(recall, 0.99);
  }
}

TEST_F(IceformerStories260KTest, PerLayerRelativeErrorOnRealKeys) {
  REQUIRE_MODEL_AND_PROMPTS();
  auto model = LlamaModel::Load(*dir_);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const IceformerOptions o = TestOptions();
  IceformerOptions exhaustive = o;  // same k, every visible key scored: truncation error only
  exhaustive.candidates_per_k = 1000;
  exhaustive.visits_per_k = 1000;
  ThreadPool pool(2);
  const int num_layers = (*model)->config().num_layers;
  std::vector<double> err(num_layers, 0.0), trunc(num_layers, 0.0);
  for (int prompt = 0; prompt < kNumPrompts; ++prompt) {
    const std::vector<Captured> layers = Run(*model, prompt, nullptr);
    for (int li = 0; li < num_layers; ++li) {
      const Captured& c = layers[li];
      const int64_t qd = int64_t{c.p.n_heads} * c.p.head_dim,
                    kd = int64_t{c.p.n_kv_heads} * c.p.head_dim;
      std::vector<float> exact(c.out.size()), ice(c.out.size()), top(c.out.size());
      AttentionReference(c.p, c.q.data(), qd, c.k.data(), kd, c.v.data(), kd, exact.data(), qd);
      // The engine's output is the exact kernel's (IceFormer is off by default).
      ASSERT_LT(RelL2(c.out, exact), 1e-5);
      IceformerAttention(pool, c.p, o, c.q.data(), qd, c.k.data(), kd, c.v.data(), kd, ice.data(),
                         qd);
      IceformerAttention(pool, c.p, exhaustive, c.q.data(), qd, c.k.data(), kd, c.v.data(), kd,
                         top.data(), qd);
      err[li] += RelL2(ice, exact) / kNumPrompts;
      trunc[li] += RelL2(top, exact) / kNumPrompts;
    }
  }
  for (int li = 0; li < num_layers; ++li) {
    std::printf("layer %d: rel L2 vs exact %.4f (top-k truncation alone %.4f)\n", li, err[li],
                trunc[li]);
    // Measured (mean of the 4 prompts, the scan): search + truncation 0.091 / 0.035 / 0.075 /
    // 0.043 / 0.156, truncation alone 0.090 / 0.024 / 0.072 / 0.043 / 0.156: the search adds at
    // most 0.011 to what the top-k truncation costs.
    EXPECT_GT(err[li], 0.0) << "layer " << li;  // the truncation drops mass: never exact
    EXPECT_LT(err[li], trunc[li] + 0.03) << "layer " << li;
    EXPECT_LT(err[li], 0.2) << "layer " << li;
  }
}

TEST_F(IceformerStories260KTest, UpperHalfIceformerAgreesWithExactModel) {
  REQUIRE_MODEL_AND_PROMPTS();
  auto exact_model = LlamaModel::Load(*dir_);
  ASSERT_TRUE(exact_model.ok()) << exact_model.status().ToString();
  LlamaLoadOptions lo;
  lo.iceformer.enabled = true;
  lo.iceformer.min_kv_len = 256;
  lo.iceformer.attention = TestOptions();
  auto ice_model = LlamaModel::Load(*dir_, lo);
  ASSERT_TRUE(ice_model.ok()) << ice_model.status().ToString();
  const int64_t vocab = (*exact_model)->config().vocab_size;
  const int num_layers = (*exact_model)->config().num_layers;
  ASSERT_EQ(num_layers, 5);

  int64_t agree = 0, positions = 0;
  double kl_sum = 0.0, kl_max = 0.0;
  for (int prompt = 0; prompt < kNumPrompts; ++prompt) {
    std::vector<float> le, li;
    Run(*exact_model, prompt, &le);
    const std::vector<Captured> layers = Run(*ice_model, prompt, &li);
    for (int l = 0; l < num_layers; ++l) {
      EXPECT_EQ(layers[l].iceformer, l >= 2) << "layer " << l;  // default: upper half = 2, 3, 4
    }
    // Positions whose queries were searched (the first exact_up_to are exact in every layer).
    for (int64_t t = lo.iceformer.attention.exact_up_to; t < kPromptLen; ++t) {
      const float* a = &le[t * vocab];
      const float* b = &li[t * vocab];
      agree += std::max_element(a, a + vocab) - a == std::max_element(b, b + vocab) - b;
      const double ma = *std::max_element(a, a + vocab), mb = *std::max_element(b, b + vocab);
      double za = 0.0, zb = 0.0;
      for (int64_t v = 0; v < vocab; ++v) {
        za += std::exp(a[v] - ma);
        zb += std::exp(b[v] - mb);
      }
      double kl = 0.0;
      for (int64_t v = 0; v < vocab; ++v) {
        const double la = a[v] - ma - std::log(za), lb = b[v] - mb - std::log(zb);
        kl += std::exp(la) * (la - lb);
      }
      kl_sum += kl;
      kl_max = std::max(kl_max, kl);
      ++positions;
    }
  }
  const double agreement = static_cast<double>(agree) / positions, mean_kl = kl_sum / positions;
  std::printf("stories260K, IceFormer in layers 2-4, %d WikiText-2 prompts of 512 tokens, %ld "
              "positions: next-token agreement %.4f, mean KL %.5f nats, max KL %.4f\n",
              kNumPrompts, static_cast<long>(positions), agreement, mean_kl, kl_max);
  // Measured: agreement 0.9241, mean KL 0.0100 nats (max 0.38).
  EXPECT_GE(agreement, 0.9);
  EXPECT_LT(mean_kl, 0.02);
}

TEST_F(IceformerStories260KTest, LayerSelectionAndErrors) {
  REQUIRE_MODEL_AND_PROMPTS();
  LlamaLoadOptions lo;
  lo.iceformer.enabled = true;
  lo.iceformer.min_kv_len = 300;
  lo.iceformer.layers = {0, 3};
  lo.iceformer.attention = TestOptions();
  auto model = LlamaModel::Load(*dir_, lo);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const std::vector<Captured> layers = Run(*model, 0, nullptr);
  for (int l = 0; l < 5; ++l) EXPECT_EQ(layers[l].iceformer, l == 0 || l == 3) << "layer " << l;
  // Length threshold and decode steps: exact.
  EXPECT_FALSE((*model)->UsesIceformer(0, 200, 299));
  EXPECT_TRUE((*model)->UsesIceformer(0, 200, 300));
  EXPECT_FALSE((*model)->UsesIceformer(0, 1, 400));
  EXPECT_FALSE((*model)->UsesIceformer(1, 200, 400));

  lo.iceformer.layers = {5};
  auto bad = LlamaModel::Load(*dir_, lo);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().ToString().find("IceFormer layer 5 outside [0, 5)"), std::string::npos)
      << bad.status().ToString();
}

}  // namespace
}  // namespace memoria
