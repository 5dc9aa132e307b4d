#include "tools/eval_qa.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <fstream>
#include <memory>
#include <set>
#include <unordered_map>

#include "engine/span_constraint.h"
#include "engine/tokenizer.h"
#include "server/bm25_index.h"
#include "server/lumen_runner.h"
#include "storage/passage_store.h"
#include "tools/corpus_reader.h"
#include "tools/qa_metrics.h"
#include "tools/store_builder.h"

namespace memoria {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// "a", "b", ... for the first `max` of `ids`, then "and N more".
std::string NameIds(const std::vector<std::string>& ids, size_t max = 20) {
  std::string out;
  for (size_t i = 0; i < ids.size() && i < max; ++i) out += (i ? ", '" : "'") + ids[i] + "'";
  if (ids.size() > max) out += " and " + std::to_string(ids.size() - max) + " more";
  return out;
}

StatusOr<std::vector<QaExample>> ReadSquadQa(const std::string& path, std::istream& in,
                                             int64_t limit) {
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgumentError("malformed JSON in " + path);
  auto data = j.is_object() ? j.find("data") : j.end();
  if (!j.is_object() || data == j.end() || !data->is_array()) {
    return InvalidArgumentError(path + " is not SQuAD JSON: no \"data\" array");
  }
  std::vector<QaExample> out;
  for (size_t a = 0; a < data->size(); ++a) {
    const json& article = (*data)[a];
    const std::string where_a = path + " data[" + std::to_string(a) + "]";
    auto title = article.is_object() ? article.find("title") : article.end();
    auto paragraphs = article.is_object() ? article.find("paragraphs") : article.end();
    if (title == article.end() || !title->is_string() || paragraphs == article.end() ||
        !paragraphs->is_array()) {
      return InvalidArgumentError(where_a + " needs a string \"title\" and a \"paragraphs\" array");
    }
    for (size_t p = 0; p < paragraphs->size(); ++p) {
      const json& para = (*paragraphs)[p];
      const std::string where_p = where_a + ".paragraphs[" + std::to_string(p) + "]";
      auto qas = para.is_object() ? para.find("qas") : para.end();
      if (qas == para.end() || !qas->is_array()) {
        return InvalidArgumentError("missing \"qas\" array in " + where_p);
      }
      // The id build-store gives this paragraph (corpus_reader.h).
      const std::string passage_id = title->get<std::string>() + "/" + std::to_string(p);
      for (size_t q = 0; q < qas->size(); ++q) {
        if (limit > 0 && int64_t(out.size()) >= limit) return out;
        const json& qa = (*qas)[q];
        const std::string where = where_p + ".qas[" + std::to_string(q) + "]";
        auto question = qa.is_object() ? qa.find("question") : qa.end();
        auto answers = qa.is_object() ? qa.find("answers") : qa.end();
        if (question == qa.end() || !question->is_string() || answers == qa.end() ||
            !answers->is_array()) {
          return InvalidArgumentError(where + " needs a string \"question\" and an \"answers\" array");
        }
        QaExample ex;
        auto id = qa.find("id");
        ex.id = id != qa.end() && id->is_string() ? id->get<std::string>() : where;
        ex.question = question->get<std::string>();
        for (const json& ans : *answers) {
          auto text = ans.is_object() ? ans.find("text") : ans.end();
          if (text == ans.end() || !text->is_string()) {
            return InvalidArgumentError("an answer without a string \"text\" in " + where);
          }
          ex.answers.push_back(text->get<std::string>());
        }
        if (ex.answers.empty()) {
          return InvalidArgumentError("question '" + ex.id + "' (" + where +
                                      ") has no answers: only SQuAD v1.1-style answerable "
                                      "questions are scored");
        }
        ex.passage_ids.push_back(passage_id);
        out.push_back(std::move(ex));
      }
    }
  }
  return out;
}

StatusOr<std::vector<QaExample>> ReadJsonlQa(const std::string& path, std::istream& in,
                                             int64_t limit) {
  std::vector<QaExample> out;
  std::string line;
  for (int64_t line_no = 1; std::getline(in, line); ++line_no) {
    if (limit > 0 && int64_t(out.size()) >= limit) break;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = path + ":" + std::to_string(line_no);
    json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return InvalidArgumentError("malformed JSON object at " + where);
    QaExample ex;
    auto id = j.find("id");
    if (id == j.end()) {
      ex.id = std::to_string(line_no);
    } else if (id->is_string()) {
      ex.id = id->get<std::string>();
    } else if (id->is_number_integer()) {
      ex.id = std::to_string(id->get<int64_t>());
    } else {
      return InvalidArgumentError("\"id\" is not a string or integer at " + where);
    }
    auto question = j.find("question");
    if (question == j.end() || !question->is_string() || question->get<std::string>().empty()) {
      return InvalidArgumentError("missing, empty or non-string \"question\" at " + where);
    }
    ex.question = question->get<std::string>();
    auto answers = j.find("answers");
    if (answers == j.end()) answers = j.find("answer");
    if (answers == j.end()) return InvalidArgumentError("no \"answers\" at " + where);
    if (answers->is_string()) {
      ex.answers.push_back(answers->get<std::string>());
    } else if (answers->is_array()) {
      for (const json& a : *answers) {
        if (!a.is_string()) return InvalidArgumentError("a non-string answer at " + where);
        ex.answers.push_back(a.get<std::string>());
      }
    }
    if (ex.answers.empty()) {
      return InvalidArgumentError("\"answers\" must be a string or a non-empty array of strings at " + where);
    }
    auto passages = j.find("passage_ids");
    if (passages != j.end() && !passages->is_null()) {
      if (!passages->is_array()) return InvalidArgumentError("\"passage_ids\" is not an array at " + where);
      for (const json& p : *passages) {
        if (!p.is_string() || p.get<std::string>().empty()) {
          return InvalidArgumentError("an empty or non-string passage id at " + where);
        }
        ex.passage_ids.push_back(p.get<std::string>());
      }
    }
    out.push_back(std::move(ex));
  }
  return out;
}

Status CheckOptions(const EvalQaOptions& o) {
  if (o.model_dir.empty()) return InvalidArgumentError("no model directory");
  if (o.qa_path.empty()) return InvalidArgumentError("no QA file");
  if (!o.fid && o.store_dir.empty()) {
    return InvalidArgumentError("lumen mode reads memory from a passage store: give a store "
                                "(built by `memoria build-store` for this model and alpha)");
  }
  if (!o.store_dir.empty() && !o.corpus_path.empty()) {
    return InvalidArgumentError("give a store or a corpus, not both: the passages come from the "
                                "store when there is one");
  }
  if (!(o.alpha >= 0.0 && o.alpha <= 1.0)) {
    return InvalidArgumentError("alpha must be in [0, 1], got " + std::to_string(o.alpha));
  }
  if (o.max_passage_tokens < 2) {
    return InvalidArgumentError("max passage tokens must be >= 2, got " +
                                std::to_string(o.max_passage_tokens));
  }
  if (o.generation.max_new_tokens < 1) {
    return InvalidArgumentError("max new tokens must be >= 1, got " +
                                std::to_string(o.generation.max_new_tokens));
  }
  if (o.generation.num_beams < 1 || o.generation.num_beams > 16) {
    return InvalidArgumentError("beams must be in [1, 16], got " +
                                std::to_string(o.generation.num_beams));
  }
  if (o.threads < 0) return InvalidArgumentError("threads must be >= 0, got " + std::to_string(o.threads));
  if (!o.passages.gold && o.passages.bm25_k < 1) {
    return InvalidArgumentError("no passages selected: gold, bm25:K or gold+bm25:K");
  }
  return Status::Ok();
}

// Where the reader's passages come from: the store (ids, texts, token ids), or a corpus in memory.
class PassageSource {
 public:
  PassageSource(const PassageStore* store, std::vector<CorpusPassage> corpus, const Tokenizer& tokenizer,
                const FidTemplate& tmpl, int eos, int64_t max_tokens)
      : store_(store), corpus_(std::move(corpus)), tokenizer_(tokenizer), tmpl_(tmpl), eos_(eos),
        max_tokens_(max_tokens) {
    for (size_t i = 0; i < corpus_.size(); ++i) index_.emplace(corpus_[i].id, i);
  }

