// The trained-reader path end to end (issue 7): tools/train/ (PyTorch) trains and exports a T5
// LUMEN reader, and the C++ engine must compute what PyTorch computed.
//
// tools/train/selfcheck.py trains a tiny reader for two steps in each mode (fid, lumen, lumen_vq,
// lumen_btr), checks the PyTorch side (against tests/reference/t5_reference.py, padding, resume,
// frozen memory, PQ layer) and exports each to <dir>/<mode>/ with engine_check/ cases: question
// and passage ids, PyTorch's greedy answer ids and teacher-forced logits. This test loads every
// export in the engine and reruns the cases through the production path:
//   LumenModel::MemoryEncode -> (lumen_vq: pq codec with the exported codebooks imported through
//   ImportPqCodebooks; lumen_btr: btr codec with the exported calibration as its state)
//   -> LiveEncode -> teacher-forced logits (max abs diff <= 1e-3 x max(1, max |logit|)) and
//   greedy generation (ids equal).
// MEMORIA_READER_CHECK_DIRS (colon-separated export dirs) adds real trained readers to the
// same comparison (tools/train/README.md).
//
// Needs Debian's python3-torch at /usr/bin/python3; skipped when missing (unless CI=true).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "base/testing.h"
#include "engine/lumen.h"
#include "engine/safetensors.h"
#include "engine/t5_model.h"
#include "storage/codec.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

constexpr char kPython[] = "/usr/bin/python3";

bool TorchAvailable() {
  const std::string cmd = std::string(kPython) + " -c 'import torch, numpy' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return nlohmann::json::parse(f);
}

// The codec the reader was trained with, loaded with the exported state; nullptr for "none".
std::unique_ptr<Codec> ExportedCodec(const std::string& dir, const nlohmann::json& info,
                                     int64_t d) {
  const std::string text = info["store_codec"].get<std::string>();
  if (text == "none") return nullptr;
  auto spec = CodecSpec::Parse(text, d);
  EXPECT_TRUE(spec.ok()) << spec.status().ToString();
  auto codec = CreateCodec(*spec);
  EXPECT_TRUE(codec.ok()) << codec.status().ToString();
  if (spec->id == CodecId::kPq) {
    const Status s = ImportPqCodebooks(dir + "/codebooks.safetensors", "codebooks", codec->get());
    EXPECT_TRUE(s.ok()) << s.ToString();
  } else if (spec->id == CodecId::kBtr) {
    // State layout (storage/codec.h): mu (d8) f32, then a (d8) f32; d is a multiple of 8 here.
    auto file = SafetensorsFile::Open(dir + "/btr_calibration.safetensors");
    EXPECT_TRUE(file.ok()) << file.status().ToString();
    EXPECT_EQ(d % 8, 0);
    std::string state;
    for (const char* name : {"mu", "a"}) {
      const TensorView* t = (*file)->Find(name);
      EXPECT_NE(t, nullptr) << name;
      EXPECT_EQ(t->num_elements(), d) << name;
      state.append(static_cast<const char*>(t->data), static_cast<size_t>(t->num_bytes()));
    }
    const Status s = (*codec)->LoadState(state);
    EXPECT_TRUE(s.ok()) << s.ToString();
  }
  EXPECT_TRUE((*codec)->ready());
  return std::move(*codec);
}

