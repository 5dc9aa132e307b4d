// An in-memory BM25 index (storage/bm25.h: terms and scores) for passages that are not in a
// store: `memoria eval-qa` over a corpus file. The server retrieves from the store's own index
// (PassageStore::Search), which ranks by the same function.
//
// Thread-safety: Search may run concurrently with itself; Upsert/Remove take an exclusive lock.
#pragma once

#include <cstdint>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "storage/bm25.h"

namespace memoria {

class Bm25Index {
 public:
  // Adds a passage, replacing the previous one with the same id.
  void Upsert(const std::string& id, const std::string& title, const std::string& text);
  // Removes a passage; unknown ids are ignored.
  void Remove(const std::string& id);
  // The best top_k (>= 1) passages for `query`, best first; fewer when fewer contain a query term.
  std::vector<Bm25Hit> Search(const std::string& query, int top_k) const;
  int64_t size() const;

 private:
  void RemoveLocked(const std::string& id);

  mutable std::shared_mutex mu_;
  std::unordered_map<std::string, Bm25Doc> docs_;
  // term -> ids of the passages holding it (postings; the tf is in the doc).
  std::unordered_map<std::string, std::unordered_map<std::string, int32_t>> postings_;
  int64_t total_length_ = 0;
};

}  // namespace memoria
