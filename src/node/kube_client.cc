#include "node/kube_client.h"

#include <curl/curl.h>

#include <cstdio>
#include <ctime>
#include <mutex>
#include <thread>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "util/base64.h"
#include "util/files.h"
#include "util/log.h"

namespace wasmlet::node {
namespace {

// base64 decode for kubeconfig *-data fields.
Result<std::string> Base64Decode(const std::string& in) {
  auto decoded = ::wasmlet::Base64Decode(in);
  if (!decoded) return MakeError(Phase::kConfig, "invalid base64 data");
  return std::move(*decoded);
}

// A string field of an API object of any shape; missing or mistyped reads as "" (the API
// server's answers are parsed, never trusted to have the expected types).
std::string StringField(const Json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

bool IsApiObject(const Json& j) { return j.is_object() && j.contains("metadata") && j["metadata"].is_object(); }

YAML::Node FindNamed(const YAML::Node& list, const std::string& name) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& item : list) {
    if (item["name"] && item["name"].as<std::string>() == name) return item;
  }
  return YAML::Node();
}

// Reads `key-data` (base64) or `key` (a path relative to the kubeconfig's directory).
Result<std::string> DataOrFile(const YAML::Node& node, const std::string& key,
                               const std::string& base_dir) {
  if (node[key + "-data"]) return Base64Decode(node[key + "-data"].as<std::string>());
  if (node[key]) {
    std::string path = node[key].as<std::string>();
    if (!path.empty() && path[0] != '/') path = base_dir + "/" + path;
    return ReadFile(path);
  }
  return std::string();
}

}  // namespace

Result<KubeConfig> LoadKubeConfig(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return MakeError(Phase::kConfig, text.error().message, path);
  std::string base_dir = ".";
  if (auto slash = path.rfind('/'); slash != std::string::npos) base_dir = path.substr(0, slash);
  try {
    YAML::Node root = YAML::Load(*text);
    std::string context_name = root["current-context"] ? root["current-context"].as<std::string>() : "";
    YAML::Node context = FindNamed(root["contexts"], context_name);
    if (!context && root["contexts"] && root["contexts"].size() == 1) context = root["contexts"][0];
    if (!context) return MakeError(Phase::kConfig, "no current context", path);
    std::string cluster_name = context["context"]["cluster"].as<std::string>("");
    std::string user_name = context["context"]["user"].as<std::string>("");
    YAML::Node cluster = FindNamed(root["clusters"], cluster_name)["cluster"];
    if (!cluster || !cluster["server"]) {
      return MakeError(Phase::kConfig, "cluster '" + cluster_name + "' has no server", path);
    }
    KubeConfig config;
    config.server = cluster["server"].as<std::string>();
    while (!config.server.empty() && config.server.back() == '/') config.server.pop_back();
    config.insecure_skip_verify = cluster["insecure-skip-tls-verify"].as<bool>(false);
    auto ca = DataOrFile(cluster, "certificate-authority", base_dir);
    if (!ca.ok()) return MakeError(Phase::kConfig, ca.error().message, path);
    config.ca_pem = *ca;
    YAML::Node user = FindNamed(root["users"], user_name)["user"];
    if (user) {
      auto cert = DataOrFile(user, "client-certificate", base_dir);
      auto key = DataOrFile(user, "client-key", base_dir);
      if (!cert.ok()) return MakeError(Phase::kConfig, cert.error().message, path);
      if (!key.ok()) return MakeError(Phase::kConfig, key.error().message, path);
      config.client_cert_pem = *cert;
      config.client_key_pem = *key;
      if (user["token"]) config.token = user["token"].as<std::string>();
      if (user["tokenFile"]) {
        auto token = ReadFile(user["tokenFile"].as<std::string>());
        if (!token.ok()) return MakeError(Phase::kConfig, token.error().message, path);
        config.token = *token;
        while (!config.token.empty() && (config.token.back() == '\n' || config.token.back() == ' ')) {
          config.token.pop_back();
        }
      }
    }
    return config;
  } catch (const std::exception& e) {
    return MakeError(Phase::kConfig, std::string("invalid kubeconfig: ") + e.what(), path);
  }
}

namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

class CurlTransport final : public Transport {
 public:
  explicit CurlTransport(KubeConfig config) : config_(std::move(config)) {
    static CurlGlobal global;
    if (!config_.token.empty()) auth_header_ = "Authorization: Bearer " + config_.token;
  }
  ~CurlTransport() override {
    for (CURL* h : idle_) curl_easy_cleanup(h);
  }

  Result<HttpResponse> Do(const HttpRequest& request) override {
    HttpResponse response;
    std::atomic<bool> never{false};
    auto status = Perform(request, [&](std::string_view data) {
      response.body.append(data);
      return true;
    }, never);
    if (!status.ok()) return status.take_error();
    response.status = *status;
    return response;
  }

