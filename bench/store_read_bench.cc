// Store read + decode timing and the BlobDB choice. Run (Release build):
//
//   build/bench/store_read_bench
//
// For each RocksDB layout of the memory column family (plain SST values; BlobDB with
// min_blob_size 1 KiB) it ingests 1000 passages of 200 tokens (d = 768, pq g = 96, C = 256:
// 19,200 code bytes each), flushes, then times 50 MultiGets of 20 random passages and their
// decode to f32 (20 x 200 x 768). Prints one line per layout; bench/results/pq.md records them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "storage/passage_store.h"

namespace memoria {
namespace {

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A benchmark has no test framework: any failed step aborts the run with the step's text.
#define Check(expr)                                                  \
  do {                                                               \
    if (!(expr)) {                                                   \
      std::fprintf(stderr, "store_read_bench: failed: %s\n", #expr); \
      std::exit(1);                                                  \
    }                                                                \
  } while (0)

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int Run() {
  const int64_t d = 768, tokens = 200, passages = 1000, batch = 50, reads = 50, per_read = 20;
  ThreadPool pool(2);
  pool.BindOpenMp();
  StoreIdentity id;
  id.model_fingerprint = 1;
  id.layer_split = 1;
  id.codec = *CodecSpec::Parse("pq:g=96,bits=8", d);
  std::mt19937_64 rng(1);
  std::normal_distribution<float> g;
  std::vector<float> train(4096 * d);
  for (auto& v : train) v = g(rng);
  auto codec = std::move(CreateCodec(id.codec)).value();
  CodecTrainOptions opt;
  opt.pq.iterations = 2;
  Check(codec->Train(pool, 4096, train.data(), d, opt, nullptr).ok());

  struct Layout {
    const char* name;
    bool blob;
    uint64_t min_blob;
  };
  for (const Layout& layout : {Layout{"sst values", false, 0}, Layout{"blobdb min_blob_size=1KiB", true, 1024}}) {
    const std::string dir =
        (std::filesystem::temp_directory_path() / ("memoria-store-bench-" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(dir);
    PassageStoreOptions options;
    options.sync = false;
    options.enable_blob_files = layout.blob;
    options.min_blob_size = layout.min_blob;
    double ingest_s = 0.0;
    {
      std::unique_ptr<PassageStore> store;
      Check(PassageStore::Create(options, dir, id, *codec, &store).ok());
      const double t0 = Now();
      for (int64_t b = 0; b < passages / batch; ++b) {
        std::vector<PassageInput> in(batch);
        for (int64_t k = 0; k < batch; ++k) {
          in[k].id = "p" + std::to_string(b * batch + k);
          in[k].num_tokens = tokens;
          in[k].memory = train.data() + ((b * batch + k) % 20) * tokens * d;
        }
        Check(store->Ingest(pool, in).ok());
      }
      Check(store->Flush().ok());
      ingest_s = Now() - t0;
    }
    // Reopen: reads come from files (and the block cache as it warms), not the memtable.
    std::unique_ptr<PassageStore> store;
    Check(PassageStore::Open(options, dir, &id, &store).ok());
    std::uniform_int_distribution<int64_t> pick(0, passages - 1);
    std::vector<double> get_ms, decode_ms;
    std::vector<float> out(per_read * tokens * d);
    for (int64_t r = 0; r < reads; ++r) {
      std::vector<std::string> ids;
      for (int64_t k = 0; k < per_read; ++k) ids.push_back("p" + std::to_string(pick(rng)));
      double t0 = Now();
      auto codes = store->GetCodes(ids);
      get_ms.push_back((Now() - t0) * 1e3);
      t0 = Now();
      for (int64_t k = 0; k < per_read; ++k) {
        Check(codes[k].ok());
        Check(codec->Decode(pool, tokens, reinterpret_cast<const uint8_t*>(codes[k]->codes.data()),
                                  codes[k]->codes.size(), out.data() + k * tokens * d, d)
                        .ok());
      }
      decode_ms.push_back((Now() - t0) * 1e3);
    }
    auto stats = store->Scan(false);
    Check(stats.ok());
    std::printf("%-28s ingest %.2f s (%lld passages), on disk %.1f MB, MultiGet 20: median %.3f ms, "
                "decode 20x200x768: median %.3f ms\n",
                layout.name, ingest_s, static_cast<long long>(passages), stats->sst_bytes / 1e6, Median(get_ms),
                Median(decode_ms));
    store.reset();
    std::filesystem::remove_all(dir);
  }
  return 0;
}

}  // namespace
}  // namespace memoria

int main() { return memoria::Run(); }
