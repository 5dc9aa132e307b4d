// Loading what a T5 server serves: the T5 model as a LumenModel at the configured alpha, its
// tokenizer, the model fingerprint, the passage store (opened and identity-checked, or created
// when the codec needs no training; it holds the BM25 retriever's index), and the workers.
//
// Store rules (proto/server_config.proto, store_dir / store_codec):
//   existing store   its fingerprint and layer split must equal the model's fingerprint
//                    (ModelDir::Fingerprint) and LumenModel::memory_layers() at t5.alpha, and its
//                    codec must equal store_codec when that is set: FAILED_PRECONDITION naming
//                    both identities otherwise (the server exits 1).
//   no store there   store_codec (default "none") needs no training: created empty;
//                    otherwise served without a store, LumenServing::no_store_reason says why
//                    (Ingest / answers then fail FAILED_PRECONDITION with it).
// Errors: those of ModelDir::Open, T5Model::Load, Tokenizer::Open, CodecSpec::Parse,
// PassageStore::Open/Create (with the path), INVALID_ARGUMENT for a tokenizer larger than the
// model's vocabulary.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/status.h"
#include "engine/lumen.h"
#include "engine/tokenizer.h"
#include "server/lumen_runner.h"
#include "server/metrics.h"
#include "server_config.pb.h"
#include "storage/passage_store.h"

namespace memoria {

struct LumenServing {
  std::shared_ptr<const LumenModel> lumen;
  std::unique_ptr<Tokenizer> tokenizer;
  uint64_t fingerprint = 0;
  double alpha = 0;
  FidTemplate fid;
  v1::T5Settings settings;               // defaults applied
  PassageStore* store = nullptr;         // owned by ServingModel::store; null without one
  std::string no_store_reason;           // why store is null ("" when it is open)
  std::unique_ptr<LumenRunner> runner;
};

// Loads everything above; *store receives the opened/created store (or stays null).
StatusOr<std::unique_ptr<LumenServing>> LoadLumenServing(const v1::ServerConfig& config,
                                                         int threads_per_worker, Metrics* metrics,
                                                         std::unique_ptr<PassageStore>* store);

}  // namespace memoria
