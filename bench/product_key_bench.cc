// Product-key memory layer throughput against dense SwiGLU FFNs and PyTorch, plus the memory
// bandwidth the lookups use.
//
// Measures, on `--threads` threads, with the median of `--reps` timed runs after one warm-up:
//   stream      read bandwidth of a 1 GiB buffer (AVX2 sum over all threads): the ceiling
//   gather      ProductKeyGather alone on random slots of the full table (value-row GB/s)
//   memory      MemoryLayer::Forward (Memory+: query, product keys, swilu, value_proj), f32 and
//               bf16 value tables, decode (one token per call) and a batch of --batch tokens
//   dense       SwiGLU FFN down(silu(gate x) * up x) with the memory layer's FLOPs, and with its
//               parameter count (the value table included)
//   torch       bench/product_key_torch_peer.py: the same memory layer in PyTorch, same threads
// and writes a markdown table (--md) with tokens/s, bytes read per token and the bandwidth those
// bytes imply.
//
//   product_key_bench [--d 1024] [--n-keys 1024] [--heads 4] [--knn 32] [--k-dim 512]
//                     [--threads 2] [--reps 5] [--batch 256] [--decode-steps 32]
//                     [--md FILE] [--no-torch] [--no-dense-params] [--clock wall|cpu]
//                     [--huge-pages]
#include <immintrin.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "engine/memory_layer.h"
#include "engine/safetensors.h"
#include "kernels/elementwise.h"
#include "kernels/gemm.h"
#include "kernels/product_key.h"
#include "kernels/thread_pool.h"

