// The store's BM25 index (bm25_postings.h through PassageStore): the same ranking as the
// in-memory reference over the same passages, kept exact through overwrites and deletes, durable
// across a reopen, corruption named and repaired by a rebuild, and an older store without the
// index migrated on its first read-write open.
#include "storage/bm25_postings.h"

#include <gtest/gtest.h>
#include <rocksdb/db.h>

#include <filesystem>
#include <map>
#include <random>

#include "base/testing.h"
#include "storage/passage_store.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

constexpr int64_t kDim = 8;

// A plain reference: BM25 by the header's formula with maps and loops (no postings).
std::vector<Bm25Hit> ReferenceSearch(const std::map<std::string, std::string>& passages,
                                     const std::string& query, int top_k) {
  std::map<std::string, std::map<std::string, int>> tf;
  std::map<std::string, int64_t> len;
  int64_t total = 0;
  for (const auto& [id, text] : passages) {
    for (const auto& t : Bm25Terms(text)) ++tf[id][t];
    len[id] = static_cast<int64_t>(Bm25Terms(text).size());
    total += len[id];
  }
  const double n = static_cast<double>(passages.size());
  const double avg = std::max(1.0, total / n);
  std::map<std::string, double> score;
  const auto words = Bm25Terms(query);
  for (const std::string& t : std::set<std::string>(words.begin(), words.end())) {
    double df = 0;
    for (const auto& [id, m] : tf) df += m.count(t) ? 1 : 0;
    if (df == 0) continue;
    const double idf = std::log(1.0 + (n - df + 0.5) / (df + 0.5));
    for (const auto& [id, m] : tf) {
      auto it = m.find(t);
      if (it == m.end()) continue;
      const double f = it->second;
      score[id] += idf * f * 2.2 / (f + 1.2 * (0.25 + 0.75 * len[id] / avg));
    }
  }
  std::vector<Bm25Hit> hits;
  for (const auto& [id, s] : score) hits.push_back({id, static_cast<float>(s)});
  std::stable_sort(hits.begin(), hits.end(), [](const Bm25Hit& a, const Bm25Hit& b) { return a.score > b.score; });
  if (static_cast<int>(hits.size()) > top_k) hits.resize(top_k);
  return hits;
}

// Opens the store's database with plain RocksDB (no PassageStore) and calls fn with its bm25
// column family: how the tests make the states an older version or an interrupted build leave.
template <typename Fn>
void WithRawIndexFamily(const std::string& dir, const Fn& fn) {
  rocksdb::DBOptions db_options;
  std::vector<std::string> names;
  ASSERT_TRUE(rocksdb::DB::ListColumnFamilies(db_options, dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(db_options, dir, cfs, &handles, &db).ok());
  for (auto* h : handles) {
    if (h->GetName() == "bm25") fn(db, h);
  }
  for (auto* h : handles) EXPECT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  EXPECT_TRUE(db->Close().ok());
  delete db;
}

class Bm25PostingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("bm25store");
    identity_.model_fingerprint = 7;
    identity_.layer_split = 1;
    identity_.codec = *CodecSpec::Parse("none", kDim);
    codec_ = std::move(CreateCodec(identity_.codec)).value();
    options_.sync = false;
    ASSERT_TRUE(PassageStore::Create(options_, dir_, identity_, *codec_, &store_).ok());
  }
  void TearDown() override {
    store_.reset();
    fs::remove_all(dir_);
  }

  // Stores passages (title "", the given text, 2 memory tokens each) and mirrors them in truth_.
  void Put(const std::map<std::string, std::string>& passages) {
    std::vector<PassageInput> batch;
    const std::vector<float> memory(2 * kDim, 0.5f);
    for (const auto& [id, text] : passages) {
      PassageInput p;
      p.id = id;
      p.text = text;
      p.token_ids = {1, 2};
      p.num_tokens = 2;
      p.memory = memory.data();
      batch.push_back(p);
      truth_[id] = " " + text;  // Bm25PassageText(title "", text)
    }
    const Status st = store_->Ingest(ThreadPool(1), batch);
    ASSERT_TRUE(st.ok()) << st.ToString();
  }

  void ExpectSameAsReference(const std::string& query, int top_k) {
    auto got = store_->Search(query, top_k);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    const auto want = ReferenceSearch(truth_, query, top_k);
    ASSERT_EQ(got->size(), want.size()) << query;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR((*got)[i].score, want[i].score, 1e-4f * want[i].score) << query << " rank " << i;
      // Ids may differ only between (nearly) tied scores.
      if (i + 1 < want.size() && want[i].score - want[i + 1].score > 1e-4f * want[i].score &&
          (i == 0 || want[i - 1].score - want[i].score > 1e-4f * want[i].score)) {
        EXPECT_EQ((*got)[i].id, want[i].id) << query << " rank " << i;
      }
    }
    EXPECT_EQ(store_->passage_count(), static_cast<int64_t>(truth_.size()));
  }

  std::string dir_;
  StoreIdentity identity_;
  std::unique_ptr<Codec> codec_;
  PassageStoreOptions options_;
  std::unique_ptr<PassageStore> store_;
  std::map<std::string, std::string> truth_;
};

