#include "storage/bm25.h"

#include <algorithm>
#include <cmath>
#include <unordered_map>

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
      if (word.size() < kMaxBm25TermBytes) {
        word.push_back(static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c));
      }
    } else if (!word.empty()) {
      terms.push_back(std::move(word));
      word.clear();
    }
  }
  if (!word.empty()) terms.push_back(std::move(word));
  return terms;
}

std::string Bm25PassageText(const std::string& title, const std::string& text) {
  return title + " " + text;
}

Bm25Doc Bm25Analyze(const std::string& title, const std::string& text) {
  Bm25Doc doc;
  for (const std::string& term : Bm25Terms(Bm25PassageText(title, text))) {
    ++doc.tf[term];
    ++doc.length;
  }
  return doc;
}

std::vector<Bm25Hit> Bm25Rank(const std::vector<std::vector<Bm25Posting>>& postings_per_term,
                              int64_t docs, int64_t total_length, int top_k) {
  if (docs <= 0 || top_k < 1) return {};
  const double n = static_cast<double>(docs);
  const double avg_len = std::max(1.0, static_cast<double>(total_length) / n);
  std::unordered_map<std::string, double> scores;
  for (const auto& postings : postings_per_term) {
    const double df = static_cast<double>(postings.size());
    // max(0, .): a df above N (index totals behind its postings) must not make idf negative.
    const double idf = std::log(1.0 + std::max(0.0, n - df + 0.5) / (df + 0.5));
    for (const Bm25Posting& p : postings) {
      const double tf = p.tf, len = static_cast<double>(p.length);
      scores[p.id] += idf * tf * (kK1 + 1) / (tf + kK1 * (1 - kB + kB * len / avg_len));
    }
  }
  std::vector<Bm25Hit> hits;
  hits.reserve(scores.size());
  for (const auto& [id, score] : scores) {
    if (score > 0) hits.push_back({id, static_cast<float>(score)});
  }
  auto better = [](const Bm25Hit& a, const Bm25Hit& b) {
    return a.score != b.score ? a.score > b.score : a.id < b.id;
  };
  const size_t k = std::min(hits.size(), static_cast<size_t>(top_k));
  std::partial_sort(hits.begin(), hits.begin() + static_cast<std::ptrdiff_t>(k), hits.end(), better);
  hits.resize(k);
  return hits;
}

}  // namespace memoria
