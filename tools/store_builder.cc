#include "tools/store_builder.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <numeric>
#include <random>
#include <unordered_map>

#include "engine/t5_model.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"
#include "storage/codec.h"

namespace memoria {
namespace {

double Since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

Status CheckOptions(const StoreBuildOptions& o) {
  if (o.corpus_path.empty()) return InvalidArgumentError("no corpus path");
  if (o.model_dir.empty()) return InvalidArgumentError("no model directory");
  if (o.store_dir.empty()) return InvalidArgumentError("no store directory");
  if (o.codec.empty()) return InvalidArgumentError("no codec (e.g. \"pq:g=96,bits=8\", \"btr\", \"none\")");
  if (!(o.alpha >= 0.0 && o.alpha <= 1.0)) {
    return InvalidArgumentError("alpha must be in [0, 1], got " + std::to_string(o.alpha));
  }
  if (o.batch_passages < 1) {
    return InvalidArgumentError("batch size must be >= 1, got " + std::to_string(o.batch_passages));
  }
  // Two ids at least: one content piece and the EOS that ends a FiD passage part.
  if (o.max_passage_tokens < 2) {
    return InvalidArgumentError("max passage tokens must be >= 2, got " +
                                std::to_string(o.max_passage_tokens));
  }
  if (o.train_tokens < 1) {
    return InvalidArgumentError("train tokens must be >= 1, got " + std::to_string(o.train_tokens));
  }
  if (o.threads < 0) return InvalidArgumentError("threads must be >= 0, got " + std::to_string(o.threads));
  if (o.window_words < 0 || o.window_stride < 0 || (o.window_stride > 0 && o.window_words == 0)) {
    return InvalidArgumentError("window of " + std::to_string(o.window_words) +
                                " words with stride " + std::to_string(o.window_stride) +
                                ": need words >= 1 for a stride, and neither negative");
  }
  return Status::Ok();
}

}  // namespace

std::string DefaultTokenizerPath(const std::string& model_dir) {
  const std::string spiece = model_dir + "/spiece.model";
  std::error_code ec;
  return std::filesystem::exists(spiece, ec) ? spiece : model_dir + "/tokenizer.model";
}

std::vector<int> StoredPassageIds(const Tokenizer& tokenizer, const FidTemplate& tmpl,
                                  const std::string& title, const std::string& text, int eos_id,
                                  int64_t max_tokens, bool* truncated) {
  std::vector<int> ids = FidPassageIds(tokenizer, tmpl, title, text, eos_id);
  const bool cut = int64_t(ids.size()) > max_tokens;
  if (cut) {
    ids.resize(size_t(max_tokens));
    ids.back() = eos_id;
  }
  if (truncated != nullptr) *truncated = cut;
  return ids;
}

StatusOr<LumenReader> OpenLumenReader(const std::string& model_dir,
                                      const std::string& tokenizer_path, double alpha) {
  LumenReader r;
  // The fingerprint needs every weight byte, which T5Model does not keep as a ModelDir; open the
  // directory once more (a second read-only mapping of the same files, released right after).
  {
    ASSIGN_OR_RETURN(auto dir, ModelDir::Open(model_dir));
    r.fingerprint = dir->Fingerprint();
  }
  ASSIGN_OR_RETURN(r.model, T5Model::Load(model_dir));
  LumenOptions lumen_options;
  lumen_options.alpha = alpha;
  ASSIGN_OR_RETURN(std::unique_ptr<LumenModel> lumen, LumenModel::Create(r.model, lumen_options));
  r.lumen = std::move(lumen);
  r.tokenizer_path = tokenizer_path.empty() ? DefaultTokenizerPath(model_dir) : tokenizer_path;
  ASSIGN_OR_RETURN(r.tokenizer, Tokenizer::Open(r.tokenizer_path));
  if (r.tokenizer->vocab_size() > r.model->config().vocab_size) {
    return InvalidArgumentError("tokenizer " + r.tokenizer_path + " has " +
                                std::to_string(r.tokenizer->vocab_size()) +
                                " pieces, more than the model's vocabulary of " +
                                std::to_string(r.model->config().vocab_size));
  }
  return r;
}

Status BuildStore(const StoreBuildOptions& options,
                  const std::function<void(const StoreBuildProgress&)>& progress,
                  StoreBuildReport* report) {
  const auto t_start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(CheckOptions(options));
  StoreBuildReport r;
  auto notify = [&](const StoreBuildProgress& p) {
    if (progress) progress(p);
  };

  ASSIGN_OR_RETURN(std::vector<CorpusPassage> corpus,
                   ReadCorpus(options.corpus_path, options.corpus_format, options.limit));
  if (options.window_words > 0) {
    const int64_t stride = options.window_stride > 0 ? options.window_stride
                                                     : std::max<int64_t>(1, options.window_words / 2);
    ASSIGN_OR_RETURN(corpus, WindowPassages(corpus, options.window_words, stride));
  }
  if (corpus.empty()) return InvalidArgumentError("corpus " + options.corpus_path + " has no passages");

  ASSIGN_OR_RETURN(LumenReader reader,
                   OpenLumenReader(options.model_dir, options.tokenizer_path, options.alpha));
  const uint64_t fingerprint = reader.fingerprint;
  const std::shared_ptr<const T5Model>& model = reader.model;
  const std::shared_ptr<const LumenModel>& lumen = reader.lumen;
  const std::unique_ptr<Tokenizer>& tokenizer = reader.tokenizer;
  const int64_t d = model->config().d_model;
  const int eos = model->config().eos_token_id;

  // Tokenize everything up front: ids are small (4 bytes per token) and the sample needs counts.
  std::vector<std::vector<int>> ids(corpus.size());
  for (size_t i = 0; i < corpus.size(); ++i) {
    bool truncated = false;
    ids[i] = StoredPassageIds(*tokenizer, options.fid_template, corpus[i].title, corpus[i].text, eos,
                              options.max_passage_tokens, &truncated);
    if (truncated) ++r.truncated_passages;
  }

  ThreadPool pool(options.threads);
  LumenScratch scratch;
  // The primary codec, then the extra ones (every passage is stored in each).
  std::vector<std::unique_ptr<Codec>> codecs;
  for (size_t c = 0; c <= options.extra_codecs.size(); ++c) {
    ASSIGN_OR_RETURN(CodecSpec spec_c, CodecSpec::Parse(c == 0 ? options.codec : options.extra_codecs[c - 1], d));
    ASSIGN_OR_RETURN(std::unique_ptr<Codec> codec_c, CreateCodec(spec_c));
    codecs.push_back(std::move(codec_c));
  }
  const CodecSpec spec = codecs[0]->spec();
  std::unordered_map<size_t, std::vector<float>> cached;  // sample passages' memory, by index

  // Memory-encodes passages `which` (indices into corpus) in batches; calls sink(index, memory).
  auto encode = [&](const std::vector<size_t>& which, const std::string& stage,
                    const std::function<Status(size_t, std::vector<float>&&)>& sink) -> Status {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t tokens = 0;
    for (size_t b = 0; b < which.size(); b += size_t(options.batch_passages)) {
      const size_t e = std::min(which.size(), b + size_t(options.batch_passages));
      std::vector<std::vector<int>> batch;
      for (size_t k = b; k < e; ++k) batch.push_back(ids[which[k]]);
      std::vector<std::vector<float>> memory;
      RETURN_IF_ERROR(lumen->MemoryEncode(pool, batch, &memory, &scratch));
      for (size_t k = b; k < e; ++k) {
        tokens += int64_t(batch[k - b].size());
        RETURN_IF_ERROR(sink(which[k], std::move(memory[k - b])));
      }
      notify({stage, int64_t(e), int64_t(which.size()), tokens, Since(t0)});
    }
    r.encode_seconds += Since(t0);
    return Status::Ok();
  };

  if (!options.pq_codebooks.empty()) {
    if (spec.id != CodecId::kPq) {
      return InvalidArgumentError("codebooks to import were given but the codec is " + spec.ToString());
    }
    RETURN_IF_ERROR(ImportPqCodebooks(options.pq_codebooks, options.pq_codebooks_tensor, codecs[0].get()));
  }
  const bool needs_sample =
      std::any_of(codecs.begin(), codecs.end(), [](const std::unique_ptr<Codec>& c) { return !c->ready(); });
  if (needs_sample) {
    std::vector<size_t> order(corpus.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::shuffle(order.begin(), order.end(), std::mt19937_64(options.seed));
    std::vector<size_t> sample;
    int64_t sample_tokens = 0;
    for (size_t i : order) {
      if (sample_tokens >= options.train_tokens) break;
      sample.push_back(i);
      sample_tokens += int64_t(ids[i].size());
    }
    std::vector<float> train;
    train.reserve(size_t(sample_tokens * d));
    RETURN_IF_ERROR(encode(sample, "sample", [&](size_t i, std::vector<float>&& m) {
      train.insert(train.end(), m.begin(), m.end());
      cached.emplace(i, std::move(m));
      return Status::Ok();
    }));
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t c = 0; c < codecs.size(); ++c) {
      if (codecs[c]->ready()) continue;
      CodecTrainReport train_report;
      RETURN_IF_ERROR(codecs[c]->Train(pool, sample_tokens, train.data(), d, options.train, &train_report)
                          .WithContext("codec " + codecs[c]->spec().ToString()));
      if (c == 0) r.distortion = train_report.distortion;
    }
    r.train_seconds = Since(t0);
    r.training_vectors = sample_tokens;
    notify({"train", int64_t(sample.size()), int64_t(sample.size()), sample_tokens, r.train_seconds});
  }

  r.identity.model_fingerprint = fingerprint;
  r.identity.layer_split = lumen->memory_layers();
  r.identity.codec = spec;
  std::vector<const Codec*> codec_list;
  for (size_t c = 0; c < codecs.size(); ++c) {
    codec_list.push_back(codecs[c].get());
    if (c > 0) r.identity.extra_codecs.push_back(codecs[c]->spec());
  }
  PassageStoreOptions store_options;
  store_options.sync = options.sync;
  std::unique_ptr<PassageStore> store;
  RETURN_IF_ERROR(PassageStore::Create(store_options, options.store_dir, r.identity, codec_list, &store));

  // Ingest in file order, one durable WriteBatch per batch of passages.
  const auto t_ingest = std::chrono::steady_clock::now();
  double encode_before = r.encode_seconds;
  for (size_t b = 0; b < corpus.size(); b += size_t(options.batch_passages)) {
    const size_t e = std::min(corpus.size(), b + size_t(options.batch_passages));
    std::vector<size_t> missing;
    for (size_t i = b; i < e; ++i) {
      if (!cached.count(i)) missing.push_back(i);
    }
    std::unordered_map<size_t, std::vector<float>> fresh;
    if (!missing.empty()) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<std::vector<int>> batch;
      for (size_t i : missing) batch.push_back(ids[i]);
      std::vector<std::vector<float>> memory;
      RETURN_IF_ERROR(lumen->MemoryEncode(pool, batch, &memory, &scratch));
      for (size_t k = 0; k < missing.size(); ++k) fresh.emplace(missing[k], std::move(memory[k]));
      r.encode_seconds += Since(t0);
    }
    std::vector<PassageInput> inputs;
    int64_t batch_tokens = 0;
    for (size_t i = b; i < e; ++i) {
      auto it = cached.find(i);
      const std::vector<float>& m = it != cached.end() ? it->second : fresh.at(i);
      PassageInput in;
      in.id = corpus[i].id;
      in.title = corpus[i].title;
      in.text = corpus[i].text;
      in.token_ids.assign(ids[i].begin(), ids[i].end());
      in.num_tokens = int64_t(ids[i].size());
      in.memory = m.data();
      inputs.push_back(std::move(in));
      batch_tokens += int64_t(ids[i].size());
    }
    RETURN_IF_ERROR(store->Ingest(pool, inputs));
    for (size_t i = b; i < e; ++i) cached.erase(i);
    r.passages += int64_t(e - b);
    r.tokens += batch_tokens;
    notify({"ingest", int64_t(e), int64_t(corpus.size()), r.tokens, Since(t_ingest)});
  }
  r.ingest_seconds = Since(t_ingest) - (r.encode_seconds - encode_before);
  RETURN_IF_ERROR(store->Flush());
  r.total_seconds = Since(t_start);
  if (report != nullptr) *report = std::move(r);
  return Status::Ok();
}

}  // namespace memoria
