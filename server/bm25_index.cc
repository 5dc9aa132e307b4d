#include "server/bm25_index.h"

#include <mutex>
#include <set>

namespace memoria {

void Bm25Index::RemoveLocked(const std::string& id) {
  auto it = docs_.find(id);
  if (it == docs_.end()) return;
  for (const auto& [term, tf] : it->second.tf) {
    auto p = postings_.find(term);
    if (p == postings_.end()) continue;
    p->second.erase(id);
    if (p->second.empty()) postings_.erase(p);
  }
  total_length_ -= it->second.length;
  docs_.erase(it);
}

void Bm25Index::Upsert(const std::string& id, const std::string& title, const std::string& text) {
  Bm25Doc doc = Bm25Analyze(title, text);
  std::unique_lock lock(mu_);
  RemoveLocked(id);
  for (const auto& [term, tf] : doc.tf) postings_[term][id] = tf;
  total_length_ += doc.length;
  docs_.emplace(id, std::move(doc));
}

void Bm25Index::Remove(const std::string& id) {
  std::unique_lock lock(mu_);
  RemoveLocked(id);
}

int64_t Bm25Index::size() const {
  std::shared_lock lock(mu_);
  return static_cast<int64_t>(docs_.size());
}

std::vector<Bm25Hit> Bm25Index::Search(const std::string& query, int top_k) const {
  const std::vector<std::string> words = Bm25Terms(query);
  const std::set<std::string> terms(words.begin(), words.end());  // each query term once
  std::shared_lock lock(mu_);
  std::vector<std::vector<Bm25Posting>> postings;
  for (const std::string& term : terms) {
    auto p = postings_.find(term);
    if (p == postings_.end()) continue;
    auto& list = postings.emplace_back();
    list.reserve(p->second.size());
    for (const auto& [id, tf] : p->second) list.push_back({id, tf, docs_.at(id).length});
  }
  return Bm25Rank(postings, static_cast<int64_t>(docs_.size()), total_length_, top_k);
}

}  // namespace memoria
