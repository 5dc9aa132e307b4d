#include "engine/weights.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "base/testing.h"
#include "kernels/gemm.h"

namespace memoria {
namespace {

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

class ModelDirTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("memoria-modeldir");
    for (int i = 0; i < 6; ++i) f32_.push_back(0.5f * i - 1.0f);
    for (float v : f32_) f16_.push_back(F32ToF16(v));
    for (float v : f32_) bf16_.push_back(F32ToBf16(v));
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // config.json + model.safetensors holding the same values as f32, f16 and bf16.
  void WriteSingleFileModel(const std::string& dir) {
    std::filesystem::create_directories(dir);
    WriteText(dir + "/config.json", R"({"hidden_size": 3, "model_type": "llama"})");
    ASSERT_TRUE(WriteSafetensors(dir + "/model.safetensors",
                                 {{"w.f32", DType::kF32, {2, 3}, f32_.data()},
                                  {"w.f16", DType::kF16, {2, 3}, f16_.data()},
                                  {"w.bf16", DType::kBF16, {2, 3}, bf16_.data()}})
                    .ok());
  }

  std::string dir_;
  std::vector<float> f32_;
  std::vector<uint16_t> f16_, bf16_;
};

TEST(Xxh64Test, MatchesReferenceVectors) {
  EXPECT_EQ(Xxh64("", 0, 0), 0xEF46DB3751D8E999ULL);
  EXPECT_EQ(Xxh64("abc", 3, 0), 0x44BC2CF5AD770999ULL);
  const std::string s = "Nobody inspects the spammish repetition";  // 39 bytes: stripe path
  EXPECT_EQ(Xxh64(s.data(), s.size(), 0), 0xFBCEA83C8A378BF1ULL);
}

TEST_F(ModelDirTest, ConvertsEveryDtypeToF32) {
  WriteSingleFileModel(dir_);
  auto model = ModelDir::Open(dir_);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->config().GetInt("hidden_size").value(), 3);
  for (const char* name : {"w.f32", "w.f16", "w.bf16"}) {
    auto w = (*model)->GetF32(name, {2, 3});
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ(w->dtype, DType::kF32);
    EXPECT_EQ(w->shape, (std::vector<int64_t>{2, 3}));
    for (int i = 0; i < 6; ++i) EXPECT_EQ(w->f32()[i], f32_[i]) << name << " element " << i;
  }
  // f32 is a zero-copy view; converted tensors own their buffer.
  EXPECT_EQ((*model)->GetF32("w.f32", {2, 3})->owner, nullptr);
  EXPECT_NE((*model)->GetF32("w.f16", {2, 3})->owner, nullptr);
  EXPECT_EQ((*model)->total_bytes(), 24 + 12 + 12);
  EXPECT_TRUE((*model)->Has("w.f16"));
  EXPECT_FALSE((*model)->Has("w.f64"));
}

TEST_F(ModelDirTest, ConvertedWeightOutlivesModelDir) {
  WriteSingleFileModel(dir_);
  Weight w;
  {
    auto model = ModelDir::Open(dir_);
    ASSERT_TRUE(model.ok());
    w = (*model)->GetF32("w.bf16", {2, 3}).value();
  }
  EXPECT_EQ(w.f32()[5], f32_[5]);
}

TEST_F(ModelDirTest, MatmulWeightKeepsBf16OnlyWhenWanted) {
  WriteSingleFileModel(dir_);
  auto model = ModelDir::Open(dir_);
  ASSERT_TRUE(model.ok());
  auto w = (*model)->GetMatmulWeight("w.bf16", {2, 3});
  ASSERT_TRUE(w.ok());
  if (WantBf16Weights()) {
    EXPECT_EQ(w->dtype, DType::kBF16);
    EXPECT_EQ(static_cast<const uint16_t*>(w->data)[4], bf16_[4]);
  } else {
    EXPECT_EQ(w->dtype, DType::kF32);
    EXPECT_EQ(w->f32()[4], f32_[4]);
  }
  auto f = (*model)->GetMatmulWeight("w.f16", {2, 3});
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->dtype, DType::kF32);
}

