// Extractive answers: decoding restricted to spans of the passages the reader read.
//
// A small reader that finds where the answer lies often cannot spell it (it writes "Nootober
// Central" for "Denver Broncos"); restricted to copying a passage span, the same reader's best
// span is its answer. PassageSpanConstraint allows exactly the sequences
//     p[i], p[i+1], ..., p[j-1], EOS      (1 <= j - i)
// where p is one passage's token ids (the passage's own EOS and what follows it excluded), p[i]
// begins a word (a SentencePiece piece starting with U+2581 "▁") and p[j] does not continue one
// (j is the passage's end, or p[j] begins a word or starts with a character other than a letter or
// digit): whole words, ending before punctuation too ("Broncos" of "▁Den ver ▁Bron cos ."), never
// mid-word ("Bron"), which small readers otherwise prefer. Spans do not cross passages. The
// passage's "title: T context:" head is text like any other (titles can be answers).
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

// What a piece is to a span (PieceKinds): spans begin at kBeginsWord and end before anything but
// kContinuesWord.
enum PieceKind : uint8_t {
  kContinuesWord = 0,  // first character a letter or digit (or a non-ASCII character), no "▁"
  kBeginsWord = 1,     // starts with "▁"
  kOtherPiece = 2,     // punctuation, byte pieces "<0x..>", control pieces
};
// The kind of every id of the tokenizer's vocabulary.
std::vector<uint8_t> PieceKinds(const Tokenizer& tokenizer);

class PassageSpanConstraint : public TokenConstraint {
 public:
  // passages: token ids as the reader read them (FidPassageIds / the store's token ids); each is
  // cut at its first eos_id. piece_kinds: PieceKinds of the tokenizer; ids outside it count as
  // kOtherPiece. No passage, or none with a word start: Allowed gives nothing (searches then fail
  // INVALID_ARGUMENT).
  PassageSpanConstraint(std::vector<std::vector<int>> passages, std::vector<uint8_t> piece_kinds,
                        int eos_id);

  void Allowed(const int* prefix, int64_t n, std::vector<int>* allowed) const override;
  int eos_id() const override { return eos_id_; }

 private:
  PieceKind Kind(int id) const;

  std::vector<std::vector<int>> passages_;
  std::vector<uint8_t> piece_kinds_;
  int eos_id_;
  std::vector<int> first_ids_;  // Allowed() of the empty prefix, computed once
};

}  // namespace memoria
