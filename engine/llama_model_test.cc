#include "engine/llama_model.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "base/testing.h"
#include "engine/llama_generator.h"
#include "engine/safetensors.h"

namespace memoria {
namespace {

struct TinyLlama {
  int d = 32, ff = 48, layers = 2, heads = 4, kv_heads = 2, vocab = 50, max_pos = 64;
  bool tied = false;
};

// Writes a seeded random LLaMA in the HF layout; returns the directory.
std::string WriteTinyLlama(const TinyLlama& t, const std::string& extra_config = "") {
  std::string dir = testing::MakeTempDir("memoria-llama");
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<std::vector<float>> storage;
  std::vector<TensorToWrite> tensors;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset) {
    int64_t n = 1;
    for (auto s : shape) n *= s;
    storage.emplace_back(n);
    for (auto& v : storage.back()) v = offset + scale * normal(rng);
    tensors.push_back({name, DType::kF32, shape, nullptr});
  };
  const int hd = t.d / t.heads;
  add("model.embed_tokens.weight", {t.vocab, t.d}, 1.0f, 0.0f);
  for (int i = 0; i < t.layers; ++i) {
    std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "self_attn.q_proj.weight", {t.heads * hd, t.d}, 0.3f, 0.0f);
    add(p + "self_attn.k_proj.weight", {t.kv_heads * hd, t.d}, 0.3f, 0.0f);
    add(p + "self_attn.v_proj.weight", {t.kv_heads * hd, t.d}, 0.2f, 0.0f);
    add(p + "self_attn.o_proj.weight", {t.d, t.heads * hd}, 0.2f, 0.0f);
    add(p + "mlp.gate_proj.weight", {t.ff, t.d}, 0.2f, 0.0f);
    add(p + "mlp.up_proj.weight", {t.ff, t.d}, 0.2f, 0.0f);
    add(p + "mlp.down_proj.weight", {t.d, t.ff}, 0.2f, 0.0f);
    add(p + "input_layernorm.weight", {t.d}, 0.1f, 1.0f);
    add(p + "post_attention_layernorm.weight", {t.d}, 0.1f, 1.0f);
  }
  add("model.norm.weight", {t.d}, 0.1f, 1.0f);
  if (!t.tied) add("lm_head.weight", {t.vocab, t.d}, 0.3f, 0.0f);
  for (size_t i = 0; i < tensors.size(); ++i) tensors[i].data = storage[i].data();
  EXPECT_TRUE(WriteSafetensors(dir + "/model.safetensors", tensors).ok());
  std::ofstream(dir + "/config.json")
      << "{\"hidden_size\": " << t.d << ", \"intermediate_size\": " << t.ff
      << ", \"num_hidden_layers\": " << t.layers << ", \"num_attention_heads\": " << t.heads
      << ", \"num_key_value_heads\": " << t.kv_heads << ", \"vocab_size\": " << t.vocab
      << ", \"max_position_embeddings\": " << t.max_pos << ", \"rms_norm_eps\": 1e-5"
      << ", \"rope_theta\": 10000.0, \"tie_word_embeddings\": " << (t.tied ? "true" : "false")
      << ", \"rope_scaling\": null" << extra_config << "}";
  return dir;
}

std::vector<int> Ids(int n, int vocab, int seed) {
  std::mt19937 rng(seed);
  std::vector<int> ids(n);
  for (auto& id : ids) id = static_cast<int>(rng() % vocab);
  return ids;
}

