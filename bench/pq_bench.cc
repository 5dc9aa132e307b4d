// PQ and BTR codec kernels: training time and distortion, encode and decode throughput.
//
//   pq_bench --d 768 --g 96 --bits 8 --n 20000 --train-n 65536 --iters 8 --threads 2
//            --runs 5 --data /tmp/pq_data.f32 [--btr] [--json out.json]
//
// Generates (or reuses) --data: (train_n + n) x d float32 rows, row-major, no header -- the same
// bytes bench/pq_faiss_peer.py reads, so both sides measure identical inputs. Rows are a mixture of
// 256 Gaussian clusters with a decaying per-dimension spread (a crude stand-in for encoder states).
// The first train_n rows train, the last n rows are encoded and decoded.
//
// Reports (median over --runs for encode/decode; training runs once):
//   train_s, train_cpu_s, train_mse (mean squared error per vector on the training rows)
//   encode_vps (vectors/s), decode_gbps (GB/s of f32 output), decode_vps, and the same per
//   second of process CPU time (encode_vps_per_cpu_s, decode_gbps_per_cpu_s)
//   rel_mse (sum ||x - x^||^2 / sum ||x||^2 on the encoded rows)
// and, with --btr, the same encode/decode figures for the calibrated 1-bit codec.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "kernels/btr_kernels.h"
#include "kernels/pq_kernels.h"

namespace memoria {
namespace {

struct Args {
  int64_t d = 768, g = 96, bits = 8, n = 20000, train_n = 65536, iters = 8;
  int threads = 2, runs = 5;
  bool btr = false;
  std::string data = "/tmp/pq_bench_data.f32", json;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Process CPU seconds (all threads): less sensitive than wall time to other load on the machine.
double CpuNow() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

std::vector<float> MakeData(int64_t rows, int64_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int64_t clusters = 256;
  std::vector<float> centres(clusters * d), spread(d);
  for (auto& c : centres) c = g(rng);
  for (int64_t j = 0; j < d; ++j) spread[j] = 0.3f + 1.5f / std::sqrt(1.0f + j);
  std::vector<float> x(rows * d);
  std::uniform_int_distribution<int64_t> pick(0, clusters - 1);
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t c = pick(rng);
    for (int64_t j = 0; j < d; ++j) x[i * d + j] = centres[c * d + j] + spread[j] * g(rng);
  }
  return x;
}

std::vector<float> LoadOrMakeData(const Args& a) {
  const int64_t rows = a.train_n + a.n;
  const uint64_t bytes = rows * a.d * 4;
  std::vector<float> x;
  if (std::filesystem::exists(a.data) && std::filesystem::file_size(a.data) == bytes) {
    x.resize(rows * a.d);
    std::ifstream in(a.data, std::ios::binary);
    in.read(reinterpret_cast<char*>(x.data()), bytes);
    return x;
  }
  x = MakeData(rows, a.d, 42);
  std::ofstream out(a.data, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(x.data()), bytes);
  return x;
}

int Main(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", k.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (k == "--d") a.d = std::stoll(next());
    else if (k == "--g") a.g = std::stoll(next());
    else if (k == "--bits") a.bits = std::stoll(next());
    else if (k == "--n") a.n = std::stoll(next());
    else if (k == "--train-n") a.train_n = std::stoll(next());
    else if (k == "--iters") a.iters = std::stoll(next());
    else if (k == "--threads") a.threads = std::stoi(next());
    else if (k == "--runs") a.runs = std::stoi(next());
    else if (k == "--data") a.data = next();
    else if (k == "--json") a.json = next();
    else if (k == "--btr") a.btr = true;
    else {
      std::fprintf(stderr, "unknown flag %s\n", k.c_str());
      return 2;
    }
  }
  if (a.d % a.g != 0) {
    std::fprintf(stderr, "--d %lld must be a multiple of --g %lld\n", (long long)a.d, (long long)a.g);
    return 2;
  }
  const std::vector<float> data = LoadOrMakeData(a);
  const float* train = data.data();
  const float* x = data.data() + a.train_n * a.d;
  ThreadPool pool(a.threads);
  pool.BindOpenMp();
  const PqShape s{a.d, a.g, int64_t{1} << a.bits};

