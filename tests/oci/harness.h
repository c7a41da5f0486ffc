// Test harness for tests/oci: child processes (the real `docker-registry`, the fault proxy,
// the wasmlet binary) on loopback with free ports and temp dirs. Every child is in its own
// process group and gets SIGKILL when the test process dies (PR_SET_PDEATHSIG), so nothing
// outlives a failed or crashed test.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace wasmlet::testing {

namespace fs = std::filesystem;

inline std::string MakeTempDir(const std::string& tag) {
  std::string tmpl = "/tmp/wasmlet-" + tag + "-XXXXXX";
  char* made = mkdtemp(tmpl.data());
  return made != nullptr ? std::string(made) : std::string();
}

inline int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  int port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

inline bool WaitForPort(int port, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

struct Output {
  int code = -1;
  std::string out, err;
};

// A child process; killed (whole group) on destruction.
class Child {
 public:
  Child() = default;
  // env entries "NAME=VALUE" are added; "NAME=" with nothing after unsets NAME.
  static Child Spawn(const std::vector<std::string>& argv, const std::vector<std::string>& env,
                     const std::string& stdin_data = "", bool capture = true,
                     const std::string& log_path = "") {
    Child c;
    int in[2], out[2], err[2];
    if (pipe(in) != 0 || pipe(out) != 0 || pipe(err) != 0) return c;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (getppid() != parent) _exit(127);
      dup2(in[0], 0);
      if (!log_path.empty()) {
        int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        dup2(log, 1);
        dup2(log, 2);
      } else if (capture) {
        dup2(out[1], 1);
        dup2(err[1], 2);
      }
      for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
      for (const auto& e : env) {
        auto eq = e.find('=');
        std::string name = e.substr(0, eq), value = e.substr(eq + 1);
        if (value.empty()) {
          unsetenv(name.c_str());
        } else {
          setenv(name.c_str(), value.c_str(), 1);
        }
      }
      std::vector<char*> args;
      std::vector<std::string> copy = argv;
      for (auto& a : copy) args.push_back(a.data());
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
    setpgid(pid, pid);
    close(in[0]);
    close(out[1]);
    close(err[1]);
    if (!stdin_data.empty()) {
      ssize_t n = write(in[1], stdin_data.data(), stdin_data.size());
      (void)n;
    }
    close(in[1]);
    c.pid_ = pid;
    c.out_ = out[0];
    c.err_ = err[0];
    return c;
  }
  Child(Child&& o) noexcept { *this = std::move(o); }
  Child& operator=(Child&& o) noexcept {
    std::swap(pid_, o.pid_);
    std::swap(out_, o.out_);
    std::swap(err_, o.err_);
    return *this;
  }
  ~Child() { Kill(); }

  pid_t pid() const { return pid_; }
  int stdout_fd() const { return out_; }

  // Reads both streams to the end and waits (at most `timeout`, then SIGKILL).
  Output Wait(std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
    Output o;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    pollfd fds[2] = {{out_, POLLIN, 0}, {err_, POLLIN, 0}};
    int open_fds = 2;
    char buffer[65536];
    while (open_fds > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0 || poll(fds, 2, static_cast<int>(left.count())) <= 0) break;
      for (auto& f : fds) {
        if (f.fd >= 0 && (f.revents & (POLLIN | POLLHUP))) {
          ssize_t n = read(f.fd, buffer, sizeof buffer);
          if (n <= 0) {
            f.fd = -1;
            --open_fds;
          } else {
            (&f == &fds[0] ? o.out : o.err).append(buffer, static_cast<size_t>(n));
          }
        }
      }
    }
    if (open_fds > 0) kill(-pid_, SIGKILL);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    CloseFds();
    return o;
  }

  // Reads one line of stdout (the proxy prints its port).
  std::string ReadLine(std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    std::string line;
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char c;
    while (std::chrono::steady_clock::now() < deadline) {
      pollfd p{out_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      if (read(out_, &c, 1) != 1) break;
      if (c == '\n') return line;
      line.push_back(c);
    }
    return line;
  }

  void Kill(int sig = SIGKILL) {
    if (pid_ > 0) {
      kill(-pid_, sig);
      kill(pid_, sig);
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    CloseFds();
  }

 private:
  void CloseFds() {
    if (out_ >= 0) close(out_);
    if (err_ >= 0) close(err_);
    out_ = err_ = -1;
  }
  pid_t pid_ = -1;
  int out_ = -1;
  int err_ = -1;
};

// `docker-registry serve` on a free loopback port with a temp storage dir; optional htpasswd.
class Registry {
 public:
  // `htpasswd_user`/`password` empty: anonymous.
  bool Start(const std::string& dir, const std::string& user = "", const std::string& password = "") {
    dir_ = dir;
    fs::create_directories(dir + "/storage");
    std::string auth;
    if (!user.empty()) {
      Child h = Child::Spawn({"htpasswd", "-Bbn", user, password}, {});
      Output o = h.Wait();
      if (o.code != 0) return false;
      std::ofstream(dir + "/htpasswd") << o.out;
      auth = "auth:\n  htpasswd:\n    realm: wasmlet-test\n    path: " + dir + "/htpasswd\n";
    }
    for (int tries = 0; tries < 5; ++tries) {
      port_ = FreePort();
      std::ofstream(dir + "/config.yml")
          << "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n"
             "  filesystem:\n    rootdirectory: "
          << dir << "/storage\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:" << port_
          << "\n" << auth;
      process_ = Child::Spawn({"docker-registry", "serve", dir + "/config.yml"}, {}, "", false,
                              dir + "/registry.log");
      if (WaitForPort(port_, std::chrono::seconds(10))) return true;
      process_.Kill();
    }
    return false;
  }
  void Stop() { process_.Kill(); }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  std::string dir_;
  int port_ = 0;
  Child process_;
};

// One HTTP/1.0 request to 127.0.0.1:port; returns the response body ("" on failure).
inline std::string HttpOnce(int port, const std::string& method, const std::string& path,
                            const std::string& body = "") {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return {};
  }
  std::string request = method + " " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n\r\n" + body;
  if (write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return {};
  }
  std::string response;
  char buffer[4096];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) break;
    ssize_t n = read(fd, buffer, sizeof buffer);
    if (n <= 0) break;
    response.append(buffer, static_cast<size_t>(n));
  }
  close(fd);
  size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : response.substr(end + 4);
}