std::string RandomText(std::mt19937_64& rng, int words) {
  static const char* kWords[] = {"warsaw", "curie", "oxygen", "element", "the",   "of",
                                 "capital", "river", "born",   "nobel",   "prize", "physics",
                                 "Poland",  "city",  "a",      "IS",      "1867",  "teacher"};
  std::string s;
  for (int i = 0; i < words; ++i) {
    s += kWords[rng() % (sizeof(kWords) / sizeof(kWords[0]))];
    s += (rng() % 5 == 0) ? ", " : " ";
  }
  return s;
}

TEST_F(Bm25PostingsTest, RanksAsTheReferenceThroughIngestOverwriteAndDelete) {
  std::mt19937_64 rng(3);
  std::map<std::string, std::string> first;
  for (int i = 0; i < 60; ++i) first["p" + std::to_string(i)] = RandomText(rng, 5 + int(rng() % 40));
  Put(first);
  const std::vector<std::string> queries = {"Where was Curie born?", "capital of Poland",
                                            "nobel prize in physics 1867", "the", "zebra", "a river city"};
  for (const auto& q : queries) ExpectSameAsReference(q, 10);

  // Overwrites (new words for old ids) and new ids in one batch.
  std::map<std::string, std::string> second;
  for (int i = 40; i < 80; ++i) second["p" + std::to_string(i)] = RandomText(rng, 3 + int(rng() % 20));
  Put(second);
  for (const auto& q : queries) ExpectSameAsReference(q, 10);

  std::vector<std::string> gone = {"p1", "p2", "p45", "p79", "never-stored", "p1"};
  ASSERT_TRUE(store_->Delete(gone).ok());
  for (const auto& id : gone) truth_.erase(id);
  for (const auto& q : queries) ExpectSameAsReference(q, 100);

  // Durable: a reopened store answers the same, with no rebuild needed.
  store_.reset();
  ASSERT_TRUE(PassageStore::Open(options_, dir_, &identity_, &store_).ok());
  for (const auto& q : queries) ExpectSameAsReference(q, 100);
  auto scan = store_->Scan(/*verify=*/true);
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->corrupt, 0);
}

TEST_F(Bm25PostingsTest, AnOverwrittenPassageNoLongerMatchesItsOldWords) {
  Put({{"x", "Marie Curie was born in Warsaw"}, {"y", "oxygen is an element"}});
  ASSERT_EQ(store_->Search("warsaw", 5)->size(), 1u);
  Put({{"x", "a completely different text"}});
  EXPECT_TRUE(store_->Search("warsaw", 5)->empty());
  EXPECT_EQ(store_->Search("different", 5)->at(0).id, "x");
  EXPECT_EQ(store_->passage_count(), 2);
  ASSERT_TRUE(store_->Delete({"x"}).ok());
  EXPECT_TRUE(store_->Search("different", 5)->empty());
  EXPECT_EQ(store_->passage_count(), 1);
}

