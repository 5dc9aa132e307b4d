#include "storage/passage_store.h"

#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "base/testing.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

std::vector<float> Gaussian(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = g(rng);
  return x;
}

constexpr int64_t kDim = 32;

std::unique_ptr<Codec> TrainedCodec(const std::string& text) {
  auto spec = CodecSpec::Parse(text, kDim);
  EXPECT_TRUE(spec.ok());
  auto codec = std::move(CreateCodec(*spec)).value();
  const auto x = Gaussian(600 * kDim, 1);
  CodecTrainOptions opt;
  opt.pq.iterations = 3;
  EXPECT_TRUE(codec->Train(ThreadPool(2), 600, x.data(), kDim, opt, nullptr).ok());
  return codec;
}

struct Passage {
  std::string id;
  std::vector<float> memory;
  int64_t tokens;
};

class PassageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { dir_ = testing::MakeTempDir("store"); }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  void CreateStore(const std::string& codec_text, PassageStoreOptions options = {}) {
    codec_ = TrainedCodec(codec_text);
    identity_.model_fingerprint = 0x1234abcdull;
    identity_.layer_split = 6;
    identity_.codec = codec_->spec();
    options.sync = false;  // tests need process-crash durability only
    ASSERT_TRUE(PassageStore::Create(options, dir_, identity_, *codec_, &store_).ok());
  }

  // Ingests passages p<first>..p<first+count-1> with 1..40 tokens each.
  std::vector<Passage> Ingest(int first, int count, uint64_t seed = 7) {
    std::vector<Passage> ps;
    for (int i = first; i < first + count; ++i) {
      Passage p;
      p.id = "p" + std::to_string(i);
      p.tokens = 1 + (i * 7) % 40;
      p.memory = Gaussian(p.tokens * kDim, seed + i);
      ps.push_back(std::move(p));
    }
    std::vector<PassageInput> in;
    for (const auto& p : ps) {
      PassageInput pi;
      pi.id = p.id;
      pi.title = "title " + p.id;
      pi.text = "text of " + p.id;
      pi.token_ids.assign(p.tokens, static_cast<int32_t>(p.tokens));
      pi.num_tokens = p.tokens;
      pi.memory = p.memory.data();
      in.push_back(pi);
    }
    EXPECT_TRUE(store_->Ingest(pool_, in).ok());
    return ps;
  }

  std::string dir_;
  ThreadPool pool_{2};
  std::unique_ptr<Codec> codec_;
  StoreIdentity identity_;
  std::unique_ptr<PassageStore> store_;
};

TEST_F(PassageStoreTest, IngestAndReadBackEachCodec) {
  for (const char* text : {"none", "none:bf16", "pq:g=8,bits=8", "btr"}) {
    SCOPED_TRACE(text);
    store_.reset();
    fs::remove_all(dir_);
    CreateStore(text);
    const auto ps = Ingest(0, 12);
    std::vector<std::string> ids;
    for (const auto& p : ps) ids.push_back(p.id);
    ids.push_back("missing");
    auto mem = store_->GetMemory(pool_, ids);
    ASSERT_EQ(mem.size(), ids.size());
    for (size_t i = 0; i < ps.size(); ++i) {
      ASSERT_TRUE(mem[i].ok()) << mem[i].status().ToString();
      EXPECT_EQ(mem[i]->num_tokens, ps[i].tokens);
      // The store returns exactly what the codec decodes.
      std::vector<uint8_t> codes(codec_->code_size(ps[i].tokens));
      ASSERT_TRUE(codec_->Encode(pool_, ps[i].tokens, ps[i].memory.data(), kDim, codes.data()).ok());
      std::vector<float> expect(ps[i].tokens * kDim);
      ASSERT_TRUE(codec_->Decode(pool_, ps[i].tokens, codes.data(), codes.size(), expect.data(), kDim).ok());
      EXPECT_EQ(mem[i]->vectors, expect);
    }
    EXPECT_EQ(mem.back().status().code(), StatusCode::kNotFound);
    EXPECT_NE(mem.back().status().message().find("missing"), std::string::npos);

    auto text_records = store_->GetText({"p3"});
    ASSERT_TRUE(text_records[0].ok());
    EXPECT_EQ(text_records[0]->title, "title p3");
    EXPECT_EQ(text_records[0]->text, "text of p3");
    EXPECT_EQ(text_records[0]->token_ids, std::vector<int32_t>(22, 22));

    auto stats = store_->Scan(/*verify=*/true);
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->passages, 12);
    EXPECT_EQ(stats->memories, 12);
    EXPECT_EQ(stats->corrupt, 0);
    int64_t tokens = 0;
    for (const auto& p : ps) tokens += p.tokens;
    EXPECT_EQ(stats->tokens, tokens);
    EXPECT_EQ(stats->code_bytes, tokens * codec_->spec().BytesPerToken());
  }
}