// Reruns dir/engine_check/cases.json in the engine and prints the worst relative logit error.
void CheckExport(const std::string& dir) {
  SCOPED_TRACE(dir);
  auto model = T5Model::Load(dir);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  const nlohmann::json info = ReadJson(dir + "/lumen.json");
  const nlohmann::json cases = ReadJson(dir + "/engine_check/cases.json");
  LumenOptions options;
  options.alpha = info["alpha"].get<double>();
  auto lumen = LumenModel::Create(*model, options);
  ASSERT_TRUE(lumen.ok());
  ASSERT_EQ((*lumen)->memory_layers(), info["memory_layers"].get<int>());
  const T5Config& c = (*model)->config();
  const int64_t d = c.d_model, V = c.vocab_size;
  std::unique_ptr<Codec> codec = ExportedCodec(dir, info, d);
  ThreadPool pool(2);
  float worst = 0;
  int greedy_equal = 0;
  for (const auto& cs : cases["cases"]) {
    const auto q = cs["question_ids"].get<std::vector<int>>();
    const auto passages = cs["passage_ids"].get<std::vector<std::vector<int>>>();
    std::vector<std::vector<float>> memory;
    ASSERT_TRUE((*lumen)->MemoryEncode(pool, passages, &memory).ok());
    if (codec != nullptr) {
      for (auto& m : memory) {
        const int64_t n = static_cast<int64_t>(m.size()) / d;
        std::vector<uint8_t> codes(static_cast<size_t>(codec->code_size(n)));
        ASSERT_TRUE(codec->Encode(pool, n, m.data(), d, codes.data()).ok());
        ASSERT_TRUE(codec->Decode(pool, n, codes.data(), static_cast<int64_t>(codes.size()),
                                  m.data(), d).ok());
      }
    }
    std::vector<MemoryVectors> views;
    for (const auto& m : memory) {
      views.push_back({DType::kF32, m.data(), static_cast<int64_t>(m.size()) / d, d});
    }
    LiveEncoding enc;
    ASSERT_TRUE((*lumen)->LiveEncode(pool, q, views, &enc).ok());

    const auto dec_ids = cs["decoder_input_ids"].get<std::vector<int>>();
    const int64_t n = static_cast<int64_t>(dec_ids.size());
    T5DecoderState state;
    ASSERT_TRUE(
        (*model)->StartDecoder(pool, enc.h.data(), enc.offsets.back(), 1, n, n, &state).ok());
    std::vector<float> logits(static_cast<size_t>(n * V));
    ASSERT_TRUE((*model)->DecoderStep(pool, dec_ids.data(), n, true, &state, logits.data()).ok());
    auto ref = testing::ReadNpyFloat32(dir + "/engine_check/" + cs["logits"].get<std::string>());
    ASSERT_EQ(ref.data.size(), logits.size());
    float scale = 1;
    for (float v : ref.data) scale = std::max(scale, std::abs(v));
    const float rel =
        testing::MaxAbsDiff(logits.data(), ref.data.data(), static_cast<long>(logits.size())) /
        scale;
    EXPECT_LE(rel, 1e-3) << "teacher-forced logits";
    worst = std::max(worst, rel);

    T5GenerationOptions greedy;
    greedy.max_new_tokens = 24;
    auto answer = (*lumen)->Answer(pool, q, views, greedy);
    ASSERT_TRUE(answer.ok()) << answer.status().ToString();
    std::vector<int> ids = answer->tokens;
    if (!ids.empty() && ids.back() == c.eos_token_id) ids.pop_back();
    const auto want = cs["greedy_ids"].get<std::vector<int>>();
    EXPECT_EQ(ids, want) << "greedy answer ids";
    greedy_equal += ids == want;
  }
  std::printf("%s: %zu cases, greedy equal %d, worst relative logit diff %.3g\n", dir.c_str(),
              cases["cases"].size(), greedy_equal, worst);
}

TEST(LumenTrainerTest, EngineMatchesPyTorchTrainedReaders) {
  if (!TorchAvailable()) {
    if (testing::InCi()) GTEST_FAIL() << kPython << " with torch and numpy is required";
    GTEST_SKIP() << kPython << " with torch and numpy not available";
  }
  const std::string dir = testing::MakeTempDir("memoria-lumen-trainer");
  const std::string script = testing::SourceDir() + "/tools/train/selfcheck.py";
  const auto [rc, output] =
      testing::RunShell(std::string(kPython) + " " + script + " --out " + dir);
  ASSERT_EQ(rc, 0) << output;
  std::vector<std::string> dirs;
  for (const char* mode : {"fid", "lumen", "lumen_vq", "lumen_btr"}) {
    dirs.push_back(dir + "/" + mode);
  }
  if (const char* extra = std::getenv("MEMORIA_READER_CHECK_DIRS")) {
    std::stringstream ss(extra);
    for (std::string item; std::getline(ss, item, ':');) {
      if (!item.empty()) dirs.push_back(item);
    }
  }
  for (const auto& d : dirs) CheckExport(d);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace memoria
