#include "node/kubelet_server.h"

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <map>
#include <mutex>
#include <vector>

#include "node/container_log.h"
#include "node/kube_client.h"
#include "node/pod_manager.h"
#include "util/log.h"

namespace wasmlet::node {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

std::string UrlDecode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> ParseQuery(std::string_view q) {
  std::map<std::string, std::string> out;
  size_t start = 0;
  while (start < q.size()) {
    size_t amp = q.find('&', start);
    if (amp == std::string_view::npos) amp = q.size();
    std::string_view kv = q.substr(start, amp - start);
    size_t eq = kv.find('=');
    if (eq == std::string_view::npos) {
      out[UrlDecode(kv)] = "";
    } else {
      out[UrlDecode(kv.substr(0, eq))] = UrlDecode(kv.substr(eq + 1));
    }
    start = amp + 1;
  }
  return out;
}

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (slash > start) out.push_back(UrlDecode(path.substr(start, slash - start)));
    start = slash + 1;
  }
  return out;
}

int64_t IntParam(const std::map<std::string, std::string>& q, const std::string& key, int64_t fallback) {
  auto it = q.find(key);
  if (it == q.end() || it->second.empty()) return fallback;
  try {
    return std::stoll(it->second);
  } catch (...) {
    return fallback;
  }
}

bool BoolParam(const std::map<std::string, std::string>& q, const std::string& key) {
  auto it = q.find(key);
  return it != q.end() && (it->second == "true" || it->second == "1" || it->second.empty());
}

}  // namespace

Result<std::pair<std::string, std::string>> SelfSignedCertificate(const std::string& host) {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  if (key == nullptr) return MakeError(Phase::kInternal, "cannot generate an RSA key");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), static_cast<long>(time(nullptr)));
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
  X509_gmtime_adj(X509_getm_notAfter(cert), 365L * 24 * 3600);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("wasmlet-kubelet"),
                             -1, -1, 0);
  X509_set_issuer_name(cert, name);
  bool ip = !host.empty() && host.find_first_not_of("0123456789.:") == std::string::npos;
  std::string san = (ip ? "IP:" : "DNS:") + host;
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
  if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, san.c_str())) {
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }
  X509_sign(cert, key, EVP_sha256());
  auto to_pem = [](auto write) {
    BIO* bio = BIO_new(BIO_s_mem());
    write(bio);
    char* data = nullptr;
    long len = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<size_t>(len));
    BIO_free(bio);
    return out;
  };
  std::string cert_pem = to_pem([&](BIO* b) { PEM_write_bio_X509(b, cert); });
  std::string key_pem = to_pem([&](BIO* b) { PEM_write_bio_PrivateKey(b, key, nullptr, nullptr, 0, nullptr, nullptr); });
  X509_free(cert);
  EVP_PKEY_free(key);
  return std::make_pair(cert_pem, key_pem);
}

struct KubeletServer::Impl {
  PodManager& pods;
  KubeletServerOptions options;
  asio::io_context io;
  asio::ssl::context ssl{asio::ssl::context::tls_server};
  tcp::acceptor acceptor{io};
  std::thread accept_thread;
  std::atomic<bool> stopping{false};
  std::mutex mu;
  std::condition_variable cv;
  int connections = 0;  // guarded by mu

  Impl(PodManager& p, KubeletServerOptions o) : pods(p), options(std::move(o)) {}

  void AcceptLoop() {
    while (!stopping.load()) {
      tcp::socket socket(io);
      boost::system::error_code ec;
      acceptor.accept(socket, ec);
      if (ec) {
        if (stopping.load()) return;
        continue;
      }
      {
        std::lock_guard<std::mutex> lock(mu);
        if (connections >= options.max_connections) continue;  // closes the socket
        ++connections;
      }
      std::thread([this, s = std::move(socket)]() mutable {
        Serve(std::move(s));
        std::lock_guard<std::mutex> lock(mu);
        --connections;
        cv.notify_all();
      }).detach();
    }
  }

