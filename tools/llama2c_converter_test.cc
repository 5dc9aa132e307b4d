#include "tools/llama2c_converter.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"

namespace memoria {
namespace {

using testing::ReadFile;
using testing::WriteFile;

std::string CheckpointPath() { return testing::SharedPath("models/stories260K/stories260K.bin"); }
std::string TokenizerBinPath() { return testing::SharedPath("models/stories260K/tok512.bin"); }

// The raw f32 arrays of a llama2.c checkpoint, located independently of the converter.
struct RawCheckpoint {
  int32_t header[7];
  std::vector<float> floats;  // everything after the header
  int dim, hidden, layers, heads, kv_heads, vocab, seq_len, hs, kv_dim;
  const float* embed() const { return floats.data(); }
  const float* rms_att() const { return embed() + vocab * dim; }
  const float* wq() const { return rms_att() + layers * dim; }
  const float* wk() const { return wq() + layers * dim * dim; }
  const float* wv() const { return wk() + layers * kv_dim * dim; }
  const float* wo() const { return wv() + layers * kv_dim * dim; }
  const float* rms_ffn() const { return wo() + layers * dim * dim; }
  const float* w1() const { return rms_ffn() + layers * dim; }
  const float* w2() const { return w1() + layers * hidden * dim; }
  const float* w3() const { return w2() + layers * dim * hidden; }
  const float* rms_final() const { return w3() + layers * hidden * dim; }
};

RawCheckpoint ReadRaw(const std::string& path) {
  RawCheckpoint r;
  const std::string bytes = ReadFile(path);
  std::memcpy(r.header, bytes.data(), 28);
  r.floats.resize((bytes.size() - 28) / 4);
  std::memcpy(r.floats.data(), bytes.data() + 28, r.floats.size() * 4);
  r.dim = r.header[0];
  r.hidden = r.header[1];
  r.layers = r.header[2];
  r.heads = r.header[3];
  r.kv_heads = r.header[4];
  r.vocab = std::abs(r.header[5]);
  r.seq_len = r.header[6];
  r.hs = r.dim / r.heads;
  r.kv_dim = r.kv_heads * r.hs;
  return r;
}

class Llama2cConverterTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("memoria-llama2c"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(Llama2cConverterTest, ConvertsStories260K) {
  MEMORIA_REQUIRE_SHARED();
  const std::string out = dir_ + "/stories260K";
  Status s = ConvertLlama2c(CheckpointPath(), TokenizerBinPath(), out);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_TRUE(std::filesystem::exists(out + "/tokenizer.model"));

  auto model = ModelDir::Open(out);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const JsonConfig& c = (*model)->config();
  EXPECT_EQ(c.GetString("model_type").value(), "llama");
  EXPECT_EQ(c.GetInt("hidden_size").value(), 64);
  EXPECT_EQ(c.GetInt("intermediate_size").value(), 172);
  EXPECT_EQ(c.GetInt("num_hidden_layers").value(), 5);
  EXPECT_EQ(c.GetInt("num_attention_heads").value(), 8);
  EXPECT_EQ(c.GetInt("num_key_value_heads").value(), 4);
  EXPECT_EQ(c.GetInt("vocab_size").value(), 512);
  EXPECT_EQ(c.GetInt("max_position_embeddings").value(), 512);
  EXPECT_DOUBLE_EQ(c.GetDouble("rms_norm_eps").value(), 1e-5);
  EXPECT_DOUBLE_EQ(c.GetDouble("rope_theta").value(), 10000.0);
  EXPECT_TRUE(c.GetBool("tie_word_embeddings", false).value());
  EXPECT_EQ(c.GetInt("bos_token_id").value(), 1);
  EXPECT_EQ(c.GetInt("eos_token_id").value(), 2);
  EXPECT_EQ(c.GetString("torch_dtype").value(), "float32");
  EXPECT_FALSE((*model)->Has("lm_head.weight")) << "classifier is shared";

  const RawCheckpoint raw = ReadRaw(CheckpointPath());
  const int64_t d = 64, hidden = 172, kv = 32, vocab = 512;
  auto get = [&](const std::string& name, std::vector<int64_t> shape) {
    auto w = (*model)->GetF32(name, shape);
    EXPECT_TRUE(w.ok()) << w.status().ToString();
    return w.ok() ? w.value() : Weight{};
  };
  auto same = [](const float* a, const float* b, int64_t n) { return std::memcmp(a, b, n * 4) == 0; };
  EXPECT_TRUE(same(get("model.embed_tokens.weight", {vocab, d}).f32(), raw.embed(), vocab * d));
  EXPECT_TRUE(same(get("model.norm.weight", {d}).f32(), raw.rms_final(), d));
  // Every converted tensor of every layer holds the right raw array (q/k up to the permutation).
  const int hs = raw.hs, half = hs / 2;
  for (int l = 0; l < 5; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    EXPECT_TRUE(same(get(p + "input_layernorm.weight", {d}).f32(), raw.rms_att() + l * d, d));
    EXPECT_TRUE(
        same(get(p + "post_attention_layernorm.weight", {d}).f32(), raw.rms_ffn() + l * d, d));
    EXPECT_TRUE(same(get(p + "self_attn.v_proj.weight", {kv, d}).f32(),
                     raw.wv() + l * kv * d, kv * d));
    EXPECT_TRUE(same(get(p + "self_attn.o_proj.weight", {d, d}).f32(), raw.wo() + l * d * d,
                     d * d));
    EXPECT_TRUE(same(get(p + "mlp.gate_proj.weight", {hidden, d}).f32(),
                     raw.w1() + l * hidden * d, hidden * d));
    EXPECT_TRUE(same(get(p + "mlp.up_proj.weight", {hidden, d}).f32(),
                     raw.w3() + l * hidden * d, hidden * d));
    EXPECT_TRUE(same(get(p + "mlp.down_proj.weight", {d, hidden}).f32(),
                     raw.w2() + l * d * hidden, d * hidden));
    // q/k: HF row h*hs + j*hs/2 + i is llama2.c row h*hs + 2i + j.
    const Weight q = get(p + "self_attn.q_proj.weight", {d, d});
    const Weight k = get(p + "self_attn.k_proj.weight", {kv, d});
    for (int h = 0; h < 8; ++h) {
      for (int j = 0; j < 2; ++j) {
        for (int i = 0; i < half; ++i) {
          const int new_row = h * hs + j * half + i, old_row = h * hs + 2 * i + j;
          ASSERT_TRUE(same(q.f32() + new_row * d, raw.wq() + (l * d + old_row) * d, d))
              << "layer " << l << " q row " << new_row;
          if (h < 4) {
            ASSERT_TRUE(same(k.f32() + new_row * d, raw.wk() + (l * kv + old_row) * d, d))
                << "layer " << l << " k row " << new_row;
          }
        }
      }
    }
  }
}

// The permutation is right exactly when llama2.c's interleaved RoPE on the raw weights and
// Hugging Face's rotate_half RoPE on the converted weights give the same attention scores.
TEST_F(Llama2cConverterTest, RotaryLayoutsGiveTheSameAttentionScores) {
  MEMORIA_REQUIRE_SHARED();
  const std::string out = dir_ + "/m";
  ASSERT_TRUE(ConvertLlama2c(CheckpointPath(), "", out).ok());
  auto model = ModelDir::Open(out);
  ASSERT_TRUE(model.ok());
  const RawCheckpoint raw = ReadRaw(CheckpointPath());
  const int d = raw.dim, hs = raw.hs, kv = raw.kv_dim, group = raw.heads / raw.kv_heads;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(d);
  for (float& v : x) v = normal(rng);
  auto matvec = [&](const float* w, int rows) {
    std::vector<double> y(rows, 0.0);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < d; ++c) y[r] += static_cast<double>(w[r * d + c]) * x[c];
    return y;
  };
  auto rope_interleaved = [&](std::vector<double> v, int pos) {  // llama2.c run.c
    for (size_t i = 0; i < v.size(); i += 2) {
      const int head_dim = static_cast<int>(i) % hs;
      const double theta = pos / std::pow(10000.0, head_dim / static_cast<double>(hs));
      const double a = v[i], b = v[i + 1];
      v[i] = a * std::cos(theta) - b * std::sin(theta);
      v[i + 1] = a * std::sin(theta) + b * std::cos(theta);
    }
    return v;
  };
  auto rope_half = [&](std::vector<double> v, int pos) {  // Hugging Face rotate_half
    for (size_t h = 0; h < v.size() / hs; ++h) {
      for (int i = 0; i < hs / 2; ++i) {
        const double theta = pos / std::pow(10000.0, 2 * i / static_cast<double>(hs));
        double& a = v[h * hs + i];
        double& b = v[h * hs + i + hs / 2];
        const double a0 = a, b0 = b;
        a = a0 * std::cos(theta) - b0 * std::sin(theta);
        b = b0 * std::cos(theta) + a0 * std::sin(theta);
      }
    }
    return v;
  };
  for (int l = 0; l < raw.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".self_attn.";
    const auto q_hf = rope_half(matvec((*model)->GetF32(p + "q_proj.weight", {d, d})->f32(), d), 7);
    const auto k_hf = rope_half(matvec((*model)->GetF32(p + "k_proj.weight", {kv, d})->f32(), kv), 3);
    const auto q_raw = rope_interleaved(matvec(raw.wq() + l * d * d, d), 7);
    const auto k_raw = rope_interleaved(matvec(raw.wk() + l * kv * d, kv), 3);
    for (int h = 0; h < raw.heads; ++h) {
      const int g = h / group;
      double s_hf = 0, s_raw = 0;
      for (int i = 0; i < hs; ++i) {
        s_hf += q_hf[h * hs + i] * k_hf[g * hs + i];
        s_raw += q_raw[h * hs + i] * k_raw[g * hs + i];
      }
      EXPECT_NEAR(s_hf, s_raw, 1e-9 * (1 + std::abs(s_raw))) << "layer " << l << " head " << h;
    }
  }
}

// llama2.c run.c's encode(), written out plainly: dummy-prefix " ", one token per UTF-8
// character (or its bytes + 3 when unknown), then repeatedly merge the adjacent pair whose
// concatenation is the vocabulary entry with the highest score (leftmost on ties).
class RunCEncoder {
 public:
  explicit RunCEncoder(const std::string& tokenizer_bin) {
    const std::string d = ReadFile(tokenizer_bin);
    size_t pos = 4;
    while (pos + 8 <= d.size()) {
      float score;
      int32_t len;
      std::memcpy(&score, d.data() + pos, 4);
      std::memcpy(&len, d.data() + pos + 4, 4);
      pos += 8;
      vocab_.push_back(d.substr(pos, len));
      scores_.push_back(score);
      pos += len;
    }
    for (size_t i = 0; i < vocab_.size(); ++i) lookup_.emplace(vocab_[i], static_cast<int>(i));
  }
  std::vector<int> Encode(const std::string& text) const {
    std::vector<int> tokens;
    if (!text.empty()) tokens.push_back(Lookup(" "));
    for (size_t i = 0; i < text.size();) {
      size_t n = 1;
      while (i + n < text.size() && n < 4 && (static_cast<unsigned char>(text[i + n]) & 0xC0) == 0x80) ++n;
      const int id = Lookup(text.substr(i, n));
      if (id >= 0) {
        tokens.push_back(id);
      } else {
        for (size_t b = 0; b < n; ++b) tokens.push_back(static_cast<unsigned char>(text[i + b]) + 3);
      }
      i += n;
    }
    while (true) {
      float best_score = -1e10f;
      int best_id = -1, best_idx = -1;
      for (size_t i = 0; i + 1 < tokens.size(); ++i) {
        const int id = Lookup(vocab_[tokens[i]] + vocab_[tokens[i + 1]]);
        if (id != -1 && scores_[id] > best_score) {
          best_score = scores_[id];
          best_id = id;
          best_idx = static_cast<int>(i);
        }
      }
      if (best_idx == -1) break;
      tokens[best_idx] = best_id;
      tokens.erase(tokens.begin() + best_idx + 1);
    }
    return tokens;
  }
  size_t size() const { return vocab_.size(); }

