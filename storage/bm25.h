// BM25 retrieval math, shared by the store's on-disk index (storage/bm25_postings.h) and the
// in-memory index of the evaluation tools (server/bm25_index.h): what a term is and how
// passages are ranked. No storage here.
//
// Terms: maximal runs of ASCII letters and digits, lower-cased (other bytes, UTF-8 included,
// separate words), cut to their first kMaxBm25TermBytes bytes (keys stay small; no word is that
// long). Words rather than token ids: SentencePiece splits a word differently at the start of a
// sentence and after a space, which would make the same word two terms.
//
// Scores (Okapi BM25, k1 = 1.2, b = 0.75): sum over distinct query terms t of
//   idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len / avg_len)),
//   idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))   (Lucene's non-negative idf)
// where tf = occurrences of t in the passage, len = the passage's word count (title and text),
// N = passages indexed, avg_len = their mean word count (at least 1), df = passages holding t.
// Ties (equal scores) go to the smaller id, so results are deterministic. Passages scoring 0 (no
// query word) are not returned.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace memoria {

inline constexpr size_t kMaxBm25TermBytes = 64;

// The terms of `text` as defined above, in order, with repeats.
std::vector<std::string> Bm25Terms(const std::string& text);

// The words a passage is indexed by: its title and its text.
std::string Bm25PassageText(const std::string& title, const std::string& text);

// Term -> occurrences, and the word count, of one passage.
struct Bm25Doc {
  std::map<std::string, int32_t> tf;  // ordered: records and postings are written in term order
  int64_t length = 0;
};
Bm25Doc Bm25Analyze(const std::string& title, const std::string& text);

// One passage holding a query term.
struct Bm25Posting {
  std::string id;
  int32_t tf = 0;      // occurrences of the term in the passage
  int64_t length = 0;  // the passage's word count
};

struct Bm25Hit {
  std::string id;
  float score = 0;
};

// The best top_k passages (best first) given, for each distinct query term, every passage holding
// it; docs = N and total_length = the sum of word counts over all indexed passages.
std::vector<Bm25Hit> Bm25Rank(const std::vector<std::vector<Bm25Posting>>& postings_per_term,
                              int64_t docs, int64_t total_length, int top_k);

}  // namespace memoria
