// Query latency of Fusion-in-Decoder (alpha = 1) vs LUMEN (alpha = 1/3) on a T5-base-shaped model
// with random weights, and the same work in PyTorch (bench/t5_torch_peer.py) in the same run.
//
// One query = k passages x L tokens + a q-token question, G greedy tokens (no early EOS stop, so
// every run does the same work):
//   FiD:   full encoder over k x (q + L) tokens, cross K/V, G decoder steps.
//   LUMEN: MemEnc(question) + live layers over k x (q + L) tokens with the passage memory read
//          from RAM (f32, precomputed once, not timed in the query), cross K/V, G decoder steps.
// Reports the median of --reps runs after one warm-up, and writes a markdown table to stdout.
//
//   t5_lumen_bench [--threads 2] [--reps 3] [--passages 20] [--passage_tokens 200]
//                  [--question_tokens 20] [--new_tokens 20] [--alpha 0.3333]
//                  [--torch_peer bench/t5_torch_peer.py | --torch_peer none] [--iceformer 1]
//
// --iceformer 1 adds a decoder-only comparison on the LUMEN encoding: exact cross-attention vs
// IceFormer (T5IceformerSettings defaults, enabled; the indices' build is inside the timed
// generation, as it is per request), with the decoder's attention seconds and the greedy ids'
// agreement (e.g. --passages 100 for 100 x (q + L) keys).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "engine/lumen.h"
#include "engine/t5_model.h"

