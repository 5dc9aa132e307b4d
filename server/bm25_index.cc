#include "server/bm25_index.h"

#include <algorithm>
#include <cmath>
#include <mutex>
#include <set>

namespace memoria {
namespace {

constexpr double kK1 = 1.2;
constexpr double kB = 0.75;

bool IsWordByte(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

}  // namespace

std::vector<std::string> Bm25Terms(const std::string& text) {
  std::vector<std::string> terms;
  std::string word;
  for (unsigned char c : text) {
    if (IsWordByte(c)) {
      word.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
    } else if (!word.empty()) {
      terms.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) terms.push_back(std::move(word));
  return terms;
}

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
  Doc doc;
  for (const std::string& term : Bm25Terms(title + " " + text)) {
    ++doc.tf[term];
    ++doc.length;
  }
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

std::vector<Bm25Index::Hit> Bm25Index::Search(const std::string& query, int top_k) const {
  const std::vector<std::string> words = Bm25Terms(query);
  const std::set<std::string> terms(words.begin(), words.end());  // each query term once
  std::shared_lock lock(mu_);
  const double n = static_cast<double>(docs_.size());
  if (n == 0 || top_k < 1) return {};
  const double avg_len = std::max(1.0, static_cast<double>(total_length_) / n);
  std::unordered_map<std::string, double> scores;
  for (const std::string& term : terms) {
    auto p = postings_.find(term);
    if (p == postings_.end()) continue;
    const double df = static_cast<double>(p->second.size());
    const double idf = std::log(1.0 + (n - df + 0.5) / (df + 0.5));
    for (const auto& [id, tf] : p->second) {
      const double len = static_cast<double>(docs_.at(id).length);
      scores[id] += idf * tf * (kK1 + 1) / (tf + kK1 * (1 - kB + kB * len / avg_len));
    }
  }
  std::vector<Hit> hits;
  hits.reserve(scores.size());
  for (const auto& [id, score] : scores) {
    if (score > 0) hits.push_back({id, static_cast<float>(score)});
  }
  auto better = [](const Hit& a, const Hit& b) {
    return a.score != b.score ? a.score > b.score : a.id < b.id;
  };
  const size_t k = std::min(hits.size(), static_cast<size_t>(top_k));
  std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(k), hits.end(),
                    better);
  hits.resize(k);
  return hits;
}

}  // namespace memoria
