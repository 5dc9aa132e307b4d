#include "engine/span_constraint.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include "base/utf8.h"
#include "engine/tokenizer.h"

namespace memoria {

namespace {

// Whether a piece's first character is not a letter or digit: ASCII other than [A-Za-z0-9], and
// the punctuation blocks common in text (Latin-1 U+00A0-U+00BF: no-break space, guillemets, °;
// U+2000-U+206F: dashes, curly quotes, ellipsis; CJK U+3000-U+303F). Other non-ASCII characters
// count as letters (no Unicode tables here; a rare symbol glued to a word only keeps a span from
// ending before it).
bool StartsWithPunctuation(const std::string& piece) {
  char32_t cp = 0;
  if (DecodeUtf8At(piece, 0, &cp) == 0) return false;
  if (cp < 0x80) return !std::isalnum(static_cast<int>(cp));
  return (cp >= 0xA0 && cp <= 0xBF) || (cp >= 0x2000 && cp <= 0x206F) ||
         (cp >= 0x3000 && cp <= 0x303F);
}

}  // namespace

std::vector<uint8_t> PieceKinds(const Tokenizer& tokenizer) {
  static const std::string kWordStart = "\xE2\x96\x81";  // U+2581, SentencePiece's space
  std::vector<uint8_t> kinds(static_cast<size_t>(tokenizer.vocab_size()), kOtherPiece);
  for (int id = 0; id < tokenizer.vocab_size(); ++id) {
    const std::string piece = tokenizer.IdToPiece(id);
    if (piece.compare(0, kWordStart.size(), kWordStart) == 0) {
      kinds[id] = kBeginsWord;
    } else if (!piece.empty() && piece != "<unk>" && piece != "<s>" && piece != "</s>" &&
               piece != "<pad>" && !(piece.size() == 6 && piece.compare(0, 3, "<0x") == 0)) {
      if (!StartsWithPunctuation(piece)) kinds[id] = kContinuesWord;
    }
  }
  return kinds;
}

PassageSpanConstraint::PassageSpanConstraint(std::vector<std::vector<int>> passages,
                                             std::vector<uint8_t> piece_kinds, int eos_id)
    : passages_(std::move(passages)), piece_kinds_(std::move(piece_kinds)), eos_id_(eos_id) {
  for (std::vector<int>& p : passages_) {
    p.erase(std::find(p.begin(), p.end(), eos_id_), p.end());
    for (int id : p) {
      if (Kind(id) == kBeginsWord) first_ids_.push_back(id);
    }
  }
  std::sort(first_ids_.begin(), first_ids_.end());
  first_ids_.erase(std::unique(first_ids_.begin(), first_ids_.end()), first_ids_.end());
}

PieceKind PassageSpanConstraint::Kind(int id) const {
  if (id < 0 || static_cast<size_t>(id) >= piece_kinds_.size()) return kOtherPiece;
  return static_cast<PieceKind>(piece_kinds_[id]);
}

void PassageSpanConstraint::Allowed(const int* prefix, int64_t n,
                                    std::vector<int>* allowed) const {
  allowed->clear();
  if (n == 0) {
    *allowed = first_ids_;
    return;
  }
  if (Kind(prefix[0]) != kBeginsWord) return;
  bool may_end = false;
  // Every occurrence of the prefix: the id after it may follow. Passages are a few hundred ids and
  // answers a few dozen, so the plain scan costs far less than one decoder step.
  for (const std::vector<int>& p : passages_) {
    const int64_t len = static_cast<int64_t>(p.size());
    for (int64_t i = 0; i + n <= len; ++i) {
      if (!std::equal(prefix, prefix + n, p.begin() + i)) continue;
      if (i + n == len || Kind(p[i + n]) != kContinuesWord) may_end = true;
      if (i + n < len) allowed->push_back(p[i + n]);
    }
  }
  if (may_end) allowed->push_back(eos_id_);
  std::sort(allowed->begin(), allowed->end());
  allowed->erase(std::unique(allowed->begin(), allowed->end()), allowed->end());
}

}  // namespace memoria
