// Extractive answers: decoding restricted to spans of the passages the reader read.
//
// A small reader that finds where the answer lies often cannot spell it (it writes "Nootober
// Central" for "Denver Broncos"); restricted to copying a passage span, the same reader's best
// span is its answer. PassageSpanConstraint allows exactly the sequences
//     p[i], p[i+1], ..., p[j-1], EOS      (1 <= j - i)
// where p is one passage's token ids (the passage's own EOS and what follows it excluded) and
// p[i] begins a word (a SentencePiece piece starting with U+2581 "▁"). A span may end anywhere,
// mid-word included: the model's probabilities decide, and answers often stop before the
// punctuation that ends a passage word ("Broncos" of "▁Bron cos ."). Spans do not cross
// passages. The passage's "title: T context:" head is text like any other (titles can be answers).
//
// Searches (engine/beam_search.h) ask Allowed(prefix) before each step and choose among those ids
// only, with the model's unrenormalised log-probabilities (so beam scores stay sequence
// log-probabilities, comparable across spans).
#pragma once

#include <cstdint>
#include <vector>

namespace memoria {

class Tokenizer;

// Which next ids a search may choose after a prefix.
class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;
  // prefix: the ids generated so far (start token excluded), n of them. Writes the allowed next
  // ids to *allowed, ascending, no duplicates (cleared first). Empty: no continuation is allowed
  // (the prefix is not one the constraint produces).
  virtual void Allowed(const int* prefix, int64_t n, std::vector<int>* allowed) const = 0;
  // The id that ends a sequence; searches refuse a constraint whose EOS is not theirs.
  virtual int eos_id() const = 0;
};

// word_starts[id] != 0 when piece `id` begins a word. Ids of the tokenizer's vocabulary only.
std::vector<uint8_t> WordStartIds(const Tokenizer& tokenizer);

class PassageSpanConstraint : public TokenConstraint {
 public:
  // passages: token ids as the reader read them (FidPassageIds / the store's token ids); each is
  // cut at its first eos_id. Ids outside word_starts never begin a span. No passage, or none with
  // a word start: Allowed gives nothing (searches then fail INVALID_ARGUMENT).
  PassageSpanConstraint(std::vector<std::vector<int>> passages, std::vector<uint8_t> word_starts,
                        int eos_id);

  void Allowed(const int* prefix, int64_t n, std::vector<int>* allowed) const override;
  int eos_id() const override { return eos_id_; }

 private:
  bool BeginsWord(int id) const;

  std::vector<std::vector<int>> passages_;
  std::vector<uint8_t> word_starts_;
  int eos_id_;
  std::vector<int> first_ids_;  // Allowed() of the empty prefix, computed once
};

}  // namespace memoria
