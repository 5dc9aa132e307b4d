#include "tools/qa_metrics.h"

#include <algorithm>
#include <cstdint>
#include <map>

#include "base/utf8.h"

namespace memoria {
namespace {

// One decoded unit: a code point, or a stray byte of invalid UTF-8 (kept verbatim).
struct Unit {
  char32_t cp = 0;
  bool raw = false;  // cp is a byte that was not valid UTF-8
};

std::vector<Unit> DecodeUtf8(std::string_view s) {
  std::vector<Unit> out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    char32_t cp = 0;
    const int len = DecodeUtf8At(s, i, &cp);
    if (len > 0) {
      out.push_back({cp, false});
      i += static_cast<size_t>(len);
    } else {
      out.push_back({static_cast<unsigned char>(s[i]), true});
      ++i;
    }
  }
  return out;
}

void AppendUtf8(const Unit& u, std::string* out) {
  const char32_t cp = u.cp;
  if (u.raw || cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool EvenUpper(char32_t c) { return c % 2 == 0; }

// Python's str.lower() on the ranges named in the header; appends one or two code points.
void AppendLower(char32_t c, std::vector<Unit>* out) {
  auto put = [&](char32_t x) { out->push_back({x, false}); };
  if (c >= 'A' && c <= 'Z') return put(c + 32);
  if (c < 0xC0) return put(c);
  if ((c >= 0xC0 && c <= 0xD6) || (c >= 0xD8 && c <= 0xDE)) return put(c + 32);
  if (c < 0x100) return put(c);
  if (c <= 0x17F) {  // Latin Extended-A
    if (c == 0x130) {  // capital I with dot above -> i + combining dot above
      put('i');
      return put(0x307);
    }
    if (c == 0x178) return put(0xFF);
    const bool even_pairs = (c <= 0x12F) || (c >= 0x132 && c <= 0x137) || (c >= 0x14A && c <= 0x177);
    const bool odd_pairs = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if ((even_pairs && EvenUpper(c)) || (odd_pairs && !EvenUpper(c))) return put(c + 1);
    return put(c);
  }
  if (c >= 0x370 && c <= 0x3FF) {  // Greek
    if (c == 0x386) return put(0x3AC);
    if (c >= 0x388 && c <= 0x38A) return put(c + 37);
    if (c == 0x38C) return put(0x3CC);
    if (c == 0x38E || c == 0x38F) return put(c + 63);
    if ((c >= 0x391 && c <= 0x3A1) || (c >= 0x3A3 && c <= 0x3AB)) return put(c + 32);
    return put(c);
  }
  if (c >= 0x400 && c <= 0x52F) {  // Cyrillic (+ Supplement)
    if (c <= 0x40F) return put(c + 80);
    if (c <= 0x42F) return put(c + 32);
    if (c == 0x4C0) return put(0x4CF);
    const bool even_pairs = (c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0);
    const bool odd_pairs = c >= 0x4C1 && c <= 0x4CE;
    if ((even_pairs && EvenUpper(c)) || (odd_pairs && !EvenUpper(c))) return put(c + 1);
    return put(c);
  }
  return put(c);
}

bool IsAsciiPunctuation(char32_t c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

// Python's str.split() separators.
bool IsPythonSpace(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

bool IsWordChar(const Unit& u) {
  if (u.raw) return true;
  const char32_t c = u.cp;
  if (c < 0x80) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
  }
  if (IsPythonSpace(c)) return false;
  if (c >= 0xA0 && c <= 0xBF) {
    // Letters and digits of the Latin-1 punctuation block: ordinal indicators, micro sign,
    // superscripts and vulgar fractions (Python: isalnum() true).
    return c == 0xAA || c == 0xB5 || c == 0xBA || c == 0xB2 || c == 0xB3 || c == 0xB9 ||
           (c >= 0xBC && c <= 0xBE);
  }
  if (c == 0xD7 || c == 0xF7) return false;
  if (c >= 0x2000 && c <= 0x2BFF) return false;
  if (c >= 0x3000 && c <= 0x303F) return false;
  if (c >= 0xFE30 && c <= 0xFE4F) return false;
  if ((c >= 0xFF00 && c <= 0xFF0F) || (c >= 0xFF1A && c <= 0xFF20) ||
      (c >= 0xFF3B && c <= 0xFF40) || (c >= 0xFF5B && c <= 0xFF65)) {
    return false;
  }
  return true;
}

bool IsArticle(const std::vector<Unit>& s, size_t begin, size_t end) {
  auto is = [&](const char* word) {
    size_t n = 0;
    while (word[n] != '\0') ++n;
    if (end - begin != n) return false;
    for (size_t k = 0; k < n; ++k) {
      if (s[begin + k].raw || s[begin + k].cp != char32_t(word[k])) return false;
    }
    return true;
  };
  return is("a") || is("an") || is("the");
}

std::vector<std::string> Tokens(std::string_view text) {
  const std::string normalized = NormalizeSquadAnswer(text);
  std::vector<std::string> tokens;
  size_t start = 0;
  while (start < normalized.size()) {
    size_t end = normalized.find(' ', start);
    if (end == std::string::npos) end = normalized.size();
    if (end > start) tokens.push_back(normalized.substr(start, end - start));
    start = end + 1;
  }
  return tokens;
}

}  // namespace

std::string NormalizeSquadAnswer(std::string_view text) {
  const std::vector<Unit> units = DecodeUtf8(text);
  // 1 + 2: lower case, then drop ASCII punctuation.
  std::vector<Unit> s;
  s.reserve(units.size());
  for (const Unit& u : units) {
    if (u.raw) {
      s.push_back(u);
      continue;
    }
    std::vector<Unit> lowered;
    AppendLower(u.cp, &lowered);
    for (const Unit& l : lowered) {
      if (!IsAsciiPunctuation(l.cp)) s.push_back(l);
    }
  }
  // 3: whole-word articles -> ' '.
  std::vector<Unit> t;
  t.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (!IsWordChar(s[i])) {
      t.push_back(s[i++]);
      continue;
    }
    size_t j = i;
    while (j < s.size() && IsWordChar(s[j])) ++j;
    if (IsArticle(s, i, j)) {
      t.push_back({' ', false});
    } else {
      t.insert(t.end(), s.begin() + std::ptrdiff_t(i), s.begin() + std::ptrdiff_t(j));
    }
    i = j;
  }
  // 4: split on white space, join with single spaces.
  std::string out;
  bool pending_space = false;
  for (const Unit& u : t) {
    if (!u.raw && IsPythonSpace(u.cp)) {
      pending_space = !out.empty();
      continue;
    }
    if (pending_space) out.push_back(' ');
    pending_space = false;
    AppendUtf8(u, &out);
  }
  return out;
}

double SquadExactMatch(std::string_view prediction, std::string_view gold) {
  return NormalizeSquadAnswer(prediction) == NormalizeSquadAnswer(gold) ? 1.0 : 0.0;
}

double SquadF1(std::string_view prediction, std::string_view gold) {
  const std::vector<std::string> p = Tokens(prediction), g = Tokens(gold);
  std::map<std::string, int64_t> counts;
  for (const std::string& tok : g) ++counts[tok];
  int64_t same = 0;
  for (const std::string& tok : p) {
    auto it = counts.find(tok);
    if (it != counts.end() && it->second > 0) {
      --it->second;
      ++same;
    }
  }
  if (same == 0) return 0.0;
  const double precision = double(same) / double(p.size());
  const double recall = double(same) / double(g.size());
  return 2 * precision * recall / (precision + recall);
}

QaScore ScoreSquadAnswer(std::string_view prediction, const std::vector<std::string>& golds) {
  QaScore score;
  for (const std::string& gold : golds) {
    score.exact_match = std::max(score.exact_match, SquadExactMatch(prediction, gold));
    score.f1 = std::max(score.f1, SquadF1(prediction, gold));
  }
  return score;
}

}  // namespace memoria
