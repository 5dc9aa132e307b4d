// LLaMA prefill and decode throughput of our engine on a model directory, with the machine's
// FMA peak and read bandwidth for context. Prints one JSON object (medians over --runs).
//
//   llama_bench --model DIR [--threads 2] [--prompt-lens 512,2048] [--decode-tokens 64] [--runs 5]
//
// bench/run_llama_bench.sh runs it beside the PyTorch peer and writes bench/results/llama.md.
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "engine/llama_model.h"

using namespace memoria;

int main(int argc, char** argv) {
  std::string model_dir;
  int threads = 2, decode_tokens = 64, runs = 5;
  std::vector<int> prompt_lens = {512, 2048};
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") model_dir = value;
    else if (flag == "--threads") threads = std::atoi(value.c_str());
    else if (flag == "--decode-tokens") decode_tokens = std::atoi(value.c_str());
    else if (flag == "--runs") runs = std::atoi(value.c_str());
    else if (flag == "--prompt-lens") {
      prompt_lens.clear();
      std::stringstream ss(value);
      std::string item;
      while (std::getline(ss, item, ',')) prompt_lens.push_back(std::atoi(item.c_str()));
    } else {
      std::fprintf(stderr, "unknown flag %s\n", flag.c_str());
      return 2;
    }
  }
  if (model_dir.empty()) {
    std::fprintf(stderr, "usage: llama_bench --model DIR [--threads N] [--prompt-lens a,b] [--decode-tokens N] [--runs N]\n");
    return 2;
  }
  auto model = LlamaModel::Load(model_dir);
  if (!model.ok()) {
    std::fprintf(stderr, "error: %s\n", model.status().ToString().c_str());
    return 1;
  }
  const LlamaConfig& c = (*model)->config();
  ThreadPool pool(threads);
  std::mt19937 rng(0);
  std::vector<float> logits(c.vocab_size);

  // Matmul FLOPs per token (all projections; the head only for the one logits row).
  const double layer_params = double(c.hidden_size) * (c.q_dim() + 2 * c.kv_dim()) +
                              double(c.q_dim()) * c.hidden_size + 3.0 * c.hidden_size * c.intermediate_size;
  std::string prefill_json;
  for (int n : prompt_lens) {
    std::vector<int> ids(n);
    for (auto& id : ids) id = 3 + rng() % (c.vocab_size - 3);
    LlamaSession session(*model, &pool, 512);
    std::vector<double> times;
    for (int r = 0; r < runs + 1; ++r) {  // first run warms caches and primitive cache
      session.Reset();
      double t0 = bench::NowSeconds();
      Status st = session.Forward(ids, 1, logits.data());
      double dt = bench::NowSeconds() - t0;
      if (!st.ok()) {
        std::fprintf(stderr, "error: %s\n", st.ToString().c_str());
        return 1;
      }
      if (r > 0) times.push_back(dt);
    }
    const double t = bench::Median(times);
    const double flops = 2.0 * n * c.num_layers * layer_params +
                         2.0 * c.num_layers * c.q_dim() * double(n) * n +  // QK^T + PV, causal half
                         2.0 * c.hidden_size * c.vocab_size;
    char buf[256];
    std::snprintf(buf, sizeof buf, "%s\"%d\": {\"seconds\": %.4f, \"tokens_per_s\": %.1f, \"gflops\": %.1f}",
                  prefill_json.empty() ? "" : ", ", n, t, n / t, flops / t / 1e9);
    prefill_json += buf;
  }

  // Decode: prompt of 128 tokens, then decode_tokens single-token steps.
  std::vector<double> decode_times;
  LlamaSession session(*model, &pool, 512);
  for (int r = 0; r < runs + 1; ++r) {
    session.Reset();
    std::vector<int> prompt(128);
    for (auto& id : prompt) id = 3 + rng() % (c.vocab_size - 3);
    if (!session.Forward(prompt, 1, logits.data()).ok()) return 1;
    double t0 = bench::NowSeconds();
    for (int i = 0; i < decode_tokens; ++i) {
      int id = 3 + rng() % (c.vocab_size - 3);
      if (!session.Forward(&id, 1, 1, logits.data()).ok()) return 1;
    }
    if (r > 0) decode_times.push_back((bench::NowSeconds() - t0) / decode_tokens);
  }
  const double per_token = bench::Median(decode_times);
  const double fma_peak = bench::MeasureFmaPeakGflops(threads);
  const double bandwidth = bench::MeasureReadBandwidthGBs(threads);
  const double weight_gb = (*model)->weight_bytes() / 1e9;
  std::printf(
      "{\"engine\": \"memoria\", \"threads\": %d, \"cpu\": \"%s\", \"params_millions\": %.1f, "
      "\"prefill\": {%s}, \"decode\": {\"tokens_per_s\": %.2f, \"seconds_per_token\": %.5f, "
      "\"weight_gb_per_token\": %.4f, \"achieved_gb_s\": %.2f}, \"fma_peak_gflops\": %.1f, "
      "\"read_bandwidth_gb_s\": %.2f}\n",
      threads, bench::CpuModelName().c_str(), (*model)->weight_bytes() / 4e6, prefill_json.c_str(),
      1.0 / per_token, per_token, weight_gb, weight_gb / per_token, fma_peak, bandwidth);
  return 0;
}