// Extra codecs: every passage stored in each, read back per codec exactly as that codec decodes
// it; deletes reach every codec; damage in one codec's value fails only that codec's read.
TEST_F(PassageStoreTest, ExtraCodecsHoldEveryPassageInEachCodec) {
  auto primary = TrainedCodec("pq:g=8,bits=8");
  auto btr = TrainedCodec("btr");
  auto bf16 = TrainedCodec("none:bf16");
  identity_.model_fingerprint = 0x77;
  identity_.layer_split = 2;
  identity_.codec = primary->spec();
  identity_.extra_codecs = {btr->spec(), bf16->spec()};
  PassageStoreOptions options;
  options.sync = false;
  // Mismatched lists are refused.
  EXPECT_EQ(PassageStore::Create(options, dir_, identity_, *primary, &store_).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PassageStore::Create(options, dir_, identity_, {primary.get(), bf16.get(), btr.get()}, &store_).code(),
            StatusCode::kInvalidArgument);
  StoreIdentity twice = identity_;
  twice.extra_codecs = {primary->spec()};
  EXPECT_EQ(PassageStore::Create(options, dir_, twice, {primary.get(), primary.get()}, &store_).code(),
            StatusCode::kInvalidArgument);
  ASSERT_TRUE(PassageStore::Create(options, dir_, identity_, {primary.get(), btr.get(), bf16.get()}, &store_).ok());
  codec_ = std::move(primary);
  const auto ps = Ingest(0, 6);
  std::vector<std::string> ids;
  for (const auto& p : ps) ids.push_back(p.id);

  auto check_all = [&](const std::string& when) {
    SCOPED_TRACE(when);
    ASSERT_EQ(store_->num_codecs(), 3);
    for (int c = 0; c < 3; ++c) {
      const Codec& codec = store_->codec(c);
      EXPECT_EQ(store_->FindCodec(codec.spec()), c);
      auto mem = store_->GetMemory(pool_, ids, c);
      for (size_t i = 0; i < ps.size(); ++i) {
        ASSERT_TRUE(mem[i].ok()) << mem[i].status().ToString();
        std::vector<uint8_t> codes(codec.code_size(ps[i].tokens));
        ASSERT_TRUE(codec.Encode(pool_, ps[i].tokens, ps[i].memory.data(), kDim, codes.data()).ok());
        std::vector<float> expect(ps[i].tokens * kDim);
        ASSERT_TRUE(codec.Decode(pool_, ps[i].tokens, codes.data(), codes.size(), expect.data(), kDim).ok());
        EXPECT_EQ(mem[i]->vectors, expect) << "codec " << codec.spec().ToString();
      }
    }
    EXPECT_EQ(store_->codec(1).spec(), btr->spec());
    EXPECT_EQ(*store_->FindCodecByFlag("btr"), 1);
    EXPECT_EQ(*store_->FindCodecByFlag("none:bf16"), 2);
    EXPECT_EQ(*store_->FindCodecByFlag(""), 0);
    EXPECT_EQ(store_->FindCodecByFlag("none").status().message(),
              "the store holds no memory in codec 'none' (none(d=32, f32)); it holds pq:g=8,bits=8, btr, none:bf16");
    EXPECT_EQ(store_->FindCodecByFlag("zip").status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(store_->FindCodec(*CodecSpec::Parse("none", kDim)), -1);
    EXPECT_EQ(store_->GetCodes({"p0"}, 3)[0].status().code(), StatusCode::kInvalidArgument);
    auto stats = store_->Scan(/*verify=*/true);
    ASSERT_TRUE(stats.ok());
    ASSERT_EQ(stats->codecs.size(), 3u);
    int64_t tokens = 0;
    for (const auto& p : ps) tokens += p.tokens;
    for (int c = 0; c < 3; ++c) {
      EXPECT_EQ(stats->codecs[c].memories, 6);
      EXPECT_EQ(stats->codecs[c].tokens, tokens);
      EXPECT_EQ(stats->codecs[c].code_bytes, tokens * store_->codec(c).spec().BytesPerToken());
    }
    EXPECT_EQ(stats->code_bytes, stats->codecs[0].code_bytes);
    EXPECT_EQ(stats->corrupt, 0);
  };
  check_all("after ingest");
  // Reopened for the primary identity: the extra codecs come from the store.
  store_.reset();
  StoreIdentity expected = identity_;
  expected.extra_codecs.clear();
  ASSERT_TRUE(PassageStore::Open(options, dir_, &expected, &store_).ok());
  check_all("after reopen");
  EXPECT_EQ(store_->identity().extra_codecs, identity_.extra_codecs);

  // A damaged BTR value: only BTR reads of that passage fail, naming the codec.
  std::string v = *store_->GetRawMemoryValueForTest("p2");
  v[3] ^= 1;
  ASSERT_TRUE(store_->PutRawMemoryValueForTest("p2", v, /*codec_index=*/1).ok());
  auto btr_read = store_->GetCodes({"p2", "p3"}, 1);
  EXPECT_EQ(btr_read[0].status().code(), StatusCode::kDataLoss);
  EXPECT_NE(btr_read[0].status().message().find("btr("), std::string::npos) << btr_read[0].status().ToString();
  EXPECT_TRUE(btr_read[1].ok());
  EXPECT_TRUE(store_->GetCodes({"p2"}, 0)[0].ok());
  EXPECT_TRUE(store_->GetCodes({"p2"}, 2)[0].ok());
  EXPECT_EQ(store_->Scan(true)->corrupt, 1);

  ASSERT_TRUE(store_->Delete({"p1"}).ok());
  for (int c = 0; c < 3; ++c) EXPECT_EQ(store_->GetCodes({"p1"}, c)[0].status().code(), StatusCode::kNotFound);
}

// BTR with offline token merging: each passage's merged blob (merge map + fewer tokens' codes)
// is what the store keeps; reads restore every token position, the stored bytes shrink, and the
// store's identity names the merge ratio (a plain btr reader is refused).
TEST_F(PassageStoreTest, MergedBtrPassagesReadBackAtEveryTokenPosition) {
  CreateStore("btr:merge=0.25");
  const auto ps = Ingest(0, 10);
  std::vector<std::string> ids;
  for (const auto& p : ps) ids.push_back(p.id);
  auto mem = store_->GetMemory(pool_, ids);
  int64_t tokens = 0, blob_bytes = 0;
  for (size_t i = 0; i < ps.size(); ++i) {
    ASSERT_TRUE(mem[i].ok()) << mem[i].status().ToString();
    ASSERT_EQ(mem[i]->num_tokens, ps[i].tokens);
    std::string blob;
    ASSERT_TRUE(codec_->EncodePassage(pool_, ps[i].tokens, ps[i].memory.data(), kDim, &blob).ok());
    std::vector<float> expect(ps[i].tokens * kDim);
    ASSERT_TRUE(codec_->DecodePassage(pool_, ps[i].tokens, reinterpret_cast<const uint8_t*>(blob.data()),
                                      int64_t(blob.size()), expect.data(), kDim).ok());
    EXPECT_EQ(mem[i]->vectors, expect);
    tokens += ps[i].tokens;
    blob_bytes += int64_t(blob.size());
  }
  auto stats = store_->Scan(/*verify=*/true);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->tokens, tokens);
  EXPECT_EQ(stats->code_bytes, blob_bytes);
  // 8 + ceil(ceil(n / 2) / 8) + 2 k + m (d / 8 + 2) per passage, k = floor(n / 4) (<= n / 2).
  int64_t formula = 0;
  for (const auto& p : ps) {
    const int64_t k = p.tokens / 4;
    formula += 8 + ((p.tokens + 1) / 2 + 7) / 8 + 2 * k + (p.tokens - k) * (kDim / 8 + 2);
  }
  EXPECT_EQ(stats->code_bytes, formula);
  EXPECT_EQ(stats->corrupt, 0);
  store_.reset();

  std::unique_ptr<PassageStore> s;
  ASSERT_TRUE(PassageStore::Open({}, dir_, &identity_, &s).ok());
  EXPECT_EQ(s->codec().spec().ToFlag(), "btr:merge=0.25");
  EXPECT_EQ(s->GetMemory(pool_, {"p3"})[0]->vectors, mem[3]->vectors);
  s.reset();
  StoreIdentity plain = identity_;
  plain.codec = *CodecSpec::Parse("btr", kDim);
  const Status st = PassageStore::Open({}, dir_, &plain, &s);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("merge=0.25"), std::string::npos) << st.message();
}