  std::string Where() const { return store_ != nullptr ? "store " + store_->dir() : "corpus"; }

  // The ids of `ids` this source does not hold; other read errors are returned.
  StatusOr<std::vector<std::string>> Missing(const std::vector<std::string>& ids) const {
    std::vector<std::string> missing;
    if (store_ == nullptr) {
      for (const std::string& id : ids) {
        if (!index_.count(id)) missing.push_back(id);
      }
      return missing;
    }
    const auto texts = store_->GetText(ids);
    for (size_t i = 0; i < ids.size(); ++i) {
      if (texts[i].ok()) continue;
      if (texts[i].status().code() != StatusCode::kNotFound) return texts[i].status();
      missing.push_back(ids[i]);
    }
    return missing;
  }

  // BM25 retrieval as the server does it: the store's own index, or for a corpus an in-memory
  // index over it (same terms and scores, storage/bm25.h), built on the first call.
  StatusOr<std::vector<Bm25Hit>> Search(const std::string& question, int top_k) {
    if (store_ != nullptr) return store_->Search(question, top_k);
    if (corpus_index_ == nullptr) {
      corpus_index_ = std::make_unique<Bm25Index>();
      for (const CorpusPassage& p : corpus_) corpus_index_->Upsert(p.id, p.title, p.text);
    }
    return corpus_index_->Search(question, top_k);
  }

