#include "engine/safetensors.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "base/testing.h"

namespace memoria {
namespace {

std::string LengthPrefix(uint64_t n) { return std::string(reinterpret_cast<const char*>(&n), 8); }

// A safetensors file from a header text and a data section.
std::string MakeFile(const std::string& header, const std::string& data) {
  return LengthPrefix(header.size()) + header + data;
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("memoria-safetensors"); }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string Path(const std::string& name) const { return dir_ + "/" + name; }
  std::string dir_;
};

TEST_F(SafetensorsTest, RoundTripKeepsDtypesShapesDataAndMetadata) {
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 7.0f};
  std::vector<uint16_t> b = {F32ToF16(0.5f), F32ToF16(-1.0f), F32ToF16(2.0f)};
  std::vector<uint16_t> c = {F32ToBf16(3.0f), F32ToBf16(-0.25f)};
  const std::string path = Path("m.safetensors");
  ASSERT_TRUE(WriteSafetensors(path,
                               {{"a", DType::kF32, {2, 3}, a.data()},
                                {"b.half", DType::kF16, {3}, b.data()},
                                {"c", DType::kBF16, {1, 2}, c.data()},
                                {"empty", DType::kF32, {0, 4}, nullptr}},
                               {{"format", "pt"}})
                  .ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));

  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status().ToString();
  EXPECT_EQ((*file)->tensors().size(), 4u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");

  const TensorView* va = (*file)->Find("a");
  ASSERT_NE(va, nullptr);
  EXPECT_EQ(va->dtype, DType::kF32);
  EXPECT_EQ(va->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(va->num_bytes(), 24);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(va->data) % 8, 0u) << "data section must be 8-aligned";
  EXPECT_EQ(std::memcmp(va->data, a.data(), 24), 0);

  const TensorView* vb = (*file)->Find("b.half");
  ASSERT_NE(vb, nullptr);
  EXPECT_EQ(vb->dtype, DType::kF16);
  std::vector<float> bf(3);
  ConvertToF32(vb->dtype, vb->data, bf.data(), 3);
  EXPECT_EQ(bf, (std::vector<float>{0.5f, -1.0f, 2.0f}));

  const TensorView* vc = (*file)->Find("c");
  ASSERT_NE(vc, nullptr);
  EXPECT_EQ(vc->dtype, DType::kBF16);
  EXPECT_EQ(std::memcmp(vc->data, c.data(), 4), 0);

  const TensorView* ve = (*file)->Find("empty");
  ASSERT_NE(ve, nullptr);
  EXPECT_EQ(ve->num_elements(), 0);
  EXPECT_EQ((*file)->Find("missing"), nullptr);

  // The header is padded so the data section starts on an 8-byte boundary.
  const std::string bytes = ReadBytes(path);
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ((8 + header_len) % 8, 0u);
}

TEST_F(SafetensorsTest, WriterKeepsTensorOrderInDataSection) {
  float x = 1.0f, y = 2.0f;
  const std::string path = Path("order.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"zz", DType::kF32, {1}, &x}, {"aa", DType::kF32, {1}, &y}})
                  .ok());
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_LT((*file)->Find("zz")->data, (*file)->Find("aa")->data);
}

