#include "engine/span_constraint.h"

#include <algorithm>
#include <utility>

#include "engine/tokenizer.h"

namespace memoria {

std::vector<uint8_t> WordStartIds(const Tokenizer& tokenizer) {
  static const std::string kWordStart = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  std::vector<uint8_t> starts(static_cast<size_t>(tokenizer.vocab_size()), 0);
  for (int id = 0; id < tokenizer.vocab_size(); ++id) {
    starts[id] = tokenizer.IdToPiece(id).compare(0, kWordStart.size(), kWordStart) == 0;
  }
  return starts;
}

PassageSpanConstraint::PassageSpanConstraint(std::vector<std::vector<int>> passages,
                                             std::vector<uint8_t> word_starts, int eos_id)
    : passages_(std::move(passages)), word_starts_(std::move(word_starts)), eos_id_(eos_id) {
  for (std::vector<int>& p : passages_) {
    p.erase(std::find(p.begin(), p.end(), eos_id_), p.end());
    for (int id : p) {
      if (BeginsWord(id)) first_ids_.push_back(id);
    }
  }
  std::sort(first_ids_.begin(), first_ids_.end());
  first_ids_.erase(std::unique(first_ids_.begin(), first_ids_.end()), first_ids_.end());
}

bool PassageSpanConstraint::BeginsWord(int id) const {
  return id >= 0 && static_cast<size_t>(id) < word_starts_.size() && word_starts_[id] != 0;
}

void PassageSpanConstraint::Allowed(const int* prefix, int64_t n,
                                    std::vector<int>* allowed) const {
  allowed->clear();
  if (n == 0) {
    *allowed = first_ids_;
    return;
  }
  if (!BeginsWord(prefix[0])) return;
  bool matched = false;
  // Every occurrence of the prefix: the id after it may follow. Passages are a few hundred ids and
  // answers a few dozen, so the plain scan costs far less than one decoder step.
  for (const std::vector<int>& p : passages_) {
    const int64_t len = static_cast<int64_t>(p.size());
    for (int64_t i = 0; i + n <= len; ++i) {
      if (!std::equal(prefix, prefix + n, p.begin() + i)) continue;
      matched = true;
      if (i + n < len) allowed->push_back(p[i + n]);
    }
  }
  if (!matched) return;
  allowed->push_back(eos_id_);  // a span may end anywhere
  std::sort(allowed->begin(), allowed->end());
  allowed->erase(std::unique(allowed->begin(), allowed->end()), allowed->end());
}

}  // namespace memoria