  // FiD passage-part ids of each passage: the store's own ids, or the corpus tokenized as
  // build-store does (cached).
  Status TokenIds(const std::vector<std::string>& ids, std::vector<std::vector<int>>* out) {
    out->clear();
    if (store_ != nullptr) {
      auto texts = store_->GetText(ids);
      for (size_t i = 0; i < ids.size(); ++i) {
        if (!texts[i].ok()) return texts[i].status().WithContext("passage '" + ids[i] + "'");
        out->emplace_back(texts[i]->token_ids.begin(), texts[i]->token_ids.end());
      }
      return Status::Ok();
    }
    for (const std::string& id : ids) {
      auto cached = tokens_.find(id);
      if (cached == tokens_.end()) {
        auto it = index_.find(id);
        if (it == index_.end()) return NotFoundError("unknown passage id '" + id + "'");
        const CorpusPassage& p = corpus_[it->second];
        cached = tokens_.emplace(id, StoredPassageIds(tokenizer_, tmpl_, p.title, p.text, eos_, max_tokens_)).first;
      }
      out->push_back(cached->second);
    }
    return Status::Ok();
  }

 private:
  const PassageStore* store_;
  std::vector<CorpusPassage> corpus_;
  std::unordered_map<std::string, size_t> index_;
  std::unique_ptr<Bm25Index> corpus_index_;  // Search over a corpus (no store)
  std::unordered_map<std::string, std::vector<int>> tokens_;
  const Tokenizer& tokenizer_;
  const FidTemplate& tmpl_;
  int eos_;
  int64_t max_tokens_;
};

}  // namespace

std::string PassageSelection::ToString() const {
  if (bm25_k == 0) return "gold";
  return std::string(gold ? "gold+bm25:" : "bm25:") + std::to_string(bm25_k);
}

StatusOr<PassageSelection> ParsePassageSelection(const std::string& text) {
  PassageSelection s;
  if (text == "gold") return s;
  std::string k;
  if (text.rfind("gold+bm25:", 0) == 0) {
    k = text.substr(10);
  } else if (text.rfind("bm25:", 0) == 0) {
    s.gold = false;
    k = text.substr(5);
  } else {
    return InvalidArgumentError("passages must be gold | bm25:K | gold+bm25:K, got '" + text + "'");
  }
  int value = 0;
  auto [end, ec] = std::from_chars(k.data(), k.data() + k.size(), value);
  const int min_k = s.gold ? 2 : 1;
  if (k.empty() || ec != std::errc() || end != k.data() + k.size() || value < min_k) {
    return InvalidArgumentError("K in '" + text + "' must be an integer >= " + std::to_string(min_k) +
                                (s.gold ? " (K passages in all, one of them the gold one)" : ""));
  }
  s.bm25_k = value;
  return s;
}