namespace memoria {
namespace {

struct Options {
  int64_t d = 1024, n_keys = 1024, heads = 4, knn = 32, k_dim = 512;
  int threads = 2, reps = 5;
  int64_t batch = 256, decode_steps = 32;
  std::string md;
  bool torch = true, dense_params = true;
  std::string command;
};

// --clock cpu times with the process's CPU time instead of the wall clock: on a machine shared
// with other jobs, a one-thread run then counts only the time this process was on a core (what it
// would take on an idle core, up to cache and bandwidth contention). Meaningless with more threads
// (spinning OpenMP workers count too).
bool g_cpu_clock = false;

double Now() {
  if (g_cpu_clock) {
    timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Median seconds of fn over reps runs, after one warm-up run.
double MedianSeconds(int reps, const std::function<void()>& fn) {
  fn();
  std::vector<double> t;
  for (int r = 0; r < reps; ++r) {
    const double t0 = Now();
    fn();
    t.push_back(Now() - t0);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// Fills n floats in parallel with a cheap hash in [-scale, scale]: every page is written, so
// later reads measure DRAM rather than the kernel's shared zero page.
void Fill(const ThreadPool& pool, float* p, int64_t n, float scale, uint64_t seed) {
  pool.ParallelFor(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      uint64_t z = (static_cast<uint64_t>(i) + seed) * 0x9E3779B97F4A7C15ull;
      z = (z ^ (z >> 31)) * 0xBF58476D1CE4E5B9ull;
      p[i] = scale * (static_cast<float>(z >> 40) / 8388608.0f - 1.0f);
    }
  });
}

std::unique_ptr<float[]> Alloc(int64_t n) { return std::unique_ptr<float[]>(new float[n]); }

// Memory for a value table: 2 MiB aligned and, with --huge-pages, advised to be backed by
// transparent huge pages. A lookup touches heads * knn random rows, each on its own 4 KiB page
// with small pages: one TLB miss and page walk per row, which huge pages remove.
bool g_huge_pages = false;
struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
std::unique_ptr<void, FreeDeleter> AllocTable(int64_t bytes) {
  constexpr int64_t kAlign = int64_t{2} << 20;
  const int64_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (p == nullptr) {
    std::fprintf(stderr, "cannot allocate %lld bytes\n", static_cast<long long>(rounded));
    std::exit(1);
  }
  if (g_huge_pages) madvise(p, rounded, MADV_HUGEPAGE);
  return std::unique_ptr<void, FreeDeleter>(p);
}

// GB/s (1e9 bytes) of a parallel AVX2 sum over `bytes` bytes.
double StreamBandwidth(const ThreadPool& pool, int64_t bytes, int reps) {
  const int64_t n = bytes / 4;
  auto buf = Alloc(n);
  Fill(pool, buf.get(), n, 1.0f, 1);
  std::vector<float> partial(pool.num_threads() * 16);
  const double s = MedianSeconds(reps, [&] {
    pool.ParallelFor(pool.num_threads(), [&](int64_t b, int64_t e) {
      for (int64_t t = b; t < e; ++t) {
        const int64_t lo = n * t / pool.num_threads(), hi = n * (t + 1) / pool.num_threads();
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        int64_t i = lo;
        for (; i + 32 <= hi; i += 32) {
          a0 = _mm256_add_ps(a0, _mm256_loadu_ps(buf.get() + i));
          a1 = _mm256_add_ps(a1, _mm256_loadu_ps(buf.get() + i + 8));
          a2 = _mm256_add_ps(a2, _mm256_loadu_ps(buf.get() + i + 16));
          a3 = _mm256_add_ps(a3, _mm256_loadu_ps(buf.get() + i + 24));
        }
        _mm256_storeu_ps(&partial[t * 16], _mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
      }
    });
  });
  return bytes / s / 1e9;
}

struct Row {
  std::string name;
  double params = 0;          // parameters (millions)
  double mflop = 0;           // MFLOP per token
  double decode_tps = 0;      // tokens/s, one token per call
  double batch_tps = 0;       // tokens/s, --batch tokens per call
  double decode_bytes = 0;    // bytes read per decoded token
  double batch_bytes = 0;     // bytes read per token in a batch (weights shared by the batch)
  std::string note;
};

// Dense SwiGLU FFN: y = down(silu(gate x) * up x), gate/up stacked as one [2 ff, d] matrix.
Row BenchDense(const ThreadPool& pool, const Options& o, int64_t ff, const std::string& name,
               int64_t batch, int64_t decode_steps, int reps) {
  const int64_t d = o.d;
  auto gate_up = Alloc(2 * ff * d);
  auto down = Alloc(d * ff);
  Fill(pool, gate_up.get(), 2 * ff * d, 1.0f / std::sqrt(float(d)), 2);
  Fill(pool, down.get(), d * ff, 1.0f / std::sqrt(float(ff)), 3);
  auto x = Alloc(batch * d);
  Fill(pool, x.get(), batch * d, 1.0f, 4);
  std::vector<float> h(batch * 2 * ff), a(batch * ff), y(batch * d);
  auto forward = [&](const float* in, int64_t tokens) {
    MatmulTransB(pool, tokens, 2 * ff, d, in, d, gate_up.get(), DType::kF32, d, h.data(), 2 * ff);
    for (int64_t t = 0; t < tokens; ++t) {
      GatedActivate(Activation::kSilu, &h[t * 2 * ff], &h[t * 2 * ff + ff], &a[t * ff], ff);
    }
    MatmulTransB(pool, tokens, d, ff, a.data(), ff, down.get(), DType::kF32, ff, y.data(), d);
  };
  Row r;
  r.name = name + " (ff " + std::to_string(ff) + ")";
  r.params = 3.0 * d * ff / 1e6;
  r.mflop = 2.0 * 3 * d * ff / 1e6;
  r.decode_tps = decode_steps / MedianSeconds(reps, [&] {
    for (int64_t s = 0; s < decode_steps; ++s) forward(x.get() + (s % batch) * d, 1);
  });
  r.batch_tps = batch / MedianSeconds(reps, [&] { forward(x.get(), batch); });
  r.decode_bytes = 3.0 * d * ff * 4;
  r.batch_bytes = r.decode_bytes / batch;
  return r;
}

// Writes the memory layer's small tensors (everything but the value table) to a temp model dir.
std::string WriteMemoryDir(const ThreadPool& pool, const Options& o) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("product_key_bench-" + std::to_string(getpid()))).string();
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/config.json")
      << "{\"hidden_size\": " << o.d << ", \"num_hidden_layers\": 1, \"memory_layers\": [0], "
      << "\"memory_n_keys\": " << o.n_keys << ", \"memory_heads\": " << o.heads
      << ", \"memory_knn\": " << o.knn << ", \"memory_k_dim\": " << o.k_dim << "}";
  const int64_t d = o.d, q = o.heads * o.k_dim;
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<float>>> t;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, uint64_t seed) {
    int64_t n = 1;
    for (int64_t s : shape) n *= s;
    std::vector<float> v(n);
    Fill(pool, v.data(), n, scale, seed);
    t[name] = {std::move(shape), std::move(v)};
  };
  const std::string p = "model.layers.0.memory.";
  add(p + "query_proj.weight", {q, d}, 1.0f / std::sqrt(float(d)), 10);
  add(p + "query_proj.bias", {q}, 0.1f, 11);
  add(p + "keys", {o.heads, 2, o.n_keys, o.k_dim / 2}, 1.0f / std::sqrt(float(o.k_dim)), 12);
  add(p + "value_proj.weight", {d, d}, 1.0f / std::sqrt(float(d)), 13);
  add(p + "value_proj.bias", {d}, 0.1f, 14);
  add(p + "swilu_projection.weight", {d, d}, 1.0f / std::sqrt(float(d)), 15);
  add(p + "swilu_projection.bias", {d}, 0.1f, 16);
  std::vector<TensorToWrite> out;
  for (const auto& [name, st] : t) out.push_back({name, DType::kF32, st.first, st.second.data()});
  const Status s = WriteSafetensors(dir + "/model.safetensors", out);
  if (!s.ok()) {
    std::fprintf(stderr, "%s\n", s.ToString().c_str());
    std::exit(1);
  }
  return dir;
}

std::string Run(const std::string& cmd) {
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) out.append(buf, n);
    pclose(f);
  }
  return out;
}