TEST_F(SafetensorsTest, WriterRejectsBadInput) {
  float x = 1.0f;
  EXPECT_EQ(WriteSafetensors(Path("d.safetensors"),
                             {{"a", DType::kF32, {1}, &x}, {"a", DType::kF32, {1}, &x}})
                .code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(Path("n.safetensors"), {{"a", DType::kF32, {-1}, &x}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(Path("z.safetensors"), {{"a", DType::kF32, {2}, nullptr}}).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(WriteSafetensors(dir_ + "/no/such/dir/x.safetensors", {{"a", DType::kF32, {1}, &x}})
                .code(),
            StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, MissingFileIsNotFound) {
  auto file = SafetensorsFile::Open(Path("nope.safetensors"));
  EXPECT_EQ(file.status().code(), StatusCode::kNotFound);
  EXPECT_NE(file.status().message().find("nope.safetensors"), std::string::npos);
}

TEST(ShapeToStringTest, Formats) {
  EXPECT_EQ(ShapeToString({}), "[]");
  EXPECT_EQ(ShapeToString({512, 64}), "[512, 64]");
}

struct CorruptCase {
  const char* name;
  std::string bytes;
  StatusCode code;
  const char* message_part;  // the message must contain this (numbers included)
};

std::string Data(size_t n) { return std::string(n, '\x01'); }

std::vector<CorruptCase> CorruptCases() {
  const std::string ok_entry = R"("w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]})";
  return {
      {"EmptyFile", "", StatusCode::kDataLoss, "0 bytes"},
      {"ShorterThanLength", "abcd", StatusCode::kDataLoss, "4 bytes"},
      {"HeaderLengthPastEof", LengthPrefix(1000) + "{}", StatusCode::kDataLoss,
       "header length 1000 exceeds the 2 bytes"},
      {"HeaderLengthHuge", LengthPrefix(uint64_t{1} << 63) + "{}", StatusCode::kDataLoss,
       "9223372036854775808"},
      {"HeaderLengthMax", LengthPrefix(~uint64_t{0}) + "{}", StatusCode::kDataLoss,
       "18446744073709551615"},
      {"HeaderLengthZero", LengthPrefix(0), StatusCode::kDataLoss, "not valid JSON"},
      {"BadJson", MakeFile(R"({"w": {"dtype": )", ""), StatusCode::kDataLoss, "not valid JSON"},
      {"InvalidUtf8", MakeFile("{\"\xff\": 1}", ""), StatusCode::kDataLoss, "not valid JSON"},
      {"NumberOverflow", MakeFile(R"({"w": {"dtype": "F32", "shape": [1e999]}})", ""),
       StatusCode::kDataLoss, "number overflow"},
      {"HeaderNotObject", MakeFile("[1, 2]", ""), StatusCode::kDataLoss, "expected an object"},
      {"HeaderIsString", MakeFile("\"w\"", ""), StatusCode::kDataLoss, "expected an object"},
      {"DeeplyNested", MakeFile(std::string(100000, '[') + std::string(100000, ']'), ""),
       StatusCode::kDataLoss, "nests 100000 levels"},
      {"EntryNotObject", MakeFile(R"({"w": 3})", ""), StatusCode::kDataLoss, "'w' entry"},
      {"MissingDtype", MakeFile(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", Data(4)),
       StatusCode::kDataLoss, "'w' has no string 'dtype'"},
      {"DtypeNotString", MakeFile(R"({"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", Data(4)),
       StatusCode::kDataLoss, "'dtype'"},
      {"MissingShape", MakeFile(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", Data(4)),
       StatusCode::kDataLoss, "'w' has no array 'shape'"},
      {"MissingOffsets", MakeFile(R"({"w":{"dtype":"F32","shape":[1]}})", Data(4)),
       StatusCode::kDataLoss, "'w' has no array 'data_offsets'"},
      {"UnknownDtype", MakeFile(R"({"w":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})",
                                Data(8)),
       StatusCode::kInvalidArgument, "unsupported dtype 'F64'"},
      {"NegativeShape", MakeFile(R"({"w":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,4]}})",
                                 Data(4)),
       StatusCode::kDataLoss, "shape[0] -1 is negative"},
      {"NonIntegerShape", MakeFile(R"({"w":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})",
                                   Data(4)),
       StatusCode::kDataLoss, "shape[0] is not an integer: 2.5"},
      {"StringShape", MakeFile(R"({"w":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})",
                               Data(8)),
       StatusCode::kDataLoss, "shape[0] is a JSON string"},
      {"ShapeTooLarge",
       MakeFile(R"({"w":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})",
                Data(4)),
       StatusCode::kDataLoss, "18446744073709551615 is too large"},
      {"ShapeProductOverflow",
       MakeFile(R"({"w":{"dtype":"F32","shape":[4611686018427387904,8],"data_offsets":[0,4]}})",
                Data(4)),
       StatusCode::kDataLoss, "overflows"},
      {"OffsetsWrongCount", MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})",
                                     Data(4)),
       StatusCode::kDataLoss, "data_offsets has 1 entries, expected 2"},
      {"NegativeOffset", MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})",
                                  Data(4)),
       StatusCode::kDataLoss, "data_offsets[0] -4 is negative"},
      {"OffsetsOutOfRange",
       MakeFile(R"({"w":{"dtype":"F32","shape":[250],"data_offsets":[0,1000]}})", Data(16)),
       StatusCode::kDataLoss, "[0, 1000] run past the 16-byte data section"},
      {"EndBeforeBegin", MakeFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})",
                                  Data(16)),
       StatusCode::kDataLoss, "[8, 4] end before begin"},
      {"SizeMismatch", MakeFile(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
                                Data(16)),
       StatusCode::kDataLoss, "hold 12 bytes, but F32 [2, 2] needs 16"},
      {"Overlap",
       MakeFile(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})",
                Data(24)),
       StatusCode::kDataLoss, "'a' [0, 16) and 'b' [8, 24) overlap"},
      {"TruncatedData", MakeFile("{" + ok_entry + "}", Data(8)), StatusCode::kDataLoss,
       "run past the 8-byte data section"},
      {"MetadataNotObject", MakeFile(R"({"__metadata__": [1]})", ""), StatusCode::kDataLoss,
       "__metadata__"},
      {"MetadataValueNotString", MakeFile(R"({"__metadata__": {"k": 1}})", ""),
       StatusCode::kDataLoss, "value for 'k' is not a string"},
  };
}

