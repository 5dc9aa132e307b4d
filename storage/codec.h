// Memory codecs: how a passage's memory vectors (num_tokens x d f32, the output of the memory
// encoder) become the bytes stored under the passage, and back.
//
// The interface follows FAISS's standalone codecs: code_size(), Encode(n, x, codes),
// Decode(n, codes, x). A codec is described by a CodecSpec (id + parameters, stored in the
// passage store's metadata) and holds trained state (PQ codebooks, BTR calibration) that
// SerializeState()/LoadState() move in and out of the store.
//
// Codecs and their exact sizes (bytes per token; a passage of n tokens takes n times this):
//   none  f32:  4 d                         bf16: 2 d   (round to nearest even)
//   pq    g * ceil(log2 C) / 8  with C = 2^bits, bits in {8, 16}: g bytes (uint8 ids, C = 256)
//         or 2 g bytes (uint16 ids, C = 65536, MEMORY-VQ's int16 setting). Vectors are zero-padded
//         from d to d_pad = g * ceil(d / g) before encoding; decode returns the first d components.
//   btr   d8 / 8 + s  with d8 = 8 * ceil(d / 8) sign bits and s = 2 (bf16) or 4 (f32) bytes for
//         the token's scale alpha (formula in kernels/btr_kernels.h).
//   btr with merge = r > 0 (BTR's offline token merging, storage/btr_merge.h): a passage of n
//         tokens (n <= 8192) merges k = min(floor(r n), ceil(n / 2)) of them (0 when n < 2) and
//         keeps m = n - k at the btr size each, plus the matching: passage bytes =
//         8 + ceil(ceil(n / 2) / 8) + 2 k + m (d8 / 8 + s). BytesPerToken() is the size per kept
//         token; the bytes a passage really takes are what the store's Scan counts.
//
// Code layouts for one passage of n tokens:
//   none  /// Layout: (n, d) f32 or bf16, row-major
//   pq    /// Layout: (n, g) ids, uint8 or uint16 little endian (kernels/pq_kernels.h)
//   btr   /// Layout: bits (n, d8 / 8) bytes, then scales (n) bf16 or f32. Bits first and
//                     contiguous so Hamming distances run over whole rows.
// Passage blobs (EncodePassage/DecodePassage, what a store keeps per passage) are these codes,
// except for btr with merge > 0: the merged layout of storage/btr_merge.h.
//
// State layouts (SerializeState, little endian, no header; the store adds version + checksum):
//   none  empty
//   pq    /// Layout: (g, C, d_pad / g) f32 centroids
//   btr   /// Layout: mu (d8) f32, then a (d8) f32 (padding dimensions are 0)
//
// Errors: CreateCodec validates the spec (INVALID_ARGUMENT naming the bad field and its value).
// Decode of bytes from disk checks sizes and content first: DATA_LOSS with the numbers, never an
// out-of-bounds read. Encode/Decode before Train/LoadState: FAILED_PRECONDITION.
// Thread-safety: const methods may run concurrently; Train/LoadState need exclusive access.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "kernels/pq_kernels.h"
#include "kernels/thread_pool.h"

namespace memoria {

// Largest memory-vector dimension a codec accepts: far above any model width (LLaMA-65B 8192), low
// enough that sizes derived from it (bytes per token, codebook floats) cannot overflow int64.
inline constexpr int64_t kMaxCodecDim = 1 << 16;
// Largest btr merge ratio (CodecSpec::btr_merge_ratio).
inline constexpr double kMaxBtrMergeRatio = 0.9;

// Stored in every memory value and in the store metadata: never renumber.
enum class CodecId : uint8_t { kNone = 0, kPq = 1, kBtr = 2 };

// "none", "pq", "btr"; "?" for an unknown value.
const char* CodecIdName(CodecId id);

struct CodecSpec {
  CodecId id = CodecId::kNone;
  // Dimension d of the memory vectors (before any padding). Required, in [1, kMaxCodecDim].
  int64_t dim = 0;
  // none: element type, "f32" (default, exact) or "bf16" (half the bytes, ~3 significant digits).
  std::string none_dtype = "f32";
  // pq: subspaces g (1 <= g <= d) and bits per id (8: C = 256, 16: C = 65536). Defaults g = 0
  // (must be set), 8 bits.
  int64_t pq_subspaces = 0;
  int pq_bits = 8;
  // btr: bytes of each token's scale, 2 (bf16, default) or 4 (f32).
  int btr_scale_bytes = 2;
  // btr: fraction of each passage's tokens merged away before storing (BTR's offline token
  // merging, storage/btr_merge.h), in [0, 0.9]; 0 (default) keeps every token. BTR uses 0.2.
  double btr_merge_ratio = 0.0;

  // True for btr with merge > 0: passage blobs then vary in size (see EncodePassage).
  bool merges_tokens() const { return id == CodecId::kBtr && btr_merge_ratio > 0.0; }