  void Serve(tcp::socket socket) {
    beast::ssl_stream<tcp::socket> stream(std::move(socket), ssl);
    boost::system::error_code ec;
    beast::get_lowest_layer(stream).non_blocking(false);
    stream.handshake(asio::ssl::stream_base::server, ec);
    if (ec) return;
    bool authenticated = options.client_ca_pem.empty() ||
                         (SSL_get_peer_certificate(stream.native_handle()) != nullptr &&
                          SSL_get_verify_result(stream.native_handle()) == X509_V_OK);
    beast::flat_buffer buffer;
    for (int requests = 0; requests < 100 && !stopping.load(); ++requests) {
      http::request<http::string_body> req;
      http::read(stream, buffer, req, ec);
      if (ec) break;
      bool keep = Handle(stream, req, authenticated, ec);
      if (ec || !keep) break;
    }
    stream.shutdown(ec);
  }

  template <class Stream>
  void Reply(Stream& stream, const http::request<http::string_body>& req, http::status status,
             const std::string& body, const std::string& type, boost::system::error_code& ec) {
    http::response<http::string_body> res{status, req.version()};
    res.set(http::field::content_type, type);
    res.keep_alive(req.keep_alive());
    res.body() = body;
    res.prepare_payload();
    http::write(stream, res, ec);
  }

  template <class Stream>
  bool Handle(Stream& stream, const http::request<http::string_body>& req, bool authenticated,
              boost::system::error_code& ec) {
    std::string target(req.target());
    std::string path = target, query;
    if (auto q = target.find('?'); q != std::string::npos) {
      path = target.substr(0, q);
      query = target.substr(q + 1);
    }
    if (path == "/healthz") {
      Reply(stream, req, http::status::ok, "ok", "text/plain", ec);
      return req.keep_alive();
    }
    if (!authenticated) {
      Reply(stream, req, http::status::unauthorized, "Unauthorized: a client certificate signed by the cluster CA is required\n",
            "text/plain", ec);
      return false;
    }
    auto parts = SplitPath(path);
    if (path == "/pods" || path == "/pods/") {
      Reply(stream, req, http::status::ok, pods.PodsJson().dump(), "application/json", ec);
      return req.keep_alive();
    }
    if (!parts.empty() && (parts[0] == "exec" || parts[0] == "attach" || parts[0] == "portForward" ||
                           parts[0] == "run")) {
      Reply(stream, req, http::status::not_implemented,
            parts[0] + " is not supported by wasmlet: WASI commands have no process to enter\n", "text/plain", ec);
      return req.keep_alive();
    }
    if (parts.size() == 4 && parts[0] == "containerLogs") {
      return Logs(stream, req, parts[1], parts[2], parts[3], ParseQuery(query), ec);
    }
    Reply(stream, req, http::status::not_found, "404 page not found\n", "text/plain", ec);
    return req.keep_alive();
  }

