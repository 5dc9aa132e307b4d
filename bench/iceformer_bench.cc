// IceFormer (top-k attention over a Prioritized DCI index) vs the exact blocked attention kernel:
// attention-module time only, per prompt length, causal and bidirectional, with the k-NN recall
// and output error of the same run.
//
//   iceformer_bench [--n=2048,4096,8192,16384] [--heads=2] [--head_dim=128] [--threads=2]
//                   [--reps=3] [--data=clustered|topics|gaussian] [--modes=causal,bidirectional]
//                   [--recall_queries=256] [--visits_per_k=N] [--candidates_per_k=N]
//                   [--search=scan|walk] [--m=N] [--L=N] [--bands=N] [--band_ratio=X]
//                   [--exact_up_to=N]
// (the search flags override the IceformerOptions defaults, for tuning runs).
//
// Data (per KV head): "clustered" = n / 128 tight clusters (cosine ~0.995 to their centre) whose
// norms span 0.5x .. 1x with +-10% per key, each key in a random cluster, queries aimed at one
// cluster with a norm that makes attention peaked (the distribution of the unit tests). Under a
// causal mask an early query's cluster often has fewer than k visible keys, and its true top-k is
// completed by unrelated keys of no attention weight, which only an exhaustive scan finds.
// "topics" = the same clusters, but position j belongs to cluster j / 128 (a text that stays on
// one topic for a while) and a causal query aims at a cluster it sees whole, so every true top-k
// lies in one cluster (keys of a cluster are also adjacent in memory, which helps the search's
// cache behaviour). "gaussian" = i.i.d. Gaussian keys and queries (no structure: the k-NN worst
// case). Values are Gaussian. Heads = KV heads (no GQA).
//
// Output: one markdown table row per (mode, n) on stdout: median wall time of `reps` runs of
// the exact kernel and of IceFormer (index build included), speedup, recall of the true top-k
// (and softmax-mass-weighted) over `recall_queries` sampled queries per head, relative L2 error
// vs the exact output, and index bytes per key.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/attention.h"
#include "kernels/iceformer_attention.h"
#include "kernels/thread_pool.h"

namespace memoria {
namespace {

struct Flags {
  std::vector<int64_t> n = {2048, 4096, 8192, 16384};
  int heads = 2;
  int head_dim = 128;
  int threads = 2;
  int reps = 3;
  std::string data = "clustered";
  std::vector<std::string> modes = {"causal", "bidirectional"};
  int recall_queries = 256;
  int visits_per_k = -1;
  int candidates_per_k = -1;
  // Structure overrides (-1 = the IceformerOptions default), for tuning runs.
  std::string search;  // "walk" or "scan"; empty = the default
  int m = -1;
  int L = -1;
  int bands = -1;
  float band_ratio = -1.0f;
  int64_t exact_up_to = -1;
};

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(item);
  return out;
}

Flags ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const size_t eq = a.find('=');
    const std::string key = a.substr(0, eq), value = eq == std::string::npos ? "" : a.substr(eq + 1);
    if (key == "--n") {
      f.n.clear();
      for (const auto& x : Split(value)) f.n.push_back(std::stoll(x));
    } else if (key == "--heads") {
      f.heads = std::stoi(value);
    } else if (key == "--head_dim") {
      f.head_dim = std::stoi(value);
    } else if (key == "--threads") {
      f.threads = std::stoi(value);
    } else if (key == "--reps") {
      f.reps = std::stoi(value);
    } else if (key == "--data") {
      f.data = value;
    } else if (key == "--modes") {
      f.modes = Split(value);
    } else if (key == "--recall_queries") {
      f.recall_queries = std::stoi(value);
    } else if (key == "--visits_per_k") {
      f.visits_per_k = std::stoi(value);
    } else if (key == "--candidates_per_k") {
      f.candidates_per_k = std::stoi(value);
    } else if (key == "--search") {
      f.search = value;
    } else if (key == "--m") {
      f.m = std::stoi(value);
    } else if (key == "--L") {
      f.L = std::stoi(value);
    } else if (key == "--bands") {
      f.bands = std::stoi(value);
    } else if (key == "--band_ratio") {
      f.band_ratio = std::stof(value);
    } else if (key == "--exact_up_to") {
      f.exact_up_to = std::stoll(value);
    } else {
      std::fprintf(stderr, "unknown flag %s\n", a.c_str());
      std::exit(2);
    }
  }
  return f;
}