StatusOr<std::vector<QaExample>> ReadQaFile(const std::string& path, int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open QA file " + path);
  return EndsWith(path, ".json") ? ReadSquadQa(path, in, limit) : ReadJsonlQa(path, in, limit);
}

Status EvaluateQa(const EvalQaOptions& options,
                  const std::function<void(const EvalQaProgress&)>& progress,
                  EvalQaReport* report) {
  const auto t_load = Clock::now();
  RETURN_IF_ERROR(CheckOptions(options));
  EvalQaReport r;
  r.mode = options.fid ? "fid" : "lumen";
  r.passages = options.passages.ToString();
  ASSIGN_OR_RETURN(std::vector<QaExample> examples, ReadQaFile(options.qa_path, options.limit));
  if (examples.empty()) return InvalidArgumentError("QA file " + options.qa_path + " has no questions");
  if (options.passages.gold) {
    for (const QaExample& ex : examples) {
      if (ex.passage_ids.empty()) {
        return InvalidArgumentError("question '" + ex.id + "' has no passage_ids, so it has no gold "
                                    "passage: use --passages bm25:K");
      }
    }
  }

  ASSIGN_OR_RETURN(LumenReader reader,
                   OpenLumenReader(options.model_dir, options.tokenizer_path, options.alpha));
  r.model_fingerprint = reader.fingerprint;
  const std::shared_ptr<const T5Model>& model = reader.model;
  const std::shared_ptr<const LumenModel>& lumen = reader.lumen;
  const std::unique_ptr<Tokenizer>& tokenizer = reader.tokenizer;
  const T5Config& config = model->config();
  const int eos = config.eos_token_id;
  const std::vector<uint8_t> piece_kinds = PieceKinds(*tokenizer);  // for extractive answers
  r.d_model = config.d_model;
  r.live_layers = options.fid ? config.num_layers : lumen->live_layers();
  r.memory_layers = options.fid ? 0 : lumen->memory_layers();

  std::unique_ptr<PassageStore> store;
  std::vector<CorpusPassage> corpus;
  int codec_index = 0;  // lumen: which of the store's codecs is read
  if (!options.store_dir.empty()) {
    PassageStoreOptions store_options;
    store_options.read_only = true;
    RETURN_IF_ERROR(PassageStore::Open(store_options, options.store_dir, /*expected=*/nullptr, &store));
    const StoreIdentity& have = store->identity();
    StoreIdentity expected = have;
    expected.model_fingerprint = r.model_fingerprint;
    // fid reads only the stored token ids, which do not depend on the layer split.
    if (!options.fid) expected.layer_split = lumen->memory_layers();
    if (have.model_fingerprint != expected.model_fingerprint || have.layer_split != expected.layer_split) {
      return FailedPreconditionError(
          "passage store " + options.store_dir + " was built for " + have.ToString() +
          ", but model " + options.model_dir +
          (options.fid ? std::string()
                       : " at alpha " + std::to_string(options.alpha) + " (" +
                             std::to_string(lumen->live_layers()) + " live layers)") +
          " gives " + expected.ToString() +
          ": build the store with `memoria build-store` for this model and alpha");
    }
    if (!options.fid) {
      ASSIGN_OR_RETURN(codec_index, store->FindCodecByFlag(options.codec));
      const CodecSpec& spec = store->codec(codec_index).spec();
      r.codec = spec.ToString();
      r.bytes_per_token = spec.BytesPerToken();
      r.ratio_vs_fp32 = spec.CompressionRatio(4);
      r.ratio_vs_bf16 = spec.CompressionRatio(2);
    }
  } else {
    std::string corpus_path = options.corpus_path;
    if (corpus_path.empty()) {
      if (!EndsWith(options.qa_path, ".json")) {
        return InvalidArgumentError("fid mode without a store reads passages from a corpus: give "
                                    "one (the QA file " + options.qa_path + " is not SQuAD JSON)");
      }
      corpus_path = options.qa_path;
    }
    ASSIGN_OR_RETURN(corpus, ReadCorpus(corpus_path, CorpusFormat::kAuto, /*limit=*/0));
  }
  PassageSource source(store.get(), std::move(corpus), *tokenizer, options.fid_template, eos,
                       options.max_passage_tokens);

  // Every gold passage must be there, checked before the first question (all missing ids named).
  {
    std::vector<std::string> gold;
    std::set<std::string> seen;
    for (const QaExample& ex : examples) {
      for (const std::string& id : ex.passage_ids) {
        if (seen.insert(id).second) gold.push_back(id);
      }
    }
    if (options.passages.gold && !gold.empty()) {
      ASSIGN_OR_RETURN(std::vector<std::string> missing, source.Missing(gold));
      if (!missing.empty()) {
        return NotFoundError(std::to_string(missing.size()) + " of " + std::to_string(gold.size()) +
                             " gold passages are not in the " + source.Where() + ": " +
                             NameIds(missing) +
                             " (build the store from the same QA file, or evaluate fewer "
                             "questions with --limit)");
      }
    }
  }

  std::unique_ptr<LumenRunner> runner;
  std::unique_ptr<ThreadPool> pool;
  LumenScratch scratch;
  if (!options.fid) {
    // One worker: questions run one after another, each with all `threads`, as a server with
    // workers = 1 runs them.
    const int threads = options.threads > 0 ? options.threads : ThreadPool(0).num_threads();
    runner = std::make_unique<LumenRunner>(lumen, store.get(), /*workers=*/1, /*queue_capacity=*/1,
                                           threads, /*metrics=*/nullptr, piece_kinds);
    RETURN_IF_ERROR(runner->WarmUp());
  } else {
    pool = std::make_unique<ThreadPool>(options.threads);
    pool->BindOpenMp();
  }
  r.load_seconds = Since(t_load);

  const auto t_answer = Clock::now();
  const std::function<Status()> no_deadline = [] { return Status::Ok(); };
  double em_sum = 0, f1_sum = 0;
  for (size_t qi = 0; qi < examples.size(); ++qi) {
    const QaExample& ex = examples[qi];
    EvalQaPrediction pred;
    pred.id = ex.id;
    pred.question = ex.question;
    pred.answers = ex.answers;
    std::vector<std::string> ids;
    if (options.passages.gold) {
      for (const std::string& id : ex.passage_ids) {
        if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
      }
    }
    if (options.passages.bm25_k > 0) {
      const size_t want = size_t(options.passages.bm25_k);
      const auto t0 = Clock::now();
      ASSIGN_OR_RETURN(const std::vector<Bm25Hit> hits,
                       source.Search(ex.question, int(want + ids.size())));
      for (const Bm25Hit& hit : hits) {
        if (ids.size() >= want) break;
        if (std::find(ids.begin(), ids.end(), hit.id) == ids.end()) ids.push_back(hit.id);
      }
      r.retrieve_seconds += Since(t0);
    }
    if (!ex.passage_ids.empty()) {
      ++r.gold_known;
      for (const std::string& id : ex.passage_ids) {
        pred.gold_retrieved = pred.gold_retrieved || std::find(ids.begin(), ids.end(), id) != ids.end();
      }
      if (pred.gold_retrieved) ++r.gold_retrieved;
    }
    pred.passage_ids = ids;

    if (ids.empty()) {
      ++r.unretrieved;
    } else {
      const std::vector<int> question_ids = FidQuestionIds(*tokenizer, options.fid_template, ex.question);
      GenerationResult result;
      if (!options.fid) {
        StatusOr<LumenRunner::AnswerOutcome> answered =
            runner->Answer(question_ids, ids, options.generation, no_deadline, {}, codec_index);
        if (!answered.ok()) return answered.status().WithContext("question '" + ex.id + "'");
        LumenRunner::AnswerOutcome& outcome = *answered;
        result = std::move(outcome.result);
        r.encoder_tokens += outcome.encoder_tokens;
        r.store_read_seconds += outcome.store_read_seconds;
        r.decompress_seconds += outcome.decompress_seconds;
        r.encoder_seconds += outcome.live_encoder_seconds;
        r.decoder_seconds += outcome.decoder_seconds;
      } else {
        std::vector<std::vector<int>> passages;
        auto t0 = Clock::now();
        RETURN_IF_ERROR(source.TokenIds(ids, &passages).WithContext("question '" + ex.id + "'"));
        r.store_read_seconds += Since(t0);
        t0 = Clock::now();
        LiveEncoding enc;
        RETURN_IF_ERROR(lumen->FidEncode(*pool, question_ids, passages, &enc, &scratch));
        r.encoder_seconds += Since(t0);
        for (const auto& p : passages) r.encoder_tokens += int64_t(question_ids.size() + p.size());
        t0 = Clock::now();
        std::unique_ptr<PassageSpanConstraint> spans;
        if (options.generation.extractive) {
          spans = std::make_unique<PassageSpanConstraint>(passages, piece_kinds, eos);
        }
        ASSIGN_OR_RETURN(result, T5Generate(*model, *pool, enc.h.data(), enc.offsets.back(),
                                            options.generation, &scratch.decoder, nullptr,
                                            spans.get()));
        r.decoder_seconds += Since(t0);
      }
      pred.answer_tokens = int64_t(result.tokens.size());
      r.answer_tokens += pred.answer_tokens;
      // As the server replies: EOS ends the answer and is not text.
      std::vector<int> tokens = std::move(result.tokens);
      if (options.generation.stop_at_eos && !tokens.empty() && tokens.back() == eos) tokens.pop_back();
      ASSIGN_OR_RETURN(pred.prediction, tokenizer->Decode(tokens));
      r.passages_read += int64_t(ids.size());
    }
    const QaScore score = ScoreSquadAnswer(pred.prediction, ex.answers);
    pred.exact_match = score.exact_match;
    pred.f1 = score.f1;
    em_sum += score.exact_match;
    f1_sum += score.f1;
    r.predictions.push_back(std::move(pred));
    if (progress) {
      const double n = double(qi + 1);
      progress({int64_t(qi + 1), int64_t(examples.size()), 100.0 * em_sum / n, 100.0 * f1_sum / n,
                Since(t_answer)});
    }
  }
  r.answer_seconds = Since(t_answer);
  r.questions = int64_t(examples.size());
  r.exact_match = 100.0 * em_sum / double(r.questions);
  r.f1 = 100.0 * f1_sum / double(r.questions);
  if (report != nullptr) *report = std::move(r);
  return Status::Ok();
}

