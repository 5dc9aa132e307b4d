#include "engine/lumen.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <random>
#include <string>

#include "base/testing.h"

namespace memoria {
namespace {

T5Config TestConfig() {
  T5Config c;
  c.vocab_size = 300;
  c.d_model = 32;
  c.d_kv = 8;
  c.num_heads = 4;
  c.d_ff = 48;
  c.num_layers = 6;  // alpha 1/3 -> 4 memory + 2 live layers
  c.num_decoder_layers = 2;
  c.relative_attention_max_distance = 32;
  c.gated_ffn = true;
  c.ffn_activation = Activation::kGeluTanh;
  c.tie_word_embeddings = false;
  return c;
}

std::vector<int> RandomIds(std::mt19937* rng, int n, int vocab, int eos) {
  std::uniform_int_distribution<int> dist(2, vocab - 1);
  std::vector<int> ids(n);
  for (auto& id : ids) id = dist(*rng);
  ids.back() = eos;
  return ids;
}

// Teacher-forced decoder logits over an encoder output [enc_len, d].
std::vector<float> DecoderLogits(const T5Model& model, const ThreadPool& pool,
                                 const std::vector<float>& enc, const std::vector<int>& dec) {
  const int64_t n = dec.size(), V = model.config().vocab_size;
  const int64_t enc_len = static_cast<int64_t>(enc.size()) / model.config().d_model;
  T5DecoderState state;
  EXPECT_TRUE(model.StartDecoder(pool, enc.data(), enc_len, 1, n, n, &state).ok());
  std::vector<float> logits(n * V);
  EXPECT_TRUE(model.DecoderStep(pool, dec.data(), n, true, &state, logits.data()).ok());
  return logits;
}

class LumenTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto model = T5Model::CreateRandom(TestConfig(), 11);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    model_ = *model;
    std::mt19937 rng(3);
    question_ = RandomIds(&rng, 9, 300, 250);  // no EOS in the question part
    for (int len : {17, 40, 5, 33}) passages_.push_back(RandomIds(&rng, len, 300, 1));
  }
  std::shared_ptr<const T5Model> model_;
  std::vector<int> question_;
  std::vector<std::vector<int>> passages_;
  std::vector<int> answer_prefix_ = {0, 17, 4, 99, 23, 8};
  ThreadPool pool_{2};
};

TEST_F(LumenTest, StoredMemoryGivesTheSameLogitsAsLiveMemoryEncoding) {
  auto lumen = LumenModel::Create(model_, LumenOptions{});
  ASSERT_TRUE(lumen.ok());
  ASSERT_EQ((*lumen)->memory_layers(), 4);
  ASSERT_EQ((*lumen)->live_layers(), 2);
  const int64_t d = TestConfig().d_model;

  // Offline: memory-encode the passages in one batch, keep the vectors (f32 blobs).
  std::vector<std::vector<float>> memory;
  ASSERT_TRUE((*lumen)->MemoryEncode(pool_, passages_, &memory).ok());
  std::vector<EncodedMemory> blobs;
  for (const auto& m : memory) {
    blobs.push_back({reinterpret_cast<const uint8_t*>(m.data()), m.size() * sizeof(float),
                     static_cast<int64_t>(m.size()) / d});
  }
  LiveEncoding stored;
  ASSERT_TRUE(
      (*lumen)->LiveEncode(pool_, question_, blobs, RawMemoryDecoder(DType::kF32), &stored).ok());

  // Live reference, one passage at a time with no batching: [MemEnc(Q); MemEnc(P_i)] -> LiveEnc.
  std::vector<float> live;
  const int M = 4, L = 6;
  for (const auto& p : passages_) {
    std::vector<float> q(question_.size() * d), m(p.size() * d);
    T5EncoderScratch s;
    ASSERT_TRUE(model_->Embed(question_.data(), question_.size(), q.data()).ok());
    ASSERT_TRUE(model_->Embed(p.data(), p.size(), m.data()).ok());
    model_->EncoderLayers(pool_, 0, M, {0, int64_t(question_.size())}, q.data(), &s);
    model_->EncoderLayers(pool_, 0, M, {0, int64_t(p.size())}, m.data(), &s);
    q.insert(q.end(), m.begin(), m.end());
    const int64_t n = q.size() / d;
    model_->EncoderLayers(pool_, M, L, {0, n}, q.data(), &s);
    model_->EncoderFinalNorm(pool_, q.data(), n);
    live.insert(live.end(), q.begin(), q.end());
  }
  ASSERT_EQ(live.size(), stored.h.size());
  EXPECT_LE(testing::MaxAbsDiff(stored.h.data(), live.data(), live.size()), 1e-4);
  auto a = DecoderLogits(*model_, pool_, stored.h, answer_prefix_);
  auto b = DecoderLogits(*model_, pool_, live, answer_prefix_);
  EXPECT_LE(testing::MaxAbsDiff(a.data(), b.data(), a.size()), 1e-4);

  // bf16 storage (the uncompressed baseline codec at half the bytes): close, not exact.
  std::vector<std::vector<uint16_t>> bf16(memory.size());
  std::vector<MemoryVectors> views;
  for (size_t i = 0; i < memory.size(); ++i) {
    bf16[i].resize(memory[i].size());
    ConvertF32ToBf16(memory[i].data(), bf16[i].data(), memory[i].size());
    views.push_back({DType::kBF16, bf16[i].data(), int64_t(memory[i].size()) / d, d});
  }
  LiveEncoding from_bf16;
  ASSERT_TRUE((*lumen)->LiveEncode(pool_, question_, views, &from_bf16).ok());
  auto c = DecoderLogits(*model_, pool_, from_bf16.h, answer_prefix_);
  const float bf16_err = testing::MaxAbsDiff(a.data(), c.data(), a.size());
  EXPECT_GT(bf16_err, 0.0f);
  EXPECT_LE(bf16_err, 0.1f);
  std::printf("LUMEN bf16 memory: max abs logit change %.3g\n", bf16_err);
}