  // Training.
  std::vector<float> centroids(s.M * s.ksub * s.dsub());
  PqTables tables;
  PqTrainOptions opt;
  opt.iterations = static_cast<int>(a.iters);
  PqTrainReport rep;
  double t0 = Now(), c0 = CpuNow();
  PqTrain(pool, s, a.train_n, train, a.d, opt, centroids.data(), &rep);
  const double train_s = Now() - t0, train_cpu_s = CpuNow() - c0;
  PqPrepareTables(s, centroids.data(), &tables);

  // Encode / decode.
  std::vector<uint8_t> codes(a.n * s.M * PqCodeBytes(s.ksub));
  std::vector<float> out(a.n * a.d);
  std::vector<double> enc, dec, enc_cpu, dec_cpu;
  PqEncode(pool, s, centroids.data(), tables, std::min<int64_t>(a.n, 256), x, a.d, codes.data());  // warm-up
  for (int r = 0; r < a.runs; ++r) {
    t0 = Now();
    c0 = CpuNow();
    PqEncode(pool, s, centroids.data(), tables, a.n, x, a.d, codes.data());
    enc.push_back(Now() - t0);
    enc_cpu.push_back(CpuNow() - c0);
    t0 = Now();
    c0 = CpuNow();
    PqDecode(pool, s, centroids.data(), a.n, codes.data(), a.d, out.data(), a.d);
    dec.push_back(Now() - t0);
    dec_cpu.push_back(CpuNow() - c0);
  }
  double err = 0.0, ref = 0.0;
  for (int64_t i = 0; i < a.n * a.d; ++i) {
    err += double(out[i] - x[i]) * (out[i] - x[i]);
    ref += double(x[i]) * x[i];
  }
  const double enc_s = Median(enc), dec_s = Median(dec);
  std::string j = "{";
  auto add = [&](const char* key, double v) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "%s\"%s\": %.6g", j.size() > 1 ? ", " : "", key, v);
    j += buf;
  };
  add("d", a.d);
  add("g", a.g);
  add("C", s.ksub);
  add("n", a.n);
  add("train_n", rep.training_vectors);
  add("iters", a.iters);
  add("threads", a.threads);
  add("train_s", train_s);
  add("train_cpu_s", train_cpu_s);
  add("train_mse", rep.distortion.back());
  add("encode_vps", a.n / enc_s);
  add("decode_vps", a.n / dec_s);
  add("decode_gbps", a.n * a.d * 4.0 / dec_s / 1e9);
  add("encode_vps_per_cpu_s", a.n / Median(enc_cpu));
  add("decode_gbps_per_cpu_s", a.n * a.d * 4.0 / Median(dec_cpu) / 1e9);
  add("rel_mse", err / ref);
  add("bytes_per_vector", s.M * PqCodeBytes(s.ksub));

  if (a.btr) {
    std::vector<float> mu(a.d), spread(a.d), scales(a.n);
    std::vector<uint8_t> bits(a.n * a.d / 8);
    BtrCalibrate(a.train_n, a.d, train, a.d, mu.data(), spread.data());
    std::vector<double> benc, bdec;
    for (int r = 0; r < a.runs; ++r) {
      t0 = Now();
      BtrEncode(pool, a.n, a.d, x, a.d, mu.data(), spread.data(), bits.data(), scales.data());
      benc.push_back(Now() - t0);
      t0 = Now();
      BtrDecode(pool, a.n, a.d, bits.data(), scales.data(), mu.data(), spread.data(), a.d, out.data(), a.d);
      bdec.push_back(Now() - t0);
    }
    double berr = 0.0;
    for (int64_t i = 0; i < a.n * a.d; ++i) berr += double(out[i] - x[i]) * (out[i] - x[i]);
    add("btr_encode_vps", a.n / Median(benc));
    add("btr_decode_gbps", a.n * a.d * 4.0 / Median(bdec) / 1e9);
    add("btr_rel_mse", berr / ref);
    add("btr_bytes_per_vector", a.d / 8 + 2);
  }
  j += "}";
  std::printf("%s\n", j.c_str());
  if (!a.json.empty()) std::ofstream(a.json) << j << "\n";
  return 0;
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
