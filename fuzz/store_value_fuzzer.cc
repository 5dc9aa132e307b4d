// Stored memory from arbitrary bytes (storage/): everything a passage store reads back from disk.
// The first input byte picks the parser:
//   0  codec spec JSON (the store identity's "codec" field): CodecSpec::FromJson
//   1  codec spec flag text ("pq:g=96,bits=8") with a fuzzed dim: CodecSpec::Parse
//   2  a memory value (frame + header + codes) against one of a fixed set of codecs, after
//      LoadState of fuzzed codec state (PQ codebooks, BTR calibration); the codes are also fed
//      to Codec::DecodePassage directly, past the checksum
//   3  a passage text value: ParsePassageValue
//   4  PQ codebooks in a safetensors file: ImportPqCodebooks
//   5  a retrieval-index record (storage/bm25_postings.h): a length-prefixed key, then the value:
//      VerifyBm25Record
// Modes 2, 3 and 5 can replace the value's last 4 bytes by its correct CRC32C (second byte's low
// bit), so the fuzzer reaches the payload parsers behind the checksum.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz/fuzz_target.h"
#include "storage/bm25_postings.h"
#include "storage/btr_merge.h"
#include "storage/codec.h"
#include "storage/passage_store.h"

namespace memoria::fuzz {
namespace {

// Small codecs of every kind: none f32/bf16, pq 8/16 bits (with and without padding of d to a
// multiple of g), btr with bf16/f32 scales (with and without padding of d to a multiple of 8),
// btr with token merging (variable-size passage blobs: storage/btr_merge.h).
const char* const kSpecs[] = {"none",           "none:bf16",         "pq:g=4,bits=8",
                              "pq:g=4,bits=8",  "pq:g=2,bits=16",    "btr",
                              "btr:scale=f32",  "btr:merge=0.5"};
const int64_t kSpecDims[] = {8, 8, 8, 6, 4, 8, 12, 12};
constexpr int kNumSpecs = 8;

CodecSpec SpecAt(int i) {
  auto spec = CodecSpec::Parse(kSpecs[i], kSpecDims[i]);
  FUZZ_CHECK(spec.ok());
  return *spec;
}

// A valid state for the codec (finite values from a fixed LCG), so decoding is reachable even
// when the fuzzed state is rejected.
std::string ValidState(size_t bytes) {
  std::vector<float> v(bytes / 4);
  uint32_t x = 12345;
  for (float& f : v) {
    x = x * 1664525u + 1013904223u;
    f = static_cast<float>(x >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
  }
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * 4);
}

// Bytes of the state each codec expects (codec.h: pq g * C * d_pad/g floats, btr 2 * d8 floats).
size_t StateBytes(const CodecSpec& spec) {
  if (spec.id == CodecId::kPq) {
    const int64_t d_pad = (spec.dim + spec.pq_subspaces - 1) / spec.pq_subspaces * spec.pq_subspaces;
    return static_cast<size_t>(d_pad * (int64_t{1} << spec.pq_bits) * 4);
  }
  if (spec.id == CodecId::kBtr) return static_cast<size_t>((spec.dim + 7) / 8 * 8 * 8);
  return 0;
}

// Codec i with its valid state, built once (the 16-bit PQ state is 1 MiB).
const Codec& ReadyCodec(int i) {
  static std::unique_ptr<Codec> codecs[kNumSpecs];
  if (!codecs[i]) {
    auto codec = CreateCodec(SpecAt(i));
    FUZZ_CHECK(codec.ok());
    const size_t bytes = StateBytes((*codec)->spec());
    FUZZ_CHECK((*codec)->LoadState(ValidState(bytes)).ok());
    FUZZ_CHECK((*codec)->ready());
    codecs[i] = std::move(*codec);
  }
  return *codecs[i];
}

void FixChecksum(std::string* value) {
  if (value->size() < 4) return;
  const uint32_t crc = Crc32c(value->data(), value->size() - 4);
  std::memcpy(value->data() + value->size() - 4, &crc, 4);
}

// Decodes a passage blob of n tokens (Codec::DecodePassage, what the store calls); a successful
// decode of finite-state codecs gives finite values for PQ (centroid copies) and BTR (finite
// scales are checked before decoding).
void DecodeChecked(const Codec& codec, int64_t n, const std::string& codes) {
  static const ThreadPool pool(1);
  // A merged blob's header could claim any n: bound the output buffer just past what merging
  // accepts (the decode must refuse the rest).
  if (!codec.fixed_size_blobs()) n = std::min<int64_t>(n, kMaxBtrMergeTokens + 1);
  std::vector<float> x(static_cast<size_t>(n * codec.dim()));
  const Status s = codec.DecodePassage(pool, n, reinterpret_cast<const uint8_t*>(codes.data()),
                                       static_cast<int64_t>(codes.size()), x.data(), codec.dim());
  if (!s.ok()) {
    FUZZ_CHECK(s.code() == StatusCode::kDataLoss);
    return;
  }
  if (codec.fixed_size_blobs()) {
    FUZZ_CHECK(static_cast<int64_t>(codes.size()) == codec.code_size(n));
  } else {
    FUZZ_CHECK(n <= kMaxBtrMergeTokens && static_cast<int64_t>(codes.size()) >= 8 + ((n + 1) / 2 + 7) / 8);
  }
  if (codec.spec().id == CodecId::kPq) {
    for (float f : x) FUZZ_CHECK(std::isfinite(f));
  }
}

void CheckSpec(const CodecSpec& spec) {
  auto codec = CreateCodec(spec);
  FUZZ_CHECK(codec.ok());
  FUZZ_CHECK(spec.BytesPerToken() > 0);
  // The stored form reads back as the same spec.
  auto again = CodecSpec::FromJson(spec.ToJson());
  FUZZ_CHECK(again.ok() && *again == spec);
  (void)spec.ToString();
}

}  // namespace
}  // namespace memoria::fuzz

