// server_bench: a closed-loop gRPC load generator for memoria-server.
//
// It is a plain gRPC client (memoria_proto + gRPC, no engine): it starts the real memoria-server
// binary of this build on free loopback ports (tests/server_process.h) or connects to --target,
// runs N concurrent clients that each send Generate with a fixed request and wait for the reply
// before sending the next, and prints one JSON object: requests/s, latency percentiles, errors by
// gRPC code, and the server's RSS (VmRSS from /proc/<pid>/status) at start, after warm-up, at
// the end and at its peak.
//
// Modes:
//   sweep     one phase per --clients value (default 1,4,16)
//   overload  capacity = workers + queue_capacity (read from ServerInfo): an unloaded phase (1
//             client), then 1x and 4x capacity clients; admitted p99 against the unloaded p99
//   soak      --requests requests (>= 10,000 for issue 9) after warm-up; RSS growth
//
//   server_bench --mode sweep --model DIR [--tokenizer PATH] [--workers W --queue-capacity C
//                --threads T] [--log-level L] [--config FILE] [--clients 1,4,16] [--duration-s 10]
//                [--requests 0] [--runs 1] [--warmup-requests 20] [--prompt TEXT]
//                [--max-new-tokens 16] [--target HOST:PORT [--server-pid PID]]
//                [--question Q --passage-ids a,b,c] [--store DIR]
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "memoria.grpc.pb.h"
#include "tests/server_process.h"