// The number after "key": in a flat JSON object (the peer's one-line output).
double JsonNumber(const std::string& json, const std::string& key) {
  const size_t at = json.find("\"" + key + "\":");
  if (at == std::string::npos) return 0;
  return std::strtod(json.c_str() + at + key.size() + 3, nullptr);
}

// The string value of "key" in a flat JSON object without escapes.
std::string JsonString(const std::string& json, const std::string& key) {
  const std::string marker = "\"" + key + "\": \"";
  const size_t at = json.find(marker);
  if (at == std::string::npos) return "";
  const size_t begin = at + marker.size();
  return json.substr(begin, json.find('"', begin) - begin);
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

int Main(int argc, char** argv) {
  Options o;
  for (int i = 0; i < argc; ++i) {
    if (i > 0) o.command.push_back(' ');
    o.command.append(argv[i]);
  }
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--d") o.d = std::stoll(next());
    else if (a == "--n-keys") o.n_keys = std::stoll(next());
    else if (a == "--heads") o.heads = std::stoll(next());
    else if (a == "--knn") o.knn = std::stoll(next());
    else if (a == "--k-dim") o.k_dim = std::stoll(next());
    else if (a == "--threads") o.threads = std::stoi(next());
    else if (a == "--reps") o.reps = std::stoi(next());
    else if (a == "--batch") o.batch = std::stoll(next());
    else if (a == "--decode-steps") o.decode_steps = std::stoll(next());
    else if (a == "--md") o.md = next();
    else if (a == "--clock") g_cpu_clock = next() == "cpu";
    else if (a == "--huge-pages") g_huge_pages = true;
    else if (a == "--no-torch") o.torch = false;
    else if (a == "--no-dense-params") o.dense_params = false;
    else {
      std::fprintf(stderr, "unknown option %s (see the header of bench/product_key_bench.cc)\n",
                   a.c_str());
      return 2;
    }
  }
  ThreadPool pool(o.threads);
  pool.BindOpenMp();
  std::vector<Row> rows;

  const double stream_gbs = StreamBandwidth(pool, int64_t{1} << 30, o.reps);
  std::fprintf(stderr, "stream read: %.1f GB/s\n", stream_gbs);

  // --- memory layer -------------------------------------------------------------------------
  const std::string dir = WriteMemoryDir(pool, o);
  auto model_dir = ModelDir::Open(dir);
  if (!model_dir.ok()) {
    std::fprintf(stderr, "%s\n", model_dir.status().ToString().c_str());
    return 1;
  }
  MemoryConfig config = *ParseMemoryConfig((*model_dir)->config());
  const ProductKeyParams kp = config.kernel_params();
  const int64_t table_n = kp.slots() * kp.v_dim;
  auto table_mem = AllocTable(table_n * 4);
  float* table = static_cast<float*>(table_mem.get());
  Fill(pool, table, table_n, 0.03f, 5);
  auto x = Alloc(o.batch * o.d);
  Fill(pool, x.get(), o.batch * o.d, 1.0f, 6);
  std::vector<float> y(o.batch * o.d);
  double gather_gbs[2] = {0, 0};
  std::unique_ptr<void, FreeDeleter> table_bf16_mem;

  for (DType dt : {DType::kF32, DType::kBF16}) {
    const void* data = table;
    if (dt == DType::kBF16) {
      table_bf16_mem = AllocTable(table_n * 2);
      auto* bf16 = static_cast<uint16_t*>(table_bf16_mem.get());
      pool.ParallelFor(table_n, [&](int64_t b, int64_t e) {
        ConvertF32ToBf16(table + b, bf16 + b, e - b);
      });
      table_mem.reset();
      data = bf16;
    }
    auto values = SharedValues::View(data, dt, kp.slots(), kp.v_dim);
    auto loaded = MemoryLayer::Load(**model_dir, 0, config, values);
    if (!loaded.ok()) {
      std::fprintf(stderr, "%s\n", loaded.status().ToString().c_str());
      return 1;
    }
    std::unique_ptr<MemoryLayer> layer = std::move(loaded).value();
    MemoryLayer::Scratch scratch;
    Row r;
    r.name = std::string("memory layer, ") + DTypeName(dt) + " values";
    r.params = (static_cast<double>(kp.slots()) * kp.v_dim + o.heads * o.k_dim * (o.d + 1) +
                o.heads * o.n_keys * o.k_dim + 2.0 * o.d * o.d + 2 * o.d) / 1e6;
    r.mflop = 2.0 * layer->MacsPerToken() / 1e6;
    r.decode_tps = o.decode_steps / MedianSeconds(o.reps, [&] {
      for (int64_t s = 0; s < o.decode_steps; ++s) {
        layer->Forward(pool, x.get() + (s % o.batch) * o.d, 1, y.data(), &scratch);
      }
    });
    r.batch_tps = o.batch / MedianSeconds(o.reps, [&] {
      layer->Forward(pool, x.get(), o.batch, y.data(), &scratch);
    });
    const double row_bytes = static_cast<double>(kp.heads * kp.knn * kp.v_dim * DTypeSize(dt));
    r.decode_bytes = static_cast<double>(layer->BytesPerDecodedToken());
    r.batch_bytes = row_bytes + (r.decode_bytes - row_bytes) / o.batch;
    r.note = "table " + Fmt("%.2f", static_cast<double>(kp.slots()) * kp.v_dim * DTypeSize(dt) / (1 << 30)) + " GiB";
    rows.push_back(r);

    // Value reads alone: random slots, the kernel's gather of a batch.
    std::vector<int32_t> idx(o.batch * kp.heads * kp.knn);
    std::vector<float> w(idx.size(), 1.0f / (kp.heads * kp.knn));
    std::mt19937 rng(7);
    std::uniform_int_distribution<int32_t> slot(0, static_cast<int32_t>(kp.slots() - 1));
    for (auto& i : idx) i = slot(rng);
    const double gs = MedianSeconds(o.reps, [&] {
      ProductKeyGather(pool, kp, o.batch, idx.data(), w.data(), data, dt, y.data(), o.d);
    });
    gather_gbs[dt == DType::kF32 ? 0 : 1] = o.batch * row_bytes / gs / 1e9;
    std::fprintf(stderr, "%s: decode %.0f tok/s, batch %.0f tok/s, gather %.1f GB/s\n",
                 r.name.c_str(), r.decode_tps, r.batch_tps, gather_gbs[dt == DType::kF32 ? 0 : 1]);
  }
  table_bf16_mem.reset();
  std::filesystem::remove_all(dir);

  // --- dense SwiGLU baselines ---------------------------------------------------------------
  const double mem_macs = rows[0].mflop * 1e6 / 2;
  const int64_t ff_flops = static_cast<int64_t>(std::llround(mem_macs / (3.0 * o.d)));
  rows.push_back(BenchDense(pool, o, ff_flops, "dense SwiGLU, same FLOPs", o.batch, o.decode_steps,
                            o.reps));
  std::fprintf(stderr, "%s: decode %.0f tok/s, batch %.0f tok/s\n", rows.back().name.c_str(),
               rows.back().decode_tps, rows.back().batch_tps);
  if (o.dense_params) {
    const int64_t ff_params = static_cast<int64_t>(std::llround(rows[0].params * 1e6 / (3.0 * o.d)));
    // 2 GFLOP and 4 GB of weights per token: a smaller batch and fewer steps keep this row to
    // about a minute; its tokens/s do not depend on them (bandwidth- resp. compute-bound).
    rows.push_back(BenchDense(pool, o, ff_params, "dense SwiGLU, same parameters",
                              std::min<int64_t>(o.batch, 64), 2, std::min(o.reps, 3)));
    std::fprintf(stderr, "%s: decode %.1f tok/s, batch %.1f tok/s\n", rows.back().name.c_str(),
                 rows.back().decode_tps, rows.back().batch_tps);
  }

  // --- PyTorch peer --------------------------------------------------------------------------
  std::string torch_json;
  if (o.torch) {
    const char* src = std::getenv("MEMORIA_SOURCE_DIR");
    const std::string script = std::string(src ? src : ".") + "/bench/product_key_torch_peer.py";
    const std::string cmd = "/usr/bin/python3 " + script + " --d " + std::to_string(o.d) +
                            " --n-keys " + std::to_string(o.n_keys) + " --heads " +
                            std::to_string(o.heads) + " --knn " + std::to_string(o.knn) +
                            " --k-dim " + std::to_string(o.k_dim) + " --batch " +
                            std::to_string(o.batch) + " --reps " + std::to_string(o.reps) +
                            " --threads " + std::to_string(o.threads) +
                            (g_cpu_clock ? " --clock cpu" : "");
    torch_json = Run(cmd);
    std::fprintf(stderr, "torch peer: %s", torch_json.c_str());
    Row r = rows[0];
    r.name = "PyTorch memory layer, f32 values";
    r.decode_tps = JsonNumber(torch_json, "decode_tokens_per_s");
    r.batch_tps = JsonNumber(torch_json, "batch_tokens_per_s");
    r.note = "torch " + JsonString(torch_json, "torch");
    rows.push_back(r);
  }

  // --- report -------------------------------------------------------------------------------
  std::ostringstream md;
  md << "| layer | params (M) | MFLOP/token | decode tok/s | batch " << o.batch
     << " tok/s | MB read/token decode | GB/s decode | MB read/token batch | GB/s batch | note |\n"
     << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n";
  for (const Row& r : rows) {
    md << "| " << r.name << " | " << Fmt("%.1f", r.params) << " | " << Fmt("%.1f", r.mflop) << " | "
       << Fmt("%.1f", r.decode_tps) << " | " << Fmt("%.1f", r.batch_tps) << " | "
       << Fmt("%.2f", r.decode_bytes / 1e6) << " | " << Fmt("%.1f", r.decode_bytes * r.decode_tps / 1e9)
       << " | " << Fmt("%.3f", r.batch_bytes / 1e6) << " | "
       << Fmt("%.1f", r.batch_bytes * r.batch_tps / 1e9) << " | " << r.note << " |\n";
  }
  md << "\nClock: " << (g_cpu_clock ? "process CPU time" : "wall")
     << ". Value table pages: " << (g_huge_pages ? "transparent huge pages (madvise)" : "4 KiB")
     << ". Stream read bandwidth (" << o.threads << " threads, 1 GiB): " << Fmt("%.1f", stream_gbs)
     << " GB/s. Value-row gather alone (random slots, batch " << o.batch
     << "): " << Fmt("%.1f", gather_gbs[0]) << " GB/s f32, " << Fmt("%.1f", gather_gbs[1])
     << " GB/s bf16.\n";
  std::printf("%s", md.str().c_str());
  if (!o.md.empty()) {
    std::ofstream out(o.md);
    out << "Command: `" << o.command << "`\n\n" << md.str();
  }
  return 0;
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
