// Kubernetes REST client on an injected HTTP transport (libcurl in production, fakes in tests).
//
// Threading: KubeClient is thread-safe (the curl transport keeps a pool of handles); Watch
// blocks the calling thread until its stop flag is set.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "util/result.h"

namespace wasmlet::node {

using Json = nlohmann::json;

// What a kubeconfig gives us: where the API server is and how to prove who we are.
struct KubeConfig {
  std::string server;           // https://127.0.0.1:6443
  std::string ca_pem;           // empty: system trust store
  std::string client_cert_pem;  // client certificate authentication
  std::string client_key_pem;
  std::string token;            // bearer token authentication
  bool insecure_skip_verify = false;
};

// Reads the current context of a kubeconfig (YAML or JSON); file and inline (-data) forms.
Result<KubeConfig> LoadKubeConfig(const std::string& path);

struct HttpRequest {
  std::string method = "GET";
  std::string path;  // "/api/v1/pods?watch=1", appended to the server URL
  std::string body;
  std::string content_type = "application/json";
  std::chrono::milliseconds timeout{30000};  // whole request; 0 = none (watches)
};

struct HttpResponse {
  long status = 0;
  std::string body;
};

// The network, injected. Errors are transport failures (connection refused, TLS, timeout);
// any HTTP status is a response.
class Transport {
 public:
  virtual ~Transport() = default;
  virtual Result<HttpResponse> Do(const HttpRequest& request) = 0;
  // Streams the response body to on_data as it arrives (watches). Returning false from
  // on_data, or `stop` becoming true, ends the stream. Returns the HTTP status.
  virtual Result<long> Stream(const HttpRequest& request,
                              const std::function<bool(std::string_view)>& on_data,
                              const std::atomic<bool>& stop) = 0;
};

std::unique_ptr<Transport> CreateCurlTransport(const KubeConfig& config);

// Thin helpers over the REST API. Errors are Phase kNetwork, message "HTTP <status>: <message
// from the Status object>" (or the transport failure); StatusOf recovers the status.
class KubeClient {
 public:
  explicit KubeClient(std::unique_ptr<Transport> transport) : transport_(std::move(transport)) {}

  Result<Json> Get(const std::string& path);
  Result<Json> Create(const std::string& path, const Json& body);
  Result<Json> Put(const std::string& path, const Json& body);
  // Merge patch (application/merge-patch+json) or strategic merge patch.
  Result<Json> MergePatch(const std::string& path, const Json& patch);
  Result<Json> StrategicPatch(const std::string& path, const Json& patch);
  Result<Json> Delete(const std::string& path, const Json& options = Json::object());

  // Lists then watches `path` (a collection URL, optionally with ?labelSelector/fieldSelector)
  // until `stop`: on_list receives the full list (at start and after every relist, e.g. on
  // 410 Gone), on_event each watch event (ADDED/MODIFIED/DELETED). Bookmarks advance the
  // resourceVersion silently. Transport failures back off (0.5 s doubling to 8 s) and resume.
  void ListWatch(const std::string& path, const std::function<void(const Json& items)>& on_list,
                 const std::function<void(const std::string& type, const Json& object)>& on_event,
                 const std::atomic<bool>& stop);

  Transport& transport() { return *transport_; }

  // HTTP status of an Error from this client (0 for transport failures).
  static long StatusOf(const Error& error);

 private:
  Result<Json> Call(const std::string& method, const std::string& path, const std::string& body,
                    const std::string& content_type);
  std::unique_ptr<Transport> transport_;
};

// "/api/v1/namespaces/ns/pods/name" style path helpers.
std::string UrlEncode(std::string_view s);

// RFC 3339 timestamps as the API server writes them.
std::string NowRfc3339();
std::string NowMicroTime();  // 2006-01-02T15:04:05.000000Z (Lease renewTime)
std::string FormatRfc3339(std::chrono::system_clock::time_point t);
// Parses "2006-01-02T15:04:05Z" (fractional seconds allowed); nullopt-like error on failure.
Result<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& text);

}  // namespace wasmlet::node
