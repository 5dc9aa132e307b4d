// Extractive-QA scores as the official SQuAD v1.1 evaluation script (evaluate-v1.1.py) computes
// them: exact match and token F1 of a prediction against each gold answer after normalisation,
// the maximum over the gold answers.
//
// Normalisation, in the script's order (operating on Unicode code points of UTF-8 text):
//   1. lower case          Python's str.lower() for Latin-1, Latin Extended-A, Greek and Cyrillic
//                          (incl. U+0130 -> "i" + U+0307, as Python does); other scripts keep
//                          their case, and capital sigma always maps to U+03C3 (Python's
//                          word-final U+03C2 rule is not applied).
//   2. remove punctuation  the 32 ASCII characters of Python's string.punctuation are deleted
//                          (not replaced by a space: "U.S." -> "us"); Unicode punctuation such
//                          as U+2013 or curly quotes stays, as in the official script.
//   3. remove articles     every whole word "a", "an", "the" becomes a space (regex
//                          \b(a|an|the)\b). Word characters: ASCII letters, digits and '_', and
//                          every non-ASCII code point except Unicode white space and the
//                          punctuation/symbol blocks (U+00A0-U+00BF except U+00AA/B5/BA and the
//                          superscripts, U+00D7, U+00F7, U+2000-U+2BFF, U+3000-U+303F,
//                          U+FE30-U+FE4F, U+FF00-U+FF0F, U+FF1A-U+FF20, U+FF3B-U+FF40,
//                          U+FF5B-U+FF65), an approximation of Python's Unicode \w.
//   4. white space         split on Python's str.split() white space (ASCII, U+001C-U+001F,
//                          U+0085, U+00A0, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F,
//                          U+205F, U+3000) and rejoin with single spaces.
// Bytes that are not valid UTF-8 are kept as they are and count as word characters.
//
// Exact match: normalised strings equal. F1: over the normalised tokens (multiset overlap),
// 2PR / (P + R); 0 when there is no common token -- including when both are empty, as in v1.1.
// Scores here are in [0, 1]; the script reports 100x the mean over questions.
//
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace memoria {

std::string NormalizeSquadAnswer(std::string_view text);

// 1 or 0 for one prediction against one gold answer.
double SquadExactMatch(std::string_view prediction, std::string_view gold);
double SquadF1(std::string_view prediction, std::string_view gold);

// Max over gold answers; 0 when `golds` is empty.
struct QaScore {
  double exact_match = 0;
  double f1 = 0;
};
QaScore ScoreSquadAnswer(std::string_view prediction, const std::vector<std::string>& golds);

}  // namespace memoria