TEST_F(PassageStoreTest, ReopenChecksIdentity) {
  CreateStore("pq:g=8,bits=8");
  Ingest(0, 3);
  const std::string state = codec_->SerializeState();
  store_.reset();

  std::unique_ptr<PassageStore> s;
  ASSERT_TRUE(PassageStore::Open({}, dir_, &identity_, &s).ok());
  EXPECT_EQ(s->codec().SerializeState(), state);
  EXPECT_EQ(s->GetMemory(pool_, {"p1"})[0].status().code(), StatusCode::kOk);
  s.reset();
  ASSERT_TRUE(PassageStore::Open({}, dir_, nullptr, &s).ok());
  EXPECT_EQ(s->identity().model_fingerprint, identity_.model_fingerprint);
  s.reset();

  StoreIdentity other = identity_;
  other.model_fingerprint = 0x99;
  Status st = PassageStore::Open({}, dir_, &other, &s);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("0x000000001234abcd"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("0x0000000000000099"), std::string::npos) << st.message();
  other = identity_;
  other.layer_split = 4;
  st = PassageStore::Open({}, dir_, &other, &s);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("layer split 4"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("layer split 6"), std::string::npos) << st.message();
  other = identity_;
  other.codec = *CodecSpec::Parse("btr", kDim);
  st = PassageStore::Open({}, dir_, &other, &s);
  EXPECT_EQ(st.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(st.message().find("btr(d=32"), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("pq(d=32, g=8, C=256)"), std::string::npos) << st.message();

  // Creating over an existing store, or opening where there is none.
  EXPECT_EQ(PassageStore::Create({}, dir_, identity_, *codec_, &s).code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(PassageStore::Open({}, dir_ + "/nope", nullptr, &s).code(), StatusCode::kNotFound);
}

TEST_F(PassageStoreTest, DeleteAndOverwrite) {
  CreateStore("none");
  Ingest(0, 5, /*seed=*/1);
  ASSERT_TRUE(store_->Delete({"p1", "p3", "never"}).ok());
  auto mem = store_->GetMemory(pool_, {"p0", "p1", "p3", "p4"});
  EXPECT_TRUE(mem[0].ok());
  EXPECT_EQ(mem[1].status().code(), StatusCode::kNotFound);
  EXPECT_EQ(mem[2].status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store_->GetText({"p1"})[0].status().code(), StatusCode::kNotFound);
  const auto again = Ingest(4, 1, /*seed=*/100);  // overwrite p4 with other vectors
  mem = store_->GetMemory(pool_, {"p4"});
  ASSERT_TRUE(mem[0].ok());
  EXPECT_EQ(mem[0]->vectors, again[0].memory);
  auto stats = store_->Scan(false);
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->memories, 3);
}

TEST_F(PassageStoreTest, RejectsBadBatches) {
  CreateStore("none");
  std::vector<float> m(kDim);
  PassageInput a;
  a.id = "a";
  a.num_tokens = 1;
  a.memory = m.data();
  EXPECT_EQ(store_->Ingest(pool_, {a, a}).code(), StatusCode::kInvalidArgument);
  PassageInput e = a;
  e.id = "";
  EXPECT_EQ(store_->Ingest(pool_, {e}).code(), StatusCode::kInvalidArgument);
  PassageInput z = a;
  z.memory = nullptr;
  EXPECT_EQ(store_->Ingest(pool_, {z}).code(), StatusCode::kInvalidArgument);
  // Nothing of a rejected batch was written.
  EXPECT_EQ(store_->GetMemory(pool_, {"a"})[0].status().code(), StatusCode::kNotFound);
}

TEST_F(PassageStoreTest, ReadOnlyRefusesWrites) {
  CreateStore("none");
  Ingest(0, 2);
  store_.reset();
  PassageStoreOptions ro;
  ro.read_only = true;
  ASSERT_TRUE(PassageStore::Open(ro, dir_, &identity_, &store_).ok());
  EXPECT_TRUE(store_->GetMemory(pool_, {"p0"})[0].ok());
  EXPECT_EQ(store_->Delete({"p0"}).code(), StatusCode::kFailedPrecondition);
}

// Acceptance 5: a table of corrupted memory values, each failing only its own passage.
TEST_F(PassageStoreTest, CorruptMemoryValuesFailOnlyTheirPassage) {
  CreateStore("pq:g=8,bits=8");
  Ingest(0, 8);
  auto raw_or = store_->GetRawMemoryValueForTest("p2");
  ASSERT_TRUE(raw_or.ok());
  const std::string good = *raw_or;
  const std::string codes = good.substr(2 + 13, good.size() - 2 - 13 - 4);
  const int64_t tokens = static_cast<int64_t>(codes.size()) / 8;

  std::string flipped = good;
  flipped[good.size() / 2] ^= 0x10;
  std::string flipped_crc = good;
  flipped_crc[good.size() - 1] ^= 0x01;
  struct Case {
    std::string name, value;
    StatusCode code;
    std::string needle;  // must appear in the message
  };
  const std::vector<Case> cases = {
      {"flipped byte", flipped, StatusCode::kDataLoss, "checksum mismatch"},
      {"flipped checksum", flipped_crc, StatusCode::kDataLoss, "checksum mismatch"},
      {"truncated", good.substr(0, good.size() - 9), StatusCode::kDataLoss, "checksum"},
      {"truncated to 3 bytes", good.substr(0, 3), StatusCode::kDataLoss, "truncated"},
      {"empty", "", StatusCode::kDataLoss, "truncated"},
      {"wrong codec id", EncodeMemoryValue(CodecId::kBtr, tokens, kDim, codes), StatusCode::kDataLoss,
       "codec id 2 (btr)"},
      {"wrong dim", EncodeMemoryValue(CodecId::kPq, tokens, kDim + 8, codes), StatusCode::kDataLoss, "dim 40"},
      {"wrong token count", EncodeMemoryValue(CodecId::kPq, tokens + 1, kDim, codes), StatusCode::kDataLoss,
       "code bytes"},
      {"short codes", EncodeMemoryValue(CodecId::kPq, tokens, kDim, codes.substr(1)), StatusCode::kDataLoss,
       "code bytes"},
      {"newer version", EncodeMemoryValue(CodecId::kPq, tokens, kDim, codes, kStoreFormatVersion + 1),
       StatusCode::kFailedPrecondition, "format version 2"},
      {"version 0", EncodeMemoryValue(CodecId::kPq, tokens, kDim, codes, 0), StatusCode::kFailedPrecondition,
       "format version 0"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_TRUE(store_->PutRawMemoryValueForTest("p2", c.value).ok());
    auto mem = store_->GetMemory(pool_, {"p1", "p2", "p3"});
    EXPECT_TRUE(mem[0].ok());
    EXPECT_TRUE(mem[2].ok());
    ASSERT_FALSE(mem[1].ok());
    EXPECT_EQ(mem[1].status().code(), c.code) << mem[1].status().ToString();
    EXPECT_NE(mem[1].status().message().find("passage 'p2'"), std::string::npos) << mem[1].status().ToString();
    EXPECT_NE(mem[1].status().message().find(c.needle), std::string::npos) << mem[1].status().ToString();
    auto stats = store_->Scan(/*verify=*/true);
    ASSERT_TRUE(stats.ok());
    EXPECT_EQ(stats->corrupt, 1);
  }
  ASSERT_TRUE(store_->PutRawMemoryValueForTest("p2", good).ok());
  EXPECT_TRUE(store_->GetMemory(pool_, {"p2"})[0].ok());
}

// Acceptance 5 on disk: flip a byte of one passage's codes inside the blob file RocksDB wrote.
TEST_F(PassageStoreTest, CorruptBlobFileByteFailsOnlyThatPassage) {
  PassageStoreOptions blob;
  blob.enable_blob_files = true;
  CreateStore("none", blob);  // f32 codes: the passage's bytes are easy to find in the file
  const auto ps = Ingest(0, 6);
  ASSERT_TRUE(store_->Flush().ok());
  store_.reset();
  std::string blob_path;
  for (const auto& e : fs::directory_iterator(dir_)) {
    if (e.path().extension() == ".blob") blob_path = e.path().string();
  }
  ASSERT_FALSE(blob_path.empty()) << "no blob file: BlobDB is expected to hold memory values";
  std::string bytes;
  {
    std::ifstream in(blob_path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  const std::string needle(reinterpret_cast<const char*>(ps[3].memory.data()), 64);
  const auto pos = bytes.find(needle);
  ASSERT_NE(pos, std::string::npos);
  bytes[pos + 5] ^= 0x40;
  {
    std::ofstream out(blob_path, std::ios::binary | std::ios::trunc);
    out << bytes;
  }
  ASSERT_TRUE(PassageStore::Open(blob, dir_, &identity_, &store_).ok());
  std::vector<std::string> ids;
  for (const auto& p : ps) ids.push_back(p.id);
  auto mem = store_->GetMemory(pool_, ids);
  for (size_t i = 0; i < ps.size(); ++i) {
    if (i == 3) {
      EXPECT_EQ(mem[i].status().code(), StatusCode::kDataLoss) << mem[i].status().ToString();
      EXPECT_NE(mem[i].status().message().find("passage 'p3'"), std::string::npos);
    } else {
      EXPECT_TRUE(mem[i].ok()) << ids[i] << ": " << mem[i].status().ToString();
    }
  }
  auto stats = store_->Scan(/*verify=*/true);
  ASSERT_TRUE(stats.ok());
  EXPECT_GE(stats->corrupt, 1);
}

TEST_F(PassageStoreTest, CreateValidatesCodec) {
  codec_ = TrainedCodec("none");
  identity_.codec = *CodecSpec::Parse("none:bf16", kDim);
  EXPECT_EQ(PassageStore::Create({}, dir_, identity_, *codec_, &store_).code(), StatusCode::kInvalidArgument);
  auto untrained = std::move(CreateCodec(*CodecSpec::Parse("pq:g=4,bits=8", kDim))).value();
  identity_.codec = untrained->spec();
  EXPECT_EQ(PassageStore::Create({}, dir_, identity_, *untrained, &store_).code(),
            StatusCode::kFailedPrecondition);
}

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789", 9), 0xe3069283u);  // the CRC-32C check value
  EXPECT_EQ(Crc32c("", 0), 0u);
  std::string zeros(32, '\0');
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), 0x8a9136aau);  // RFC 3720 B.4
}

}  // namespace
}  // namespace memoria
