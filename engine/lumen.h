// LUMEN: a T5 encoder split into a memory encoder, run offline over every passage, and a live
// encoder, run at query time (docs/mission.md section 1).
//
//   MemEnc  = encoder layers [0, M)          M = num_layers - live_layers
//   LiveEnc = encoder layers [M, num_layers) followed by encoder.final_layer_norm
//   live_layers = round(alpha * num_layers)  (alpha = live fraction, default 1/3: 12 -> 4 live)
//
//   H_i = [ MemEnc(Q) ; MemEnc(P_i) ]     MemEnc(P_i) comes from storage
//   G   = Dec[ LiveEnc(H_1) ; ... ; LiveEnc(H_k) ]
//
// The paper writes Dec[Q; LiveEnc(H_1); ...]; the question tokens are already inside every H_i,
// so the decoder cross-attends over the concatenated LiveEnc outputs only. With alpha = 1 the
// memory encoder has no layers, MemEnc(x) is the token embedding, and the whole computation is
// exactly Fusion-in-Decoder over the inputs [Q ids ; P_i ids] (bit-identical to FidEncode).
//
// Memory vectors are the residual stream after layer M (before any norm): [tokens, d_model] per
// passage. They reach the live encoder as MemoryVectors (f32 or bf16, the uncompressed codecs) or
// as codec blobs through a MemoryDecoder, the hook the storage layer's compressed codecs
// implement. The live encoder runs batched: every linear layer is one GEMM over all passages'
// tokens, attention runs per passage through the blocked Attention kernel; the decoder's
// cross-attention runs over the concatenation with the same kernel (no [n x n] buffer anywhere),
// or, with T5GenerationOptions::iceformer enabled and a long enough memory, through IceFormer
// indices built once per request (engine/t5_model.h T5IceformerSettings).
//
// A LumenModel is immutable and thread-compatible: concurrent calls are fine, each with its own
// pool (and LumenScratch, if given).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/beam_search.h"
#include "engine/t5_model.h"
#include "engine/tokenizer.h"
#include "kernels/dtype.h"
#include "kernels/thread_pool.h"

namespace memoria {

// ---- Fusion-in-Decoder input template --------------------------------------------------------

// FiD's "question: Q title: T context: P", split at the passage so that the question part and
// the passage part can be encoded separately (the passage part is what storage keeps).
struct FidTemplate {
  std::string question_prefix = "question: ";  // question part = question_prefix + Q
  std::string title_prefix = "title: ";        // passage part = title_prefix + T
  std::string context_prefix = " context: ";   //                + context_prefix + P
};

// Token ids of the question part (no EOS: the passage part follows it).
std::vector<int> FidQuestionIds(const Tokenizer& tokenizer, const FidTemplate& tmpl,
                                const std::string& question);
// Token ids of the passage part, ending with eos_id (one FiD encoder input = question part +
// passage part). An empty title keeps the template's prefixes, as FiD's data pipeline does.
std::vector<int> FidPassageIds(const Tokenizer& tokenizer, const FidTemplate& tmpl,
                               const std::string& title, const std::string& text, int eos_id);

// ---- Memory vectors and the codec hook ---------------------------------------------------------

// A read-only view of one passage's memory vectors: [tokens, d] row-major, f32 or bf16.
struct MemoryVectors {
  DType dtype = DType::kF32;  // kF32 or kBF16
  const void* data = nullptr;
  int64_t tokens = 0;
  int64_t d = 0;
};

// One passage's memory as a codec stored it: an opaque blob plus the token count (kept by the
// storage layer beside the blob).
struct EncodedMemory {
  const uint8_t* data = nullptr;
  size_t size = 0;
  int64_t tokens = 0;
};

// Decodes a codec blob into f32 memory vectors. Implemented by the storage codecs (PQ, BTR, raw).
// Must be thread-safe for concurrent Decode calls.
class MemoryDecoder {
 public:
  virtual ~MemoryDecoder() = default;
  // Writes out [in.tokens, d] f32. DATA_LOSS (naming the sizes) when the blob does not decode to
  // that shape.
  virtual Status Decode(const EncodedMemory& in, int64_t d, float* out) const = 0;
};

// The uncompressed baseline codec: the blob is tokens * d little-endian f32 or bf16 values.
class RawMemoryDecoder : public MemoryDecoder {
 public:
  explicit RawMemoryDecoder(DType dtype) : dtype_(dtype) {}
  Status Decode(const EncodedMemory& in, int64_t d, float* out) const override;