namespace memoria {
namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct Options {
  std::string mode = "sweep";
  std::string target;       // empty: start memoria-server here
  int server_pid = 0;       // with --target: whose RSS to read (0 = none)
  std::string model_dir;
  std::string tokenizer;
  std::string store_dir;
  std::string config_file;  // extra ServerConfig text appended to the generated fields
  // Server fields set by flags; unset ones come from --config or the server's defaults (a field
  // must not be given both ways: the text format refuses a singular field given twice).
  std::optional<int> workers;
  std::optional<int> queue_capacity;
  std::optional<int> threads;
  std::string log_level;
  std::vector<int> clients = {1, 4, 16};
  double duration_s = 10;
  long requests = 0;        // per phase; 0 = bounded by duration only
  int runs = 1;             // repeats of each phase; the summary is the median
  long warmup_requests = 20;
  std::string prompt = "Once upon a time, there was a little girl named Lily.";
  int max_new_tokens = 16;
  double deadline_s = 120;
  // After RESOURCE_EXHAUSTED a client waits this long before its next request: a real client
  // backs off, and a client spinning on refusals would steal the 2 cores the workers compute on.
  double reject_backoff_ms = 10;
  // T5/LUMEN path: a question answered from these stored passages.
  std::string question;
  std::vector<std::string> passage_ids;
  int retrieve_top_k = 0;
};

[[noreturn]] void Usage(const std::string& why) {
  std::fprintf(stderr, "server_bench: %s\n(see the comment at the top of bench/server_bench.cc)\n",
               why.c_str());
  std::exit(2);
}

std::vector<std::string> SplitComma(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

Options ParseArgs(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") Usage("usage");
    if (i + 1 >= argc) Usage("flag " + flag + " needs a value");
    const std::string v = argv[++i];
    if (flag == "--mode") o.mode = v;
    else if (flag == "--target") o.target = v;
    else if (flag == "--server-pid") o.server_pid = std::stoi(v);
    else if (flag == "--model") o.model_dir = v;
    else if (flag == "--tokenizer") o.tokenizer = v;
    else if (flag == "--store") o.store_dir = v;
    else if (flag == "--config") o.config_file = v;
    else if (flag == "--workers") o.workers = std::stoi(v);
    else if (flag == "--queue-capacity") o.queue_capacity = std::stoi(v);
    else if (flag == "--threads") o.threads = std::stoi(v);
    else if (flag == "--log-level") o.log_level = v;
    else if (flag == "--clients") {
      o.clients.clear();
      for (const auto& c : SplitComma(v)) o.clients.push_back(std::stoi(c));
    } else if (flag == "--duration-s") o.duration_s = std::stod(v);
    else if (flag == "--requests") o.requests = std::stol(v);
    else if (flag == "--runs") o.runs = std::stoi(v);
    else if (flag == "--warmup-requests") o.warmup_requests = std::stol(v);
    else if (flag == "--prompt") o.prompt = v;
    else if (flag == "--max-new-tokens") o.max_new_tokens = std::stoi(v);
    else if (flag == "--deadline-s") o.deadline_s = std::stod(v);
    else if (flag == "--reject-backoff-ms") o.reject_backoff_ms = std::stod(v);
    else if (flag == "--question") o.question = v;
    else if (flag == "--passage-ids") o.passage_ids = SplitComma(v);
    else if (flag == "--retrieve-top-k") o.retrieve_top_k = std::stoi(v);
    else Usage("unknown flag " + flag);
  }
  if (o.mode != "sweep" && o.mode != "overload" && o.mode != "soak") Usage("bad --mode " + o.mode);
  if (o.target.empty() && o.model_dir.empty() && o.config_file.empty()) {
    Usage("--model, --config or --target is required");
  }
  if (o.runs < 1 || o.clients.empty()) Usage("--runs >= 1 and --clients non-empty");
  if (o.duration_s <= 0 && o.requests <= 0) Usage("bound a phase by --duration-s or --requests");
  return o;
}

// The config the started server gets. ServerProcess adds listen_address, http_port and
// ports_file itself, so those lines of a --config file are dropped: the text format refuses a
// singular field given twice.
std::string ServerConfigText(const Options& o) {
  std::ostringstream c;
  if (!o.model_dir.empty()) c << "model_dir: \"" << o.model_dir << "\"\n";
  if (!o.tokenizer.empty()) c << "tokenizer_path: \"" << o.tokenizer << "\"\n";
  if (!o.store_dir.empty()) c << "store_dir: \"" << o.store_dir << "\"\n";
  if (o.workers) c << "workers: " << *o.workers << "\n";
  if (o.queue_capacity) c << "queue_capacity: " << *o.queue_capacity << "\n";
  if (o.threads) c << "threads: " << *o.threads << "\n";
  if (!o.log_level.empty()) c << "log_level: \"" << o.log_level << "\"\n";
  if (!o.config_file.empty()) {
    std::ifstream in(o.config_file);
    if (!in) Usage("cannot read --config " + o.config_file);
    std::string line;
    while (std::getline(in, line)) {
      const auto first = line.find_first_not_of(" \t");
      const std::string body = first == std::string::npos ? "" : line.substr(first);
      bool dropped = false;
      for (const char* field : {"listen_address", "http_port", "ports_file"}) {
        if (body.rfind(field, 0) == 0) dropped = true;
      }
      if (!dropped) c << line << "\n";
    }
  }
  return c.str();
}

// VmRSS of `pid` in MiB; nullopt when it cannot be read (no pid, or the process is gone).
std::optional<double> RssMiB(int pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;  // kB
  }
  return std::nullopt;
}

json RssJson(std::optional<double> mib) { return mib ? json(*mib) : json(nullptr); }

// Samples the server's RSS in the background so that a transient peak is seen, not only the
// values at phase boundaries.
class RssMonitor {
 public:
  explicit RssMonitor(int pid) : pid_(pid) {
    if (pid_ > 0) thread_ = std::thread([this] { Loop(); });
  }
  ~RssMonitor() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::optional<double> peak() const {
    std::lock_guard<std::mutex> lock(mu_);
    return peak_;
  }

