// Reconstruction quality of the memory codecs on real representations (issue 4, acceptance 2):
// hidden states of the trained stories260K LLaMA model over WikiText-2 test text, or the memory
// vectors a passage store holds (a `none` f32 store built by `memoria build-store` with a trained
// T5 reader: its memory encoder's output over the corpus passages).
//
//   codec_quality_bench --shared ../shared --tokens 49152 --layers 3,5 --iters 10 --threads 2
//                       [--c65536 --iters16 2] > bench/results/codec_quality.md
//   codec_quality_bench --memory-store DIR --tokens 98304 ... > bench/results/codec_quality_t5.md
//
// Every codec runs passage by passage through Codec::EncodePassage/DecodePassage, what the store
// does, so "bytes/token" is measured: blob bytes / tokens (exactly the formula for the fixed-size
// codecs; for btr with token merging it includes the merge map).
//
// Representations. LlamaSession exposes logits, not hidden states, and its file is being changed
// by other work; so instead of a hook, the states are recovered exactly from the logits:
// stories260K ties its head to the embedding E [512, 64], logits = E x with x = w * RMSNorm(h_L)
// (the final norm's output, which Hugging Face reports as the last hidden state). E has full
// column rank, so x = (E^T E)^-1 E^T logits (normal equations in double; the residual
// ||E x - logits|| / ||logits|| is printed). For an intermediate depth L the model is loaded with
// num_hidden_layers = L (same weights, later blocks dropped), which gives w * RMSNorm(h_L): the
// residual stream after block L, final-normed. The per-token RMS of h_L is divided out by that
// norm, so every token has nearly the same scale; the relative MSE weights tokens equally.
//
// Data: WikiText-2 test lines, tokenized with the model's 512-piece vocabulary, cut into sequences
// of 512 tokens (BOS + 511). The first --train-frac of the sequences fit the codecs (PQ k-means,
// BTR calibration); all metrics are on the remaining, held-out sequences.
// Metrics per codec: bytes per token, ratio vs bf16 (2 d bytes), relative MSE
// sum ||x - x^||^2 / sum ||x||^2, mean per-token cosine(x, x^), training seconds.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine/llama_model.h"
#include "engine/tokenizer.h"
#include "engine/weights.h"
#include "storage/codec.h"
#include "storage/passage_store.h"
#include "tools/llama2c_converter.h"

namespace memoria {
namespace {

namespace fs = std::filesystem;

struct Args {
  std::string shared = "../shared";
  int64_t tokens = 49152;
  double train_frac = 0.75;
  std::vector<int> layers = {3, 5};
  int iters = 10;
  int iters16 = 2;  // C = 65536: each Lloyd pass costs 256x a C = 256 pass
  int threads = 2;
  bool c65536 = false;
  std::string memory_store;  // non-empty: vectors from this store instead of stories260K
};

// One set of representations: training vectors and held-out passages, [tokens, d] each.
struct Representations {
  std::string heading;  // markdown section title
  std::string note;     // one line under it
  int64_t d = 0;
  std::vector<float> train;
  std::vector<float> test;
  std::vector<int64_t> test_lengths;  // tokens of each held-out passage, in order
};

double Now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "codec_quality_bench: %s\n", message.c_str());
  std::exit(1);
}

template <typename T>
T OrDie(StatusOr<T> v) {
  if (!v.ok()) Die(v.status().ToString());
  return std::move(*v);
}

void OrDie(const Status& s) {
  if (!s.ok()) Die(s.ToString());
}

