// Replays the committed fuzz corpus (fuzz/corpus/<target>/) through the fuzz targets in the
// ordinary build, so that an input that once crashed a parser fails plain ctest too. A target
// aborts on a broken invariant (FUZZ_CHECK) and crashes on memory errors, which fails the test
// program; the gcc ASan job (scripts/test.sh) runs it under AddressSanitizer + UBSan as well.
//
// Built twice (fuzz/CMakeLists.txt): fuzz_test with the targets that may load libsentencepiece,
// fuzz_proto_test with those that link libprotobuf.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "base/testing.h"
#include "fuzz/fuzz_target.h"

namespace memoria::fuzz {
int MemoriaFuzzSafetensors(const uint8_t* data, size_t size);
int MemoriaFuzzStoreValue(const uint8_t* data, size_t size);
int MemoriaFuzzTokenizer(const uint8_t* data, size_t size);
int MemoriaFuzzModelConfig(const uint8_t* data, size_t size);
int MemoriaFuzzCorpus(const uint8_t* data, size_t size);
int MemoriaFuzzRequest(const uint8_t* data, size_t size);
int MemoriaFuzzServerConfig(const uint8_t* data, size_t size);

namespace {

// Feeds every file of corpus/<dir>/ (sorted, for a stable order) to fn; returns how many.
size_t Replay(const std::string& dir, int (*fn)(const uint8_t*, size_t)) {
  const std::filesystem::path root = std::filesystem::path(MEMORIA_FUZZ_CORPUS_DIR) / dir;
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (entry.is_regular_file()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    SCOPED_TRACE(path.string());
    const std::string bytes = memoria::testing::ReadFile(path.string());
    EXPECT_EQ(fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0);
  }
  return files.size();
}

#ifdef MEMORIA_FUZZ_SET_SENTENCEPIECE
TEST(FuzzCorpus, Safetensors) { EXPECT_GE(Replay("safetensors", MemoriaFuzzSafetensors), 4u); }
TEST(FuzzCorpus, StoreValue) { EXPECT_GE(Replay("store_value", MemoriaFuzzStoreValue), 4u); }
TEST(FuzzCorpus, Tokenizer) { EXPECT_GE(Replay("tokenizer", MemoriaFuzzTokenizer), 2u); }
TEST(FuzzCorpus, ModelConfig) { EXPECT_GE(Replay("model_config", MemoriaFuzzModelConfig), 4u); }
TEST(FuzzCorpus, Corpus) { EXPECT_GE(Replay("corpus", MemoriaFuzzCorpus), 4u); }
#endif

#ifdef MEMORIA_FUZZ_SET_PROTO
TEST(FuzzCorpus, Request) { EXPECT_GE(Replay("request", MemoriaFuzzRequest), 4u); }
TEST(FuzzCorpus, ServerConfig) { EXPECT_GE(Replay("server_config", MemoriaFuzzServerConfig), 4u); }
#endif

}  // namespace
}  // namespace memoria::fuzz
