#include "engine/sentencepiece_charsmap.h"

#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <string_view>
#include <vector>

namespace memoria {
namespace {

// Reads a base-128 varint at *p (< end); false when it runs past end or past 10 bytes.
bool ReadVarint(const char** p, const char* end, uint64_t* value) {
  *value = 0;
  for (int shift = 0; shift < 70 && *p < end; shift += 7) {
    const uint8_t byte = static_cast<uint8_t>(*(*p)++);
    *value |= static_cast<uint64_t>(byte & 0x7F) << shift;
    if ((byte & 0x80) == 0) return true;
  }
  return false;
}

// Calls on_bytes(field, payload) for every length-delimited field of a protobuf message and
// skips the other wire types; false for a malformed message (or a group, which no SentencePiece
// model holds).
bool ForEachBytesField(std::string_view message,
                       const std::function<bool(uint64_t, std::string_view)>& on_bytes) {
  const char* p = message.data();
  const char* end = p + message.size();
  while (p < end) {
    uint64_t key = 0, n = 0;
    if (!ReadVarint(&p, end, &key)) return false;
    switch (key & 7) {
      case 0:
        if (!ReadVarint(&p, end, &n)) return false;
        break;
      case 1:
        if (end - p < 8) return false;
        p += 8;
        break;
      case 5:
        if (end - p < 4) return false;
        p += 4;
        break;
      case 2:
        if (!ReadVarint(&p, end, &n) || n > static_cast<uint64_t>(end - p)) return false;
        if (!on_bytes(key >> 3, std::string_view(p, n))) return false;
        p += n;
        break;
      default:
        return false;
    }
  }
  return true;
}

uint32_t Offset(uint32_t unit) { return (unit >> 10) << ((unit & (1u << 9)) >> 6); }
bool HasLeaf(uint32_t unit) { return ((unit >> 8) & 1) != 0; }
uint32_t Label(uint32_t unit) { return unit & ((1u << 31) | 0xFF); }
uint32_t Value(uint32_t unit) { return unit & ((1u << 31) - 1); }

Status CheckCharsMap(const char* name, std::string_view blob) {
  if (blob.empty()) return Status::Ok();  // no normalization
  auto bad = [&](const std::string& why) {
    return DataLossError(fmt::format("SentencePiece {} precompiled_charsmap ({} bytes): {}", name,
                                     blob.size(), why));
  };
  if (blob.size() < 4) return bad("shorter than its 4-byte trie size");
  uint32_t trie_bytes = 0;
  std::memcpy(&trie_bytes, blob.data(), 4);  // little endian, as the file format is
  if (trie_bytes > blob.size() - 4) {
    return bad(fmt::format("trie of {} bytes past the table's end", trie_bytes));
  }
  const uint32_t n = trie_bytes / 4;
  if (n == 0) return bad("trie of no units");
  std::vector<uint32_t> units(n);
  std::memcpy(units.data(), blob.data() + 4, static_cast<size_t>(n) * 4);
  const std::string_view strings = blob.substr(4 + static_cast<size_t>(trie_bytes));

  // Every node a lookup can reach, from the root (unit 0), each once.
  std::vector<uint8_t> seen(n, 0);
  std::deque<uint32_t> todo{0};
  seen[0] = 1;
  bool any_leaf = false;
  while (!todo.empty()) {
    const uint32_t node = todo.front();
    todo.pop_front();
    const uint32_t base = node ^ Offset(units[node]);
    if ((base | 0xFFu) >= n) {
      return bad(fmt::format("unit {} reads units {}..{} of {}", node, base & ~0xFFu, base | 0xFFu, n));
    }
    for (uint32_t c = 0; c < 256; ++c) {
      const uint32_t child = base ^ c;
      const uint32_t unit = units[child];
      if (Label(unit) != c) continue;
      if (HasLeaf(unit)) {
        const uint32_t leaf = child ^ Offset(unit);
        if (leaf >= n) return bad(fmt::format("unit {} has its value at unit {} of {}", child, leaf, n));
        if (Value(units[leaf]) >= strings.size()) {
          return bad(fmt::format("unit {} maps to string offset {} of {} bytes", child,
                                 Value(units[leaf]), strings.size()));
        }
        any_leaf = true;
      }
      if (!seen[child]) {
        seen[child] = 1;
        todo.push_back(child);
      }
    }
  }
  if (any_leaf && strings.back() != '\0') return bad("replacement strings not NUL-terminated");
  return Status::Ok();
}

}  // namespace

Status CheckSentencePieceCharsMaps(const std::string& model_bytes) {
  // ModelProto fields 3 (normalizer_spec) and 5 (denormalizer_spec); NormalizerSpec field 2.
  std::string_view maps[2];
  const bool well_formed = ForEachBytesField(model_bytes, [&](uint64_t field, std::string_view spec) {
    if (field != 3 && field != 5) return true;
    return ForEachBytesField(spec, [&](uint64_t inner, std::string_view bytes) {
      if (inner == 2) maps[field == 3 ? 0 : 1] = bytes;
      return true;
    });
  });
  if (!well_formed) {
    return DataLossError(fmt::format(
        "SentencePiece model ({} bytes): malformed protobuf around its normalizer specs",
        model_bytes.size()));
  }
  RETURN_IF_ERROR(CheckCharsMap("normalizer", maps[0]));
  return CheckCharsMap("denormalizer", maps[1]);
}

}  // namespace memoria