TEST_F(LumenTest, AlphaOneIsExactlyFusionInDecoder) {
  auto lumen = LumenModel::Create(model_, LumenOptions{1.0});
  ASSERT_TRUE(lumen.ok());
  EXPECT_EQ((*lumen)->memory_layers(), 0);
  std::vector<std::vector<float>> memory;
  ASSERT_TRUE((*lumen)->MemoryEncode(pool_, passages_, &memory).ok());
  std::vector<MemoryVectors> views;
  for (const auto& m : memory) {
    views.push_back(
        {DType::kF32, m.data(), int64_t(m.size()) / TestConfig().d_model, TestConfig().d_model});
  }
  LiveEncoding lumen_enc, fid_enc;
  ASSERT_TRUE((*lumen)->LiveEncode(pool_, question_, views, &lumen_enc).ok());
  ASSERT_TRUE((*lumen)->FidEncode(pool_, question_, passages_, &fid_enc).ok());
  EXPECT_EQ(lumen_enc.offsets, fid_enc.offsets);
  ASSERT_EQ(lumen_enc.h.size(), fid_enc.h.size());
  EXPECT_EQ(testing::MaxAbsDiff(lumen_enc.h.data(), fid_enc.h.data(), fid_enc.h.size()), 0.0f);

  // FiD against the plain full encoder on each "question + passage" input.
  const int64_t d = TestConfig().d_model;
  for (size_t i = 0; i < passages_.size(); ++i) {
    std::vector<int> ids = question_;
    ids.insert(ids.end(), passages_[i].begin(), passages_[i].end());
    auto enc = model_->Encode(pool_, ids);
    ASSERT_TRUE(enc.ok());
    EXPECT_LE(
        testing::MaxAbsDiff(enc->data(), fid_enc.h.data() + fid_enc.offsets[i] * d, enc->size()),
        1e-5);
  }

  // The same answer end to end (greedy and beam).
  for (int beams : {1, 3}) {
    T5GenerationOptions o;
    o.max_new_tokens = 8;
    o.num_beams = beams;
    auto ans = (*lumen)->Answer(pool_, question_, views, o);
    ASSERT_TRUE(ans.ok()) << ans.status().ToString();
    T5DecoderState state;
    auto fid = T5Generate(*model_, pool_, fid_enc.h.data(), fid_enc.offsets.back(), o, &state);
    ASSERT_TRUE(fid.ok());
    EXPECT_EQ(ans->tokens, fid->tokens);
    EXPECT_EQ(ans->score, fid->score);
  }
}

