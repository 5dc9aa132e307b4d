// Building a passage store from a corpus (the library behind `memoria build-store`):
//
//   corpus (tools/corpus_reader.h) -> FiD passage part "title: T context: P" + EOS, tokenized by
//   the model's SentencePiece tokenizer and truncated to max_passage_tokens (EOS kept last)
//   -> LUMEN memory encoder (engine/lumen.h) of the T5 model dir at live fraction alpha
//   -> codec fitted on a sample (pq: k-means codebooks, or codebooks imported from safetensors;
//      btr: calibration; none: nothing), and so each extra codec -> PassageStore::Create + Ingest
//      in batches.
//
// The store's identity is the model dir's fingerprint (ModelDir::Fingerprint: config + weights),
// the layer split (memory-encoder layers = num_layers - round(alpha * num_layers)) and the codec
// spec, so a server with another model, alpha or codec refuses the store.
//
// Training sample: passages are drawn in a seeded random order until their tokens reach
// train_tokens (all passages when the corpus is smaller); every token of a drawn passage is a
// training vector. Why whole passages in random order: memory vectors of neighbouring tokens are
// correlated, and the first passages of a file are often one article. The sample's memory is kept
// and ingested as is, so no passage is encoded twice (peak memory: train_tokens * d * 4 bytes).
//
// Units: tokens are SentencePiece ids; memory vectors are d_model f32; seconds are wall time.
// Errors: those of ReadCorpus, T5Model::Load, Tokenizer::Open, CodecSpec::Parse, Codec::Train
// (e.g. INVALID_ARGUMENT when the sample has fewer vectors than PQ codes, with both numbers),
// ImportPqCodebooks and PassageStore::Create (ALREADY_EXISTS for an existing store) / Ingest;
// INVALID_ARGUMENT for an empty corpus, options out of range, or a tokenizer whose vocabulary is
// larger than the model's. A failure after Create leaves the passages of acknowledged batches in
// the store (each batch is atomic and durable); rerunning needs a fresh directory.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engine/lumen.h"
#include "engine/t5_model.h"
#include "engine/tokenizer.h"
#include "storage/passage_store.h"
#include "tools/corpus_reader.h"

namespace memoria {

struct StoreBuildOptions {
  std::string corpus_path;
  CorpusFormat corpus_format = CorpusFormat::kAuto;
  int64_t limit = 0;               // passages read from the corpus, <= 0: all
  // > 0: every passage is stored as overlapping runs of this many words (WindowPassages in
  // corpus_reader.h), a new run every window_stride words (0: window_words / 2, at least 1).
  int64_t window_words = 0;
  int64_t window_stride = 0;
  std::string model_dir;           // T5 model dir (config.json + safetensors)
  std::string tokenizer_path;      // "": <model_dir>/spiece.model, else <model_dir>/tokenizer.model
  std::string store_dir;           // created; must not hold a store yet
  std::string codec;               // CodecSpec::Parse text: "none", "none:bf16", "pq:g=96,bits=8", "btr"
  // Further codecs every passage is also stored in (PassageStore extra codecs), each fitted on the
  // same sample; a server answers from any of them per request.
  std::vector<std::string> extra_codecs;
  double alpha = 1.0 / 3.0;        // LUMEN live fraction, [0, 1]
  int64_t batch_passages = 32;     // passages per MemoryEncode call and per durable WriteBatch, >= 1
  int64_t max_passage_tokens = 256;  // FiD passage part truncated to this many ids, >= 2
  int64_t train_tokens = 65536;    // memory vectors to fit the codec on (pq, btr), >= 1
  CodecTrainOptions train;         // pq k-means settings
  std::string pq_codebooks;        // safetensors [g, C, d_pad/g] to import instead of training
  std::string pq_codebooks_tensor = "codebooks";
  uint64_t seed = 1;               // sample order
  int threads = 0;                 // ThreadPool size, 0 = all cores
  bool sync = true;                // PassageStoreOptions::sync (fsync the WAL per batch)
  FidTemplate fid_template;
};

// Reported after each encoded batch of the sample ("sample"), after training ("train") and after
// each ingested batch ("ingest").
struct StoreBuildProgress {
  std::string stage;
  int64_t done = 0;     // passages done in this stage
  int64_t total = 0;    // passages in this stage
  int64_t tokens = 0;   // tokens done in this stage
  double seconds = 0;   // since the stage started
};

struct StoreBuildReport {
  int64_t passages = 0;
  int64_t tokens = 0;
  int64_t truncated_passages = 0;  // passages cut to max_passage_tokens
  int64_t training_vectors = 0;    // 0 when the codec needed no fitting or was imported
  std::vector<double> distortion;  // pq: per k-means iteration (CodecTrainReport)
  StoreIdentity identity;
  double encode_seconds = 0;       // memory encoder, all passages
  double train_seconds = 0;
  double ingest_seconds = 0;       // codec encode + RocksDB writes
  double total_seconds = 0;
};

// The FiD passage part build-store stores for one passage: FidPassageIds truncated to max_tokens
// (>= 2) ids with eos_id kept last; *truncated (optional) tells whether it was cut.
std::vector<int> StoredPassageIds(const Tokenizer& tokenizer, const FidTemplate& tmpl,
                                  const std::string& title, const std::string& text, int eos_id,
                                  int64_t max_tokens, bool* truncated = nullptr);

// The tokenizer of a model dir when none is named: <dir>/spiece.model (HF T5 checkpoints) when it
// exists, else <dir>/tokenizer.model (converted LLaMA-style dirs).
std::string DefaultTokenizerPath(const std::string& model_dir);

// A T5 model directory opened for LUMEN work, as build-store and eval-qa open it.
struct LumenReader {
  uint64_t fingerprint = 0;  // ModelDir::Fingerprint of the weights + config (store identity)
  std::shared_ptr<const T5Model> model;
  std::shared_ptr<const LumenModel> lumen;  // split at `alpha`
  std::unique_ptr<Tokenizer> tokenizer;
  std::string tokenizer_path;
};
// tokenizer_path "" = DefaultTokenizerPath(model_dir). INVALID_ARGUMENT when the tokenizer has
// more pieces than the model's vocabulary (both numbers); load errors as they are.
StatusOr<LumenReader> OpenLumenReader(const std::string& model_dir,
                                      const std::string& tokenizer_path, double alpha);

Status BuildStore(const StoreBuildOptions& options,
                  const std::function<void(const StoreBuildProgress&)>& progress,
                  StoreBuildReport* report);

}  // namespace memoria
