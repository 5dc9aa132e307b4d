#include "server/lumen_loader.h"

#include "base/logging.h"
#include "engine/span_constraint.h"
#include "engine/weights.h"

namespace memoria {

StatusOr<std::unique_ptr<LumenServing>> LoadLumenServing(const v1::ServerConfig& config,
                                                         int threads_per_worker, Metrics* metrics,
                                                         std::unique_ptr<PassageStore>* store) {
  auto s = std::make_unique<LumenServing>();
  s->settings = config.t5();
  s->alpha = s->settings.alpha();
  s->fid.question_prefix = s->settings.question_prefix();
  s->fid.title_prefix = s->settings.title_prefix();
  s->fid.context_prefix = s->settings.context_prefix();
  // T5Model keeps no ModelDir, and the fingerprint reads every weight byte: open the directory
  // once more for it (a second read-only mapping, released right after), as build-store does.
  {
    ASSIGN_OR_RETURN(auto dir, ModelDir::Open(config.model_dir()));
    s->fingerprint = dir->Fingerprint();
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const T5Model> model, T5Model::Load(config.model_dir()));
  LumenOptions lumen_options;
  lumen_options.alpha = s->alpha;
  ASSIGN_OR_RETURN(std::unique_ptr<LumenModel> lumen, LumenModel::Create(model, lumen_options));
  s->lumen = std::move(lumen);
  ASSIGN_OR_RETURN(s->tokenizer, Tokenizer::Open(config.tokenizer_path()));
  if (s->tokenizer->vocab_size() > model->config().vocab_size) {
    return InvalidArgumentError("tokenizer " + config.tokenizer_path() + " has " +
                                std::to_string(s->tokenizer->vocab_size()) +
                                " pieces, more than the model's vocabulary of " +
                                std::to_string(model->config().vocab_size));
  }

  const int64_t d = model->config().d_model;
  StoreIdentity expected;
  expected.model_fingerprint = s->fingerprint;
  expected.layer_split = s->lumen->memory_layers();
  if (config.store_dir().empty()) {
    s->no_store_reason = "no passage store is configured (store_dir is empty)";
  } else {
    PassageStoreOptions options;
    Status opened = PassageStore::Open(options, config.store_dir(), nullptr, store);
    if (opened.ok()) {
      const StoreIdentity& have = (*store)->identity();
      expected.codec = have.codec;
      if (!config.store_codec().empty()) {
        ASSIGN_OR_RETURN(expected.codec, CodecSpec::Parse(config.store_codec(), d));
      }
      if (have.model_fingerprint != expected.model_fingerprint ||
          have.layer_split != expected.layer_split || have.codec != expected.codec) {
        store->reset();
        return FailedPreconditionError(
            "passage store " + config.store_dir() + " was built for " + have.ToString() +
            ", but this server's model " + config.model_dir() + " at alpha " +
            std::to_string(s->alpha) + " (" + std::to_string(s->lumen->live_layers()) +
            " live layers) gives " + expected.ToString() +
            ": rebuild the store with `memoria build-store` for this model, or serve the model "
            "and alpha it was built with");
      }
    } else if (opened.code() == StatusCode::kNotFound) {
      ASSIGN_OR_RETURN(
          expected.codec,
          CodecSpec::Parse(config.store_codec().empty() ? "none" : config.store_codec(), d));
      ASSIGN_OR_RETURN(std::unique_ptr<Codec> codec, CreateCodec(expected.codec));
      if (codec->ready()) {
        RETURN_IF_ERROR(PassageStore::Create(options, config.store_dir(), expected, *codec, store));
        MEMORIA_LOG(kInfo, "created an empty passage store at {} for {}", config.store_dir(),
                    expected.ToString());
      } else {
        s->no_store_reason = "there is no passage store at " + config.store_dir() + " and codec " +
                             expected.codec.ToString() +
                             " needs training (codebooks / calibration) before anything can be "
                             "stored: build the store with `memoria build-store` first";
        MEMORIA_LOG(kWarning, "{}", s->no_store_reason);
      }
    } else {
      return opened;
    }
  }

  s->store = store->get();
  if (s->store != nullptr && metrics != nullptr) {
    metrics->SetStorePassages(s->store->passage_count());
  }
  s->runner = std::make_unique<LumenRunner>(s->lumen, s->store, config.workers(),
                                            config.queue_capacity(), threads_per_worker, metrics,
                                            PieceKinds(*s->tokenizer));
  RETURN_IF_ERROR(s->runner->WarmUp());
  return s;
}

}  // namespace memoria
