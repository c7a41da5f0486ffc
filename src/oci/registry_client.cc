#include "oci/registry_client.h"

#include <algorithm>
#include <cctype>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "oci/json_util.h"
#include "oci/media_types.h"
#include "store/blob_store.h"
#include "util/log.h"
#include "util/sha256.h"

namespace wasmlet::oci {
namespace {

std::string Lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// "https://host:port/path" -> "host:port"
std::string UrlHost(const std::string& url) {
  size_t start = url.find("://");
  start = start == std::string::npos ? 0 : start + 3;
  size_t end = url.find_first_of("/?#", start);
  return url.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

std::string UrlScheme(const std::string& url) {
  size_t colon = url.find("://");
  return colon == std::string::npos ? std::string() : Lower(url.substr(0, colon));
}

const char* ReasonPhrase(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Payload Too Large";
    case 416: return "Range Not Satisfiable";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "";
  }
}

// The registry's own explanation: {"errors":[{"code":"...","message":"..."}]}.
std::string RegistryErrorText(const std::string& body) {
  auto json = nlohmann::json::parse(body, nullptr, false);
  if (!json.is_object() || !json.contains("errors") || !json["errors"].is_array()) return {};
  std::string out;
  for (const auto& e : json["errors"]) {
    if (!e.is_object()) continue;
    if (!out.empty()) out += "; ";
    out += StringField(e, "code");
    std::string message = StringField(e, "message");
    if (!message.empty()) out += (out.empty() ? "" : ": ") + message;
  }
  return out;
}

bool IsRedirect(int status) {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

std::string JoinQuery(const std::string& url, const std::string& param) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + param;
}

}  // namespace

Challenge ParseChallenge(std::string_view header) {
  Challenge c;
  size_t i = 0;
  while (i < header.size() && header[i] == ' ') ++i;
  size_t start = i;
  while (i < header.size() && header[i] != ' ') ++i;
  c.scheme = Lower(std::string(header.substr(start, i - start)));
  while (i < header.size()) {
    while (i < header.size() && (header[i] == ' ' || header[i] == ',')) ++i;
    size_t key_start = i;
    while (i < header.size() && header[i] != '=' && header[i] != ',') ++i;
    std::string key = Lower(std::string(header.substr(key_start, i - key_start)));
    while (!key.empty() && key.back() == ' ') key.pop_back();
    if (i >= header.size() || header[i] != '=') continue;
    ++i;
    std::string value;
    if (i < header.size() && header[i] == '"') {
      ++i;
      while (i < header.size() && header[i] != '"') {
        if (header[i] == '\\' && i + 1 < header.size()) ++i;
        value.push_back(header[i++]);
      }
      ++i;
    } else {
      while (i < header.size() && header[i] != ',') value.push_back(header[i++]);
      while (!value.empty() && value.back() == ' ') value.pop_back();
    }
    if (!key.empty()) c.params[key] = value;
  }
  return c;
}

std::string ResolveUrl(const std::string& base, const std::string& location) {
  if (location.find("://") != std::string::npos) return location;
  std::string scheme = UrlScheme(base);
  std::string origin = scheme + "://" + UrlHost(base);
  if (location.rfind("//", 0) == 0) return scheme + ":" + location;
  if (!location.empty() && location.front() == '/') return origin + location;
  std::string path = base.substr(origin.size());
  path = path.substr(0, path.find_first_of("?#"));
  size_t slash = path.rfind('/');
  return origin + (slash == std::string::npos ? "/" : path.substr(0, slash + 1)) + location;
}

std::string PercentEncode(std::string_view text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string RedactUrl(const std::string& url) { return url.substr(0, url.find('?')); }

RegistryClient::RegistryClient(HttpTransport& transport, const CredentialSource* credentials,
                               ClientOptions options)
    : transport_(transport), credentials_(credentials), options_(std::move(options)) {
  if (options_.retry.max_attempts < 1) options_.retry.max_attempts = 1;
}

bool RegistryClient::PlainHttpAllowed(const std::string& host) const {
  if (IsLoopbackRegistry(host)) return true;
  return std::find(options_.insecure_registries.begin(), options_.insecure_registries.end(),
                   host) != options_.insecure_registries.end();
}

std::string RegistryClient::BaseUrl(const Reference& ref) const {
  std::string host = ref.ApiHost();
  bool plain = PlainHttpAllowed(ref.registry) || PlainHttpAllowed(host);
  return (plain ? "http://" : "https://") + host;
}

void RegistryClient::Sleep(std::chrono::milliseconds d) const {
  if (options_.sleep) {
    options_.sleep(d);
  } else {
    std::this_thread::sleep_for(d);
  }
}

std::string RegistryClient::AuthHeader(const Reference& ref, bool push) {
  std::lock_guard lock(mu_);
  std::string base = ref.registry + "|" + ref.repository + "|";
  if (auto it = auth_.find(base + "push"); it != auth_.end()) return it->second;
  if (!push) {
    if (auto it = auth_.find(base + "pull"); it != auth_.end()) return it->second;
  }
  if (auto it = auth_.find(ref.registry); it != auth_.end()) return it->second;
  return {};
}

Status RegistryClient::Authenticate(const Reference& ref, const std::string& header, bool push,
                                    const std::string& what) {
  Challenge challenge = ParseChallenge(header);
  std::optional<Credentials> creds;
  if (credentials_ != nullptr) creds = credentials_->Lookup(ref.registry);
  if (challenge.scheme == "basic") {
    if (!creds || creds->username.empty()) {
      return MakeError(Phase::kPull,
                       what + ": " + ref.registry + " requires authentication and no credentials "
                       "were found (use --username with --password-stdin, "
                       "WASMLET_REGISTRY_USERNAME/WASMLET_REGISTRY_PASSWORD, or docker login)");
    }
    std::lock_guard lock(mu_);
    auth_[ref.registry] = "Basic " + Base64Encode(creds->username + ":" + creds->password);
    return OkStatus();
  }
  if (challenge.scheme != "bearer") {
    return MakeError(Phase::kPull, what + ": unsupported authentication scheme \"" +
                                       challenge.scheme + "\" requested by " + ref.registry);
  }
  std::string realm = challenge.params["realm"];
  if (realm.empty()) {
    return MakeError(Phase::kPull, what + ": Bearer challenge from " + ref.registry + " has no realm");
  }
  if (UrlScheme(realm) == "http" && !PlainHttpAllowed(UrlHost(realm))) {
    return MakeError(Phase::kPull, what + ": refusing to send credentials to the plain-HTTP token "
                                          "realm " + RedactUrl(realm) +
                                          " (use --insecure-registry " + UrlHost(realm) + ")");
  }
  std::string scope = "repository:" + ref.repository + (push ? ":pull,push" : ":pull");
  if (!push && !challenge.params["scope"].empty()) scope = challenge.params["scope"];
  std::string service = challenge.params["service"];

  HttpRequest token_request;
  if (creds && !creds->identity_token.empty()) {
    token_request.method = "POST";
    token_request.url = realm;
    token_request.headers.emplace_back("Content-Type", "application/x-www-form-urlencoded");
  } else {
    token_request.url = realm;
    if (!service.empty()) token_request.url = JoinQuery(token_request.url, "service=" + PercentEncode(service));
    token_request.url = JoinQuery(token_request.url, "scope=" + PercentEncode(scope));
    if (creds && !creds->username.empty()) {
      token_request.headers.emplace_back(
          "Authorization", "Basic " + Base64Encode(creds->username + ":" + creds->password));
    }
  }
  std::string form;
  if (token_request.method == "POST") {
    form = "grant_type=refresh_token&client_id=wasmlet&service=" + PercentEncode(service) +
           "&scope=" + PercentEncode(scope) + "&refresh_token=" + PercentEncode(creds->identity_token);
    token_request.body = form;
  }
  auto backoff = options_.retry.initial_backoff;
  HttpResponse response;
  for (int attempt = 1;; ++attempt) {
    response = transport_.Send(token_request, nullptr);
    bool transient = (response.status == 0 && response.retryable) || response.status == 429 ||
                     response.status >= 500;
    if (!transient || attempt >= options_.retry.max_attempts) break;
    Sleep(backoff);
    backoff = std::min(backoff * 2, options_.retry.max_backoff);
  }
  if (response.status == 0) {
    return MakeError(Phase::kPull, what + ": token request to " + RedactUrl(realm) + " failed: " +
                                       response.error);
  }
  if (response.status == 401 || response.status == 403) {
    return MakeError(Phase::kPull, what + ": the token server " + RedactUrl(realm) + " rejected " +
                                       (creds ? "the credentials" : "anonymous access") + " (HTTP " +
                                       std::to_string(response.status) + ")");
  }
  if (response.status != 200) {
    return MakeError(Phase::kPull, what + ": token server " + RedactUrl(realm) + " answered HTTP " +
                                       std::to_string(response.status));
  }
  auto json = nlohmann::json::parse(response.body, nullptr, false);
  std::string token;
  if (json.is_object()) {
    if (json.contains("token") && json["token"].is_string()) token = json["token"];
    if (token.empty() && json.contains("access_token") && json["access_token"].is_string()) {
      token = json["access_token"];
    }
  }
  if (token.empty()) {
    return MakeError(Phase::kPull, what + ": token server " + RedactUrl(realm) + " returned no token");
  }
  std::lock_guard lock(mu_);
  auth_[ref.registry + "|" + ref.repository + (push ? "|push" : "|pull")] = "Bearer " + token;
  return OkStatus();
}

Result<RegistryClient::Reply> RegistryClient::Do(const Reference& ref, HttpRequest request,
                                                 const CallOptions& call, const std::string& what) {
  const std::string registry_host = UrlHost(request.url);
  std::string url = request.url;
  bool auth_retried = false;
  int redirects = 0;
  Reply reply;
  auto backoff = options_.retry.initial_backoff;
  auto retry_later = [&](std::chrono::milliseconds at_least) -> bool {
    if (!call.retry || reply.attempts >= options_.retry.max_attempts) return false;
    Sleep(std::max(backoff, at_least));
    backoff = std::min(backoff * 2, options_.retry.max_backoff);
    return true;
  };
  for (;;) {
    HttpRequest r = request;
    r.url = url;
    bool same_host = UrlHost(url) == registry_host;
    if (same_host) {
      std::string auth = AuthHeader(ref, call.push);
      if (!auth.empty()) r.headers.emplace_back("Authorization", auth);
    }
    if (reply.attempts > 0 && call.restart != nullptr && *call.restart) {
      if (auto s = (*call.restart)(); !s.ok()) return s.take_error();
    }
    ++reply.attempts;
    WLOG_DEBUG("{} {} (attempt {})", r.method, RedactUrl(url), reply.attempts);
    reply.response = transport_.Send(r, call.sink);
    HttpResponse& resp = reply.response;
    if (resp.status == 0) {
      if (resp.retryable && retry_later(std::chrono::milliseconds(0))) {
        WLOG_WARN("{}: {}; retrying", what, resp.error);
        continue;
      }
      std::string attempts =
          reply.attempts > 1 ? " (after " + std::to_string(reply.attempts) + " attempts)" : "";
      return MakeError(Phase::kPull, what + ": " + resp.error + attempts, RedactUrl(url));
    }
    if (resp.status == 401 && same_host && !auth_retried) {
      auth_retried = true;
      --reply.attempts;
      std::string challenge = resp.Header("www-authenticate");
      if (challenge.empty()) return reply;
      if (auto s = Authenticate(ref, challenge, call.push, what); !s.ok()) return s.take_error();
      continue;
    }
    if (IsRedirect(resp.status)) {
      --reply.attempts;
      std::string location = resp.Header("location");
      if (location.empty() || ++redirects > 10) {
        return MakeError(Phase::kPull, what + ": " +
                                           (location.empty() ? "redirect without a Location"
                                                             : "more than 10 redirects"),
                         RedactUrl(url));
      }
      std::string next = ResolveUrl(url, location);
      std::string scheme = UrlScheme(next);
      if (scheme != "https" && !(scheme == "http" && PlainHttpAllowed(UrlHost(next)))) {
        return MakeError(Phase::kPull, what + ": refusing a redirect to " + RedactUrl(next) +
                                           " (plain HTTP is allowed only for loopback and "
                                           "--insecure-registry hosts)");
      }
      url = next;
      continue;
    }
    if (resp.status == 429 || resp.status >= 500) {
      std::chrono::milliseconds wait{0};
      std::string retry_after = resp.Header("retry-after");
      if (!retry_after.empty() && std::all_of(retry_after.begin(), retry_after.end(), ::isdigit) &&
          retry_after.size() < 6) {
        wait = std::min<std::chrono::milliseconds>(std::chrono::seconds(std::stoi(retry_after)),
                                                   std::chrono::seconds(30));
      }
      if (retry_later(wait)) {
        WLOG_WARN("{}: HTTP {}; retrying", what, resp.status);
        continue;
      }
    }
    return reply;
  }
}

Error RegistryClient::StatusError(const std::string& what, const Reference& ref,
                                  const Reply& reply) const {
  const HttpResponse& resp = reply.response;
  std::string message = what + ": HTTP " + std::to_string(resp.status);
  if (*ReasonPhrase(resp.status) != '\0') message += std::string(" ") + ReasonPhrase(resp.status);
  std::string detail = RegistryErrorText(resp.body);
  if (!detail.empty()) message += " (" + detail + ")";
  if (resp.status == 401 || resp.status == 403) {
    bool have_creds = credentials_ != nullptr && credentials_->Lookup(ref.registry).has_value();
    message += have_creds ? ": the registry rejected the credentials"
                          : ": authentication required and no credentials were found";
  }
  if (reply.attempts > 1) message += " after " + std::to_string(reply.attempts) + " attempts";
  return MakeError(Phase::kPull, message, ref.String());
}

Result<FetchedManifest> RegistryClient::GetManifest(const Reference& ref, const std::string& target) {
  HttpRequest request;
  request.url = BaseUrl(ref) + "/v2/" + ref.repository + "/manifests/" + target;
  request.headers.emplace_back(
      "Accept", std::string(kOciManifest) + ", " + std::string(kOciIndex) + ", " +
                    std::string(kDockerManifest) + ", " + std::string(kDockerManifestList));
  std::string what = "fetching manifest " + target;
  auto reply = Do(ref, request, {}, what);
  if (!reply.ok()) return reply.take_error();
  HttpResponse& resp = reply->response;
  if (resp.status == 404) {
    return MakeError(Phase::kPull, "manifest " + target + " not found in " + ref.registry + "/" +
                                       ref.repository, ref.String());
  }
  if (resp.status != 200) return StatusError(what, ref, *reply);
  if (resp.body.size() > options_.max_manifest_bytes) {
    return MakeError(Phase::kPull, what + ": manifest of " + std::to_string(resp.body.size()) +
                                       " bytes exceeds the limit", ref.String());
  }
  FetchedManifest m;
  m.bytes = std::move(resp.body);
  m.digest = "sha256:" + Sha256Hex(m.bytes);
  if (target.rfind("sha256:", 0) == 0 && m.digest != target) {
    return MakeError(Phase::kPull, what + ": the registry returned content with digest " + m.digest,
                     ref.String());
  }
  std::string header_digest = resp.Header("docker-content-digest");
  if (!header_digest.empty() && header_digest != m.digest) {
    return MakeError(Phase::kPull, what + ": Docker-Content-Digest " + header_digest +
                                       " does not match the content (" + m.digest + ")",
                     ref.String());
  }
  auto json = nlohmann::json::parse(m.bytes, nullptr, false);
  if (!json.is_object()) return MakeError(Phase::kPull, what + ": manifest is not a JSON object", ref.String());
  if (json.contains("mediaType") && json["mediaType"].is_string()) {
    m.media_type = json["mediaType"];
  } else {
    m.media_type = resp.Header("content-type");
    m.media_type = m.media_type.substr(0, m.media_type.find(';'));
  }
  return m;
}

Result<std::string> RegistryClient::HeadManifest(const Reference& ref, const std::string& target) {
  HttpRequest request;
  request.method = "HEAD";
  request.url = BaseUrl(ref) + "/v2/" + ref.repository + "/manifests/" + target;
  request.headers.emplace_back(
      "Accept", std::string(kOciManifest) + ", " + std::string(kOciIndex) + ", " +
                    std::string(kDockerManifest) + ", " + std::string(kDockerManifestList));
  std::string what = "checking manifest " + target;
  auto reply = Do(ref, request, {}, what);
  if (!reply.ok()) return reply.take_error();
  if (reply->response.status == 404) {
    return MakeError(Phase::kPull, "manifest " + target + " not found in " + ref.registry + "/" +
                                       ref.repository, ref.String());
  }
  if (reply->response.status != 200) return StatusError(what, ref, *reply);
  std::string digest = reply->response.Header("docker-content-digest");
  return store::DigestHex(digest).ok() ? digest : std::string();
}

Status RegistryClient::FetchBlob(const Reference& ref, const std::string& digest, uint64_t size,
                                 const BodySink& sink, const std::function<Status()>& restart) {
  HttpRequest request;
  request.url = BaseUrl(ref) + "/v2/" + ref.repository + "/blobs/" + digest;
  uint64_t done = 0;
  // The sink's own error (e.g. ENOSPC naming the temp file) is returned as is: the transport
  // only carries its message.
  std::optional<Error> sink_error;
  BodySink counting = [&](std::string_view chunk) -> Status {
    done += chunk.size();
    if (options_.progress) options_.progress(digest, done, size);
    Status s = sink(chunk);
    if (!s.ok()) sink_error = s.error();
    return s;
  };
  std::function<Status()> restart_all = [&]() -> Status {
    done = 0;
    return restart ? restart() : OkStatus();
  };
  CallOptions call;
  call.sink = &counting;
  call.restart = &restart_all;
  std::string what = "fetching blob " + digest;
  auto reply = Do(ref, request, call, what);
  if (sink_error) {
    sink_error->message = what + ": " + sink_error->message;
    return *sink_error;
  }
  if (!reply.ok()) return reply.take_error();
  if (reply->response.status != 200) return StatusError(what, ref, *reply);
  return OkStatus();
}

Result<bool> RegistryClient::HasBlob(const Reference& ref, const std::string& digest) {
  HttpRequest request;
  request.method = "HEAD";
  request.url = BaseUrl(ref) + "/v2/" + ref.repository + "/blobs/" + digest;
  CallOptions call;
  call.push = true;
  std::string what = "checking blob " + digest;
  auto reply = Do(ref, request, call, what);
  if (!reply.ok()) return reply.take_error();
  if (reply->response.status == 200) return true;
  if (reply->response.status == 404) return false;
  return StatusError(what, ref, *reply);
}

Result<bool> RegistryClient::UploadOnce(const Reference& ref, const std::string& digest,
                                        std::string_view data, std::string* problem,
                                        bool* retryable) {
  std::string what = "uploading blob " + digest;
  auto fail = [&](const Reply& reply) -> Result<bool> {
    *retryable = reply.response.status == 429 || reply.response.status >= 500;
    Error e = StatusError(what, ref, reply);
    *problem = e.message;
    return e;
  };
  CallOptions call;
  call.push = true;
  HttpRequest start;
  start.method = "POST";
  start.url = BaseUrl(ref) + "/v2/" + ref.repository + "/blobs/uploads/";
  auto started = Do(ref, start, call, what);
  if (!started.ok()) return started.take_error();
  if (started->response.status != 202) return fail(*started);
  std::string location = started->response.Header("location");
  if (location.empty()) return MakeError(Phase::kPull, what + ": upload started without a Location", ref.String());
  location = ResolveUrl(start.url, location);

  call.retry = false;  // a failed PATCH/PUT restarts the whole upload (caller)
  uint64_t chunk = options_.chunk_size;
  std::string_view final_body = data;
  if (chunk != 0 && data.size() > chunk) {
    for (uint64_t offset = 0; offset < data.size(); offset += chunk) {
      std::string_view piece = data.substr(offset, chunk);
      HttpRequest patch;
      patch.method = "PATCH";
      patch.url = location;
      patch.body = piece;
      patch.headers.emplace_back("Content-Type", "application/octet-stream");
      patch.headers.emplace_back("Content-Range", std::to_string(offset) + "-" +
                                                      std::to_string(offset + piece.size() - 1));
      auto patched = Do(ref, patch, call, what);
      if (!patched.ok()) return patched.take_error();
      if (patched->response.status != 202) return fail(*patched);
      std::string next = patched->response.Header("location");
      if (!next.empty()) location = ResolveUrl(location, next);
      if (options_.progress) options_.progress(digest, offset + piece.size(), data.size());
    }
    final_body = {};
  }
  HttpRequest put;
  put.method = "PUT";
  put.url = JoinQuery(location, "digest=" + PercentEncode(digest));
  put.body = final_body;
  put.headers.emplace_back("Content-Type", "application/octet-stream");
  auto finished = Do(ref, put, call, what);
  if (!finished.ok()) return finished.take_error();
  if (finished->response.status != 201 && finished->response.status != 204) return fail(*finished);
  if (options_.progress) options_.progress(digest, data.size(), data.size());
  return true;
}

Result<bool> RegistryClient::PushBlob(const Reference& ref, const std::string& digest,
                                      std::string_view data) {
  auto has = HasBlob(ref, digest);
  if (!has.ok()) return has.take_error();
  if (*has) {
    WLOG_DEBUG("blob {} already in {}/{}", digest, ref.registry, ref.repository);
    return false;
  }
  auto backoff = options_.retry.initial_backoff;
  for (int attempt = 1;; ++attempt) {
    std::string problem;
    bool retryable = false;
    auto uploaded = UploadOnce(ref, digest, data, &problem, &retryable);
    if (uploaded.ok()) return true;
    if (!retryable || attempt >= options_.retry.max_attempts) {
      Error e = uploaded.take_error();
      if (attempt > 1) e.message += " (upload attempt " + std::to_string(attempt) + ")";
      return e;
    }
    WLOG_WARN("{}; restarting the upload", problem);
    Sleep(backoff);
    backoff = std::min(backoff * 2, options_.retry.max_backoff);
  }
}

Result<std::string> RegistryClient::PutManifest(const Reference& ref, const std::string& target,
                                                std::string_view media_type, std::string_view bytes) {
  HttpRequest request;
  request.method = "PUT";
  request.url = BaseUrl(ref) + "/v2/" + ref.repository + "/manifests/" + target;
  request.body = bytes;
  request.headers.emplace_back("Content-Type", std::string(media_type));
  CallOptions call;
  call.push = true;
  std::string what = "pushing manifest " + target;
  auto reply = Do(ref, request, call, what);
  if (!reply.ok()) return reply.take_error();
  if (reply->response.status != 201 && reply->response.status != 200) {
    return StatusError(what, ref, *reply);
  }
  std::string digest = "sha256:" + Sha256Hex(bytes);
  std::string header = reply->response.Header("docker-content-digest");
  if (!header.empty() && header != digest) {
    WLOG_WARN("registry reports manifest digest {}, computed {}", header, digest);
  }
  return digest;
}

}  // namespace wasmlet::oci
