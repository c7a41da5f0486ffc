// Helpers of the hostile suites: server RSS, a raw socket with the knobs RawConnection hides
// (non-blocking checks, half-close), and a temp dir holding a modules.toml. The server itself
// is tests/gateway/server_process.h's ServerProcess.
#pragma once

#include <sys/resource.h>

#include <atomic>
#include <thread>

#include "../gateway/server_process.h"

namespace hostile {

using namespace gwtest;

// VmRSS of `pid` in KiB, 0 if unreadable.
inline long RssKiB(pid_t pid) {
  std::string status = ReadText("/proc/" + std::to_string(pid) + "/status");
  auto pos = status.find("VmRSS:");
  if (pos == std::string::npos) return 0;
  return std::strtol(status.c_str() + pos + 6, nullptr, 10);
}

inline size_t OpenFds(pid_t pid) {
  std::error_code ec;
  size_t n = 0;
  for (auto it = fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec);
       !ec && it != fs::directory_iterator(); it.increment(ec)) {
    ++n;
  }
  return n;
}

// The soft "Max open files" of `pid` (/proc/PID/limits), 0 if unreadable.
inline size_t OpenFilesLimit(pid_t pid) {
  std::string limits = ReadText("/proc/" + std::to_string(pid) + "/limits");
  auto pos = limits.find("Max open files");
  if (pos == std::string::npos) return 0;
  return std::strtoul(limits.c_str() + pos + 14, nullptr, 10);
}

// Polls `pred` until `pred` holds (true) or `timeout_ms` pass (false).
template <class F>
bool Eventually(F pred, int timeout_ms = 10000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    usleep(20000);
  }
  return pred();
}

// A client socket to 127.0.0.1:port.
class Sock {
 public:
  explicit Sock(int port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(fd_);
      fd_ = -1;
    }
  }
  Sock(const Sock&) = delete;
  Sock& operator=(const Sock&) = delete;
  ~Sock() { Close(); }
  bool ok() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  // Blocking send of everything; false on error (the peer closed or reset).
  bool Send(std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  // Waits up to timeout_ms for bytes or EOF; appends bytes to received(). Returns false once
  // the peer closed (EOF or reset), true otherwise.
  bool Pump(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return true;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      closed_ = true;
      return false;
    }
    received_.append(buf, static_cast<size_t>(n));
    return true;
  }
  // Reads until `needle` arrives (true), the peer closes or the time is up (false).
  bool ReadUntil(const std::string& needle, int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (received_.find(needle) == std::string::npos) {
      if (std::chrono::steady_clock::now() >= deadline || closed_) return false;
      Pump(50);
    }
    return true;
  }
  // Reads until the peer closes (true) or the time is up (false).
  bool ReadToEof(int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (!closed_) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      Pump(50);
    }
    return true;
  }
  bool closed() const { return closed_; }
  const std::string& received() const { return received_; }

 private:
  int fd_ = -1;
  bool closed_ = false;
  std::string received_;
};

// The status code of the first response in `bytes` ("HTTP/1.1 431 ..." -> 431), 0 if none.
inline int StatusOf(const std::string& bytes) {
  if (bytes.rfind("HTTP/1.", 0) != 0 || bytes.size() < 12) return 0;
  return std::atoi(bytes.c_str() + 9);
}

// A normal request on a fresh connection while the attack goes on: must answer quickly.
inline ::testing::AssertionResult ServesNormally(const ServerProcess& server, const std::string& path = "/hello") {
  Response r = Fetch(server.Url(path), Request{.timeout_ms = 20000});
  if (r.status != 200) {
    return ::testing::AssertionFailure() << path << ": status " << r.status << " (curl " << r.error << ") "
                                         << r.body;
  }
  return ::testing::AssertionSuccess();
}

constexpr long kRssBudgetKiB = 64 * 1024;  // growth allowed during an attack
// Under ASan (the tests and the server are built alike) RSS measures ASan itself: its
// quarantine keeps up to 256 MiB of freed memory, plus redzones and shadow. The bound is
// checked by the main stage; here the rest of each test still runs.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRssIsMeaningful = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kRssIsMeaningful = false;
#else
constexpr bool kRssIsMeaningful = true;
#endif
#else
constexpr bool kRssIsMeaningful = true;
#endif

}  // namespace hostile
