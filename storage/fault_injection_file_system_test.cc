// A passage store on FaultInjectionFileSystem: one failed read fails that read's passages with
// UNAVAILABLE (not DATA_LOSS: the bytes on disk are fine) and the next read succeeds; a failed
// WAL write or sync is not acknowledged, leaves every batch all-or-nothing, loses nothing that
// was acknowledged, and the next write reopens the database and succeeds (or, while the disk
// still fails, the store answers UNAVAILABLE until a write reopens it).
#include "storage/fault_injection_file_system.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "base/testing.h"
#include "storage/passage_store.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;
using Op = FaultInjectionFileSystem::Op;

constexpr int64_t kDim = 16;

class FaultInjectionStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("fault-store");
    faulty_ = std::make_shared<FaultInjectionFileSystem>();
    auto spec = CodecSpec::Parse("none", kDim);
    ASSERT_TRUE(spec.ok());
    codec_ = std::move(CreateCodec(*spec)).value();
    identity_.model_fingerprint = 0x5eed;
    identity_.layer_split = 2;
    identity_.codec = codec_->spec();
    ASSERT_TRUE(PassageStore::Create(Options(), dir_, identity_, *codec_, &store_).ok());
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  PassageStoreOptions Options() const {
    PassageStoreOptions options;
    options.file_system = faulty_;
    options.block_cache_bytes = 0;  // every read reaches the file system
    return options;
  }

  void Reopen() {
    store_.reset();
    Status opened = PassageStore::Open(Options(), dir_, &identity_, &store_);
    ASSERT_TRUE(opened.ok()) << opened.ToString();
  }

  // Passages <prefix>0 .. <prefix>(n-1), 3 + i tokens each, memory filled with i + 0.5.
  Status Ingest(const std::string& prefix, int n) {
    std::vector<std::vector<float>> memory(n);
    std::vector<PassageInput> batch(n);
    for (int i = 0; i < n; ++i) {
      PassageInput& p = batch[i];
      p.id = prefix + std::to_string(i);
      p.title = "title " + p.id;
      p.text = "text of " + p.id;
      p.num_tokens = 3 + i;
      p.token_ids.assign(p.num_tokens, i);
      memory[i].assign(p.num_tokens * kDim, static_cast<float>(i) + 0.5f);
      p.memory = memory[i].data();
    }
    return store_->Ingest(pool_, batch);
  }

  // How many of <prefix>0 .. <prefix>(n-1) the store holds, checking that each held one decodes
  // to what was ingested.
  int Present(const std::string& prefix, int n) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) ids.push_back(prefix + std::to_string(i));
    auto memory = store_->GetMemory(pool_, ids);
    auto texts = store_->GetText(ids);
    int present = 0;
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(memory[i].ok(), texts[i].ok()) << ids[i];
      if (!memory[i].ok()) {
        EXPECT_EQ(memory[i].status().code(), StatusCode::kNotFound)
            << memory[i].status().ToString();
        continue;
      }
      ++present;
      EXPECT_EQ(memory[i]->num_tokens, 3 + i);
      EXPECT_EQ(memory[i]->vectors,
                std::vector<float>((3 + i) * kDim, static_cast<float>(i) + 0.5f));
      EXPECT_EQ(texts[i]->text, "text of " + ids[i]);
    }
    return present;
  }

  std::string dir_;
  std::shared_ptr<FaultInjectionFileSystem> faulty_;
  std::unique_ptr<Codec> codec_;
  StoreIdentity identity_;
  std::unique_ptr<PassageStore> store_;
  ThreadPool pool_{1};
};

