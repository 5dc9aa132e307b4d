#include "storage/record_framing.h"

#include <nmmintrin.h>

#include <cstdio>

namespace memoria {

const char* RecordKindName(uint8_t kind) {
  switch (static_cast<RecordKind>(kind)) {
    case RecordKind::kIdentity: return "identity";
    case RecordKind::kStateChunk: return "codec state chunk";
    case RecordKind::kStateCount: return "codec state count";
    case RecordKind::kPassage: return "passage text";
    case RecordKind::kMemory: return "passage memory";
    case RecordKind::kTermDoc: return "bm25 passage terms";
    case RecordKind::kTermPosting: return "bm25 posting";
    case RecordKind::kTermTotals: return "bm25 totals";
  }
  return "unknown";
}

__attribute__((target("sse4.2"))) uint32_t Crc32c(const void* data, size_t n) {
  const uint8_t* p = static_cast<const uint8_t*>(data);
  uint64_t crc = 0xffffffffu;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    crc = _mm_crc32_u64(crc, v);
  }
  uint32_t c = static_cast<uint32_t>(crc);
  for (; n > 0; --n, ++p) c = _mm_crc32_u8(c, *p);
  return c ^ 0xffffffffu;
}

std::string Frame(RecordKind kind, const std::string& payload, uint8_t version) {
  std::string v;
  v.reserve(payload.size() + kFrameBytes);
  v.push_back(static_cast<char>(kind));
  v.push_back(static_cast<char>(version));
  v.append(payload);
  PutU32(&v, Crc32c(v.data(), v.size()));
  return v;
}

Status Unframe(const char* value, size_t size, RecordKind kind, const std::string& what,
               const char** payload, size_t* len) {
  if (size < kFrameBytes) {
    return DataLossError(what + ": value is " + std::to_string(size) + " bytes, shorter than the " +
                         std::to_string(kFrameBytes) + "-byte frame (truncated)");
  }
  uint32_t stored;
  std::memcpy(&stored, value + size - 4, 4);
  const uint32_t computed = Crc32c(value, size - 4);
  if (stored != computed) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), ": checksum mismatch (stored 0x%08x, computed 0x%08x, %zu bytes)",
                  stored, computed, size);
    return DataLossError(what + buf);
  }
  const uint8_t got_kind = static_cast<uint8_t>(value[0]), version = static_cast<uint8_t>(value[1]);
  if (got_kind != static_cast<uint8_t>(kind)) {
    return DataLossError(what + ": value is a " + RecordKindName(got_kind) + " record, expected " +
                         RecordKindName(static_cast<uint8_t>(kind)));
  }
  if (version == 0 || version > kStoreFormatVersion) {
    return FailedPreconditionError(what + ": value has format version " + std::to_string(version) +
                                   ", this build reads versions 1.." + std::to_string(kStoreFormatVersion));
  }
  *payload = value + 2;
  *len = size - kFrameBytes;
  return Status::Ok();
}

}  // namespace memoria