class SafetensorsCorruptTest : public ::testing::TestWithParam<CorruptCase> {};

TEST_P(SafetensorsCorruptTest, CorruptFileIsAClearError) {
  const CorruptCase& c = GetParam();
  const std::string dir = testing::MakeTempDir("memoria-safetensors-corrupt");
  const std::string path = dir + "/bad.safetensors";
  WriteBytes(path, c.bytes);
  auto file = SafetensorsFile::Open(path);
  std::filesystem::remove_all(dir);
  ASSERT_FALSE(file.ok()) << c.name << " was accepted";
  EXPECT_EQ(file.status().code(), c.code) << file.status().ToString();
  EXPECT_NE(file.status().message().find(c.message_part), std::string::npos)
      << "message: " << file.status().message() << "\nexpected to contain: " << c.message_part;
  EXPECT_NE(file.status().message().find("bad.safetensors"), std::string::npos)
      << "message should name the file: " << file.status().message();
}

INSTANTIATE_TEST_SUITE_P(Corrupt, SafetensorsCorruptTest, ::testing::ValuesIn(CorruptCases()),
                         [](const ::testing::TestParamInfo<CorruptCase>& info) {
                           return std::string(info.param.name);
                         });

// A small valid file with two tensors and metadata, as bytes.
std::string ValidFileBytes(const std::string& dir) {
  std::vector<float> a(6, 1.0f);
  std::vector<uint16_t> b(4, F32ToBf16(2.0f));
  const std::string path = dir + "/valid.safetensors";
  EXPECT_TRUE(WriteSafetensors(path,
                               {{"a", DType::kF32, {2, 3}, a.data()},
                                {"b", DType::kBF16, {4}, b.data()}},
                               {{"format", "pt"}})
                  .ok());
  return ReadBytes(path);
}

// Every prefix of a valid file is either rejected with a Status or (only the full length)
// accepted; none crashes or reads past the end (checked under ASan).
TEST_F(SafetensorsTest, CorruptTruncatedAtEveryLength) {
  const std::string bytes = ValidFileBytes(dir_);
  const std::string path = Path("cut.safetensors");
  for (size_t n = 0; n < bytes.size(); ++n) {
    WriteBytes(path, bytes.substr(0, n));
    auto file = SafetensorsFile::Open(path);
    EXPECT_FALSE(file.ok()) << "prefix of " << n << " bytes accepted";
    if (!file.ok()) {
      EXPECT_TRUE(file.status().code() == StatusCode::kDataLoss ||
                  file.status().code() == StatusCode::kInvalidArgument)
          << file.status().ToString();
    }
  }
}

TEST_F(SafetensorsTest, FuzzRandomByteFlipsNeverCrash) {
  const std::string bytes = ValidFileBytes(dir_);
  const std::string path = Path("flip.safetensors");
  std::mt19937 rng(1234);
  int rejected = 0;
  for (int trial = 0; trial < 500; ++trial) {
    std::string mutated = bytes;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) {
      // Mostly in the length field and header, where the parser has work to do.
      const size_t limit = std::min<size_t>(mutated.size(), 8 + 200);
      mutated[rng() % limit] = static_cast<char>(rng() & 0xff);
    }
    WriteBytes(path, mutated);
    auto file = SafetensorsFile::Open(path);
    if (!file.ok()) {
      ++rejected;
      continue;
    }
    // Whatever was accepted must lie inside the file.
    for (const auto& [name, view] : (*file)->tensors()) {
      const auto* p = static_cast<const unsigned char*>(view.data);
      unsigned sum = 0;
      for (int64_t i = 0; i < view.num_bytes(); ++i) sum += p[i];
      EXPECT_LE(sum, 255u * static_cast<unsigned>(view.num_bytes())) << name;
    }
  }
  EXPECT_GT(rejected, 0);
}

}  // namespace
}  // namespace memoria