// Solves (E^T E) x = E^T l for every row of logits [n, V]: the final-norm output of each token.
class HeadInverse {
 public:
  HeadInverse(const float* e, int64_t V, int64_t d) : e_(e), V_(V), d_(d), chol_(d * d, 0.0) {
    std::vector<double> g(d * d, 0.0);
    for (int64_t v = 0; v < V; ++v) {
      for (int64_t i = 0; i < d; ++i) {
        for (int64_t j = 0; j <= i; ++j) g[i * d + j] += double(e[v * d + i]) * e[v * d + j];
      }
    }
    for (int64_t i = 0; i < d; ++i) {  // Cholesky G = L L^T (lower triangle)
      for (int64_t j = 0; j <= i; ++j) {
        double s = g[i * d + j];
        for (int64_t k = 0; k < j; ++k) s -= chol_[i * d + k] * chol_[j * d + k];
        if (i == j) {
          if (s <= 0) Die("E^T E is not positive definite: the head does not have full rank");
          chol_[i * d + i] = std::sqrt(s);
        } else {
          chol_[i * d + j] = s / chol_[j * d + j];
        }
      }
    }
  }
  // x [d] from logits l [V]; returns ||E x - l|| / ||l||.
  double Solve(const float* l, float* x) const {
    std::vector<double> b(d_, 0.0), y(d_);
    for (int64_t v = 0; v < V_; ++v) {
      for (int64_t i = 0; i < d_; ++i) b[i] += double(e_[v * d_ + i]) * l[v];
    }
    for (int64_t i = 0; i < d_; ++i) {  // L y = b
      double s = b[i];
      for (int64_t k = 0; k < i; ++k) s -= chol_[i * d_ + k] * y[k];
      y[i] = s / chol_[i * d_ + i];
    }
    for (int64_t i = d_ - 1; i >= 0; --i) {  // L^T x = y
      double s = y[i];
      for (int64_t k = i + 1; k < d_; ++k) s -= chol_[k * d_ + i] * b[k];
      b[i] = s / chol_[i * d_ + i];  // b reused as x
    }
    double r = 0.0, n = 0.0;
    for (int64_t v = 0; v < V_; ++v) {
      double dot = 0.0;
      for (int64_t i = 0; i < d_; ++i) dot += double(e_[v * d_ + i]) * b[i];
      r += (dot - l[v]) * (dot - l[v]);
      n += double(l[v]) * l[v];
    }
    for (int64_t i = 0; i < d_; ++i) x[i] = static_cast<float>(b[i]);
    return std::sqrt(r / n);
  }

 private:
  const float* e_;
  int64_t V_, d_;
  std::vector<double> chol_;
};

std::vector<std::vector<int>> WikiTextSequences(const Tokenizer& tok, const std::string& path,
                                                int64_t tokens, int64_t seq_len) {
  std::ifstream in(path);
  if (!in) Die("cannot read " + path);
  std::vector<int> stream;
  std::string line;
  while (int64_t(stream.size()) < tokens && std::getline(in, line)) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto ids = tok.Encode(line, /*add_bos=*/false, /*add_eos=*/false);
    stream.insert(stream.end(), ids.begin(), ids.end());
  }
  std::vector<std::vector<int>> seqs;
  for (size_t p = 0; p + size_t(seq_len - 1) <= stream.size(); p += size_t(seq_len - 1)) {
    std::vector<int> s = {tok.bos_id()};
    s.insert(s.end(), stream.begin() + p, stream.begin() + p + (seq_len - 1));
    seqs.push_back(std::move(s));
    if (int64_t(seqs.size()) * seq_len >= tokens) break;
  }
  return seqs;
}

struct Row {
  std::string spec;
  double bytes = 0;  // measured passage-blob bytes per token
  double ratio_bf16 = 0, rel_mse = 0, cosine = 0, train_s = 0;
};

Row Evaluate(const std::string& text, const Representations& rep, const Args& args, const ThreadPool& pool) {
  const int64_t d = rep.d;
  const std::vector<float>& test = rep.test;
  Row r;
  r.spec = text;
  const CodecSpec spec = OrDie(CodecSpec::Parse(text, d));
  auto codec = OrDie(CreateCodec(spec));
  const int64_t n_train = int64_t(rep.train.size()) / d, n = int64_t(test.size()) / d;
  CodecTrainOptions options;
  options.pq.iterations = spec.id == CodecId::kPq && spec.pq_bits == 16 ? args.iters16 : args.iters;
  const double t0 = Now();
  OrDie(codec->Train(pool, n_train, rep.train.data(), d, options, nullptr));
  r.train_s = Now() - t0;
  std::vector<float> out(test.size());
  int64_t blob_bytes = 0, row = 0;
  std::string blob;
  for (int64_t len : rep.test_lengths) {
    OrDie(codec->EncodePassage(pool, len, test.data() + row * d, d, &blob));
    OrDie(codec->DecodePassage(pool, len, reinterpret_cast<const uint8_t*>(blob.data()), int64_t(blob.size()),
                               out.data() + row * d, d));
    blob_bytes += int64_t(blob.size());
    row += len;
  }
  if (row != n) Die("passage lengths do not add up to the held-out vectors");
  double err = 0, ref = 0, cos = 0;
  for (int64_t t = 0; t < n; ++t) {
    double dot = 0, xx = 0, yy = 0;
    for (int64_t i = 0; i < d; ++i) {
      const double x = test[t * d + i], y = out[t * d + i];
      err += (x - y) * (x - y);
      dot += x * y;
      xx += x * x;
      yy += y * y;
    }
    ref += xx;
    cos += (xx > 0 && yy > 0) ? dot / std::sqrt(xx * yy) : 0.0;
  }
  r.bytes = double(blob_bytes) / double(n);
  r.ratio_bf16 = 2.0 * d / r.bytes;
  r.rel_mse = err / ref;
  r.cosine = cos / n;
  return r;
}