MEMORIA_FUZZ_TARGET(StoreValue) {
  FuzzInput in(data, size);
  const int mode = in.U8() % 6;
  if (mode == 0) {
    auto spec = CodecSpec::FromJson(in.Rest());
    if (spec.ok()) CheckSpec(*spec);
    return 0;
  }
  if (mode == 1) {
    const int64_t dim = static_cast<int32_t>(in.U32());
    auto spec = CodecSpec::Parse(in.Rest(), dim);
    if (spec.ok()) CheckSpec(*spec);
    return 0;
  }
  if (mode == 2) {
    const int which = in.U8() % kNumSpecs;
    const bool fix_crc = in.U8() & 1;
    const std::string state = in.LengthPrefixed();
    std::string value = in.Rest();
    if (fix_crc) FixChecksum(&value);

    // Fuzzed codec state: accepted only with the exact size and finite values.
    auto fresh = CreateCodec(SpecAt(which));
    FUZZ_CHECK(fresh.ok());
    const Status loaded = (*fresh)->LoadState(state);
    if (loaded.ok()) {
      FUZZ_CHECK((*fresh)->ready());
      FUZZ_CHECK((*fresh)->SerializeState() == state);
    } else {
      FUZZ_CHECK(loaded.code() == StatusCode::kDataLoss);
    }
    const Codec& codec = loaded.ok() ? **fresh : ReadyCodec(which);

    PassageCodes codes;
    const Status parsed = ParseMemoryValue("fuzz", value.data(), value.size(), codec, &codes);
    if (parsed.ok()) {
      if (codec.fixed_size_blobs()) {
        FUZZ_CHECK(static_cast<int64_t>(codes.codes.size()) == codec.code_size(codes.num_tokens));
      }
      DecodeChecked(codec, codes.num_tokens, codes.codes);
    } else {
      FUZZ_CHECK(parsed.code() == StatusCode::kDataLoss ||
                 parsed.code() == StatusCode::kFailedPrecondition);
    }
    // The raw bytes as codes: whole tokens, and one byte short of them (must be refused).
    const int64_t per_token = codec.spec().BytesPerToken();
    const int64_t n = static_cast<int64_t>(value.size()) / per_token;
    DecodeChecked(codec, n, value.substr(0, static_cast<size_t>(n * per_token)));
    if (!value.empty()) DecodeChecked(codec, n + 1, value);
    return 0;
  }
  if (mode == 3) {
    const bool fix_crc = in.U8() & 1;
    std::string value = in.Rest();
    if (fix_crc) FixChecksum(&value);
    PassageText text;
    const Status parsed = ParsePassageValue("fuzz", value.data(), value.size(), &text);
    if (parsed.ok()) {
      // Frame (6) + three u32 lengths + the fields.
      FUZZ_CHECK(6 + 12 + text.title.size() + text.text.size() + 4 * text.token_ids.size() ==
                 value.size());
    } else {
      FUZZ_CHECK(parsed.code() == StatusCode::kDataLoss ||
                 parsed.code() == StatusCode::kFailedPrecondition);
    }
    return 0;
  }
  if (mode == 5) {
    const bool fix_crc = in.U8() & 1;
    const std::string key = in.LengthPrefixed();
    std::string value = in.Rest();
    if (fix_crc) FixChecksum(&value);
    const Status verified = VerifyBm25Record(key, value.data(), value.size());
    FUZZ_CHECK(verified.ok() || verified.code() == StatusCode::kDataLoss ||
               verified.code() == StatusCode::kFailedPrecondition);
    return 0;
  }
  // mode 4: codebooks of the 8-bit PQ codecs (the 16-bit one needs a 1 MiB file).
  const int which = (in.U8() & 1) ? 3 : 2;
  auto codec = CreateCodec(SpecAt(which));
  FUZZ_CHECK(codec.ok());
  const MemFile file(in.Rest());
  const Status imported = ImportPqCodebooks(file.path(), "codebooks", codec->get());
  if (imported.ok()) {
    FUZZ_CHECK((*codec)->ready());
    FUZZ_CHECK((*codec)->SerializeState().size() == StateBytes((*codec)->spec()));
    DecodeChecked(**codec, 1, std::string(static_cast<size_t>((*codec)->code_size(1)), '\x07'));
  } else {
    const StatusCode c = imported.code();
    FUZZ_CHECK(c == StatusCode::kDataLoss || c == StatusCode::kInvalidArgument ||
               c == StatusCode::kNotFound);
  }
  return 0;
}