 private:
  void Loop() {
    while (!stop_) {
      if (auto rss = RssMiB(pid_)) {
        std::lock_guard<std::mutex> lock(mu_);
        peak_ = std::max(peak_.value_or(0), *rss);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  int pid_;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::optional<double> peak_;
  std::thread thread_;
};

// Nearest-rank percentile of a sorted vector (q in [0, 100]).
double Percentile(const std::vector<double>& sorted, double q) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q / 100.0 * sorted.size()));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

struct PhaseResult {
  int clients = 0;
  double seconds = 0;
  long ok = 0;
  std::vector<double> latency_ms;          // successful requests, client-side wall time
  std::vector<double> service_ms;          // successful requests, minus the server's queue wait
  std::vector<double> queue_ms;            // the server's Timings.queue_seconds
  std::vector<double> rejected_ms;         // RESOURCE_EXHAUSTED answers: how fast they came
  std::map<std::string, long> errors;      // gRPC code name -> count
  std::map<std::string, std::string> first_error_message;
  long completion_tokens = 0;
};

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::OK: return "OK";
    case grpc::CANCELLED: return "CANCELLED";
    case grpc::UNKNOWN: return "UNKNOWN";
    case grpc::INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case grpc::DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case grpc::NOT_FOUND: return "NOT_FOUND";
    case grpc::ALREADY_EXISTS: return "ALREADY_EXISTS";
    case grpc::PERMISSION_DENIED: return "PERMISSION_DENIED";
    case grpc::RESOURCE_EXHAUSTED: return "RESOURCE_EXHAUSTED";
    case grpc::FAILED_PRECONDITION: return "FAILED_PRECONDITION";
    case grpc::ABORTED: return "ABORTED";
    case grpc::OUT_OF_RANGE: return "OUT_OF_RANGE";
    case grpc::UNIMPLEMENTED: return "UNIMPLEMENTED";
    case grpc::INTERNAL: return "INTERNAL";
    case grpc::UNAVAILABLE: return "UNAVAILABLE";
    case grpc::DATA_LOSS: return "DATA_LOSS";
    case grpc::UNAUTHENTICATED: return "UNAUTHENTICATED";
    default: return "OTHER";
  }
}

class LoadGenerator {
 public:
  explicit LoadGenerator(const Options& o, std::string target) : o_(o), target_(std::move(target)) {
    request_.set_prompt(o.prompt);
    request_.mutable_params()->set_max_new_tokens(o.max_new_tokens);
    // Every request does the same work (max_new_tokens tokens), so latencies compare across
    // phases instead of depending on where the model happens to emit EOS.
    request_.mutable_params()->set_ignore_eos(true);
    if (!o.question.empty()) {
      request_.clear_prompt();
      request_.set_question(o.question);
      for (const auto& id : o.passage_ids) request_.add_passage_ids(id);
      request_.set_retrieve_top_k(o.retrieve_top_k);
      request_.mutable_params()->set_ignore_eos(false);  // T5 answers end at EOS
    }
  }

  std::unique_ptr<v1::Memoria::Stub> NewStub() const {
    grpc::ChannelArguments args;
    // Each client gets its own connection, as separate client processes would.
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt("bench.client_unique", next_channel_id_++);
    return v1::Memoria::NewStub(
        grpc::CreateCustomChannel(target_, grpc::InsecureChannelCredentials(), args));
  }

