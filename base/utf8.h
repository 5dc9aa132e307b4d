// UTF-8 decoding helpers shared by the tokenizer, the extractive-answer constraint and the SQuAD
// metrics. Strict decoding: overlong forms, surrogates (U+D800..U+DFFF), code points past
// U+10FFFF, truncated sequences and bad continuation bytes are all malformed.
#pragma once

#include <cstddef>
#include <string_view>

namespace memoria {

// Length in bytes of the sequence a lead byte announces: 2, 3 or 4 for a multi-byte lead, 1 for
// ASCII and for bytes that cannot begin a sequence (continuation bytes, 0xF8..0xFF).
int Utf8SequenceLength(unsigned char lead);

// Decodes the code point that begins at s[at]. Returns the bytes it takes (1..4) and writes the
// code point to *cp; returns 0 (and leaves *cp alone) when at >= s.size() or the sequence there
// is malformed.
int DecodeUtf8At(std::string_view s, size_t at, char32_t* cp);

}  // namespace memoria
