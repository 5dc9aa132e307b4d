#include "base/utf8.h"

namespace memoria {

int Utf8SequenceLength(unsigned char lead) {
  if ((lead & 0xE0) == 0xC0) return 2;
  if ((lead & 0xF0) == 0xE0) return 3;
  if ((lead & 0xF8) == 0xF0) return 4;
  return 1;
}

int DecodeUtf8At(std::string_view s, size_t at, char32_t* cp) {
  if (at >= s.size()) return 0;
  const auto lead = static_cast<unsigned char>(s[at]);
  if (lead < 0x80) {
    *cp = lead;
    return 1;
  }
  if ((lead & 0xC0) == 0x80 || lead >= 0xF8) return 0;  // continuation byte or no such lead
  const int len = Utf8SequenceLength(lead);
  if (s.size() - at < static_cast<size_t>(len)) return 0;
  char32_t value = lead & (0x7Fu >> len);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[at + static_cast<size_t>(k)]);
    if ((b & 0xC0) != 0x80) return 0;
    value = (value << 6) | (b & 0x3Fu);
  }
  // The shortest form only, and no surrogates or values past U+10FFFF.
  static constexpr char32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (value < kMin[len] || value > 0x10FFFF || (value >= 0xD800 && value <= 0xDFFF)) return 0;
  *cp = value;
  return len;
}

}  // namespace memoria
