// The HTTP transport under the registry client, injectable (STYLE.md 5): production uses
// libcurl (MakeCurlTransport); unit tests pass a fake that scripts statuses and faults.
//
// A transport sends exactly one request: it never follows redirects, retries or authenticates;
// the registry client does those, so they are tested without a network.
// Threading: Send may be called from any number of threads at once.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace wasmlet::oci {

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string_view body;  // must outlive Send
};

struct HttpResponse {
  // 0 if the request failed below HTTP (connection refused, timeout, TLS); see `error`.
  int status = 0;
  std::string error;       // transport failure description (status 0)
  bool retryable = false;  // transport failure worth retrying (timeout, reset, refused)
  std::multimap<std::string, std::string> headers;  // names lower-cased
  std::string body;  // the body, unless it went to the sink

  // First value of a header (name in lower case), or "".
  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Receives the body of a 2xx response in chunks; an Error aborts the transfer and is returned
// from Send as the response error (status 0, not retryable).
using BodySink = std::function<Status(std::string_view chunk)>;

class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // `sink` may be null: the body is then collected in HttpResponse::body. Bodies of non-2xx
  // responses always go to HttpResponse::body.
  virtual HttpResponse Send(const HttpRequest& request, const BodySink* sink) = 0;
};

struct CurlOptions {
  std::chrono::seconds connect_timeout{10};
  // A transfer slower than 1 byte/s for this long is aborted (a timeout, retryable).
  std::chrono::seconds stall_timeout{30};
  std::string ca_file;  // empty: the system CA store
};

std::unique_ptr<HttpTransport> MakeCurlTransport(CurlOptions options = {});

}  // namespace wasmlet::oci