TEST(LlamaModelTest, ChunkedPrefillAndIncrementalDecodeMatchOneFullPass) {
  TinyLlama t;
  auto model = LlamaModel::Load(WriteTinyLlama(t));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  ThreadPool pool(2);
  const int n = 40;
  std::vector<int> ids = Ids(n, t.vocab, 1);

  LlamaSession full(*model, &pool, /*prefill_chunk=*/512);
  std::vector<float> ref(n * t.vocab);
  ASSERT_TRUE(full.Forward(ids, n, ref.data()).ok());
  EXPECT_EQ(full.length(), n);

  // Chunks of 7 tokens, every row's logits.
  LlamaSession chunked(*model, &pool, /*prefill_chunk=*/7);
  std::vector<float> got(n * t.vocab);
  ASSERT_TRUE(chunked.Forward(ids, n, got.data()).ok());
  EXPECT_LT(testing::MaxAbsDiff(got.data(), ref.data(), n * t.vocab), 1e-5);

  // Prefill 25 tokens, then one token at a time.
  LlamaSession inc(*model, &pool);
  std::vector<float> row(t.vocab);
  ASSERT_TRUE(inc.Forward(ids.data(), 25, 1, row.data()).ok());
  EXPECT_LT(testing::MaxAbsDiff(row.data(), &ref[24 * t.vocab], t.vocab), 1e-5);
  for (int i = 25; i < n; ++i) {
    ASSERT_TRUE(inc.Forward(&ids[i], 1, 1, row.data()).ok());
    EXPECT_LT(testing::MaxAbsDiff(row.data(), &ref[i * t.vocab], t.vocab), 1e-5) << "position " << i;
  }
}

TEST(LlamaModelTest, TiedHeadUsesTheEmbedding) {
  TinyLlama t;
  t.tied = true;
  auto model = LlamaModel::Load(WriteTinyLlama(t));
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_TRUE((*model)->config().tie_word_embeddings);
  ThreadPool pool(1);
  LlamaSession s(*model, &pool);
  std::vector<float> logits(t.vocab);
  ASSERT_TRUE(s.Forward(Ids(5, t.vocab, 2), 1, logits.data()).ok());
}

TEST(LlamaModelTest, BadRequestsAreRejectedAndLeaveTheSessionUnchanged) {
  TinyLlama t;
  auto model = LlamaModel::Load(WriteTinyLlama(t));
  ASSERT_TRUE(model.ok());
  ThreadPool pool(1);
  LlamaSession s(*model, &pool);
  std::vector<float> logits(t.vocab);
  ASSERT_TRUE(s.Forward(Ids(10, t.vocab, 3), 1, logits.data()).ok());

  std::vector<int> bad = {1, 2, t.vocab};
  Status st = s.Forward(bad, 1, logits.data());
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find(std::to_string(t.vocab)), std::string::npos) << st.message();
  EXPECT_EQ(s.Forward(std::vector<int>{-1}, 1, logits.data()).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(s.Forward(nullptr, 0, 0, nullptr).code(), StatusCode::kInvalidArgument);

  Status too_long = s.Forward(Ids(t.max_pos, t.vocab, 4), 1, logits.data());
  EXPECT_EQ(too_long.code(), StatusCode::kOutOfRange);
  EXPECT_NE(too_long.message().find("64"), std::string::npos) << too_long.message();
  EXPECT_EQ(s.length(), 10);
}

TEST(LlamaModelTest, ConfigAndWeightErrorsAreClear) {
  TinyLlama t;
  t.kv_heads = 3;  // 4 heads is not a multiple of 3
  auto bad_heads = LlamaModel::Load(WriteTinyLlama(t));
  ASSERT_FALSE(bad_heads.ok());
  EXPECT_EQ(bad_heads.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad_heads.status().message().find("num_key_value_heads 3"), std::string::npos)
      << bad_heads.status().message();

  TinyLlama ok;
  auto scaled = LlamaModel::Load(WriteTinyLlama(ok, ", \"hidden_act\": \"gelu\""));
  EXPECT_EQ(scaled.status().code(), StatusCode::kUnimplemented);

  // Untied config without lm_head.weight.
  TinyLlama tied = ok;
  tied.tied = true;
  std::string dir = WriteTinyLlama(tied);
  std::string text;
  {
    std::ifstream in(dir + "/config.json");
    std::getline(in, text, '\0');
  }
  text.replace(text.find("\"tie_word_embeddings\": true"), 27, "\"tie_word_embeddings\": false");
  std::ofstream(dir + "/config.json") << text;
  auto missing = LlamaModel::Load(dir);
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("lm_head.weight"), std::string::npos);

  // Config says d 32 but the tensors say otherwise.
  std::string dir2 = WriteTinyLlama(ok);
  std::ofstream(dir2 + "/config.json")
      << "{\"hidden_size\": 16, \"intermediate_size\": 48, \"num_hidden_layers\": 2,"
         " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"vocab_size\": 50}";
  auto shape = LlamaModel::Load(dir2);
  EXPECT_EQ(shape.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(shape.status().message().find("[50, 16]"), std::string::npos) << shape.status().message();
}