TEST_F(LumenTest, RejectsBadInputs) {
  EXPECT_EQ(LumenModel::Create(model_, LumenOptions{1.5}).status().code(),
            StatusCode::kInvalidArgument);
  auto lumen = LumenModel::Create(model_, LumenOptions{});
  ASSERT_TRUE(lumen.ok());
  std::vector<float> m(5 * 32, 0.5f);
  LiveEncoding out;
  std::vector<MemoryVectors> wrong_d = {{DType::kF32, m.data(), 5, 16}};
  EXPECT_EQ((*lumen)->LiveEncode(pool_, question_, wrong_d, &out).code(),
            StatusCode::kInvalidArgument);
  std::vector<MemoryVectors> ok = {{DType::kF32, m.data(), 5, 32}};
  EXPECT_EQ((*lumen)->LiveEncode(pool_, {}, ok, &out).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ((*lumen)->LiveEncode(pool_, question_, std::vector<MemoryVectors>{}, &out).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE((*lumen)->LiveEncode(pool_, question_, ok, &out).ok());
  // A blob one byte short is DATA_LOSS from the codec, with the passage index as context.
  std::vector<EncodedMemory> blobs = {
      {reinterpret_cast<const uint8_t*>(m.data()), m.size() * 4, 5},
      {reinterpret_cast<const uint8_t*>(m.data()), m.size() * 4 - 1, 5}};
  Status s = (*lumen)->LiveEncode(pool_, question_, blobs, RawMemoryDecoder(DType::kF32), &out);
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("passage 1"), std::string::npos) << s.message();
  std::vector<std::vector<int>> bad_passage = {{1, 2, 300}};
  std::vector<std::vector<float>> mem;
  EXPECT_EQ((*lumen)->MemoryEncode(pool_, bad_passage, &mem).code(), StatusCode::kInvalidArgument);
}

// Peak resident set (VmHWM) in bytes.
int64_t PeakRssBytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  }
  return -1;
}

TEST(LumenMemoryTest, TwentyPassagesOf200TokensWithinMemoryBound) {
  T5Config c = TestConfig();
  c.vocab_size = 1000;
  c.d_model = 64;
  c.d_kv = 16;
  c.num_heads = 4;
  c.d_ff = 128;
  c.num_layers = 3;
  c.num_decoder_layers = 2;
  c.relative_attention_max_distance = 128;
  auto model = T5Model::CreateRandom(c, 5);
  ASSERT_TRUE(model.ok());
  auto lumen = LumenModel::Create(*model, LumenOptions{});
  ASSERT_TRUE(lumen.ok());
  ThreadPool pool(2);
  std::mt19937 rng(1);
  const int kPassages = 20, kPassageTokens = 200, kQuestionTokens = 20, kNewTokens = 5;
  std::vector<std::vector<int>> passages;
  for (int i = 0; i < kPassages; ++i) passages.push_back(RandomIds(&rng, kPassageTokens, 1000, 1));
  const std::vector<int> question = RandomIds(&rng, kQuestionTokens, 1000, 999);
  std::vector<std::vector<float>> memory;
  ASSERT_TRUE((*lumen)->MemoryEncode(pool, passages, &memory).ok());
  std::vector<MemoryVectors> views;
  for (const auto& m : memory) views.push_back({DType::kF32, m.data(), kPassageTokens, c.d_model});

  // Per-query working set, f32: the live encoder's rows and scratch, and the decoder's cross K/V.
  const int64_t N = kPassages * (kPassageTokens + kQuestionTokens);  // 4400 rows
  const int64_t inner = c.inner_dim();
  const int64_t encoder_bytes = 4 * N * (2 * c.d_model + 4 * inner) + 4 * 512 * 2 * c.d_ff;
  const int64_t cross_bytes = 4 * 2 * c.num_decoder_layers * N * inner;
  const int64_t bound = 2 * (encoder_bytes + cross_bytes) + (16 << 20);  // 2x + 16 MiB slack
  // One head's [N x N] f32 score matrix alone would exceed the bound.
  ASSERT_GT(4 * N * N, bound);

  // Reset the peak-RSS counter (Linux: "5" to clear_refs) so earlier tests do not mask growth.
  { std::ofstream("/proc/self/clear_refs") << "5"; }
  const int64_t before = PeakRssBytes();
  T5GenerationOptions o;
  o.max_new_tokens = kNewTokens;
  o.num_beams = 2;
  auto answer = (*lumen)->Answer(pool, question, views, o);
  ASSERT_TRUE(answer.ok()) << answer.status().ToString();
  EXPECT_FALSE(answer->tokens.empty());
  const int64_t growth = PeakRssBytes() - before;
  std::printf("20 x 200 tokens: peak RSS growth %.1f MiB, bound %.1f MiB\n", growth / 1048576.0,
              bound / 1048576.0);
  EXPECT_LE(growth, bound);
}