TEST_F(ModelDirTest, ShapeMismatchNamesBothShapes) {
  WriteSingleFileModel(dir_);
  auto model = ModelDir::Open(dir_);
  ASSERT_TRUE(model.ok());
  auto w = (*model)->GetF32("w.f32", {3, 2});
  ASSERT_EQ(w.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.status().message(), "tensor 'w.f32' has shape [2, 3], expected [3, 2]");
  EXPECT_EQ((*model)->GetMatmulWeight("w.bf16", {6}).status().code(),
            StatusCode::kInvalidArgument);
}

TEST_F(ModelDirTest, MissingTensorIsNotFound) {
  WriteSingleFileModel(dir_);
  auto model = ModelDir::Open(dir_);
  ASSERT_TRUE(model.ok());
  auto w = (*model)->GetF32("lm_head.weight", {2, 3});
  ASSERT_EQ(w.status().code(), StatusCode::kNotFound);
  EXPECT_NE(w.status().message().find("'lm_head.weight' is missing from " + dir_),
            std::string::npos);
}

TEST_F(ModelDirTest, MissingPiecesAreNotFound) {
  EXPECT_EQ(ModelDir::Open(dir_ + "/nope").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(ModelDir::Open(dir_).status().code(), StatusCode::kNotFound);  // no config.json
  WriteText(dir_ + "/config.json", "{}");
  auto model = ModelDir::Open(dir_);  // no weights
  ASSERT_EQ(model.status().code(), StatusCode::kNotFound);
  EXPECT_NE(model.status().message().find("model.safetensors"), std::string::npos);
}

TEST_F(ModelDirTest, CorruptConfigOrWeightsAreErrors) {
  WriteSingleFileModel(dir_);
  WriteText(dir_ + "/config.json", "{\"hidden_size\": ");
  EXPECT_EQ(ModelDir::Open(dir_).status().code(), StatusCode::kInvalidArgument);
  WriteText(dir_ + "/config.json", "{}");
  WriteText(dir_ + "/model.safetensors", "garbage");
  EXPECT_EQ(ModelDir::Open(dir_).status().code(), StatusCode::kDataLoss);
}

TEST_F(ModelDirTest, MisalignedF32IsCopiedToAlignedMemory) {
  // A header length that leaves the data section at an odd address (legal, if unusual).
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  while ((8 + header.size()) % 4 != 1) header.push_back(' ');
  const float values[2] = {1.25f, -3.5f};
  uint64_t len = header.size();
  std::string bytes(reinterpret_cast<const char*>(&len), 8);
  bytes += header;
  bytes.append(reinterpret_cast<const char*>(values), 8);
  WriteText(dir_ + "/model.safetensors", bytes);
  WriteText(dir_ + "/config.json", "{}");
  auto model = ModelDir::Open(dir_);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  auto w = (*model)->GetF32("w", {2});
  ASSERT_TRUE(w.ok());
  EXPECT_NE(w->owner, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(w->data) % alignof(float), 0u);
  EXPECT_EQ(w->f32()[0], 1.25f);
  EXPECT_EQ(w->f32()[1], -3.5f);
}

// Writes the same three tensors as two shards with an index.
void WriteShardedModel(const std::string& dir, const std::vector<float>& f32,
                       const std::vector<uint16_t>& f16, const std::vector<uint16_t>& bf16,
                       const std::string& config) {
  std::filesystem::create_directories(dir);
  WriteText(dir + "/config.json", config);
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00001-of-00002.safetensors",
                               {{"w.bf16", DType::kBF16, {2, 3}, bf16.data()},
                                {"w.f32", DType::kF32, {2, 3}, f32.data()}})
                  .ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/model-00002-of-00002.safetensors",
                               {{"w.f16", DType::kF16, {2, 3}, f16.data()}})
                  .ok());
  WriteText(dir + "/model.safetensors.index.json", R"({"metadata": {"total_size": 48},
    "weight_map": {"w.f32": "model-00001-of-00002.safetensors",
                   "w.bf16": "model-00001-of-00002.safetensors",
                   "w.f16": "model-00002-of-00002.safetensors"}})");
}