 private:
  int Lookup(const std::string& s) const {
    auto it = lookup_.find(s);
    return it == lookup_.end() ? -1 : it->second;
  }
  std::vector<std::string> vocab_;
  std::vector<float> scores_;
  std::map<std::string, int> lookup_;
};

TEST_F(Llama2cConverterTest, TokenizerMatchesRunCEncoder) {
  MEMORIA_REQUIRE_SHARED();
  const std::string out = dir_ + "/tok";
  ASSERT_TRUE(ConvertLlama2c(CheckpointPath(), TokenizerBinPath(), out).ok());
  auto tok = Tokenizer::Open(out + "/tokenizer.model");
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  EXPECT_EQ((*tok)->vocab_size(), 512);
  EXPECT_EQ((*tok)->bos_id(), 1);
  EXPECT_EQ((*tok)->eos_id(), 2);
  EXPECT_EQ((*tok)->IdToPiece(0), "<unk>");
  EXPECT_EQ((*tok)->IdToPiece(1), "<s>");
  EXPECT_EQ((*tok)->IdToPiece(3), "<0x00>");
  EXPECT_EQ((*tok)->IdToPiece(258), "<0xFF>");

  const std::vector<int> once = (*tok)->Encode("Once upon a time", false, false);
  EXPECT_GT(once.size(), 1u);
  EXPECT_EQ((*tok)->Decode(once).value(), "Once upon a time");
  EXPECT_EQ((*tok)->Encode("Once upon a time", true, false).front(), 1);

  const RunCEncoder reference(TokenizerBinPath());
  ASSERT_EQ(reference.size(), 512u);
  const std::vector<std::string> sentences = {
      "Once upon a time",
      "Once upon a time, there was a little girl named Lily.",
      "She loved to play outside in the park. One day, she saw a big, red ball!",
      "Tom and Sue said: \"Let's go home.\" They were 3 years old, maybe 42.",
      "two  spaces,   three spaces and a trailing space ",
      " leading space",
      "tabs\tand\nnewlines",
      "Emoji \xF0\x9F\x8D\x95 and \xE4\xBD\xA0\xE5\xA5\xBD and caf\xC3\xA9",
      "x",
  };
  for (const std::string& s : sentences) {
    const std::vector<int> ours = (*tok)->Encode(s, false, false);
    EXPECT_EQ(ours, reference.Encode(s)) << "text: " << s;
    EXPECT_EQ((*tok)->Decode(ours).value(), s);
  }
  EXPECT_TRUE((*tok)->Encode("", false, false).empty());
}

TEST_F(Llama2cConverterTest, UnsharedClassifierIsWrittenAsLmHead) {
  // A tiny synthetic checkpoint: dim 8, hidden 12, 2 layers, 2 heads, 1 KV head, vocab -10
  // (negative: separate classifier), seq_len 4.
  const int32_t header[7] = {8, 12, 2, 2, 1, -10, 4};
  Llama2cConfig c;
  c.dim = 8;
  c.hidden_dim = 12;
  c.n_layers = 2;
  c.n_heads = 2;
  c.n_kv_heads = 1;
  c.vocab_size = 10;
  c.seq_len = 4;
  c.shared_classifier = false;
  const int64_t n = (c.ExpectedFileBytes() - 28) / 4;
  std::vector<float> floats(n);
  for (int64_t i = 0; i < n; ++i) floats[i] = static_cast<float>(i);
  std::string bytes(reinterpret_cast<const char*>(header), 28);
  bytes.append(reinterpret_cast<const char*>(floats.data()), n * 4);
  WriteFile(dir_ + "/tiny.bin", bytes);
  ASSERT_TRUE(ConvertLlama2c(dir_ + "/tiny.bin", "", dir_ + "/tiny").ok());
  auto model = ModelDir::Open(dir_ + "/tiny");
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_FALSE((*model)->config().GetBool("tie_word_embeddings", true).value());
  auto lm_head = (*model)->GetF32("lm_head.weight", {10, 8});
  ASSERT_TRUE(lm_head.ok()) << lm_head.status().ToString();
  // wcls is the last 80 floats of the file.
  EXPECT_EQ(lm_head->f32()[0], static_cast<float>(n - 80));
  EXPECT_EQ(lm_head->f32()[79], static_cast<float>(n - 1));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/tiny/tokenizer.model"));
}

TEST_F(Llama2cConverterTest, MissingInputsAreNotFound) {
  EXPECT_EQ(ConvertLlama2c(dir_ + "/none.bin", "", dir_ + "/o").code(), StatusCode::kNotFound);
  MEMORIA_REQUIRE_SHARED();
  EXPECT_EQ(ConvertLlama2c(CheckpointPath(), dir_ + "/none_tok.bin", dir_ + "/o").code(),
            StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/o/model.safetensors"))
      << "nothing is written when an input is bad";
}

struct CorruptCheckpointCase {
  const char* name;
  // Edits the stories260K bytes.
  void (*mutate)(std::string* bytes);
  StatusCode code;
  const char* message_part;
};

void SetHeader(std::string* b, int field, int32_t value) { std::memcpy(&(*b)[4 * field], &value, 4); }

std::vector<CorruptCheckpointCase> CorruptCheckpointCases() {
  return {
      {"Empty", [](std::string* b) { b->clear(); }, StatusCode::kDataLoss,
       "0 bytes, shorter than the 28-byte"},
      {"ShortHeader", [](std::string* b) { b->resize(10); }, StatusCode::kDataLoss, "10 bytes"},
      {"Truncated", [](std::string* b) { b->resize(b->size() - 4); }, StatusCode::kDataLoss,
       "file is 1056536 bytes, the header implies 1056540 (truncated)"},
      {"TrailingData", [](std::string* b) { b->append(8, '\0'); }, StatusCode::kDataLoss,
       "file is 1056548 bytes, the header implies 1056540 (trailing data)"},
      {"ZeroDim", [](std::string* b) { SetHeader(b, 0, 0); }, StatusCode::kDataLoss,
       "dim 0 is outside"},
      {"NegativeHidden", [](std::string* b) { SetHeader(b, 1, -172); }, StatusCode::kDataLoss,
       "hidden_dim -172 is outside"},
      {"ZeroLayers", [](std::string* b) { SetHeader(b, 2, 0); }, StatusCode::kDataLoss,
       "n_layers 0 is outside"},
      {"ZeroHeads", [](std::string* b) { SetHeader(b, 3, 0); }, StatusCode::kDataLoss,
       "n_heads 0 is outside"},
      {"ZeroVocab", [](std::string* b) { SetHeader(b, 5, 0); }, StatusCode::kDataLoss,
       "vocab_size 0 is outside"},
      {"NegativeSeqLen", [](std::string* b) { SetHeader(b, 6, -1); }, StatusCode::kDataLoss,
       "seq_len -1 is outside"},
      {"HugeDim", [](std::string* b) { SetHeader(b, 0, 0x7fffffff); }, StatusCode::kDataLoss,
       "dim 2147483647 is outside"},
      {"DimNotDivisibleByHeads", [](std::string* b) { SetHeader(b, 3, 7); }, StatusCode::kDataLoss,
       "dim 64 is not divisible by n_heads 7"},
      {"HeadsNotMultipleOfKvHeads", [](std::string* b) { SetHeader(b, 4, 3); },
       StatusCode::kDataLoss, "n_heads 8 is not a multiple of n_kv_heads 3"},
      {"MoreKvHeadsThanHeads", [](std::string* b) { SetHeader(b, 4, 16); }, StatusCode::kDataLoss,
       "n_heads 8 is not a multiple of n_kv_heads 16"},
      {"OddHeadSize", [](std::string* b) { SetHeader(b, 3, 64); SetHeader(b, 4, 64); },
       StatusCode::kDataLoss, "head size 1 is odd"},
      {"LargeButValidSizes",
       [](std::string* b) {
         for (int f : {0, 1, 2, 5, 6}) SetHeader(b, f, 1 << 20);
         SetHeader(b, 3, 1);
         SetHeader(b, 4, 1);
       },
       StatusCode::kDataLoss, "the header implies 9223372036854775807"},
      {"UnsharedClassifierMissing", [](std::string* b) { SetHeader(b, 5, -512); },
       StatusCode::kDataLoss, "(truncated)"},
      {"VersionedExport", [](std::string* b) { SetHeader(b, 0, 0x616b3432); SetHeader(b, 1, 2); },
       StatusCode::kUnimplemented, "version 2"},
  };
}

class Llama2cCorruptCheckpointTest : public ::testing::TestWithParam<CorruptCheckpointCase> {};

TEST_P(Llama2cCorruptCheckpointTest, CorruptCheckpointIsAClearError) {
  MEMORIA_REQUIRE_SHARED();
  const CorruptCheckpointCase& c = GetParam();
  const std::string dir = testing::MakeTempDir("memoria-llama2c-corrupt");
  std::string bytes = ReadFile(CheckpointPath());
  ASSERT_EQ(bytes.size(), 1056540u);
  c.mutate(&bytes);
  WriteFile(dir + "/bad.bin", bytes);
  const Status s = ConvertLlama2c(dir + "/bad.bin", TokenizerBinPath(), dir + "/out");
  const bool wrote = std::filesystem::exists(dir + "/out/model.safetensors");
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(s.ok()) << c.name << " was accepted";
  EXPECT_EQ(s.code(), c.code) << s.ToString();
  EXPECT_NE(s.message().find(c.message_part), std::string::npos)
      << "message: " << s.message() << "\nexpected to contain: " << c.message_part;
  EXPECT_NE(s.message().find("bad.bin"), std::string::npos) << s.message();
  EXPECT_FALSE(wrote);
}

INSTANTIATE_TEST_SUITE_P(Corrupt, Llama2cCorruptCheckpointTest,
                         ::testing::ValuesIn(CorruptCheckpointCases()),
                         [](const ::testing::TestParamInfo<CorruptCheckpointCase>& info) {
                           return std::string(info.param.name);
                         });

TEST_F(Llama2cConverterTest, CorruptTokenizerBinIsAClearError) {
  MEMORIA_REQUIRE_SHARED();
  const std::string good = ReadFile(TokenizerBinPath());
  auto with_int = [&](size_t offset, int32_t v) {
    std::string b = good;
    std::memcpy(&b[offset], &v, 4);
    return b;
  };
  // Token 0 is "<unk>": score at 4, length at 8, bytes at 12; token 1 starts at 17.
  struct Case {
    const char* name;
    std::string bytes;
    const char* message_part;
  };
  std::vector<Case> cases = {
      {"empty", "", "0 bytes, too short"},
      {"truncated", good.substr(0, good.size() - 3), "token 511 needs"},
      {"truncated_mid_token", good.substr(0, 14), "token 0 needs 5 bytes at offset 12"},
      {"trailing", good + "xyz", "3 bytes follow the 512 tokens"},
      {"negative_length", with_int(8, -5), "token 0 has length -5"},
      {"length_over_max", with_int(8, 1000), "token 0 has length 1000"},
      {"zero_max_length", with_int(0, 0), "max_token_length 0"},
      {"bos_missing", good.substr(0, 17) + std::string("\0\0\0\0\5\0\0\0hello", 13) +
                          good.substr(17 + 13), "token 1 is 'hello', expected <s>"},
  };
  for (const Case& c : cases) {
    WriteFile(dir_ + "/bad_tok.bin", c.bytes);
    const Status s = ConvertLlama2c(CheckpointPath(), dir_ + "/bad_tok.bin", dir_ + "/out");
    ASSERT_FALSE(s.ok()) << c.name << " was accepted";
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << c.name << ": " << s.ToString();
    EXPECT_NE(s.message().find(c.message_part), std::string::npos)
        << c.name << ": " << s.message() << "\nexpected to contain: " << c.message_part;
  }
  // Vocabulary smaller than the checkpoint's: the tokenizer file runs out.
  auto proto = BuildSentencePieceModelFromLlama2c(TokenizerBinPath(), 600);
  EXPECT_EQ(proto.status().code(), StatusCode::kDataLoss);
}

}  // namespace
}  // namespace memoria
