// libcurl implementation of HttpTransport. Handles are pooled so connections are reused.
#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <mutex>
#include <string>

#include "oci/http.h"

namespace wasmlet::oci {
namespace {

struct Transfer {
  CURL* curl = nullptr;
  const BodySink* sink = nullptr;
  HttpResponse* response = nullptr;
  Error sink_error;
  bool sink_failed = false;
};

size_t OnHeader(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string_view line(data, size * count);
  // A new status line (after a 100 Continue) starts a fresh header set.
  if (line.substr(0, 5) == "HTTP/") {
    t->response->headers.clear();
    return size * count;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * count;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  t->response->headers.emplace(std::move(name), std::string(value));
  return size * count;
}

size_t OnBody(char* data, size_t size, size_t count, void* user) {
  auto* t = static_cast<Transfer*>(user);
  long code = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &code);
  std::string_view chunk(data, size * count);
  if (t->sink != nullptr && code >= 200 && code < 300) {
    Status s = (*t->sink)(chunk);
    if (!s.ok()) {
      t->sink_error = s.take_error();
      t->sink_failed = true;
      return 0;  // aborts the transfer
    }
  } else {
    if (t->response->body.size() + chunk.size() > (64u << 20)) return 0;  // absurd error body
    t->response->body.append(chunk);
  }
  return size * count;
}

class CurlTransport final : public HttpTransport {
 public:
  explicit CurlTransport(CurlOptions options) : options_(std::move(options)) {
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }
  ~CurlTransport() override {
    for (CURL* c : pool_) curl_easy_cleanup(c);
  }

  HttpResponse Send(const HttpRequest& request, const BodySink* sink) override {
    CURL* curl = Acquire();
    HttpResponse response;
    Transfer t{curl, sink, &response, {}, false};
    curl_easy_reset(curl);
    curl_easy_setopt(curl, CURLOPT_URL, request.url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "wasmlet");
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.connect_timeout.count()));
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options_.stall_timeout.count()));
    curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");  // accept what libcurl can decode
    if (!options_.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, options_.ca_file.c_str());
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, OnHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, OnBody);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    if (request.method == "HEAD") {
      curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
    } else if (request.method != "GET") {
      curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, request.method.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(request.body.size()));
    }
    curl_slist* headers = nullptr;
    bool has_content_type = false;
    for (const auto& [name, value] : request.headers) {
      headers = curl_slist_append(headers, (name + ": " + value).c_str());
      if (name == "Content-Type") has_content_type = true;
    }
    headers = curl_slist_append(headers, "Expect:");
    if (!has_content_type) headers = curl_slist_append(headers, "Content-Type:");
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    if (t.sink_failed) {
      response.status = 0;
      response.error = t.sink_error.message;
      response.retryable = false;
    } else if (rc != CURLE_OK) {
      response.status = 0;
      response.error = curl_easy_strerror(rc);
      if (rc == CURLE_OPERATION_TIMEDOUT) {
        // Say which limit tripped: the connect timeout or the stall (idle) timeout.
        double connect_time = 0;
        curl_easy_getinfo(curl, CURLINFO_CONNECT_TIME, &connect_time);
        response.error =
            connect_time <= 0
                ? "connection timed out after " + std::to_string(options_.connect_timeout.count()) + " s"
                : "transfer stalled: no data received for " +
                      std::to_string(options_.stall_timeout.count()) + " s";
      }
      response.retryable = rc == CURLE_OPERATION_TIMEDOUT || rc == CURLE_COULDNT_CONNECT ||
                           rc == CURLE_RECV_ERROR || rc == CURLE_SEND_ERROR ||
                           rc == CURLE_GOT_NOTHING || rc == CURLE_PARTIAL_FILE;
    } else {
      long code = 0;
      curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
      response.status = static_cast<int>(code);
    }
    Release(curl);
    return response;
  }

 private:
  CURL* Acquire() {
    {
      std::lock_guard lock(mu_);
      if (!pool_.empty()) {
        CURL* c = pool_.back();
        pool_.pop_back();
        return c;
      }
    }
    return curl_easy_init();
  }
  void Release(CURL* curl) {
    std::lock_guard lock(mu_);
    if (pool_.size() < 8) {
      pool_.push_back(curl);
    } else {
      curl_easy_cleanup(curl);
    }
  }

  CurlOptions options_;
  std::mutex mu_;
  std::vector<CURL*> pool_;  // GUARDED_BY(mu_)
};

}  // namespace

std::unique_ptr<HttpTransport> MakeCurlTransport(CurlOptions options) {
  return std::make_unique<CurlTransport>(std::move(options));
}

}  // namespace wasmlet::oci