TEST_F(ModelDirTest, ReadsShardedModels) {
  WriteShardedModel(dir_, f32_, f16_, bf16_, "{}");
  auto model = ModelDir::Open(dir_);
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  for (const char* name : {"w.f32", "w.f16", "w.bf16"}) {
    auto w = (*model)->GetF32(name, {2, 3});
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    EXPECT_EQ(w->f32()[1], f32_[1]);
  }
}

TEST_F(ModelDirTest, CorruptShardIndexIsDataLoss) {
  WriteShardedModel(dir_, f32_, f16_, bf16_, "{}");
  WriteText(dir_ + "/model.safetensors.index.json",
            R"({"weight_map": {"w.f16": "model-00001-of-00002.safetensors"}})");
  auto model = ModelDir::Open(dir_);
  ASSERT_EQ(model.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(model.status().message().find("'w.f16'"), std::string::npos);

  WriteText(dir_ + "/model.safetensors.index.json",
            R"({"weight_map": {"w.f16": "../model-00002-of-00002.safetensors"}})");
  EXPECT_EQ(ModelDir::Open(dir_).status().code(), StatusCode::kDataLoss);

  WriteText(dir_ + "/model.safetensors.index.json", R"({"weight_map": []})");
  EXPECT_EQ(ModelDir::Open(dir_).status().code(), StatusCode::kDataLoss);

  WriteText(dir_ + "/model.safetensors.index.json",
            R"({"weight_map": {"w.f16": "missing.safetensors"}})");
  EXPECT_EQ(ModelDir::Open(dir_).status().code(), StatusCode::kNotFound);
}

TEST_F(ModelDirTest, DuplicateTensorAcrossShardsIsDataLoss) {
  WriteShardedModel(dir_, f32_, f16_, bf16_, "{}");
  ASSERT_TRUE(WriteSafetensors(dir_ + "/model-00002-of-00002.safetensors",
                               {{"w.f16", DType::kF16, {2, 3}, f16_.data()},
                                {"w.f32", DType::kF32, {2, 3}, f32_.data()}})
                  .ok());
  auto model = ModelDir::Open(dir_);
  ASSERT_EQ(model.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(model.status().message().find("'w.f32' appears in both"), std::string::npos);
}

TEST_F(ModelDirTest, FingerprintIgnoresLayoutButNotContent) {
  const std::string config = R"({"a": 1, "b": [1, 2]})";
  WriteShardedModel(dir_ + "/sharded", f32_, f16_, bf16_, config);
  std::filesystem::create_directories(dir_ + "/single");
  WriteText(dir_ + "/single/config.json", "{\n  \"b\": [1, 2],\n  \"a\": 1\n}\n");
  ASSERT_TRUE(WriteSafetensors(dir_ + "/single/model.safetensors",
                               {{"w.f16", DType::kF16, {2, 3}, f16_.data()},
                                {"w.f32", DType::kF32, {2, 3}, f32_.data()},
                                {"w.bf16", DType::kBF16, {2, 3}, bf16_.data()}})
                  .ok());
  auto sharded = ModelDir::Open(dir_ + "/sharded");
  auto single = ModelDir::Open(dir_ + "/single");
  ASSERT_TRUE(sharded.ok() && single.ok());
  const uint64_t fp = (*single)->Fingerprint();
  EXPECT_EQ(fp, (*single)->Fingerprint());
  EXPECT_EQ(fp, (*sharded)->Fingerprint()) << "sharding and key order must not matter";

  std::vector<float> changed = f32_;
  changed[3] = 42.0f;
  WriteShardedModel(dir_ + "/changed", changed, f16_, bf16_, config);
  auto other = ModelDir::Open(dir_ + "/changed");
  ASSERT_TRUE(other.ok());
  EXPECT_NE(fp, (*other)->Fingerprint());

  WriteShardedModel(dir_ + "/config2", f32_, f16_, bf16_, R"({"a": 2, "b": [1, 2]})");
  auto other_config = ModelDir::Open(dir_ + "/config2");
  ASSERT_TRUE(other_config.ok());
  EXPECT_NE(fp, (*other_config)->Fingerprint());
}

}  // namespace
}  // namespace memoria