struct Data {
  std::vector<float> q, k, v;  // [n, heads * d] each
};

Data Generate(const std::string& kind, int64_t n, int heads, int d, bool causal, uint32_t seed) {
  Data data;
  std::mt19937 rng(seed);
  std::normal_distribution<float> g;
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const int64_t row = static_cast<int64_t>(heads) * d;
  data.q.resize(n * row);
  data.k.resize(n * row);
  data.v.resize(n * row);
  for (auto& x : data.v) x = g(rng);
  if (kind == "gaussian") {
    for (auto& x : data.k) x = g(rng);
    for (auto& x : data.q) x = g(rng);
    return data;
  }
  const bool topics = kind == "topics";
  const int clusters = static_cast<int>(std::max<int64_t>(1, n / 128));
  const float sigma = 0.1f / std::sqrt(static_cast<float>(d));
  std::uniform_int_distribution<int> pick(0, clusters - 1);
  for (int h = 0; h < heads; ++h) {
    std::vector<float> centers(static_cast<size_t>(clusters) * d), cnorm(clusters);
    for (int c = 0; c < clusters; ++c) {
      float s = 0.0f;
      for (int i = 0; i < d; ++i) {
        centers[c * d + i] = g(rng);
        s += centers[c * d + i] * centers[c * d + i];
      }
      for (int i = 0; i < d; ++i) centers[c * d + i] /= std::sqrt(s);
      cnorm[c] = 0.5f + 0.5f * u(rng);
    }
    for (int64_t j = 0; j < n; ++j) {
      float* key = &data.k[j * row + h * d];
      // topics: run j / 128 of the sequence is about cluster j / 128.
      const int c = topics ? static_cast<int>(std::min<int64_t>(j / 128, clusters - 1)) : pick(rng);
      float s = 0.0f;
      for (int i = 0; i < d; ++i) {
        key[i] = centers[c * d + i] + sigma * g(rng);
        s += key[i] * key[i];
      }
      const float scale = 10.0f * cnorm[c] * (1.0f + 0.1f * g(rng)) / std::sqrt(s);
      for (int i = 0; i < d; ++i) key[i] *= scale;
      float* qr = &data.q[j * row + h * d];
      // topics + causal: a run the query sees completely (any run when it sees none).
      const int64_t seen_runs = causal ? (j + 1) / 128 : clusters;
      const int cq = topics && seen_runs > 0
                         ? std::uniform_int_distribution<int>(
                               0, static_cast<int>(std::min<int64_t>(seen_runs, clusters)) - 1)(rng)
                         : pick(rng);
      for (int i = 0; i < d; ++i) qr[i] = 40.0f * (centers[cq * d + i] + sigma * g(rng));
    }
  }
  return data;
}

