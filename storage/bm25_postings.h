// The store's BM25 retrieval index on RocksDB: its records in the passage store's `bm25` column
// family, written in the same WriteBatch as the passages they index (so the index is exactly as
// durable and as atomic as the passages), and the search over them. Terms and scores:
// storage/bm25.h. PassageStore (passage_store.h) owns the column family and calls these.
//
// Keys and payloads (values framed as in record_framing.h; integers little endian):
//   "d" + id                 -> kTermDoc:     u64 word count | u32 n | n x (u8 len | term | u32 tf)
//   "p" + term + '\0' + id   -> kTermPosting: u32 tf | u64 word count of the passage
//   "t"                      -> kTermTotals:  u64 passages | u64 total word count
// Terms hold no '\0' (letters and digits only), so "p" + term + '\0' is the exact prefix of one
// term's postings and a search reads them with one bounded iterator. The doc record lists a
// passage's terms so that an overwrite or delete can remove its old postings without a scan.
// The totals record is written last when the index is built from scratch: an index without it is
// incomplete (PassageStore rebuilds it on open).
//
// Callers serialize StageBm25Changes calls against each other (they read the doc records and
// totals the batch then overwrites).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"
#include "storage/bm25.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Snapshot;
class WriteBatch;
}  // namespace rocksdb

namespace memoria {

struct Bm25Totals {
  int64_t docs = 0;          // passages indexed
  int64_t total_length = 0;  // sum of their word counts
};

// One passage to (re)index or to remove. title/text must outlive the call (unused for removals).
struct Bm25Change {
  std::string id;
  bool remove = false;
  const std::string* title = nullptr;
  const std::string* text = nullptr;
};

inline constexpr char kBm25TotalsKey[] = "t";
std::string Bm25DocKey(const std::string& id);
std::string Bm25PostingKey(const std::string& term, const std::string& id);
std::string Bm25TotalsValue(const Bm25Totals& totals);

// The totals record as of `snapshot` (nullptr: latest). NOT_FOUND when there is none (the index
// was never completed); DATA_LOSS when it fails verification.
StatusOr<Bm25Totals> ReadBm25Totals(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                    const rocksdb::Snapshot* snapshot);

// Appends to `batch` what replaces each passage's index entries (its old postings deleted, the new
// ones put) or removes them, and updates *totals by the same changes. Reads the passages' current
// doc records from db; a removal of an unindexed id changes nothing. Does not write the totals
// record (PutBm25Totals). Errors: DATA_LOSS naming the passage when its doc record fails
// verification (its old postings are unknown); UNAVAILABLE for read errors.
Status StageBm25Changes(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                        const std::vector<Bm25Change>& changes, rocksdb::WriteBatch* batch,
                        Bm25Totals* totals);
Status PutBm25Totals(rocksdb::ColumnFamilyHandle* cf, const Bm25Totals& totals,
                     rocksdb::WriteBatch* batch);

// The best top_k passages for `query` (storage/bm25.h), read from one consistent snapshot.
// Errors: FAILED_PRECONDITION when the index has no totals record; DATA_LOSS naming the term and
// passage of a posting that fails verification; UNAVAILABLE for read errors.
StatusOr<std::vector<Bm25Hit>> SearchBm25(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf,
                                          const std::string& query, int top_k);

// Verifies one record of the column family (framing, kind, payload layout), for Scan(verify).
Status VerifyBm25Record(const std::string& key, const char* value, size_t size);

}  // namespace memoria
