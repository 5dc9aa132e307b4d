#include "tools/eval_lm.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

#include "kernels/iceformer_attention.h"
#include "kernels/thread_pool.h"

namespace memoria {
namespace {

using json = nlohmann::json;

double Seconds(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
}

// log-softmax of one row of logits into `out` (double: the KL of near-identical distributions is
// a small difference of large sums).
void LogSoftmax(const float* logits, int64_t n, std::vector<double>* out) {
  out->resize(n);
  const double m = *std::max_element(logits, logits + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double{logits[i]} - m);
  const double lse = m + std::log(sum);
  for (int64_t i = 0; i < n; ++i) (*out)[i] = double{logits[i]} - lse;
}

int64_t ArgMax(const float* row, int64_t n) { return std::max_element(row, row + n) - row; }

// Window starts: evenly spaced, the first at 0 and the last ending at the stream's end.
std::vector<int64_t> WindowStarts(int64_t stream, int64_t context, int64_t windows) {
  std::vector<int64_t> starts;
  const int64_t span = stream - context;
  for (int64_t w = 0; w < windows; ++w) {
    starts.push_back(windows == 1 ? 0 : span * w / (windows - 1));
  }
  return starts;
}

}  // namespace

Status EvaluateLanguageModel(const EvalLmOptions& o, EvalLmReport* report) {
  const int64_t stream = static_cast<int64_t>(o.ids.size());
  if (o.context < 2) return InvalidArgumentError("context must be >= 2, got " + std::to_string(o.context));
  if (o.windows < 1) return InvalidArgumentError("windows must be >= 1, got " + std::to_string(o.windows));
  if (stream < o.context) {
    return InvalidArgumentError("the token stream has " + std::to_string(stream) +
                                " tokens, fewer than one window of " + std::to_string(o.context));
  }
  if (o.score_from < 0 || o.score_from >= o.context - 1) {
    return InvalidArgumentError("score_from must be in [0, " + std::to_string(o.context - 1) + "), got " +
                                std::to_string(o.score_from));
  }
  if (o.prefill_chunk < 0) {
    return InvalidArgumentError("prefill_chunk must be >= 0, got " + std::to_string(o.prefill_chunk));
  }
  if (o.threads < 0) return InvalidArgumentError("threads must be >= 0, got " + std::to_string(o.threads));
  const int64_t chunk = o.prefill_chunk > 0 ? o.prefill_chunk : o.context;

  std::vector<LmAttentionSetting> settings;
  settings.push_back({"exact", LlamaIceformerSettings{}});
  settings.insert(settings.end(), o.settings.begin(), o.settings.end());
  std::vector<std::shared_ptr<const LlamaModel>> models;
  for (const LmAttentionSetting& s : settings) {
    LlamaLoadOptions load;
    load.max_sequence_length = o.context;
    load.iceformer = s.iceformer;
    ASSIGN_OR_RETURN(auto model, LlamaModel::Load(o.model_dir, load));
    models.push_back(std::move(model));
  }
  const LlamaConfig& c = models[0]->config();
  const int64_t V = c.vocab_size;

  EvalLmReport r;
  r.model_dir = o.model_dir;
  r.model_fingerprint = models[0]->fingerprint();
  r.num_layers = c.num_layers;
  r.head_dim = c.head_dim;
  r.num_heads = c.num_heads;
  r.num_kv_heads = c.num_kv_heads;
  r.vocab = V;
  r.stream_tokens = stream;
  r.context = o.context;
  r.windows = o.windows;
  r.score_from = o.score_from;
  ThreadPool pool(o.threads);
  r.threads = pool.num_threads();
  for (size_t si = 0; si < settings.size(); ++si) {
    LmSettingResult res;
    res.name = settings[si].name;
    res.iceformer = settings[si].iceformer.enabled;
    if (res.iceformer) {
      res.top_k = IceformerTopK(settings[si].iceformer.attention, o.context);
      for (int li = 0; li < c.num_layers; ++li) {
        if (models[si]->UsesIceformer(li, o.context, o.context)) res.layers.push_back(li);
      }
    }
    r.results.push_back(res);
  }

  const int64_t scored_per_window = o.context - 1 - o.score_from;
  std::vector<float> exact_logits(o.context * V), logits(o.context * V);
  std::vector<double> lp_exact, lp;
  std::vector<double> nll_sum(settings.size(), 0), kl_sum(settings.size(), 0);
  std::vector<int64_t> agree(settings.size(), 0);
  for (int64_t start : WindowStarts(stream, o.context, o.windows)) {
    const int* window = o.ids.data() + start;
    for (size_t si = 0; si < settings.size(); ++si) {
      float* out = si == 0 ? exact_logits.data() : logits.data();
      LlamaSession session(models[si], &pool, chunk);
      const auto t0 = std::chrono::steady_clock::now();
      RETURN_IF_ERROR(session.Forward(window, o.context, o.context, out));
      r.results[si].forward_seconds += Seconds(t0);
      r.results[si].attention_seconds += session.attention_seconds();
      for (int64_t t = o.score_from; t < o.context - 1; ++t) {
        const float* row = out + t * V;
        LogSoftmax(row, V, &lp);
        nll_sum[si] -= lp[window[t + 1]];
        if (si == 0) continue;
        const float* exact_row = exact_logits.data() + t * V;
        agree[si] += ArgMax(row, V) == ArgMax(exact_row, V);
        LogSoftmax(exact_row, V, &lp_exact);
        double kl = 0;
        for (int64_t v = 0; v < V; ++v) kl += std::exp(lp_exact[v]) * (lp_exact[v] - lp[v]);
        kl_sum[si] += std::max(0.0, kl);
      }
    }
  }
  r.scored_positions = scored_per_window * o.windows;
  const double n = double(r.scored_positions);
  for (size_t si = 0; si < settings.size(); ++si) {
    LmSettingResult& res = r.results[si];
    res.nll = nll_sum[si] / n;
    res.perplexity = std::exp(res.nll);
    res.agreement = si == 0 ? 1.0 : double(agree[si]) / n;
    res.kl = si == 0 ? 0.0 : kl_sum[si] / n;
  }
  *report = std::move(r);
  return Status::Ok();
}

std::string EvalLmReportJson(const EvalLmReport& r) {
  json results = json::array();
  for (const LmSettingResult& s : r.results) {
    results.push_back({{"name", s.name},
                       {"iceformer", s.iceformer},
                       {"top_k", s.top_k},
                       {"layers", s.layers},
                       {"nll", s.nll},
                       {"perplexity", s.perplexity},
                       {"agreement", s.agreement},
                       {"kl", s.kl},
                       {"attention_seconds", s.attention_seconds},
                       {"forward_seconds", s.forward_seconds}});
  }
  json j = {{"model_dir", r.model_dir},
            {"model_fingerprint", r.model_fingerprint},
            {"num_layers", r.num_layers},
            {"head_dim", r.head_dim},
            {"num_heads", r.num_heads},
            {"num_kv_heads", r.num_kv_heads},
            {"vocab", r.vocab},
            {"stream_tokens", r.stream_tokens},
            {"context", r.context},
            {"windows", r.windows},
            {"score_from", r.score_from},
            {"scored_positions", r.scored_positions},
            {"threads", r.threads},
            {"results", results}};
  return j.dump(1);
}

}  // namespace memoria
