// Reading a passage corpus for `memoria build-store`: JSONL or SQuAD JSON.
//
// Formats:
//   jsonl  one JSON object per line: {"id": "...", "title": "...", "text": "..."}. "id" and
//          "text" are required strings (a number id is accepted and printed in decimal); "title"
//          is optional (empty). Blank lines are skipped.
//   squad  SQuAD v1.1/v2 JSON: data[].{title, paragraphs[].context}. Each paragraph is one
//          passage with id "<title>/<paragraph index>" (SQuAD paragraphs carry no id of their
//          own; title + index is stable for a given file) and the article title with '_' -> ' '
//          as its title (SQuAD stores titles as Wikipedia page names).
//   auto   "squad" when the path ends in ".json", "jsonl" otherwise.
//
// Errors: NOT_FOUND for a missing file; INVALID_ARGUMENT for an unknown format name, for
// malformed JSON (naming the line for jsonl), a missing or mistyped field (naming the field and
// the line or passage), an empty id or a repeated id (naming both occurrences).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace memoria {

struct CorpusPassage {
  std::string id;
  std::string title;
  std::string text;
};

enum class CorpusFormat { kAuto, kJsonl, kSquad };

// "auto" | "jsonl" | "squad"; INVALID_ARGUMENT otherwise.
StatusOr<CorpusFormat> ParseCorpusFormat(const std::string& name);

// Reads the passages of `path` in file order, at most `limit` of them (limit <= 0: all).
StatusOr<std::vector<CorpusPassage>> ReadCorpus(const std::string& path, CorpusFormat format,
                                                int64_t limit);

// Cuts every passage into runs of `words` whitespace-separated words, a new run every `stride`
// words (0, stride, 2 stride, ...) plus one ending at the last word when the stride leaves a
// tail uncovered, so every word lies in some run and, with stride <= words / 2, every span of
// up to words - stride + 1 words lies whole inside one. A run keeps the passage's own spacing
// between its words (text from its first word's first character to its last word's last) and
// its title; its id is "<id>#w<index of its first word>". A passage of at most `words` words
// becomes one run "<id>#w0" holding its text with outer whitespace trimmed, an empty one none.
// Readers trained on short windows (tools/train/prepare_data.py --window-words) read a corpus
// cut the same way. Errors: INVALID_ARGUMENT unless 1 <= stride <= words.
StatusOr<std::vector<CorpusPassage>> WindowPassages(const std::vector<CorpusPassage>& passages,
                                                    int64_t words, int64_t stride);

}  // namespace memoria