 private:
  DType dtype_;
};

// ---- The split model ---------------------------------------------------------------------------

struct LumenOptions {
  // Live fraction of the encoder layers, in [0, 1]. 1 = FiD (all layers at query time, memory =
  // token embeddings); 1/3 = the LUMEN paper's main setting; 0 = a pure memory model (only the
  // final norm at query time). Smaller alpha: less query-time compute, more d-dim storage work.
  double alpha = 1.0 / 3.0;
};

// The live encoder's output for one query: the decoder's cross-attention input.
struct LiveEncoding {
  std::vector<float> h;          // [offsets.back(), d_model], final-normed
  std::vector<int64_t> offsets;  // passage i occupies rows [offsets[i], offsets[i + 1])
};

// Per-request buffers, reusable across requests to avoid re-allocation (optional everywhere).
struct LumenScratch {
  T5EncoderScratch encoder;
  T5DecoderState decoder;
  std::vector<float> question_memory;  // [question tokens, d_model]
};

class LumenModel {
 public:
  // INVALID_ARGUMENT when alpha is outside [0, 1].
  static StatusOr<std::unique_ptr<LumenModel>> Create(std::shared_ptr<const T5Model> model,
                                                      const LumenOptions& options);

  const T5Model& model() const { return *model_; }
  int memory_layers() const { return memory_layers_; }
  int live_layers() const { return model_->config().num_layers - memory_layers_; }

  // `check` (optional, on MemoryEncode and LiveEncode): called before every encoder layer; its
  // first non-OK status (e.g. DEADLINE_EXCEEDED, CANCELLED) stops the encoder there and is
  // returned, `out` then being unspecified. Empty: never called (one branch per layer).

  // (a) Memory-encodes a batch of passages (each the ids of a FiD passage part): out[i] is
  // [passages[i].size(), d_model] f32. One GEMM per linear layer over all passages' tokens.
  // INVALID_ARGUMENT for an empty passage or an id outside the vocabulary.
  Status MemoryEncode(const ThreadPool& pool, const std::vector<std::vector<int>>& passages,
                      std::vector<std::vector<float>>* out, LumenScratch* scratch = nullptr,
                      const std::function<Status()>& check = {}) const;

  // (b) The live encoder over [MemEnc(Q); memory_i] for every passage i.
  // INVALID_ARGUMENT: empty question or passage list, a memory whose d != d_model, a dtype other
  // than f32/bf16, a null data pointer or zero tokens.
  Status LiveEncode(const ThreadPool& pool, const std::vector<int>& question_ids,
                    const std::vector<MemoryVectors>& memories, LiveEncoding* out,
                    LumenScratch* scratch = nullptr,
                    const std::function<Status()>& check = {}) const;
  // Same, decoding codec blobs on the way in (errors of decoder.Decode are returned).
  Status LiveEncode(const ThreadPool& pool, const std::vector<int>& question_ids,
                    const std::vector<EncodedMemory>& memories, const MemoryDecoder& decoder,
                    LiveEncoding* out, LumenScratch* scratch = nullptr,
                    const std::function<Status()>& check = {}) const;

  // LiveEncode + generation (greedy or beam; see T5GenerationOptions).
  StatusOr<GenerationResult> Answer(const ThreadPool& pool, const std::vector<int>& question_ids,
                                    const std::vector<MemoryVectors>& memories,
                                    const T5GenerationOptions& options,
                                    LumenScratch* scratch = nullptr) const;
  StatusOr<GenerationResult> Answer(const ThreadPool& pool, const std::vector<int>& question_ids,
                                    const std::vector<EncodedMemory>& memories,
                                    const MemoryDecoder& decoder,
                                    const T5GenerationOptions& options,
                                    LumenScratch* scratch = nullptr) const;

  // Plain FiD encoding (independent of alpha): the full encoder over [question_ids; passage_i]
  // for each passage, same layout as LiveEncode. The reference the split is checked against.
  Status FidEncode(const ThreadPool& pool, const std::vector<int>& question_ids,
                   const std::vector<std::vector<int>>& passages, LiveEncoding* out,
                   LumenScratch* scratch = nullptr) const;

 private:
  LumenModel(std::shared_ptr<const T5Model> model, int memory_layers)
      : model_(std::move(model)), memory_layers_(memory_layers) {}

  // Shared body of both LiveEncode overloads: fill(i, dst) writes passage i's memory rows.
  Status LiveEncodeImpl(const ThreadPool& pool, const std::vector<int>& question_ids,
                        const std::vector<int64_t>& passage_tokens,
                        const std::function<Status(size_t, float*)>& fill, LiveEncoding* out,
                        LumenScratch* scratch, const std::function<Status()>& check) const;

  std::shared_ptr<const T5Model> model_;
  int memory_layers_;
};

}  // namespace memoria
