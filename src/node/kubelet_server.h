// The node's kubelet HTTPS API: /healthz, /pods, /containerLogs/{ns}/{pod}/{container}
// (tailLines, follow, timestamps, sinceSeconds, sinceTime, limitBytes, previous) so that
// `kubectl logs` works through the API server; /exec, /attach, /portForward, /run answer 501.
// Clients are authenticated by certificate against client_ca when one is given.
//
// Threading: one acceptor thread; one thread per connection (bounded by max_connections);
// Stop() closes the acceptor and waits for connection threads (follow streams end within
// 200 ms).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "util/result.h"

namespace wasmlet::node {

class PodManager;

struct KubeletServerOptions {
  std::string bind_address = "0.0.0.0";
  uint16_t port = 10250;  // 0: pick a free port
  std::string cert_pem;   // empty: a self-signed certificate is generated
  std::string key_pem;
  std::string client_ca_pem;  // empty: no client authentication
  int max_connections = 256;
};

class KubeletServer {
 public:
  KubeletServer(PodManager& pods, KubeletServerOptions options);
  ~KubeletServer();
  Status Start();
  void Stop();
  uint16_t port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

// A self-signed certificate and key (PEM) for `host` (an IP or DNS name), valid one year.
Result<std::pair<std::string, std::string>> SelfSignedCertificate(const std::string& host);

}  // namespace wasmlet::node