TEST_F(FaultInjectionStoreTest, FailedReadIsUnavailableForThatRequestAndTheNextSucceeds) {
  ASSERT_TRUE(Ingest("a", 6).ok());
  ASSERT_TRUE(store_->Flush().ok());  // into SST files: reads now go through the file system

  const int64_t before = faulty_->count(Op::kRead);
  auto good = store_->GetCodes({"a2"});
  ASSERT_TRUE(good[0].ok()) << good[0].status().ToString();
  EXPECT_GT(faulty_->count(Op::kRead), before);  // no block cache: the read reached the files

  faulty_->FailNth(Op::kRead, 1);
  auto failed = store_->GetCodes({"a2"});
  ASSERT_FALSE(failed[0].ok());
  EXPECT_EQ(failed[0].status().code(), StatusCode::kUnavailable) << failed[0].status().ToString();
  EXPECT_NE(failed[0].status().message().find("passage 'a2'"), std::string::npos)
      << failed[0].status().ToString();
  EXPECT_NE(failed[0].status().message().find("injected fault: read"), std::string::npos)
      << failed[0].status().ToString();
  EXPECT_EQ(faulty_->injected(Op::kRead), 1);

  auto again = store_->GetCodes({"a2"});
  ASSERT_TRUE(again[0].ok()) << again[0].status().ToString();
  EXPECT_EQ(again[0]->codes, good[0]->codes);

  // The same through the text records, and a batched read: only the failed read's passages fail.
  faulty_->FailNth(Op::kRead, 1);
  auto texts = store_->GetText({"a0", "a1", "a2", "a3", "a4", "a5"});
  int unavailable = 0;
  for (const auto& t : texts) {
    if (t.ok()) continue;
    EXPECT_EQ(t.status().code(), StatusCode::kUnavailable) << t.status().ToString();
    ++unavailable;
  }
  EXPECT_GE(unavailable, 1);
  EXPECT_EQ(faulty_->injected(Op::kRead), 2);
  EXPECT_EQ(Present("a", 6), 6);
}

TEST_F(FaultInjectionStoreTest, FailedWalWriteIsNotAcknowledgedAndLosesNothingAcknowledged) {
  ASSERT_TRUE(Ingest("a", 4).ok());
  faulty_->FailNth(Op::kWrite, 1);
  Status failed = Ingest("b", 4);
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed.ToString();
  EXPECT_NE(failed.message().find("injected fault: write"), std::string::npos) << failed.ToString();
  EXPECT_EQ(faulty_->injected(Op::kWrite), 1);
  // Reads go on; the failed batch is not visible.
  EXPECT_EQ(Present("a", 4), 4);
  EXPECT_EQ(Present("b", 4), 0);
  // RocksDB refuses every later write of that open database, so the next write reopens it first
  // (passage_store.h, Errors) and succeeds, with the acknowledged batches intact.
  EXPECT_EQ(store_->reopen_attempts(), 0);
  Status next = Ingest("c", 4);
  ASSERT_TRUE(next.ok()) << next.ToString();
  EXPECT_EQ(store_->reopen_attempts(), 1);
  EXPECT_EQ(Present("a", 4), 4);
  EXPECT_EQ(Present("b", 4), 0);
  EXPECT_EQ(Present("c", 4), 4);
  ASSERT_TRUE(Ingest("d", 4).ok());
  EXPECT_EQ(store_->reopen_attempts(), 1);  // healthy writes do not reopen
  // A store opened afresh holds exactly the acknowledged batches.
  Reopen();
  EXPECT_EQ(Present("a", 4), 4);
  EXPECT_EQ(Present("b", 4), 0);
  EXPECT_EQ(Present("c", 4), 4);
  EXPECT_EQ(Present("d", 4), 4);
}