namespace memoria {
namespace {

struct Flags {
  int threads = 2;
  int reps = 3;
  int passages = 20;
  int passage_tokens = 200;
  int question_tokens = 20;
  int new_tokens = 20;
  double alpha = 1.0 / 3.0;
  bool iceformer = false;
  // Next to this source file (the bench is run from a source checkout).
  std::string torch_peer =
      (std::filesystem::path(__FILE__).parent_path() / "t5_torch_peer.py").string();
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string CpuModel() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  }
  return "unknown";
}

std::string Join(const std::vector<double>& v) {
  std::string s;
  for (double x : v) s += (s.empty() ? "" : ", ") + std::to_string(x).substr(0, 5);
  return s;
}

// Decoder only (cross K/V, index build when enabled, the greedy steps) over one LUMEN encoding:
// exact cross-attention vs IceFormer, alternating runs.
void DecoderIceformer(const Flags& f, const T5Model& model, const ThreadPool& pool,
                      const LumenModel& lumen, const std::vector<int>& question,
                      const std::vector<MemoryVectors>& views, const T5GenerationOptions& gen) {
  LiveEncoding enc;
  if (!lumen.LiveEncode(pool, question, views, &enc).ok()) std::abort();
  const int64_t keys = enc.offsets.back();
  T5GenerationOptions ice = gen;
  ice.iceformer.enabled = true;
  T5DecoderState state;
  std::vector<double> exact_s, exact_attn_s, ice_s, ice_attn_s;
  std::vector<int> exact_tokens, ice_tokens;
  bool searched = false;
  auto run = [&](const T5GenerationOptions& o, bool record, std::vector<double>* s,
                 std::vector<double>* attn, std::vector<int>* tokens) {
    const double t0 = Now();
    auto r = T5Generate(model, pool, enc.h.data(), keys, o, &state);
    if (!r.ok()) std::abort();
    const double t = Now() - t0;
    *tokens = r->tokens;
    if (o.iceformer.enabled) searched = state.cross_iceformer();
    if (record) {
      s->push_back(t);
      attn->push_back(state.attention_seconds());
    }
  };
  std::fprintf(stderr, "timing the decoder, exact vs IceFormer (%d runs each)...\n", f.reps);
  run(gen, false, &exact_s, &exact_attn_s, &exact_tokens);
  run(ice, false, &ice_s, &ice_attn_s, &ice_tokens);
  for (int r = 0; r < f.reps; ++r) {
    run(gen, true, &exact_s, &exact_attn_s, &exact_tokens);
    run(ice, true, &ice_s, &ice_attn_s, &ice_tokens);
  }
  std::printf("\n## T5 decoder cross-attention: exact vs IceFormer (LUMEN encoding)\n\n");
  std::printf("- %lld cross keys (%d passages x (%d + %d) tokens), %d greedy tokens, k = %lld, "
              "IceFormer %s (min_keys %lld)\n\n",
              static_cast<long long>(keys), f.passages, f.question_tokens, f.passage_tokens,
              f.new_tokens, static_cast<long long>(IceformerTopK(ice.iceformer.options, keys)),
              searched ? "searched" : "not used", static_cast<long long>(ice.iceformer.min_keys));
  std::printf("| cross-attention | decoder s (median) | attention s | runs s |\n");
  std::printf("|---|---|---|---|\n");
  std::printf("| exact | %.3f | %.3f | %s |\n", Median(exact_s), Median(exact_attn_s),
              Join(exact_s).c_str());
  std::printf("| IceFormer | %.3f | %.3f | %s |\n", Median(ice_s), Median(ice_attn_s),
              Join(ice_s).c_str());
  std::printf("\n- decoder speed-up: %.2fx; greedy ids %s\n", Median(exact_s) / Median(ice_s),
              exact_tokens == ice_tokens ? "agree" : "differ");
}

int Run(const Flags& f) {
  const T5Config config = T5Config::BaseV11();
  std::fprintf(stderr, "creating random T5-base-shaped weights...\n");
  auto model = T5Model::CreateRandom(config, 42);
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  ThreadPool pool(f.threads);
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> id(2, static_cast<int>(config.vocab_size) - 1);
  std::vector<int> question(f.question_tokens);
  for (int& t : question) t = id(rng);
  std::vector<std::vector<int>> passages(f.passages, std::vector<int>(f.passage_tokens));
  for (auto& p : passages) {
    for (int& t : p) t = id(rng);
    p.back() = config.eos_token_id;
  }
  auto fid = LumenModel::Create(*model, LumenOptions{1.0});
  auto lumen = LumenModel::Create(*model, LumenOptions{f.alpha});
  if (!fid.ok() || !lumen.ok()) return 1;

  // Offline part of LUMEN: the passage memory, kept in RAM (timed for information only).
  std::vector<std::vector<float>> memory;
  const double m0 = Now();
  if (!(*lumen)->MemoryEncode(pool, passages, &memory).ok()) return 1;
  const double memory_encode_s = Now() - m0;
  std::vector<MemoryVectors> views;
  for (const auto& m : memory) {
    views.push_back({DType::kF32, m.data(), f.passage_tokens, config.d_model});
  }

  T5GenerationOptions gen;
  gen.max_new_tokens = f.new_tokens;
  gen.stop_at_eos = false;
  LumenScratch scratch;
  std::vector<int> fid_tokens, lumen_tokens;
  // Each run records (encoder seconds, whole query seconds).
  std::vector<double> fid_s, fid_enc_s, lumen_s, lumen_enc_s;
  auto run_fid = [&](bool record) {
    const double t0 = Now();
    LiveEncoding enc;
    if (!(*fid)->FidEncode(pool, question, passages, &enc, &scratch).ok()) std::abort();
    const double t1 = Now();
    auto r = T5Generate(**model, pool, enc.h.data(), enc.offsets.back(), gen, &scratch.decoder);
    if (!r.ok()) std::abort();
    fid_tokens = r->tokens;
    if (record) {
      fid_enc_s.push_back(t1 - t0);
      fid_s.push_back(Now() - t0);
    }
  };
  auto run_lumen = [&](bool record) {
    const double t0 = Now();
    LiveEncoding enc;
    if (!(*lumen)->LiveEncode(pool, question, views, &enc, &scratch).ok()) std::abort();
    const double t1 = Now();
    auto r = T5Generate(**model, pool, enc.h.data(), enc.offsets.back(), gen, &scratch.decoder);
    if (!r.ok()) std::abort();
    lumen_tokens = r->tokens;
    if (record) {
      lumen_enc_s.push_back(t1 - t0);
      lumen_s.push_back(Now() - t0);
    }
  };
  // One warm-up each (primitive caches, page faults), then alternate so that a change in machine
  // load hits both modes alike.
  std::fprintf(stderr, "timing FiD and LUMEN (%d runs each)...\n", f.reps);
  run_fid(false);
  run_lumen(false);
  for (int r = 0; r < f.reps; ++r) {
    run_fid(true);
    run_lumen(true);
  }

  // The PyTorch peer: the same FiD and LUMEN work, same thread count, right after ours.
  nlohmann::json peer;
  if (f.torch_peer != "none") {
    std::fprintf(stderr, "running the PyTorch peer...\n");
    const std::string out = "/tmp/t5_torch_peer_" + std::to_string(getpid()) + ".json";
    const std::string cmd =
        "/usr/bin/python3 " + f.torch_peer + " --threads " + std::to_string(f.threads) +
        " --reps " + std::to_string(f.reps) + " --passages " + std::to_string(f.passages) +
        " --passage_tokens " + std::to_string(f.passage_tokens) + " --question_tokens " +
        std::to_string(f.question_tokens) + " --new_tokens " + std::to_string(f.new_tokens) +
        " --alpha " + std::to_string(f.alpha) + " > " + out;
    if (std::system(cmd.c_str()) == 0) {
      std::ifstream in(out);
      peer = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    } else {
      std::fprintf(stderr, "peer failed: %s\n", cmd.c_str());
    }
    std::remove(out.c_str());
  }

  const double fid_med = Median(fid_s), lumen_med = Median(lumen_s);
  std::printf("## T5 FiD vs LUMEN query latency\n\n");
  std::printf("- machine: %s, %d threads\n", CpuModel().c_str(), f.threads);
  std::printf(
      "- model: T5-base shape (d %lld, %d + %d layers, %d heads, d_ff %lld gated-GELU, vocab "
      "%lld), random f32 weights\n",
      static_cast<long long>(config.d_model), config.num_layers, config.num_decoder_layers,
      config.num_heads, static_cast<long long>(config.d_ff),
      static_cast<long long>(config.vocab_size));
  std::printf(
      "- query: %d passages x %d tokens + %d question tokens (%d encoder rows), %d greedy "
      "tokens; LUMEN alpha %.3f = %d live layers, memory f32 in RAM\n",
      f.passages, f.passage_tokens, f.question_tokens,
      f.passages * (f.passage_tokens + f.question_tokens), f.new_tokens, f.alpha,
      (*lumen)->live_layers());
  std::printf("- median of %d runs after 1 warm-up\n\n", f.reps);
  std::printf("| system | mode | query s (median) | encoder s | runs s |\n|---|---|---|---|---|\n");
  std::printf("| memoria | FiD (alpha 1) | %.3f | %.3f | %s |\n", fid_med, Median(fid_enc_s),
              Join(fid_s).c_str());
  std::printf("| memoria | LUMEN (alpha %.2f) | %.3f | %.3f | %s |\n", f.alpha, lumen_med,
              Median(lumen_enc_s), Join(lumen_s).c_str());
  double torch_fid = 0, torch_lumen = 0;
  if (peer.is_object() && peer.contains("fid")) {
    torch_fid = peer["fid"]["median_s"];
    std::printf("| PyTorch %s | FiD (alpha 1) | %.3f | | %s |\n",
                peer["torch"].get<std::string>().c_str(), torch_fid,
                Join(peer["fid"]["all_s"].get<std::vector<double>>()).c_str());
  }
  if (peer.is_object() && peer.contains("lumen")) {
    torch_lumen = peer["lumen"]["median_s"];
    std::printf("| PyTorch %s | LUMEN (alpha %.2f) | %.3f | | %s |\n",
                peer["torch"].get<std::string>().c_str(), f.alpha, torch_lumen,
                Join(peer["lumen"]["all_s"].get<std::vector<double>>()).c_str());
  }
  std::printf("\n- LUMEN speed-up over FiD (memoria): %.2fx (paper: about 3x at alpha 1/3)\n",
              fid_med / lumen_med);
  if (torch_fid > 0) {
    std::printf("- memoria vs PyTorch on FiD: %.2fx faster\n", torch_fid / fid_med);
  }
  if (torch_lumen > 0) {
    std::printf("- memoria vs PyTorch on LUMEN: %.2fx faster\n", torch_lumen / lumen_med);
  }
  std::printf("- memory encoding of the %d passages (offline, once): %.3f s\n", f.passages,
              memory_encode_s);
  std::printf("- FiD and LUMEN greedy ids %s (random weights: they need not agree)\n",
              fid_tokens == lumen_tokens ? "agree" : "differ");
  if (f.iceformer) DecoderIceformer(f, **model, pool, **lumen, question, views, gen);
  return 0;
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) {
  memoria::Flags f;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--threads")
      f.threads = std::stoi(v);
    else if (k == "--reps")
      f.reps = std::stoi(v);
    else if (k == "--passages")
      f.passages = std::stoi(v);
    else if (k == "--passage_tokens")
      f.passage_tokens = std::stoi(v);
    else if (k == "--question_tokens")
      f.question_tokens = std::stoi(v);
    else if (k == "--new_tokens")
      f.new_tokens = std::stoi(v);
    else if (k == "--alpha")
      f.alpha = std::stod(v);
    else if (k == "--torch_peer")
      f.torch_peer = v;
    else if (k == "--iceformer")
      f.iceformer = std::stoi(v) != 0;
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  return memoria::Run(f);
}
