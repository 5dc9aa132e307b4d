// The framing every value of the passage store carries (storage/passage_store.h), and the
// little-endian helpers its payload layouts are written with.
//
//   /// Layout: kind (u8) | format version (u8) | payload | CRC32C of the bytes before it (u32 LE)
//
// so a flipped byte, a truncated value, a value of another kind or a newer format version is
// detected on read, independently of RocksDB's own block checksums.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "base/status.h"

namespace memoria {

// Bumped when a value layout changes; values of a newer version are refused, not misread.
inline constexpr uint8_t kStoreFormatVersion = 1;

// The kind byte of each record type (the first byte of every value).
enum class RecordKind : uint8_t {
  kIdentity = 'I',      // meta: the store's identity (JSON)
  kStateChunk = 'S',    // codec: a chunk of the codec state
  kStateCount = 'N',    // codec: chunk count, size and checksum of the codec state
  kPassage = 'P',       // passages: title, text, token ids
  kMemory = 'M',        // memory: codec codes
  kTermDoc = 'D',       // bm25: a passage's word count and terms
  kTermPosting = 'T',   // bm25: one (term, passage) posting
  kTermTotals = 'B',    // bm25: passage count and total word count
};

// "passage text", "bm25 posting", ...; "unknown" for other bytes.
const char* RecordKindName(uint8_t kind);

inline constexpr size_t kFrameBytes = 2 + 4;  // kind, version, CRC32C

// CRC32C (Castagnoli) of n bytes; the checksum in every stored value.
uint32_t Crc32c(const void* data, size_t n);

// kind | version | payload | CRC32C.
std::string Frame(RecordKind kind, const std::string& payload, uint8_t version = kStoreFormatVersion);

// Checks a framed value; on success *payload/*len point into value. `what` names the record in
// errors: DATA_LOSS for a short value, a checksum mismatch or another kind; FAILED_PRECONDITION for
// a format version this build does not read.
Status Unframe(const char* value, size_t size, RecordKind kind, const std::string& what,
               const char** payload, size_t* len);

inline void PutU32(std::string* s, uint32_t v) { s->append(reinterpret_cast<const char*>(&v), 4); }
inline void PutU64(std::string* s, uint64_t v) { s->append(reinterpret_cast<const char*>(&v), 8); }

// Bounds-checked little-endian reader over a payload: every read returns false (and reads
// nothing) when fewer bytes remain than it needs.
class PayloadReader {
 public:
  PayloadReader(const char* p, size_t n) : p_(p), n_(n) {}
  bool U8(uint8_t* v) { return Raw(v, 1); }
  bool U32(uint32_t* v) { return Raw(v, 4); }
  bool U64(uint64_t* v) { return Raw(v, 8); }
  bool Bytes(size_t len, std::string* out) {
    if (len > n_ - pos_) return false;
    out->assign(p_ + pos_, len);
    pos_ += len;
    return true;
  }
  size_t remaining() const { return n_ - pos_; }
  const char* here() const { return p_ + pos_; }

 private:
  bool Raw(void* v, size_t len) {
    if (len > n_ - pos_) return false;
    std::memcpy(v, p_ + pos_, len);
    pos_ += len;
    return true;
  }
  const char* p_;
  size_t n_;
  size_t pos_ = 0;
};

}  // namespace memoria