  // One closed-loop phase: `clients` threads each send a request, wait for its answer, and send
  // the next, until `max_requests` were sent in total (0 = no bound) or `duration_s` passed.
  PhaseResult Run(int clients, double duration_s, long max_requests) const {
    std::vector<std::unique_ptr<v1::Memoria::Stub>> stubs;
    for (int c = 0; c < clients; ++c) stubs.push_back(NewStub());
    // Connect every channel before the clock starts: connection set-up is not request latency.
    for (auto& s : stubs) {
      grpc::ClientContext context;
      v1::ServerInfoReply info;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
      s->ServerInfo(&context, v1::ServerInfoRequest(), &info);
    }
    std::atomic<long> issued{0};
    std::vector<PhaseResult> per_client(static_cast<size_t>(clients));
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (int c = 0; c < clients; ++c) {
      threads.emplace_back([&, c] {
        PhaseResult& r = per_client[static_cast<size_t>(c)];
        while (true) {
          if (duration_s > 0 && Since(start) >= duration_s) break;
          if (max_requests > 0 && issued.fetch_add(1) >= max_requests) break;
          grpc::ClientContext context;
          context.set_deadline(std::chrono::system_clock::now() +
                               std::chrono::duration_cast<std::chrono::system_clock::duration>(
                                   std::chrono::duration<double>(o_.deadline_s)));
          v1::GenerateReply reply;
          const auto t0 = Clock::now();
          const grpc::Status status = stubs[static_cast<size_t>(c)]->Generate(&context, request_, &reply);
          const double ms = Since(t0) * 1e3;
          if (status.ok()) {
            ++r.ok;
            r.latency_ms.push_back(ms);
            const double queue_ms = reply.timings().queue_seconds() * 1e3;
            r.queue_ms.push_back(queue_ms);
            r.service_ms.push_back(ms - queue_ms);
            r.completion_tokens += reply.completion_tokens();
          } else {
            const std::string code = CodeName(status.error_code());
            if (r.errors[code]++ == 0) r.first_error_message[code] = status.error_message();
            if (status.error_code() == grpc::RESOURCE_EXHAUSTED) {
              r.rejected_ms.push_back(ms);
              std::this_thread::sleep_for(
                  std::chrono::duration<double, std::milli>(o_.reject_backoff_ms));
            }
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    PhaseResult total;
    total.clients = clients;
    total.seconds = Since(start);
    for (auto& r : per_client) {
      total.ok += r.ok;
      total.completion_tokens += r.completion_tokens;
      auto append = [](std::vector<double>& to, const std::vector<double>& from) {
        to.insert(to.end(), from.begin(), from.end());
      };
      append(total.latency_ms, r.latency_ms);
      append(total.service_ms, r.service_ms);
      append(total.queue_ms, r.queue_ms);
      append(total.rejected_ms, r.rejected_ms);
      for (const auto& [code, n] : r.errors) total.errors[code] += n;
      for (const auto& [code, m] : r.first_error_message) total.first_error_message.emplace(code, m);
    }
    for (auto* v : {&total.latency_ms, &total.service_ms, &total.queue_ms, &total.rejected_ms}) {
      std::sort(v->begin(), v->end());
    }
    return total;
  }

  v1::ServerInfoReply Info() const {
    auto stub = NewStub();
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::ServerInfoReply info;
    const grpc::Status status = stub->ServerInfo(&context, v1::ServerInfoRequest(), &info);
    if (!status.ok()) {
      std::fprintf(stderr, "server_bench: ServerInfo failed: %s\n", status.error_message().c_str());
      std::exit(1);
    }
    return info;
  }

 private:
  const Options& o_;
  std::string target_;
  v1::GenerateRequest request_;
  mutable std::atomic<int> next_channel_id_{0};
};

json PhaseJson(const PhaseResult& r) {
  long errors = 0;
  for (const auto& [code, n] : r.errors) errors += n;
  json j = {
      {"clients", r.clients},
      {"seconds", r.seconds},
      {"ok", r.ok},
      {"errors_total", errors},
      {"errors", r.errors},
      {"requests_per_s", r.ok / r.seconds},
      {"tokens_per_s", r.completion_tokens / r.seconds},
      {"latency_ms",
       {{"p50", Percentile(r.latency_ms, 50)},
        {"p90", Percentile(r.latency_ms, 90)},
        {"p99", Percentile(r.latency_ms, 99)},
        {"max", r.latency_ms.empty() ? 0 : r.latency_ms.back()}}},
      {"service_ms", {{"p50", Percentile(r.service_ms, 50)}, {"p99", Percentile(r.service_ms, 99)}}},
      {"queue_ms", {{"p50", Percentile(r.queue_ms, 50)}, {"p99", Percentile(r.queue_ms, 99)}}},
  };
  if (!r.rejected_ms.empty()) {
    j["rejected_ms"] = {{"p50", Percentile(r.rejected_ms, 50)},
                        {"p99", Percentile(r.rejected_ms, 99)},
                        {"max", r.rejected_ms.back()}};
  }
  if (!r.first_error_message.empty()) j["first_error_message"] = r.first_error_message;
  return j;
}

// Runs a phase o.runs times; "median" holds the median of each headline figure over the runs
// (each figure on its own), "runs" every run in full.
json RepeatedPhase(const LoadGenerator& gen, const Options& o, int clients, double duration_s,
                   long max_requests) {
  json runs = json::array();
  for (int i = 0; i < o.runs; ++i) {
    runs.push_back(PhaseJson(gen.Run(clients, duration_s, max_requests)));
    std::fprintf(stderr, "server_bench: %d clients run %d/%d: %s\n", clients, i + 1, o.runs,
                 runs.back().dump().c_str());
  }
  auto med = [&](auto get) {
    std::vector<double> v;
    for (const auto& r : runs) v.push_back(get(r));
    return Median(v);
  };
  json median = {
      {"clients", clients},
      {"requests_per_s", med([](const json& r) { return r["requests_per_s"].get<double>(); })},
      {"tokens_per_s", med([](const json& r) { return r["tokens_per_s"].get<double>(); })},
      {"p50_ms", med([](const json& r) { return r["latency_ms"]["p50"].get<double>(); })},
      {"p90_ms", med([](const json& r) { return r["latency_ms"]["p90"].get<double>(); })},
      {"p99_ms", med([](const json& r) { return r["latency_ms"]["p99"].get<double>(); })},
      {"service_p99_ms", med([](const json& r) { return r["service_ms"]["p99"].get<double>(); })},
      {"queue_p99_ms", med([](const json& r) { return r["queue_ms"]["p99"].get<double>(); })},
  };
  // Errors are summed over the runs, not a median: one error in any run must show.
  std::map<std::string, long> errors;
  long ok = 0;
  for (const auto& r : runs) {
    ok += r["ok"].get<long>();
    for (const auto& [code, n] : r["errors"].items()) errors[code] += n.get<long>();
  }
  median["ok_all_runs"] = ok;
  median["errors_all_runs"] = errors;
  return {{"median", median}, {"runs", runs}};
}

int Main(int argc, char** argv) {
  const Options o = ParseArgs(argc, argv);
  std::unique_ptr<testing::ServerProcess> server;
  std::string target = o.target;
  int pid = o.server_pid;
  if (target.empty()) {
    server = std::make_unique<testing::ServerProcess>(ServerConfigText(o));
    if (!server->WaitReady(300)) {
      std::fprintf(stderr, "server_bench: memoria-server did not become ready; its log:\n%s\n",
                   server->Log().c_str());
      return 1;
    }
    target = server->target();
    pid = server->pid();
  }
  const LoadGenerator gen(o, target);
  const v1::ServerInfoReply info = gen.Info();
  json out = {
      {"mode", o.mode},
      {"server",
       {{"target", target},
        {"pid", pid},
        {"model_dir", info.model_dir()},
        {"model_type", info.model_type()},
        {"num_layers", info.num_layers()},
        {"hidden_size", info.hidden_size()},
        {"workers", info.workers()},
        {"queue_capacity", info.queue_capacity()},
        {"threads_per_worker", info.threads_per_worker()}}},
      {"request",
       {{"prompt", o.prompt},
        {"question", o.question},
        {"passage_ids", o.passage_ids},
        {"max_new_tokens", o.max_new_tokens},
        {"deadline_s", o.deadline_s},
        {"reject_backoff_ms", o.reject_backoff_ms}}},
      {"runs", o.runs},
      {"duration_s", o.duration_s},
      {"requests_per_phase", o.requests},
  };
  const auto rss_start = RssMiB(pid);
  RssMonitor monitor(pid);

  const int capacity = info.workers() + info.queue_capacity();
  int warmup_clients = *std::max_element(o.clients.begin(), o.clients.end());
  if (o.mode == "overload") warmup_clients = std::max(1, info.workers());
  // Warm-up: allocator arenas, per-worker KV caches and gRPC buffers reach their steady size, so
  // that the RSS after it is the baseline for growth.
  PhaseResult warmup = gen.Run(warmup_clients, 0, std::max<long>(o.warmup_requests, 1));
  out["warmup"] = PhaseJson(warmup);
  const auto rss_warm = RssMiB(pid);

  if (o.mode == "sweep") {
    json phases = json::array();
    for (int c : o.clients) phases.push_back(RepeatedPhase(gen, o, c, o.duration_s, o.requests));
    out["phases"] = phases;
  } else if (o.mode == "overload") {
    json unloaded = RepeatedPhase(gen, o, 1, o.duration_s, o.requests);
    json at1 = RepeatedPhase(gen, o, capacity, o.duration_s, o.requests);
    json at4 = RepeatedPhase(gen, o, 4 * capacity, o.duration_s, o.requests);
    const double base = unloaded["median"]["p99_ms"].get<double>();
    const double base_service = unloaded["median"]["service_p99_ms"].get<double>();
    auto verdict = [&](const json& phase, bool above_capacity) {
      long other_errors = 0, exhausted = 0;
      for (const auto& [code, n] : phase["median"]["errors_all_runs"].items()) {
        if (code == "RESOURCE_EXHAUSTED") exhausted += n.get<long>();
        else other_errors += n.get<long>();
      }
      const double p99 = phase["median"]["p99_ms"].get<double>();
      const double service_p99 = phase["median"]["service_p99_ms"].get<double>();
      return json{{"clients", phase["median"]["clients"]},
                  {"resource_exhausted", exhausted},
                  {"other_errors", other_errors},
                  {"errors_ok", above_capacity ? other_errors == 0 : other_errors + exhausted == 0},
                  {"admitted_p99_ms", p99},
                  {"p99_ratio_to_unloaded", p99 / base},
                  {"admitted_service_p99_ms", service_p99},
                  {"service_p99_ratio_to_unloaded", service_p99 / base_service}};
    };
    out["capacity"] = {{"workers", info.workers()},
                       {"queue_capacity", info.queue_capacity()},
                       {"admitted_at_once", capacity}};
    out["phases"] = {unloaded, at1, at4};
    out["summary"] = {{"unloaded_p99_ms", base},
                      {"unloaded_service_p99_ms", base_service},
                      {"at_1x", verdict(at1, false)},
                      {"at_4x", verdict(at4, true)}};
  } else {  // soak
    const int c = o.clients.front();
    json phase = RepeatedPhase(gen, o, c, 0, o.requests > 0 ? o.requests : 10000);
    out["phases"] = {phase};
  }
  const auto rss_end = RssMiB(pid);
  out["rss_mib"] = {{"start", RssJson(rss_start)},
                    {"after_warmup", RssJson(rss_warm)},
                    {"end", RssJson(rss_end)},
                    {"peak", RssJson(monitor.peak())},
                    {"growth_after_warmup",
                     rss_warm && rss_end ? json(*rss_end - *rss_warm) : json(nullptr)}};
  std::printf("%s\n", out.dump(1).c_str());
  if (server) {
    // A clean stop (SIGTERM drains) rather than the helper's SIGKILL, so a server that cannot
    // shut down after load shows in the exit code.
    server->Signal(SIGTERM);
    const int code = server->WaitExit(60);
    if (code != 0) {
      std::fprintf(stderr, "server_bench: memoria-server exited with %d after SIGTERM\n", code);
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace memoria

int main(int argc, char** argv) { return memoria::Main(argc, argv); }
