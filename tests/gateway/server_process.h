// Test helpers: start the real `wasmlet serve` binary on a free port, and talk HTTP to it with
// libcurl or raw sockets.
#pragma once

#include <arpa/inet.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace gwtest {

namespace fs = std::filesystem;

inline std::string Guest(const std::string& name) { return std::string(WASMLET_GUEST_DIR) + "/" + name; }

inline fs::path MakeTempDir(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "XXXXXX")).string();
  char* dir = mkdtemp(tmpl.data());
  return dir != nullptr ? fs::path(dir) : fs::path();
}

inline void WriteText(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

inline std::string ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A running `wasmlet serve`; SIGTERM and wait on destruction. stderr goes to a file.
class ServerProcess {
 public:
  ServerProcess() = default;
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;
  ~ServerProcess() { Stop(); }

  // Starts `wasmlet serve ARGS -l 127.0.0.1:0` and waits for "Listening on ...".
  bool Start(std::vector<std::string> args, const fs::path& workdir) {
    stderr_path_ = workdir / ("serve-" + std::to_string(counter_++) + ".stderr");
    int out[2];
    if (pipe(out) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      int err = open(stderr_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(err, 2);
      close(out[0]);
      close(out[1]);
      if (chdir(workdir.c_str()) != 0) _exit(126);
      std::string binary = WASMLET_BINARY;
      std::vector<std::string> all = {binary, "serve", "-l", "127.0.0.1:0"};
      all.insert(all.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(binary.c_str(), argv.data());
      _exit(127);
    }
    close(out[1]);
    out_fd_ = out[0];
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_fd_, POLLIN, 0};
      if (poll(&p, 1, 200) > 0) {
        char buf[4096];
        ssize_t n = read(out_fd_, buf, sizeof buf);
        if (n <= 0) break;
        stdout_.append(buf, static_cast<size_t>(n));
        auto pos = stdout_.find("Listening on ");
        auto nl = stdout_.find('\n', pos == std::string::npos ? 0 : pos);
        if (pos != std::string::npos && nl != std::string::npos) {
          base_url_ = stdout_.substr(pos + 13, nl - pos - 13);
          port_ = std::stoi(base_url_.substr(base_url_.rfind(':') + 1));
          return true;
        }
      }
      int status;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
    }
    return false;
  }

  // Sends a signal; returns the exit status after waiting (for SIGTERM/SIGINT).
  int Stop(int signo = SIGTERM) {
    if (pid_ <= 0) return -1;
    kill(pid_, signo);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    if (out_fd_ >= 0) close(out_fd_);
    out_fd_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  void Signal(int signo) {
    if (pid_ > 0) kill(pid_, signo);
  }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  const std::string& base_url() const { return base_url_; }
  std::string Url(const std::string& path) const { return base_url_ + path; }
  std::string Stderr() const { return ReadText(stderr_path_); }
  const std::string& Stdout() const { return stdout_; }

 private:
  static inline int counter_ = 0;
  pid_t pid_ = -1;
  int out_fd_ = -1;
  int port_ = 0;
  std::string base_url_;
  std::string stdout_;
  fs::path stderr_path_;
};

struct Response {
  long status = 0;
  std::multimap<std::string, std::string> headers;  // lower-case names
  std::string body;
  CURLcode error = CURLE_OK;
  double total_seconds = 0;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  size_t Count(const std::string& name) const { return headers.count(name); }
};

inline size_t CurlWrite(char* data, size_t size, size_t n, void* user) {
  static_cast<std::string*>(user)->append(data, size * n);
  return size * n;
}

inline size_t CurlHeader(char* data, size_t size, size_t n, void* user) {
  std::string line(data, size * n);
  auto* r = static_cast<Response*>(user);
  if (line.rfind("HTTP/", 0) == 0) {
    r->headers.clear();
    return size * n;
  }
  auto colon = line.find(':');
  if (colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::string value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ')) value.erase(0, 1);
    while (!value.empty() && (value.back() == '\r' || value.back() == '\n')) value.pop_back();
    r->headers.emplace(name, value);
  }
  return size * n;
}

struct Request {
  std::string method = "GET";
  std::string body;
  std::vector<std::string> headers;
  long timeout_ms = 30000;
  bool insecure = false;
};

inline Response Fetch(const std::string& url, const Request& req = {}) {
  Response r;
  CURL* curl = curl_easy_init();
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, CurlWrite);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &r.body);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, CurlHeader);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &r);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, req.timeout_ms);
  curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
  if (req.insecure) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  if (req.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (req.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req.method.c_str());
  }
  if (!req.body.empty() || req.method == "POST") {
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, req.body.data());
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(req.body.size()));
  }
  curl_slist* list = nullptr;
  for (const auto& h : req.headers) list = curl_slist_append(list, h.c_str());
  if (list != nullptr) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  r.error = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
  curl_easy_getinfo(curl, CURLINFO_TOTAL_TIME, &r.total_seconds);
  if (list != nullptr) curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return r;
}

// A raw TCP connection for what libcurl hides: pipelining, chunked uploads, Expect, timing.
class RawConnection {
 public:
  explicit RawConnection(int port) {
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
  ~RawConnection() {
    if (fd_ >= 0) close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  bool Send(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::send(fd_, data.data() + done, data.size() - done, MSG_NOSIGNAL);
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }
  // Reads until `needle` appears in what was received (returns true) or EOF/timeout.
  bool ReadUntil(const std::string& needle, int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (received_.find(needle) == std::string::npos) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (left <= 0 || !ReadSome(left)) return false;
    }
    return true;
  }
  // Reads until the peer closes; true if it closed before the timeout.
  bool ReadToEof(int timeout_ms = 10000) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    for (;;) {
      int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                      deadline - std::chrono::steady_clock::now())
                                      .count());
      if (left <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, left) <= 0) return false;
      char buf[65536];
      ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;
      received_.append(buf, static_cast<size_t>(n));
    }
  }
  const std::string& received() const { return received_; }
  void Clear() { received_.clear(); }

 private:
  bool ReadSome(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0) return false;
    char buf[65536];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    received_.append(buf, static_cast<size_t>(n));
    return true;
  }
  int fd_ = -1;
  std::string received_;
};

// Polls the server's /metrics until it contains `line` (e.g. "\nwasmlet_instances_running 1\n").
inline bool WaitForMetric(const ServerProcess& server, const std::string& line, int timeout_ms = 5000) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (std::chrono::steady_clock::now() < deadline) {
    if (Fetch(server.Url("/metrics")).body.find(line) != std::string::npos) return true;
    usleep(10000);
  }
  return false;
}

// "NAME=value" lines of the probe's dump -> map (ENV lines and ARGn lines).
inline std::map<std::string, std::string> ParseDump(const std::string& body) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start < body.size()) {
    size_t end = body.find('\n', start);
    if (end == std::string::npos) end = body.size();
    std::string line = body.substr(start, end - start);
    start = end + 1;
    if (line.rfind("ENV ", 0) == 0) line = line.substr(4);
    auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

}  // namespace gwtest