  template <class Stream>
  bool Logs(Stream& stream, const http::request<http::string_body>& req, const std::string& ns,
            const std::string& pod, const std::string& container, const std::map<std::string, std::string>& q,
            boost::system::error_code& ec) {
    bool previous = BoolParam(q, "previous");
    auto location = pods.FindLog(ns, pod, container, previous);
    if (!location) {
      Reply(stream, req, http::status::not_found,
            "container \"" + container + "\" in pod \"" + pod + "\" not found on this node" +
                (previous ? " (or has no previous run)" : "") + "\n",
            "text/plain", ec);
      return req.keep_alive();
    }
    LogReadOptions o;
    o.tail_lines = IntParam(q, "tailLines", -1);
    o.limit_bytes = IntParam(q, "limitBytes", -1);
    o.timestamps = BoolParam(q, "timestamps");
    int64_t since_seconds = IntParam(q, "sinceSeconds", -1);
    if (since_seconds >= 0) o.since = std::chrono::system_clock::now() - std::chrono::seconds(since_seconds);
    if (auto it = q.find("sinceTime"); it != q.end()) {
      if (auto t = ParseRfc3339(it->second); t.ok()) o.since = *t;
    }
    uint64_t offset = 0;
    std::string body = ReadLog(location->path, o, &offset);
    bool follow = BoolParam(q, "follow");
    if (!follow) {
      Reply(stream, req, http::status::ok, body, "text/plain", ec);
      return req.keep_alive();
    }
    // Follow: chunked response until the container stops or the client leaves.
    http::response<http::empty_body> res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain");
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    http::write_header(stream, sr, ec);
    if (ec) return false;
    int64_t budget = o.limit_bytes;
    auto send = [&](std::string data) {
      if (budget >= 0) {
        if (static_cast<int64_t>(data.size()) > budget) data.resize(static_cast<size_t>(budget));
        budget -= static_cast<int64_t>(data.size());
      }
      if (data.empty()) return true;
      asio::write(stream, http::make_chunk(asio::buffer(data)), ec);
      return !ec;
    };
    if (!send(body)) return false;
    while (!stopping.load() && budget != 0) {
      bool running = pods.ContainerRunning(ns, pod, container);
      std::string more = ReadLogFrom(location->path, offset, o.timestamps);
      if (!send(more)) return false;
      if (!running) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    asio::write(stream, http::make_chunk_last(), ec);
    return false;
  }
};

KubeletServer::KubeletServer(PodManager& pods, KubeletServerOptions options)
    : impl_(std::make_unique<Impl>(pods, std::move(options))) {}

KubeletServer::~KubeletServer() { Stop(); }

Status KubeletServer::Start() {
  auto& o = impl_->options;
  boost::system::error_code ec;
  if (o.cert_pem.empty()) {
    auto generated = SelfSignedCertificate(o.bind_address == "0.0.0.0" ? "127.0.0.1" : o.bind_address);
    if (!generated.ok()) return generated.take_error();
    o.cert_pem = generated->first;
    o.key_pem = generated->second;
  }
  impl_->ssl.use_certificate_chain(asio::buffer(o.cert_pem), ec);
  if (ec) return MakeError(Phase::kConfig, "kubelet TLS certificate: " + ec.message());
  impl_->ssl.use_private_key(asio::buffer(o.key_pem), asio::ssl::context::pem, ec);
  if (ec) return MakeError(Phase::kConfig, "kubelet TLS key: " + ec.message());
  if (!o.client_ca_pem.empty()) {
    impl_->ssl.add_certificate_authority(asio::buffer(o.client_ca_pem), ec);
    if (ec) return MakeError(Phase::kConfig, "kubelet client CA: " + ec.message());
    // Ask for a certificate; requests without one are refused in Handle (except /healthz).
    impl_->ssl.set_verify_mode(asio::ssl::verify_peer, ec);
    impl_->ssl.set_verify_callback([](bool, asio::ssl::verify_context&) { return true; }, ec);
  }
  auto address = asio::ip::make_address(o.bind_address, ec);
  if (ec) return MakeError(Phase::kConfig, "bad kubelet bind address '" + o.bind_address + "'");
  tcp::endpoint endpoint(address, o.port);
  impl_->acceptor.open(endpoint.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(endpoint, ec);
  if (!ec) impl_->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return MakeError(Phase::kNetwork, "kubelet API cannot listen: " + ec.message(),
                     o.bind_address + ":" + std::to_string(o.port));
  }
  port_ = impl_->acceptor.local_endpoint().port();
  impl_->accept_thread = std::thread([this] { impl_->AcceptLoop(); });
  WLOG_INFO("kubelet API on https://{}:{}", o.bind_address, port_);
  return OkStatus();
}

void KubeletServer::Stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  boost::system::error_code ec;
  impl_->acceptor.cancel(ec);
  impl_->acceptor.close(ec);
  // A blocking accept() is not woken by close on every platform: connect to ourselves.
  if (port_ != 0) {
    tcp::socket s(impl_->io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_), ec);
  }
  if (impl_->accept_thread.joinable()) impl_->accept_thread.join();
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->cv.wait_for(lock, std::chrono::seconds(2), [&] { return impl_->connections == 0; });
}

}  // namespace wasmlet::node