  Result<long> Stream(const HttpRequest& request,
                      const std::function<bool(std::string_view)>& on_data,
                      const std::atomic<bool>& stop) override {
    return Perform(request, on_data, stop);
  }

 private:
  struct Sink {
    const std::function<bool(std::string_view)>* on_data;
    const std::atomic<bool>* stop;
  };

  static size_t Write(char* data, size_t size, size_t n, void* user) {
    auto* sink = static_cast<Sink*>(user);
    if (sink->stop->load()) return 0;
    if (!(*sink->on_data)(std::string_view(data, size * n))) return 0;
    return size * n;
  }
  static int Progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<Sink*>(user)->stop->load() ? 1 : 0;
  }

  CURL* Acquire() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        CURL* h = idle_.back();
        idle_.pop_back();
        return h;
      }
    }
    return curl_easy_init();
  }
  void Release(CURL* h) {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < 16) {
      idle_.push_back(h);
    } else {
      curl_easy_cleanup(h);
    }
  }

  Result<long> Perform(const HttpRequest& request,
                       const std::function<bool(std::string_view)>& on_data,
                       const std::atomic<bool>& stop) {
    CURL* h = Acquire();
    curl_easy_reset(h);
    std::string url = config_.server + request.path;
    curl_easy_setopt(h, CURLOPT_URL, url.c_str());
    curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
    if (request.timeout.count() == 0) {
      // Watches: detect a dead server without a whole-request timeout.
      curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
      curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
      curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
      curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
      curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 600L);
    }
    if (request.method == "HEAD") curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
    if (!request.body.empty() || request.method == "POST" || request.method == "PUT" ||
        request.method == "PATCH") {
      curl_easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
      curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
    }
    curl_slist* headers = nullptr;
    std::string content_type = "Content-Type: " + request.content_type;
    headers = curl_slist_append(headers, content_type.c_str());
    headers = curl_slist_append(headers, "Accept: application/json");
    if (!auth_header_.empty()) headers = curl_slist_append(headers, auth_header_.c_str());
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "wasmlet-node/0.1");

    curl_blob ca{}, cert{}, key{};
    if (!config_.ca_pem.empty()) {
      ca = {config_.ca_pem.data(), config_.ca_pem.size(), CURL_BLOB_NOCOPY};
      curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (!config_.client_cert_pem.empty()) {
      cert = {config_.client_cert_pem.data(), config_.client_cert_pem.size(), CURL_BLOB_NOCOPY};
      key = {config_.client_key_pem.data(), config_.client_key_pem.size(), CURL_BLOB_NOCOPY};
      curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
      curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
      curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
      curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (config_.insecure_skip_verify) {
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    Sink sink{&on_data, &stop};
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &CurlTransport::Write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, &CurlTransport::Progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &sink);

    CURLcode rc = curl_easy_perform(h);
    long status = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    Release(h);
    if (rc != CURLE_OK) {
      // A stream ended by us (stop or on_data false) is not an error.
      if ((rc == CURLE_WRITE_ERROR || rc == CURLE_ABORTED_BY_CALLBACK) && status != 0) return status;
      return MakeError(Phase::kNetwork, curl_easy_strerror(rc), request.method + " " + url);
    }
    return status;
  }

  KubeConfig config_;
  std::string auth_header_;
  std::mutex mu_;
  std::vector<CURL*> idle_;
};

}  // namespace

std::unique_ptr<Transport> CreateCurlTransport(const KubeConfig& config) {
  return std::make_unique<CurlTransport>(config);
}

long KubeClient::StatusOf(const Error& error) {
  if (error.where.rfind("status=", 0) == 0) return std::atol(error.where.c_str() + 7);
  return 0;
}

Result<Json> KubeClient::Call(const std::string& method, const std::string& path,
                              const std::string& body, const std::string& content_type) {
  HttpRequest request;
  request.method = method;
  request.path = path;
  request.body = body;
  request.content_type = content_type;
  auto response = transport_->Do(request);
  if (!response.ok()) return response.take_error();
  Json parsed = Json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (response->status < 200 || response->status >= 300) {
    std::string message = parsed.is_object() && parsed.contains("message") && parsed["message"].is_string()
                              ? parsed["message"].get<std::string>()
                              : response->body.substr(0, 200);
    return MakeError(Phase::kNetwork,
                     "HTTP " + std::to_string(response->status) + ": " + method + " " + path + ": " + message,
                     "status=" + std::to_string(response->status));
  }
  if (parsed.is_discarded()) {
    return MakeError(Phase::kNetwork, "invalid JSON from the API server", method + " " + path);
  }
  return parsed;
}