TEST(LlamaGeneratorTest, StopsAtMaxTokensEosAndCancellation) {
  TinyLlama t;
  std::string dir = WriteTinyLlama(t);
  auto model = LlamaModel::Load(dir);
  ASSERT_TRUE(model.ok());
  ThreadPool pool(2);
  std::vector<int> prompt = Ids(6, t.vocab, 8);

  CompletionOptions opt;
  opt.max_new_tokens = 12;
  opt.stop_at_eos = false;
  LlamaSession s1(*model, &pool);
  auto r1 = Generate(s1, nullptr, prompt, opt);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  EXPECT_EQ(r1->output_ids.size(), 12u);
  EXPECT_EQ(r1->stop_reason, StopReason::kMaxTokens);
  EXPECT_EQ(r1->prompt_tokens, 6);
  // Attention time is measured inside prefill + decode, and Reset starts the count again.
  EXPECT_GT(r1->attention_seconds, 0.0);
  EXPECT_LE(r1->attention_seconds, r1->prefill_seconds + r1->decode_seconds);
  EXPECT_DOUBLE_EQ(s1.attention_seconds(), r1->attention_seconds);
  s1.Reset();
  EXPECT_EQ(s1.attention_seconds(), 0.0);

  // Greedy output matches argmax of a full recompute at every step.
  std::vector<int> seq = prompt;
  for (int id : r1->output_ids) {
    LlamaSession fresh(*model, &pool);
    std::vector<float> logits(t.vocab);
    ASSERT_TRUE(fresh.Forward(seq, 1, logits.data()).ok());
    EXPECT_EQ(Argmax(logits.data(), t.vocab), id);
    seq.push_back(id);
  }

  // Make the 4th greedy token an EOS id: generation stops before emitting it.
  std::string text;
  {
    std::ifstream in(dir + "/config.json");
    std::getline(in, text, '\0');
  }
  text.pop_back();
  text += ", \"eos_token_id\": [" + std::to_string(r1->output_ids[3]) + "]}";
  std::ofstream(dir + "/config.json") << text;
  auto eos_model = LlamaModel::Load(dir);
  ASSERT_TRUE(eos_model.ok()) << eos_model.status().ToString();
  opt.stop_at_eos = true;
  LlamaSession s2(*eos_model, &pool);
  auto r2 = Generate(s2, nullptr, prompt, opt);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->stop_reason, StopReason::kEos);
  // The EOS id may occur earlier in the greedy sequence; the output stops at its first occurrence.
  const auto first = std::find(r1->output_ids.begin(), r1->output_ids.end(), r1->output_ids[3]);
  EXPECT_EQ(r2->output_ids, std::vector<int>(r1->output_ids.begin(), first));

  // A callback that refuses the third token cancels.
  LlamaSession s3(*model, &pool);
  int calls = 0;
  opt.stop_at_eos = false;
  auto r3 = Generate(s3, nullptr, prompt, opt, [&](int, const std::string&) { return ++calls < 3; });
  ASSERT_TRUE(r3.ok());
  EXPECT_EQ(r3->stop_reason, StopReason::kCancelled);
  EXPECT_EQ(calls, 3);

  // Context full: max_position_embeddings 64.
  LlamaSession s4(*model, &pool);
  opt.max_new_tokens = 1000;
  auto r4 = Generate(s4, nullptr, Ids(60, t.vocab, 9), opt);
  ASSERT_TRUE(r4.ok());
  EXPECT_EQ(r4->stop_reason, StopReason::kContextFull);
  EXPECT_EQ(s4.length(), 64);

  // Bad options.
  LlamaSession s5(*model, &pool);
  opt.max_new_tokens = 0;
  EXPECT_EQ(Generate(s5, nullptr, prompt, opt).status().code(), StatusCode::kInvalidArgument);
  opt.max_new_tokens = 5;
  EXPECT_EQ(Generate(s5, nullptr, {}, opt).status().code(), StatusCode::kInvalidArgument);
  opt.sampling.top_p = 2.0f;
  EXPECT_EQ(Generate(s5, nullptr, prompt, opt).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace memoria