double Seconds(const std::chrono::steady_clock::time_point& t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Recall of the true top-k (by q.k over the visible keys) on sampled searched queries, and the
// same weighted by each true top-k key's softmax weight within the top-k (*mass_recall): misses
// among keys that carry no attention mass count for little there.
double Recall(const Data& data, const AttentionParams& p, const IceformerTrace& trace,
              int samples, double* mass_recall) {
  const int d = p.head_dim;
  const int64_t row = static_cast<int64_t>(p.n_heads) * d;
  std::mt19937 rng(7);
  std::uniform_int_distribution<int64_t> pick(0, p.q_len - 1);
  int64_t hits = 0, total = 0;
  double mass_hit = 0.0, mass_total = 0.0;
  std::vector<std::pair<float, int32_t>> all;
  for (int h = 0; h < p.n_heads; ++h) {
    for (int s = 0; s < samples; ++s) {
      const int64_t i = pick(rng);
      const int32_t* got = &trace.ids[(h * p.q_len + i) * trace.k];
      if (got[0] < 0) continue;  // computed exactly
      const int64_t limit = p.causal ? std::min(p.kv_len, i + p.q_offset + 1) : p.kv_len;
      all.resize(limit);
      const float* qr = &data.q[i * row + h * d];
      for (int64_t j = 0; j < limit; ++j) {
        const float* kr = &data.k[j * row + h * d];
        float acc = 0.0f;
        for (int t = 0; t < d; ++t) acc += qr[t] * kr[t];
        all[j] = {-acc, static_cast<int32_t>(j)};
      }
      const int64_t k = std::min<int64_t>(trace.k, limit);
      std::partial_sort(all.begin(), all.begin() + k, all.end());
      double z = 0.0, found = 0.0;
      for (int64_t r = 0; r < k; ++r) {
        const bool hit = std::count(got, got + trace.k, all[r].second) > 0;
        const double w = std::exp(double{p.scale} * (all[0].first - all[r].first));
        hits += hit;
        z += w;
        found += hit ? w : 0.0;
      }
      mass_hit += found / z;
      mass_total += 1.0;
      total += k;
    }
  }
  *mass_recall = mass_total == 0.0 ? 1.0 : mass_hit / mass_total;
  return total == 0 ? 1.0 : static_cast<double>(hits) / static_cast<double>(total);
}

int Main(int argc, char** argv) {
  const Flags f = ParseFlags(argc, argv);
  ThreadPool pool(f.threads);
  pool.BindOpenMp();
  IceformerOptions o;
  if (f.visits_per_k > 0) o.visits_per_k = f.visits_per_k;
  if (f.candidates_per_k > 0) o.candidates_per_k = f.candidates_per_k;
  if (f.search == "walk") o.search = DciSearch::kWalk;
  if (f.search == "scan") o.search = DciSearch::kScan;
  if (f.m > 0) o.num_simple = f.m;
  if (f.L > 0) o.num_composite = f.L;
  if (f.bands > 0) o.num_bands = f.bands;
  if (f.band_ratio > 0.0f) o.band_ratio = f.band_ratio;
  if (f.exact_up_to >= 0) o.exact_up_to = f.exact_up_to;
  std::printf("data=%s heads=%d head_dim=%d threads=%d reps=%d search=%s m=%d L=%d bands=%d "
              "band_ratio=%.3f candidates_per_k=%d visits_per_k=%d exact_up_to=%ld\n\n",
              f.data.c_str(), f.heads, f.head_dim, f.threads, f.reps,
              o.search == DciSearch::kScan ? "scan" : "walk", o.num_simple,
              o.num_composite, o.num_bands, o.band_ratio, o.candidates_per_k, o.visits_per_k,
              static_cast<long>(o.exact_up_to));
  std::printf("| mode | n | k | exact ms | iceformer ms | speedup | recall | mass recall | "
              "rel L2 | index B/key |\n|---|---|---|---|---|---|---|---|---|---|\n");
  for (const std::string& mode : f.modes) {
    for (int64_t n : f.n) {
      const Data data =
          Generate(f.data, n, f.heads, f.head_dim, mode == "causal", static_cast<uint32_t>(n));
      AttentionParams p;
      p.q_len = p.kv_len = n;
      p.n_heads = p.n_kv_heads = f.heads;
      p.head_dim = f.head_dim;
      p.scale = 1.0f / std::sqrt(static_cast<float>(f.head_dim));
      p.causal = mode == "causal";
      const int64_t row = static_cast<int64_t>(f.heads) * f.head_dim;
      std::vector<float> exact(n * row), ice(n * row);
      std::vector<double> t_exact, t_ice;
      IceformerTrace trace;
      for (int r = 0; r < f.reps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        Attention(pool, p, data.q.data(), row, data.k.data(), row, data.v.data(), row,
                  exact.data(), row);
        t_exact.push_back(Seconds(t0));
        t0 = std::chrono::steady_clock::now();
        IceformerAttention(pool, p, o, data.q.data(), row, data.k.data(), row, data.v.data(),
                           row, ice.data(), row, r == 0 ? &trace : nullptr);
        t_ice.push_back(Seconds(t0));
      }
      double num = 0.0, den = 0.0;
      for (size_t i = 0; i < exact.size(); ++i) {
        num += double{ice[i] - exact[i]} * (ice[i] - exact[i]);
        den += double{exact[i]} * exact[i];
      }
      double mass_recall = 0.0;
      const double recall = Recall(data, p, trace, f.recall_queries, &mass_recall);
      const double te = Median(t_exact) * 1e3, ti = Median(t_ice) * 1e3;
      std::printf("| %s | %ld | %ld | %.1f | %.1f | %.2fx | %.4f | %.4f | %.4f | %.1f |\n",
                  mode.c_str(), static_cast<long>(n), static_cast<long>(trace.k), te, ti, te / ti,
                  recall, mass_recall, std::sqrt(num / den),
                  static_cast<double>(trace.index_bytes) / static_cast<double>(n));
      std::fflush(stdout);
    }
  }
  return 0;
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