// tests/oci/proxy.py in front of a registry.
class Proxy {
 public:
  bool Start(int upstream_port, const std::string& mode) {
    process_ = Child::Spawn({"python3", std::string(WASMLET_SOURCE_DIR) + "/tests/oci/proxy.py",
                             std::to_string(upstream_port), mode},
                            {});
    std::string line = process_.ReadLine();
    if (line.empty()) return false;
    port_ = std::stoi(line);
    return WaitForPort(port_, std::chrono::seconds(5));
  }
  int port() const { return port_; }
  std::string host() const { return "127.0.0.1:" + std::to_string(port_); }
  void Stop() { process_.Kill(); }
  // Switches the fault mode (see proxy.py); true once the proxy confirmed it.
  bool SetMode(const std::string& mode) { return HttpOnce(port_, "PUT", "/_mode", mode) == mode; }
  std::string Stats() { return HttpOnce(port_, "GET", "/_stats"); }

 private:
  int port_ = 0;
  Child process_;
};

inline std::string Guest(const std::string& name) {
  return std::string(WASMLET_GUEST_DIR) + "/" + name;
}

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "Key: value" line of `wasmlet pull` output.
inline std::string Field(const std::string& out, const std::string& key) {
  std::istringstream in(out);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key + ": ", 0) == 0) return line.substr(key.size() + 2);
  }
  return {};
}

}  // namespace wasmlet::testing