  // Parses a flag-style description: "none", "none:bf16", "pq:g=96,bits=8", "btr",
  // "btr:scale=f32", "btr:merge=0.2" (dim is set separately). INVALID_ARGUMENT on anything else.
  static StatusOr<CodecSpec> Parse(const std::string& text, int64_t dim);
  // JSON object with every field ({"id": "pq", "dim": 768, "g": 96, "bits": 8}); the inverse of
  // FromJson. Stored in the store metadata.
  std::string ToJson() const;
  static StatusOr<CodecSpec> FromJson(const std::string& json);
  // "pq(d=768, g=96, C=256)": for messages.
  std::string ToString() const;
  // The flag text Parse reads back to this spec (with the same dim): "none:bf16",
  // "pq:g=96,bits=8", "btr", "btr:merge=0.2". What clients name a store's codec by.
  std::string ToFlag() const;
  // Exact bytes per (stored) token (formulas above); 0 for an invalid spec.
  int64_t BytesPerToken() const;
  // Uncompressed bytes per token (reference_bytes per element: 4 = fp32, 2 = bf16) over
  // BytesPerToken(); 0 for an invalid spec. Merged btr: per kept token (the store's Scan has the
  // measured bytes).
  double CompressionRatio(int reference_bytes = 4) const;
  bool operator==(const CodecSpec& other) const;
  bool operator!=(const CodecSpec& other) const { return !(*this == other); }
};

struct CodecTrainOptions {
  PqTrainOptions pq;  // pq only
};

struct CodecTrainReport {
  std::vector<double> distortion;  // pq: per iteration (PqTrainReport); others: empty
  int64_t training_vectors = 0;
  double seconds = 0.0;
};

class Codec {
 public:
  virtual ~Codec() = default;

  const CodecSpec& spec() const { return spec_; }
  int64_t dim() const { return spec_.dim; }
  // True once the codec can encode/decode (trained, state loaded, or needs no state).
  virtual bool ready() const = 0;

  // Bytes of the codes of num_tokens tokens: num_tokens * spec().BytesPerToken().
  int64_t code_size(int64_t num_tokens) const { return num_tokens * spec_.BytesPerToken(); }

  // Encodes n tokens x (n, dim) f32 with row stride ldx >= dim into codes (code_size(n) bytes).
  virtual Status Encode(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
                        uint8_t* codes) const = 0;
  // Decodes codes (code_bytes bytes, must equal code_size(n)) into x (n, dim) f32, row stride
  // ldx >= dim. DATA_LOSS when code_bytes is wrong or the codes are invalid for this codec.
  virtual Status Decode(const ThreadPool& pool, int64_t n, const uint8_t* codes,
                        int64_t code_bytes, float* x, int64_t ldx) const = 0;

  // The blob a store keeps for the memory of one passage of n tokens, x (n, dim) row stride ldx:
  // the codes (code_size(n) bytes), or for merged btr the layout of storage/btr_merge.h.
  virtual Status EncodePassage(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
                               std::string* blob) const;
  // Inverse of EncodePassage into x (n, dim), row stride ldx >= dim. DATA_LOSS when the blob does
  // not hold n tokens of this codec (size, merge map, codes), never an out-of-bounds read.
  virtual Status DecodePassage(const ThreadPool& pool, int64_t n, const uint8_t* blob,
                               int64_t blob_bytes, float* x, int64_t ldx) const;
  // False for merged btr, whose passage blobs are not code_size(n) bytes.
  bool fixed_size_blobs() const { return !spec_.merges_tokens(); }

  // Fits the codec's state to n sample vectors x (n, dim), row stride ldx. pq: k-means
  // (INVALID_ARGUMENT when n < C, with both numbers); btr: calibration; none: nothing.
  virtual Status Train(const ThreadPool& pool, int64_t n, const float* x, int64_t ldx,
                       const CodecTrainOptions& options, CodecTrainReport* report) = 0;

  // The trained state (layouts above) and its inverse; LoadState checks the size (DATA_LOSS
  // with expected and actual bytes) and values (DATA_LOSS for NaN/Inf).
  virtual std::string SerializeState() const = 0;
  virtual Status LoadState(const std::string& bytes) = 0;

 protected:
  explicit Codec(CodecSpec spec) : spec_(std::move(spec)) {}
  CodecSpec spec_;
};

// Validates the spec and builds its codec (untrained unless it needs no state).
StatusOr<std::unique_ptr<Codec>> CreateCodec(const CodecSpec& spec);

// PQ codebooks in a safetensors file: one tensor (default name "codebooks") of shape
// [g, C, d_pad / g], dtype F32 or BF16 -- e.g. codebooks trained jointly with a model.
// Import checks the shape against the codec's spec (INVALID_ARGUMENT naming both shapes) and the
// file's structure (DATA_LOSS for a truncated or malformed file; NOT_FOUND for a missing file or
// tensor). Export writes F32.
Status ImportPqCodebooks(const std::string& path, const std::string& tensor_name, Codec* codec);
Status ExportPqCodebooks(const Codec& codec, const std::string& path,
                         const std::string& tensor_name = "codebooks");

}  // namespace memoria
