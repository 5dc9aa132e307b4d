#include "tests/server_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>
#include <vector>

#include "base/testing.h"

namespace memoria::testing {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

std::string MemoriaCli() { return BuildDir() + "/tools/memoria"; }

}  // namespace

HttpResult HttpGet(int port, const std::string& path) {
  HttpResult result;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return result;
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return result;
  }
  const std::string request =
      "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return result;
  }
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) response.append(buf, static_cast<size_t>(n));
  ::close(fd);
  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
  if (response.rfind("HTTP/1.1 ", 0) != 0) return result;
  result.status = std::atoi(response.c_str() + 9);
  const size_t body = response.find("\r\n\r\n");
  if (body != std::string::npos) result.body = response.substr(body + 4);
  return result;
}

double MetricValue(const std::string& metrics, const std::string& series) {
  std::istringstream lines(metrics);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ') {
      return std::atof(line.c_str() + series.size() + 1);
    }
  }
  return -1;
}

ServerProcess::ServerProcess(const std::string& config_text) {
  dir_ = MakeTempDir("memoria-server-test");
  const std::string config_path = dir_ + "/server.textproto";
  {
    std::ofstream out(config_path);
    out << config_text << "\nlisten_address: \"127.0.0.1:0\"\nhttp_port: 0\nports_file: \"" << dir_
        << "/ports\"\n";
  }
  const std::string binary = BuildDir() + "/server/memoria-server";
  const std::string log = dir_ + "/server.log";
  // The log file is opened before fork: between fork and exec a child of a multi-threaded
  // process may only make async-signal-safe calls.
  const int log_fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  pid_ = ::fork();
  if (pid_ == 0) {
    // A test that crashes must not leave its server behind.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(log_fd, STDOUT_FILENO);
    ::dup2(log_fd, STDERR_FILENO);
    ::execl(binary.c_str(), binary.c_str(), "--config", config_path.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  if (log_fd >= 0) ::close(log_fd);
}

ServerProcess::~ServerProcess() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

bool ServerProcess::WaitReady(double timeout_s) {
  const auto start = Clock::now();
  while (Since(start) < timeout_s) {
    if (pid_ <= 0) return false;
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      return false;
    }
    if (grpc_port_ == 0) {
      std::istringstream ports(ReadFile(dir_ + "/ports"));
      std::string name;
      int value;
      while (ports >> name >> value) {
        if (name == "grpc_port") grpc_port_ = value;
        if (name == "http_port") http_port_ = value;
      }
      if (http_port_ == 0) grpc_port_ = 0;  // file not complete yet
    }
    if (grpc_port_ != 0 && HttpGet(http_port_, "/readyz").status == 200) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void ServerProcess::Signal(int signal) const {
  if (pid_ > 0) ::kill(pid_, signal);
}

int ServerProcess::WaitExit(double timeout_s) {
  if (pid_ <= 0) return exit_code_;  // already reaped (by WaitReady)
  const auto start = Clock::now();
  while (pid_ > 0 && Since(start) < timeout_s) {
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

std::string ServerProcess::Log() const { return ReadFile(dir_ + "/server.log"); }

std::string ConvertStories260K() {
  const std::string out = MakeTempDir("memoria-stories260k-server");
  const std::string command = MemoriaCli() + " convert-llama2c --checkpoint " +
                              SharedPath("models/stories260K/stories260K.bin") + " --tokenizer " +
                              SharedPath("models/stories260K/tok512.bin") + " --out " + out +
                              " > /dev/null 2>&1";
  return std::system(command.c_str()) == 0 ? out : "";
}

std::string MakeSlowModel() {
  const int dim = 256, hidden = 768, layers = 6, heads = 8, kv_heads = 8, vocab = 512,
            seq_len = 2048;
  const int head_size = dim / heads, kv_dim = kv_heads * head_size;
  const int64_t floats = int64_t(vocab) * dim + int64_t(layers) * dim +  // embedding, rms_att
                         int64_t(layers) * dim * dim +
                         2 * int64_t(layers) * kv_dim * dim +                   // wq, wk, wv
                         int64_t(layers) * dim * dim + int64_t(layers) * dim +  // wo, rms_ffn
                         3 * int64_t(layers) * hidden * dim + dim +  // w1 w2 w3, rms_final
                         int64_t(seq_len) * head_size;               // freq_cis (skipped)
  std::vector<float> weights(static_cast<size_t>(floats));
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uniform(-0.08f, 0.08f);
  for (float& w : weights) w = uniform(rng);
  // RMSNorm gains of 1 keep activations in a sane range (offsets as in the layout above).
  auto fill_ones = [&](int64_t offset, int64_t n) {
    std::fill_n(weights.begin() + offset, n, 1.0f);
  };
  fill_ones(int64_t(vocab) * dim, int64_t(layers) * dim);
  const int64_t rms_ffn = int64_t(vocab) * dim + int64_t(layers) * dim +
                          int64_t(layers) * dim * dim + 2 * int64_t(layers) * kv_dim * dim +
                          int64_t(layers) * dim * dim;
  fill_ones(rms_ffn, int64_t(layers) * dim);
  fill_ones(rms_ffn + int64_t(layers) * dim + 3 * int64_t(layers) * hidden * dim, dim);

  const std::string work = MakeTempDir("memoria-slow-model");
  const std::string checkpoint = work + "/slow.bin";
  {
    std::ofstream out(checkpoint, std::ios::binary);
    const int32_t header[7] = {dim, hidden, layers, heads, kv_heads, vocab, seq_len};
    out.write(reinterpret_cast<const char*>(header), sizeof header);
    out.write(reinterpret_cast<const char*>(weights.data()),
              static_cast<std::streamsize>(weights.size() * 4));
    if (!out) return "";
  }
  const std::string model = work + "/model";
  const std::string command = MemoriaCli() + " convert-llama2c --checkpoint " + checkpoint +
                              " --tokenizer " + SharedPath("models/stories260K/tok512.bin") +
                              " --out " + model + " > /dev/null 2>&1";
  if (std::system(command.c_str()) != 0) return "";
  std::filesystem::remove(checkpoint);
  return model;
}

}  // namespace memoria::testing