Status WriteQaPredictions(const std::string& path, const std::vector<EvalQaPrediction>& predictions) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return InternalError("cannot write predictions file " + path);
  for (const EvalQaPrediction& p : predictions) {
    json j = {{"id", p.id},
              {"question", p.question},
              {"prediction", p.prediction},
              {"answers", p.answers},
              {"passage_ids", p.passage_ids},
              {"gold_retrieved", p.gold_retrieved},
              {"em", p.exact_match},
              {"f1", p.f1},
              {"answer_tokens", p.answer_tokens}};
    // Replace, not throw, on invalid UTF-8 in a generated answer.
    out << j.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
  }
  out.flush();
  if (!out) return InternalError("error writing predictions file " + path);
  return Status::Ok();
}

std::string EvalQaReportJson(const EvalQaReport& r) {
  json j = {{"mode", r.mode},
            {"passages", r.passages},
            {"model_fingerprint", r.model_fingerprint},
            {"d_model", r.d_model},
            {"memory_layers", r.memory_layers},
            {"live_layers", r.live_layers},
            {"codec", r.codec},
            {"bytes_per_token", r.bytes_per_token},
            {"ratio_vs_fp32", r.ratio_vs_fp32},
            {"ratio_vs_bf16", r.ratio_vs_bf16},
            {"questions", r.questions},
            {"exact_match", r.exact_match},
            {"f1", r.f1},
            {"unretrieved", r.unretrieved},
            {"gold_known", r.gold_known},
            {"gold_retrieved", r.gold_retrieved},
            {"passages_read", r.passages_read},
            {"answer_tokens", r.answer_tokens},
            {"encoder_tokens", r.encoder_tokens},
            {"retrieve_seconds", r.retrieve_seconds},
            {"store_read_seconds", r.store_read_seconds},
            {"decompress_seconds", r.decompress_seconds},
            {"encoder_seconds", r.encoder_seconds},
            {"decoder_seconds", r.decoder_seconds},
            {"answer_seconds", r.answer_seconds},
            {"load_seconds", r.load_seconds}};
  return j.dump(2, ' ', false, json::error_handler_t::replace);
}

}  // namespace memoria