// The codecs of a table at dimension d (a multiple of 16): bf16; PQ at g = d/2, d/4, BTR's bytes
// (d/8 + 2), d/8 (16x below bf16) and d/16; optionally C = 65536 at g = d/16 (16x); BTR with
// bf16 and f32 scales and with BTR's token merging at ratio 0.2.
std::vector<std::string> SpecsFor(int64_t d, bool c65536) {
  auto pq = [](int64_t g, int bits) { return "pq:g=" + std::to_string(g) + ",bits=" + std::to_string(bits); };
  std::vector<std::string> specs = {"none:bf16", pq(d / 2, 8), pq(d / 4, 8), pq(d / 8 + 2, 8), pq(d / 8, 8),
                                    pq(d / 16, 8)};
  if (c65536) specs.push_back(pq(d / 16, 16));
  for (const char* b : {"btr", "btr:scale=f32", "btr:merge=0.2"}) specs.push_back(b);
  return specs;
}

// The table of one set of representations and the PQ-vs-BTR verdicts of acceptance 2.
void PrintSection(const Representations& rep, const std::vector<std::string>& specs, const Args& args,
                  const ThreadPool& pool) {
  const int64_t d = rep.d;
  std::printf("## %s\n\n", rep.heading.c_str());
  if (!rep.note.empty()) std::printf("%s\n\n", rep.note.c_str());
  std::printf("| codec | bytes/token | vs bf16 | held-out rel. MSE | mean cosine | train s |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::vector<Row> rows;
  for (const auto& spec : specs) {
    const Row r = Evaluate(spec, rep, args, pool);
    std::printf("| %s | %.4g | %.1fx | %.3g | %.4f | %.2f |\n", r.spec.c_str(), r.bytes, r.ratio_bf16,
                r.rel_mse, r.cosine, r.train_s);
    std::fflush(stdout);
    rows.push_back(r);
  }
  // The acceptance question: PQ at 16x vs bf16 against BTR at the same bytes.
  const Row* btr = nullptr;
  const Row* pq16 = nullptr;    // best PQ at 16x (2 d / 16 bytes)
  const Row* pq_btr = nullptr;  // best PQ at BTR's bytes
  for (const auto& r : rows) {
    const bool pq = r.spec.rfind("pq:", 0) == 0;
    if (r.spec == "btr") btr = &r;
    if (pq && r.bytes * 16 == 2 * d && (!pq16 || r.rel_mse < pq16->rel_mse)) pq16 = &r;
  }
  for (const auto& r : rows) {
    if (btr && r.spec.rfind("pq:", 0) == 0 && r.bytes == btr->bytes && (!pq_btr || r.rel_mse < pq_btr->rel_mse)) {
      pq_btr = &r;
    }
  }
  std::printf("\n");
  if (btr && pq16) {
    std::printf("PQ at 16x vs bf16 (%s, %.4g B/token): rel. MSE %.3g, cosine %.4f; BTR (%.4g B/token): "
                "rel. MSE %.3g, cosine %.4f. PQ at 16x %s BTR while using %.4g fewer bytes per token.\n",
                pq16->spec.c_str(), pq16->bytes, pq16->rel_mse, pq16->cosine, btr->bytes, btr->rel_mse,
                btr->cosine, pq16->rel_mse < btr->rel_mse ? "**beats**" : "**does not beat**",
                btr->bytes - pq16->bytes);
  }
  if (btr && pq_btr) {
    std::printf("At exactly BTR's %.4g bytes per token (%s): rel. MSE %.3g vs %.3g (%.1fx lower error).\n",
                btr->bytes, pq_btr->spec.c_str(), pq_btr->rel_mse, btr->rel_mse, btr->rel_mse / pq_btr->rel_mse);
  }
  std::printf("\n");
}

// The memory vectors of a passage store (decoded by its primary codec; build it with
// --codec none for the exact memory-encoder output): passages in id order until --tokens vectors,
// the first --train-frac of them fit the codecs, the rest are held out.
Representations StoreRepresentations(const Args& args) {
  PassageStoreOptions options;
  options.read_only = true;
  std::unique_ptr<PassageStore> store;
  OrDie(PassageStore::Open(options, args.memory_store, /*expected=*/nullptr, &store));
  std::vector<std::string> ids;
  OrDie(store->ForEachText([&](const std::string& id, const StatusOr<PassageText>&) {
    ids.push_back(id);
    return Status::Ok();
  }));
  std::sort(ids.begin(), ids.end());
  const ThreadPool pool(args.threads);
  std::vector<std::vector<float>> memories;
  std::vector<int64_t> lengths;
  int64_t tokens = 0;
  for (size_t begin = 0; begin < ids.size() && tokens < args.tokens; begin += 64) {
    const std::vector<std::string> batch(ids.begin() + begin, ids.begin() + std::min(ids.size(), begin + 64));
    for (auto& m : store->GetMemory(pool, batch)) {
      PassageMemory mem = OrDie(std::move(m));
      if (tokens >= args.tokens) break;
      tokens += mem.num_tokens;
      lengths.push_back(mem.num_tokens);
      memories.push_back(std::move(mem.vectors));
    }
  }
  const size_t n_train = size_t(double(memories.size()) * args.train_frac);
  if (n_train == 0 || n_train >= memories.size()) Die("too few passages for a train/test split");
  Representations rep;
  rep.d = store->codec().dim();
  int64_t train_tokens = 0;
  for (size_t i = 0; i < memories.size(); ++i) {
    auto& dst = i < n_train ? rep.train : rep.test;
    dst.insert(dst.end(), memories[i].begin(), memories[i].end());
    if (i < n_train) {
      train_tokens += lengths[i];
    } else {
      rep.test_lengths.push_back(lengths[i]);
    }
  }
  char heading[256], note[512];
  std::snprintf(heading, sizeof(heading), "Memory vectors of %s (d = %lld)", store->identity().ToString().c_str(),
                static_cast<long long>(rep.d));
  std::snprintf(note, sizeof(note),
                "Data: the memory of %zu passages of %s in id order (%lld tokens); the first %zu passages "
                "fit the codecs (%lld vectors), the other %zu are held out (%lld vectors). Stored as %s.",
                memories.size(), args.memory_store.c_str(), static_cast<long long>(tokens), n_train,
                static_cast<long long>(train_tokens), memories.size() - n_train,
                static_cast<long long>(tokens - train_tokens), store->codec().spec().ToString().c_str());
  rep.heading = heading;
  rep.note = note;
  return rep;
}

int Main(int argc, char** argv) {
  Args args;
  std::string command = "codec_quality_bench";
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    command += " " + k;
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die("missing value for " + k);
      command += std::string(" ") + argv[i + 1];
      return argv[++i];
    };
    if (k == "--shared") {
      args.shared = value();
    } else if (k == "--tokens") {
      args.tokens = std::stoll(value());
    } else if (k == "--train-frac") {
      args.train_frac = std::stod(value());
    } else if (k == "--layers") {
      args.layers.clear();
      std::stringstream ss(value());
      for (std::string item; std::getline(ss, item, ',');) args.layers.push_back(std::stoi(item));
    } else if (k == "--iters") {
      args.iters = std::stoi(value());
    } else if (k == "--iters16") {
      args.iters16 = std::stoi(value());
    } else if (k == "--threads") {
      args.threads = std::stoi(value());
    } else if (k == "--c65536") {
      args.c65536 = true;
    } else if (k == "--memory-store") {
      args.memory_store = value();
    } else {
      Die("unknown flag " + k);
    }
  }
  ThreadPool pool(args.threads);
  if (!args.memory_store.empty()) {
    const Representations rep = StoreRepresentations(args);
    const auto specs = SpecsFor(rep.d, args.c65536);
    std::printf("# Codec reconstruction quality on T5 memory vectors (SQuAD passages)\n\n");
    std::printf("Command (Release build, from the repository root; `bench/run_codec_quality.sh BUILD_DIR` runs "
                "exactly this, with BUILD_DIR/bench/ before the program name):\n\n    %s\n\n", command.c_str());
    std::printf("PQ: k-means++-style seeding + %d Lloyd iterations (%d for C = 65536). bf16 = %lld bytes per "
                "token (d = %lld).\n\n", args.iters, args.iters16, static_cast<long long>(2 * rep.d),
                static_cast<long long>(rep.d));
    PrintSection(rep, specs, args, pool);
    return 0;
  }
  const std::string tmp = (fs::temp_directory_path() / ("codec-quality-" + std::to_string(::getpid()))).string();
  const std::string full = tmp + "/full";
  OrDie(ConvertLlama2c(args.shared + "/models/stories260K/stories260K.bin",
                       args.shared + "/models/stories260K/tok512.bin", full));
  auto tok = OrDie(Tokenizer::Open(full + "/tokenizer.model"));
  nlohmann::json config = nlohmann::json::parse(std::ifstream(full + "/config.json"));
  const int64_t seq_len = std::min<int64_t>(512, config.value("max_position_embeddings", 512));
  const auto seqs = WikiTextSequences(*tok, args.shared + "/data/longtext/wikitext2_test.txt", args.tokens, seq_len);
  const size_t n_train_seqs = size_t(double(seqs.size()) * args.train_frac);
  if (n_train_seqs == 0 || n_train_seqs >= seqs.size()) Die("too few sequences for a train/test split");

  std::printf("# Codec reconstruction quality on stories260K hidden states (WikiText-2)\n\n");
  std::printf("Command (Release build, from the repository root; `bench/run_codec_quality.sh BUILD_DIR` runs "
              "exactly this, with BUILD_DIR/bench/ before the program name):\n\n    %s\n\n", command.c_str());
  std::printf("Data: %zu sequences x %lld tokens of WikiText-2 test; the first %zu fit the codecs "
              "(%lld vectors), the other %zu are held out (%lld vectors). PQ: k-means++-style "
              "seeding + %d Lloyd iterations (%d for C = 65536). bf16 = %d bytes per token (d = %lld).\n\n",
              seqs.size(), static_cast<long long>(seq_len), n_train_seqs,
              static_cast<long long>(n_train_seqs * seq_len), seqs.size() - n_train_seqs,
              static_cast<long long>((seqs.size() - n_train_seqs) * seq_len), args.iters, args.iters16,
              int(2 * config.value("hidden_size", 0)), static_cast<long long>(config.value("hidden_size", 0)));

  for (int layer : args.layers) {
    const std::string dir = tmp + "/layers" + std::to_string(layer);
    fs::create_directories(dir);
    nlohmann::json c = config;
    c["num_hidden_layers"] = layer;
    std::ofstream(dir + "/config.json") << c.dump(2);
    fs::create_symlink(full + "/model.safetensors", dir + "/model.safetensors");
    auto model = OrDie(LlamaModel::Load(dir));
    const int64_t d = model->config().hidden_size, V = model->config().vocab_size;
    if (!model->config().tie_word_embeddings) Die("the head must be tied to invert it");
    auto md = OrDie(ModelDir::Open(dir));
    const Weight e = OrDie(md->GetF32("model.embed_tokens.weight", {V, d}));
    HeadInverse inverse(e.f32(), V, d);
    LlamaSession session(model, &pool);
    Representations rep;
    rep.d = d;
    std::vector<float> logits, x(d);
    double max_residual = 0.0;
    for (size_t s = 0; s < seqs.size(); ++s) {
      const int64_t n = int64_t(seqs[s].size());
      logits.resize(size_t(n * V));
      session.Reset();
      OrDie(session.Forward(seqs[s], n, logits.data()));
      auto& dst = s < n_train_seqs ? rep.train : rep.test;
      if (s >= n_train_seqs) rep.test_lengths.push_back(n);
      for (int64_t t = 0; t < n; ++t) {
        max_residual = std::max(max_residual, inverse.Solve(logits.data() + t * V, x.data()));
        dst.insert(dst.end(), x.begin(), x.end());
      }
    }
    char heading[128], note[160];
    std::snprintf(heading, sizeof(heading), "Depth %d of %d blocks (w * RMSNorm(h_%d), d = %lld)", layer,
                  int(config.value("num_hidden_layers", 0)), layer, static_cast<long long>(d));
    std::snprintf(note, sizeof(note),
                  "Hidden states recovered from the logits: max residual ||E x - logits|| / ||logits|| = %.2e.",
                  max_residual);
    rep.heading = heading;
    rep.note = note;
    PrintSection(rep, SpecsFor(d, args.c65536), args, pool);
  }
  fs::remove_all(tmp);
  return 0;
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