Result<Json> KubeClient::Get(const std::string& path) { return Call("GET", path, "", "application/json"); }
Result<Json> KubeClient::Create(const std::string& path, const Json& body) {
  return Call("POST", path, body.dump(), "application/json");
}
Result<Json> KubeClient::Put(const std::string& path, const Json& body) {
  return Call("PUT", path, body.dump(), "application/json");
}
Result<Json> KubeClient::MergePatch(const std::string& path, const Json& patch) {
  return Call("PATCH", path, patch.dump(), "application/merge-patch+json");
}
Result<Json> KubeClient::StrategicPatch(const std::string& path, const Json& patch) {
  return Call("PATCH", path, patch.dump(), "application/strategic-merge-patch+json");
}
Result<Json> KubeClient::Delete(const std::string& path, const Json& options) {
  return Call("DELETE", path, options.empty() ? "" : options.dump(), "application/json");
}

void KubeClient::ListWatch(const std::string& path, const std::function<void(const Json&)>& on_list,
                           const std::function<void(const std::string&, const Json&)>& on_event,
                           const std::atomic<bool>& stop) {
  const char* sep = path.find('?') == std::string::npos ? "?" : "&";
  std::string resource_version;
  auto backoff = std::chrono::milliseconds(500);
  auto sleep_for = [&](std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!stop.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  while (!stop.load()) {
    if (resource_version.empty()) {
      auto list = Get(path);
      if (!list.ok()) {
        WLOG_WARN("list {}: {}; retrying in {} ms", path, list.error().message, backoff.count());
        sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
        continue;
      }
      if (!list->is_object()) {  // e.g. a proxy's answer: never a crash, retried as a failure
        WLOG_WARN("list {}: the answer is not a JSON object; retrying in {} ms", path, backoff.count());
        sleep_for(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
        continue;
      }
      resource_version = StringField((*list)["metadata"], "resourceVersion");
      // Every API object is a JSON object with metadata: handlers get nothing else.
      Json items = Json::array();
      if ((*list)["items"].is_array()) {
        for (const auto& item : (*list)["items"]) {
          if (IsApiObject(item)) items.push_back(item);
        }
      }
      on_list(items);
    }
    HttpRequest request;
    request.path = path + sep + "watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=" +
                   UrlEncode(resource_version);
    request.timeout = std::chrono::milliseconds(0);
    std::string buffer;
    bool gone = false;
    auto status = transport_->Stream(request, [&](std::string_view data) {
      buffer.append(data);
      size_t nl;
      while ((nl = buffer.find('\n')) != std::string::npos) {
        std::string line = buffer.substr(0, nl);
        buffer.erase(0, nl + 1);
        if (line.empty()) continue;
        Json event = Json::parse(line, nullptr, false);
        if (!event.is_object()) continue;
        std::string type = StringField(event, "type");
        const Json& object = event["object"];
        if (type == "ERROR") {
          if (object.is_object() && object.contains("code") && object["code"] == 410) gone = true;
          std::string message = StringField(object, "message");
          WLOG_INFO("watch {}: {}", path, message.empty() ? std::string("error event") : message);
          return false;
        }
        if (object.is_object() && object.contains("metadata")) {
          std::string rv = StringField(object["metadata"], "resourceVersion");
          if (!rv.empty()) resource_version = rv;
        }
        if (type == "BOOKMARK" || !IsApiObject(object)) continue;
        on_event(type, object);
      }
      return true;
    }, stop);
    if (stop.load()) break;
    if (!status.ok()) {
      WLOG_WARN("watch {}: {}; retrying in {} ms", path, status.error().message, backoff.count());
      sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
      continue;
    }
    if (*status == 410 || gone) {
      resource_version.clear();  // relist
      continue;
    }
    if (*status != 200) {
      WLOG_WARN("watch {}: HTTP {}; retrying in {} ms", path, *status, backoff.count());
      sleep_for(backoff);
      backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
      continue;
    }
    backoff = std::chrono::milliseconds(500);
  }
}

std::string UrlEncode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

std::string FormatRfc3339(std::chrono::system_clock::time_point t) {
  std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string NowRfc3339() { return FormatRfc3339(std::chrono::system_clock::now()); }

std::string NowMicroTime() {
  auto now = std::chrono::system_clock::now();
  std::time_t tt = std::chrono::system_clock::to_time_t(now);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(now.time_since_epoch()).count() % 1000000;
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[48];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%06lldZ", buf, static_cast<long long>(micros));
  return out;
}

Result<std::chrono::system_clock::time_point> ParseRfc3339(const std::string& text) {
  std::tm tm{};
  const char* end = strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (end == nullptr) return MakeError(Phase::kNetwork, "bad timestamp '" + text + "'");
  std::chrono::system_clock::time_point t = std::chrono::system_clock::from_time_t(timegm(&tm));
  if (*end == '.') {
    ++end;
    long long frac = 0;
    int digits = 0;
    while (*end >= '0' && *end <= '9') {
      if (digits < 9) {
        frac = frac * 10 + (*end - '0');
        ++digits;
      }
      ++end;
    }
    while (digits < 9) {
      frac *= 10;
      ++digits;
    }
    t += std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(frac));
  }
  return t;
}

}  // namespace wasmlet::node
