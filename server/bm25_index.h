// The built-in retriever: BM25 (Okapi, k1 = 1.2, b = 0.75) over the words of the stored
// passages' title and text.
//
// Where the index lives: IN MEMORY, rebuilt at server start from the store's passage records
// (PassageStore::ForEachText) and updated by the server after every durable Ingest and Delete.
// Why not a RocksDB column family as the issue asks: the store's column families are fixed by
// storage/passage_store.h (meta, codec, passages, memory) and adding one is a storage-format
// change owned by the storage layer; the rebuild costs one sequential scan of the text records
// (the memory family is not read).
//
// Terms: maximal runs of ASCII letters and digits, lower-cased (other bytes, UTF-8 included,
// separate words). Words rather than token ids: SentencePiece splits a word differently at the
// start of a sentence and after a space, which would make the same word two terms.
//
// Scores: sum over distinct query terms t of
//   idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len)),
//   idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))   (Lucene's non-negative idf)
// where tf = occurrences of t in the passage, len = the passage's word count. Ties (equal scores)
// go to the smaller id, so results are deterministic. Passages scoring 0 (no query word) are not
// returned.
//
// Thread-safety: Search may run concurrently with itself; Upsert/Remove take an exclusive lock.
#pragma once

#include <cstdint>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace memoria {

// The terms of `text` as defined above, in order, with repeats.
std::vector<std::string> Bm25Terms(const std::string& text);

class Bm25Index {
 public:
  struct Hit {
    std::string id;
    float score = 0;
  };

  // Adds a passage, replacing the previous one with the same id.
  void Upsert(const std::string& id, const std::string& title, const std::string& text);
  // Removes a passage; unknown ids are ignored.
  void Remove(const std::string& id);
  // The best top_k (>= 1) passages for `query`, best first; fewer when fewer contain a query term.
  std::vector<Hit> Search(const std::string& query, int top_k) const;
  int64_t size() const;

 private:
  struct Doc {
    std::unordered_map<std::string, int32_t> tf;  // term -> occurrences
    int64_t length = 0;                           // words
  };
  void RemoveLocked(const std::string& id);

  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, Doc> docs_;
  // term -> ids of the passages holding it (postings; the tf is in the doc).
  std::unordered_map<std::string, std::unordered_map<std::string, int32_t>> postings_;
  int64_t total_length_ = 0;
};

}  // namespace memoria