// The encoder hook: called once before each encoder layer; its status stops the pass at layer k.
TEST_F(LumenTest, CheckHookStopsTheEncodersAtALayer) {
  auto lumen = LumenModel::Create(model_, LumenOptions{});  // 4 memory + 2 live layers
  ASSERT_TRUE(lumen.ok());
  int calls = 0;
  auto count = [&]() -> Status {
    ++calls;
    return Status::Ok();
  };
  std::vector<std::vector<float>> memory, unchecked;
  ASSERT_TRUE((*lumen)->MemoryEncode(pool_, passages_, &memory, nullptr, count).ok());
  EXPECT_EQ(calls, 4);
  ASSERT_TRUE((*lumen)->MemoryEncode(pool_, passages_, &unchecked).ok());
  EXPECT_EQ(memory, unchecked);  // the hook changes nothing when it lets the pass go on

  std::vector<MemoryVectors> views;
  for (const auto& m : memory) {
    views.push_back({DType::kF32, m.data(), static_cast<int64_t>(m.size()) / 32, 32});
  }
  calls = 0;
  LiveEncoding enc, plain;
  ASSERT_TRUE((*lumen)->LiveEncode(pool_, question_, views, &enc, nullptr, count).ok());
  EXPECT_EQ(calls, 4 + 2);  // MemEnc(Q) then the live layers
  ASSERT_TRUE((*lumen)->LiveEncode(pool_, question_, views, &plain).ok());
  EXPECT_EQ(enc.h, plain.h);

  for (int k : {0, 2, 5}) {
    calls = 0;
    auto stop_at_k = [&]() -> Status {
      return calls++ == k ? DeadlineExceededError("layer " + std::to_string(k)) : Status::Ok();
    };
    Status s = (*lumen)->LiveEncode(pool_, question_, views, &enc, nullptr, stop_at_k);
    EXPECT_EQ(s.code(), StatusCode::kDeadlineExceeded);
    EXPECT_EQ(s.message(), "layer " + std::to_string(k));
    EXPECT_EQ(calls, k + 1);  // no layer ran after the failing check
  }
  calls = 0;
  auto stop_at_1 = [&]() -> Status {
    return calls++ == 1 ? CancelledError("cancelled") : Status::Ok();
  };
  EXPECT_EQ((*lumen)->MemoryEncode(pool_, passages_, &memory, nullptr, stop_at_1).code(),
            StatusCode::kCancelled);
  EXPECT_EQ(calls, 2);
}

// T5Generate's step hook: greedy streams exactly the generated tokens; a failing hook stops it.
TEST_F(LumenTest, GenerationStepHookStreamsGreedyTokensAndStops) {
  auto lumen = LumenModel::Create(model_, LumenOptions{});
  ASSERT_TRUE(lumen.ok());
  std::vector<std::vector<float>> memory;
  ASSERT_TRUE((*lumen)->MemoryEncode(pool_, passages_, &memory).ok());
  std::vector<MemoryVectors> views;
  for (const auto& m : memory) {
    views.push_back({DType::kF32, m.data(), static_cast<int64_t>(m.size()) / 32, 32});
  }
  LiveEncoding enc;
  ASSERT_TRUE((*lumen)->LiveEncode(pool_, question_, views, &enc).ok());
  T5GenerationOptions options;
  options.max_new_tokens = 12;
  options.stop_at_eos = false;
  T5DecoderState state;
  auto expected = T5Generate(*model_, pool_, enc.h.data(), enc.offsets.back(), options, &state);
  ASSERT_TRUE(expected.ok());
  ASSERT_EQ(expected->tokens.size(), 12u);
  EXPECT_GT(state.attention_seconds(), 0);

  std::vector<int> streamed;
  SearchStepHook stream = [&](int, const std::vector<int>& tokens) {
    streamed.insert(streamed.end(), tokens.begin(), tokens.end());
    return Status::Ok();
  };
  auto r = T5Generate(*model_, pool_, enc.h.data(), enc.offsets.back(), options, &state, &stream);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens, expected->tokens);
  EXPECT_EQ(streamed, expected->tokens);

  streamed.clear();
  SearchStepHook stop = [&](int step, const std::vector<int>& tokens) {
    streamed.insert(streamed.end(), tokens.begin(), tokens.end());
    return step == 4 ? DeadlineExceededError("step 4") : Status::Ok();
  };
  auto stopped =
      T5Generate(*model_, pool_, enc.h.data(), enc.offsets.back(), options, &state, &stop);
  EXPECT_EQ(stopped.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_EQ(streamed, std::vector<int>(expected->tokens.begin(), expected->tokens.begin() + 5));
  EXPECT_EQ(state.length(), 5);  // five decoder steps ran, not twelve

  options.num_beams = 3;
  options.stop_at_eos = true;
  int beam_steps = 0;
  SearchStepHook beam_stop = [&](int step, const std::vector<int>& tokens) {
    EXPECT_EQ(tokens.size(), 3u);
    ++beam_steps;
    return step == 2 ? CancelledError("step 2") : Status::Ok();
  };
  auto beam =
      T5Generate(*model_, pool_, enc.h.data(), enc.offsets.back(), options, &state, &beam_stop);
  EXPECT_EQ(beam.status().code(), StatusCode::kCancelled);
  EXPECT_EQ(beam_steps, 3);
}

}  // namespace
}  // namespace memoria