TEST_F(FaultInjectionStoreTest, FailedReopenClosesTheStoreUntilAWriteReopensIt) {
  ASSERT_TRUE(Ingest("a", 4).ok());
  faulty_->FailNth(Op::kWrite, 1);
  ASSERT_EQ(Ingest("b", 4).code(), StatusCode::kUnavailable);
  // The disk still fails when the next write reopens the database: that write fails naming the
  // reopen, and the closed store answers every call UNAVAILABLE (no crash, no DATA_LOSS).
  faulty_->FailNth(Op::kWrite, 1);
  Status failed = Ingest("c", 4);
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed.ToString();
  EXPECT_NE(failed.message().find("reopening passage store"), std::string::npos) << failed.ToString();
  EXPECT_EQ(store_->reopen_attempts(), 1);
  auto texts = store_->GetText({"a0", "a1"});
  ASSERT_EQ(texts.size(), 2u);
  for (const auto& t : texts) {
    ASSERT_FALSE(t.ok());
    EXPECT_EQ(t.status().code(), StatusCode::kUnavailable) << t.status().ToString();
    EXPECT_NE(t.status().message().find("is closed"), std::string::npos) << t.status().ToString();
  }
  EXPECT_EQ(store_->GetCodes({"a0"})[0].status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(store_->Scan(false).status().code(), StatusCode::kUnavailable);
  // The disk works again: the next write reopens the store, and everything acknowledged is there.
  Status healed = Ingest("d", 4);
  ASSERT_TRUE(healed.ok()) << healed.ToString();
  EXPECT_EQ(store_->reopen_attempts(), 2);
  EXPECT_EQ(Present("a", 4), 4);
  EXPECT_EQ(Present("b", 4), 0);
  EXPECT_EQ(Present("c", 4), 0);
  EXPECT_EQ(Present("d", 4), 4);
}

TEST_F(FaultInjectionStoreTest, FailedWalSyncIsNotAcknowledgedAndTheBatchIsAllOrNothing) {
  ASSERT_TRUE(Ingest("a", 4).ok());
  faulty_->FailNth(Op::kSync, 1);
  Status failed = Ingest("b", 5);
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed.ToString();
  EXPECT_NE(failed.message().find("injected fault: sync"), std::string::npos) << failed.ToString();
  EXPECT_EQ(Present("b", 5), 0);  // not acknowledged, not visible
  Reopen();
  EXPECT_EQ(Present("a", 4), 4);
  // Appended but not synced: the batch may have reached the file (the OS has it), never in part.
  const int b = Present("b", 5);
  EXPECT_TRUE(b == 0 || b == 5) << b;
  ASSERT_TRUE(Ingest("c", 4).ok());
  EXPECT_EQ(Present("c", 4), 4);
}

TEST(FaultInjectionFileSystemTest, ArmingCountsFromNowAndFiresOnce) {
  FaultInjectionFileSystem faulty;
  EXPECT_TRUE(faulty.Tick(Op::kRead, "f").ok());
  EXPECT_TRUE(faulty.Tick(Op::kRead, "f").ok());
  faulty.FailNth(Op::kRead, 3);
  faulty.FailNth(Op::kSync, 1);
  EXPECT_TRUE(faulty.Tick(Op::kRead, "f").ok());
  EXPECT_TRUE(faulty.Tick(Op::kRead, "f").ok());
  rocksdb::IOStatus s = faulty.Tick(Op::kRead, "000012.sst");
  EXPECT_TRUE(s.IsIOError());
  EXPECT_NE(s.ToString().find("injected fault: read #5 on 000012.sst"), std::string::npos)
      << s.ToString();
  EXPECT_TRUE(faulty.Tick(Op::kRead, "f").ok());   // once only
  EXPECT_TRUE(faulty.Tick(Op::kWrite, "f").ok());  // other kinds keep their own arming
  EXPECT_TRUE(faulty.Tick(Op::kSync, "f").IsIOError());
  faulty.FailNth(Op::kWrite, 1);
  faulty.DisarmAll();
  EXPECT_TRUE(faulty.Tick(Op::kWrite, "f").ok());
  EXPECT_EQ(faulty.count(Op::kRead), 6);
  EXPECT_EQ(faulty.injected(Op::kRead), 1);
  EXPECT_EQ(faulty.injected(Op::kSync), 1);
  EXPECT_EQ(faulty.injected(Op::kWrite), 0);
}

}  // namespace
}  // namespace memoria
