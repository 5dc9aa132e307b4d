#include "engine/tokenizer.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing.h"

namespace memoria {
namespace {

using testing::ReadFile;
using testing::WriteFile;

std::string LlamaModelPath() { return testing::SharedPath("models/llama2-tokenizer/tokenizer.model"); }

std::unique_ptr<Tokenizer> OpenLlama() {
  auto tok = Tokenizer::Open(LlamaModelPath());
  EXPECT_TRUE(tok.ok()) << tok.status().ToString();
  return tok.ok() ? std::move(tok).value() : nullptr;
}

// llama.cpp's tokenizer test vectors: the .inp file holds the inputs, each followed by the
// line "__ggml_vocab_test__"; line i of the .out file holds the ids of input i, space separated,
// without BOS (llama.cpp generates them with add_special_tokens=False). The inputs are encoded
// as given: SentencePiece adds the dummy prefix itself.
struct Vector {
  std::string text;
  std::vector<int> ids;
};

std::vector<Vector> LoadVectors() {
  const std::string dir = testing::SharedPath("models/llama2-tokenizer/");
  const std::string inp = ReadFile(dir + "ggml-vocab-llama-spm.gguf.inp");
  const std::string out = ReadFile(dir + "ggml-vocab-llama-spm.gguf.out");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0;;) {
    size_t next = inp.find(sep, pos);
    if (next == std::string::npos) break;
    inputs.push_back(inp.substr(pos, next - pos));
    pos = next + sep.size();
  }
  std::vector<Vector> vectors;
  std::istringstream lines(out);
  std::string line;
  for (const std::string& input : inputs) {
    if (!std::getline(lines, line)) break;
    Vector v{input, {}};
    std::istringstream ids(line);
    for (int id; ids >> id;) v.ids.push_back(id);
    vectors.push_back(std::move(v));
  }
  EXPECT_EQ(vectors.size(), inputs.size()) << ".inp and .out disagree on the number of cases";
  return vectors;
}

std::string Escape(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

TEST(TokenizerTest, MatchesLlamaCppVectors) {
  MEMORIA_REQUIRE_SHARED();
  auto tok = OpenLlama();
  ASSERT_NE(tok, nullptr);
  const auto vectors = LoadVectors();
  ASSERT_EQ(vectors.size(), 46u);
  for (const Vector& v : vectors) {
    EXPECT_EQ(tok->Encode(v.text, false, false), v.ids) << "input: \"" << Escape(v.text) << "\"";
  }
}

TEST(TokenizerTest, DecodeRoundTripsTheVectors) {
  MEMORIA_REQUIRE_SHARED();
  auto tok = OpenLlama();
  ASSERT_NE(tok, nullptr);
  for (const Vector& v : LoadVectors()) {
    auto text = tok->Decode(v.ids);
    ASSERT_TRUE(text.ok()) << text.status().ToString();
    EXPECT_EQ(*text, v.text);
  }
}

TEST(TokenizerTest, SpecialIdsAndBosEos) {
  MEMORIA_REQUIRE_SHARED();
  auto tok = OpenLlama();
  ASSERT_NE(tok, nullptr);
  EXPECT_EQ(tok->vocab_size(), 32000);
  EXPECT_EQ(tok->bos_id(), 1);
  EXPECT_EQ(tok->eos_id(), 2);
  EXPECT_EQ(tok->pad_id(), -1);
  EXPECT_EQ(tok->IdToPiece(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(tok->IdToPiece(-1), "");
  EXPECT_EQ(tok->IdToPiece(32000), "");
  EXPECT_EQ(tok->Encode("Hello world", true, true), (std::vector<int>{1, 15043, 3186, 2}));
  EXPECT_EQ(tok->Encode("", true, false), (std::vector<int>{1}));
  // Control tokens produce no text.
  EXPECT_EQ(tok->Decode({1, 15043, 3186, 2}).value(), "Hello world");
}

TEST(TokenizerTest, ByteFallbackForEmojiAndCjk) {
  MEMORIA_REQUIRE_SHARED();
  auto tok = OpenLlama();
  ASSERT_NE(tok, nullptr);
  // U+1F999 (llama emoji) is not a piece: its four UTF-8 bytes come out as <0xF0> <0x9F> ...
  const std::string llama = "\xF0\x9F\xA6\x99";
  const auto ids = tok->Encode(llama, false, false);
  ASSERT_EQ(ids, (std::vector<int>{29871, 243, 162, 169, 156}));
  EXPECT_EQ(tok->IdToPiece(243), "<0xF0>");
  EXPECT_EQ(tok->Decode(ids).value(), llama);
  // "你好" mixes a CJK piece and fallback bytes; either way the text survives.
  const std::string cjk = "\xE4\xBD\xA0\xE5\xA5\xBD, \xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x8D\x95";
  EXPECT_EQ(tok->Decode(tok->Encode(cjk, true, true)).value(), cjk);
}

TEST(TokenizerTest, DecodeIncrementStreamsExactlyTheWholeText) {
  MEMORIA_REQUIRE_SHARED();
  auto tok = OpenLlama();
  ASSERT_NE(tok, nullptr);
  std::vector<std::string> texts = {
      "Hello world",
      "  leading spaces and\ttabs\nnewlines",
      "\xF0\x9F\xA6\x99 llama \xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB",
      "ied 4 \xC2\xBD months",
  };
  for (const Vector& v : LoadVectors()) texts.push_back(v.text);
  for (bool with_bos : {false, true}) {
    for (const std::string& text : texts) {
      const std::vector<int> ids = tok->Encode(text, with_bos, false);
      std::vector<int> prefix;
      std::string streamed;
      for (int id : ids) {
        auto piece = tok->DecodeIncrement(prefix, id);
        ASSERT_TRUE(piece.ok()) << piece.status().ToString();
        // No increment may end inside a UTF-8 character.
        if (!piece->empty()) {
          const unsigned char last = piece->back();
          EXPECT_TRUE(last < 0x80 || (last & 0xC0) == 0x80) << "split character";
        }
        streamed += *piece;
        prefix.push_back(id);
      }
      EXPECT_EQ(streamed, tok->Decode(ids).value()) << "text: \"" << Escape(text) << "\"";
    }
  }
}

TEST(TokenizerTest, DecodeIncrementHoldsBackPartialCharacters) {
  MEMORIA_REQUIRE_SHARED();
  auto tok = OpenLlama();
  ASSERT_NE(tok, nullptr);
  // "▁Hello" then the four byte pieces of U+1F999.
  const std::vector<int> prev = {1, 15043};
  EXPECT_EQ(tok->DecodeIncrement({}, 15043).value(), "Hello");
  EXPECT_EQ(tok->DecodeIncrement({15043}, 3186).value(), " world");
  EXPECT_EQ(tok->DecodeIncrement({15043, 29871}, 243).value(), "");
  EXPECT_EQ(tok->DecodeIncrement({15043, 29871, 243}, 162).value(), "");
  EXPECT_EQ(tok->DecodeIncrement({15043, 29871, 243, 162}, 169).value(), "");
  EXPECT_EQ(tok->DecodeIncrement({15043, 29871, 243, 162, 169}, 156).value(), "\xF0\x9F\xA6\x99");
  EXPECT_EQ(tok->DecodeIncrement(prev, 2).value(), "");  // EOS adds nothing
}

TEST(TokenizerTest, OutOfRangeIdsAreInvalidArgument) {
  MEMORIA_REQUIRE_SHARED();
  auto tok = OpenLlama();
  ASSERT_NE(tok, nullptr);
  auto d = tok->Decode({15043, 32000});
  ASSERT_EQ(d.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(d.status().message().find("token id 32000"), std::string::npos);
  EXPECT_NE(d.status().message().find("[0, 32000)"), std::string::npos);
  EXPECT_EQ(tok->Decode({-1}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tok->DecodeIncrement({}, 40000).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(tok->DecodeIncrement({15043, -5}, 3186).status().code(),
            StatusCode::kInvalidArgument);
}

TEST(TokenizerTest, MissingModelIsNotFound) {
  auto tok = Tokenizer::Open("/nonexistent/tokenizer.model");
  EXPECT_EQ(tok.status().code(), StatusCode::kNotFound);
}

TEST(TokenizerTest, CorruptModelFilesAreErrors) {
  MEMORIA_REQUIRE_SHARED();
  const std::string good = ReadFile(LlamaModelPath());
  ASSERT_GT(good.size(), 1000u);
  const std::string dir = testing::MakeTempDir("memoria-tokenizer");
  const std::string path = dir + "/tokenizer.model";
  std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"text", "this is not a protobuf"},
      {"zeros", std::string(4096, '\0')},
      {"truncated_half", good.substr(0, good.size() / 2)},
      {"truncated_end", good.substr(0, good.size() - 3)},
      {"first_byte_only", good.substr(0, 1)},
  };
  for (const auto& [name, bytes] : cases) {
    WriteFile(path, bytes);
    auto tok = Tokenizer::Open(path);
    EXPECT_FALSE(tok.ok()) << name << " was accepted";
    if (!tok.ok()) {
      EXPECT_EQ(tok.status().code(), StatusCode::kDataLoss) << name << ": " << tok.status().ToString();
    }
  }
  // Random flips: whatever loads must still encode and decode without crashing.
  std::mt19937 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    std::string mutated = good;
    for (int f = 0; f < 8; ++f) mutated[rng() % mutated.size()] = static_cast<char>(rng());
    WriteFile(path, mutated);
    auto tok = Tokenizer::Open(path);
    if (!tok.ok()) {
      EXPECT_EQ(tok.status().code(), StatusCode::kDataLoss);
      continue;
    }
    auto ids = (*tok)->Encode("Hello world, \xE4\xBD\xA0\xE5\xA5\xBD", true, true);
    (*tok)->Decode(ids).status().IgnoreError();
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace memoria