TEST_F(Bm25PostingsTest, CorruptPostingIsNamedAndARebuildRepairsIt) {
  Put({{"x", "Marie Curie was born in Warsaw"}, {"y", "Warsaw is the capital of Poland"}});
  std::string bad = Bm25TotalsValue(Bm25Totals{1, 2});  // a valid frame of another kind...
  ASSERT_TRUE(store_->PutRawIndexValueForTest(Bm25PostingKey("warsaw", "y"), bad).ok());
  auto hits = store_->Search("capital of warsaw", 5);
  ASSERT_FALSE(hits.ok());
  EXPECT_EQ(hits.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(hits.status().message().find("term 'warsaw' in passage 'y'"), std::string::npos)
      << hits.status().message();
  // ...and a flipped byte in a posting of another term.
  Put({{"y", "Warsaw is the capital of Poland"}});  // an overwrite rewrites y's postings
  ASSERT_TRUE(store_->Search("capital of warsaw", 5).ok());
  std::string flipped = Bm25TotalsValue(Bm25Totals{3, 4});
  flipped[3] ^= 0x01;
  ASSERT_TRUE(store_->PutRawIndexValueForTest(Bm25PostingKey("capital", "y"), flipped).ok());
  hits = store_->Search("capital", 5);
  ASSERT_FALSE(hits.ok());
  EXPECT_EQ(hits.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(hits.status().message().find("checksum mismatch"), std::string::npos) << hits.status().message();
  auto scan = store_->Scan(/*verify=*/true);
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->corrupt, 1);

  int64_t skipped = -1;
  ASSERT_TRUE(store_->RebuildRetrievalIndex(&skipped).ok());
  EXPECT_EQ(skipped, 0);
  hits = store_->Search("capital", 5);
  ASSERT_TRUE(hits.ok()) << hits.status().ToString();
  ASSERT_EQ(hits->size(), 1u);
  EXPECT_EQ(hits->at(0).id, "y");
  EXPECT_EQ(store_->passage_count(), 2);
  EXPECT_EQ(store_->Scan(true)->corrupt, 0);
}

TEST_F(Bm25PostingsTest, OverwritingAPassageWhoseTermRecordIsCorruptFailsNamingIt) {
  Put({{"x", "Marie Curie"}});
  ASSERT_TRUE(store_->PutRawIndexValueForTest(Bm25DocKey("x"), "garbage").ok());
  std::vector<PassageInput> batch(1);
  batch[0].id = "x";
  batch[0].text = "new text";
  const Status st = store_->Ingest(ThreadPool(1), batch);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_NE(st.message().find("passage 'x' retrieval-index terms"), std::string::npos) << st.ToString();
  // Nothing of the batch was written; a rebuild repairs the index and the write then goes in.
  EXPECT_EQ(store_->GetText({"x"})[0]->text, "Marie Curie");
  ASSERT_TRUE(store_->RebuildRetrievalIndex().ok());
  ASSERT_TRUE(store_->Ingest(ThreadPool(1), batch).ok());
  EXPECT_EQ(store_->Search("text", 1)->at(0).id, "x");
  EXPECT_TRUE(store_->Search("curie", 1)->empty());
}

// A store made before the index existed: the same store minus the bm25 column family.
TEST_F(Bm25PostingsTest, AStoreWithoutTheIndexGetsItOnItsFirstReadWriteOpen) {
  Put({{"x", "Marie Curie was born in Warsaw"}, {"y", "oxygen is an element"}, {"z", ""}});
  store_.reset();
  WithRawIndexFamily(dir_, [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* bm25) {
    ASSERT_TRUE(db->DropColumnFamily(bm25).ok());
  });
  PassageStoreOptions read_only = options_;
  read_only.read_only = true;
  ASSERT_TRUE(PassageStore::Open(read_only, dir_, &identity_, &store_).ok());
  auto hits = store_->Search("warsaw", 1);
  EXPECT_EQ(hits.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(hits.status().message().find("open it read-write once"), std::string::npos);
  EXPECT_EQ(store_->passage_count(), -1);
  EXPECT_EQ(store_->GetText({"x"})[0]->title, "");  // the rest of the store reads as before
  store_.reset();

  ASSERT_TRUE(PassageStore::Open(options_, dir_, &identity_, &store_).ok());
  EXPECT_EQ(store_->passage_count(), 3);
  ASSERT_EQ(store_->Search("warsaw", 1)->at(0).id, "x");
  ExpectSameAsReference("oxygen born in warsaw", 5);
}

TEST_F(Bm25PostingsTest, AnIndexWithoutTotalsIsRebuiltOnOpen) {
  Put({{"x", "Marie Curie was born in Warsaw"}, {"y", "oxygen is an element"}});
  // A rebuild interrupted after clearing: postings of x present, no totals record.
  store_.reset();
  WithRawIndexFamily(dir_, [](rocksdb::DB* db, rocksdb::ColumnFamilyHandle* bm25) {
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), bm25, kBm25TotalsKey).ok());
    ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), bm25, Bm25DocKey("y")).ok());
  });
  ASSERT_TRUE(PassageStore::Open(options_, dir_, &identity_, &store_).ok());
  EXPECT_EQ(store_->passage_count(), 2);
  ExpectSameAsReference("oxygen born in warsaw", 5);
}

TEST(Bm25RecordTest, VerifyNamesEachKindOfDamage) {
  EXPECT_TRUE(VerifyBm25Record(kBm25TotalsKey, Bm25TotalsValue({2, 9}).data(), Bm25TotalsValue({2, 9}).size()).ok());
  const std::string totals = Bm25TotalsValue({2, 9});
  EXPECT_EQ(VerifyBm25Record(kBm25TotalsKey, totals.data(), totals.size() - 1).code(), StatusCode::kDataLoss);
  EXPECT_EQ(VerifyBm25Record(Bm25DocKey("a"), totals.data(), totals.size()).code(), StatusCode::kDataLoss);
  EXPECT_EQ(VerifyBm25Record("?", totals.data(), totals.size()).code(), StatusCode::kDataLoss);
  std::string newer = totals;
  newer[1] = static_cast<char>(kStoreFormatVersion + 1);
  const uint32_t crc = Crc32c(newer.data(), newer.size() - 4);
  std::memcpy(newer.data() + newer.size() - 4, &crc, 4);
  EXPECT_EQ(VerifyBm25Record(kBm25TotalsKey, newer.data(), newer.size()).code(),
            StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace memoria
