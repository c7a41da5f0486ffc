// Client for the OCI distribution API (v2): manifests and blobs, with authentication
// (anonymous, Basic, Bearer token challenge), redirects, retries with back-off, and the
// plain-HTTP policy. It knows nothing about wasm or the store; pull.h and push.h build on it.
//
// Policy:
//  - HTTPS with the transport's CA store; plain HTTP only for loopback registries and hosts in
//    ClientOptions::insecure_registries (also for redirects and token realms).
//  - Redirects (blob storage) are followed up to 10 hops; the Authorization header is dropped
//    when a redirect leaves the registry host.
//  - 429, 5xx, timeouts and refused/reset connections are retried with exponential back-off
//    (Retry-After honoured, capped); the final error names the operation, the blob or manifest,
//    the last status and the number of attempts.
//  - Credentials and tokens never appear in errors or logs; query strings are cut from URLs in
//    messages (pre-signed storage URLs carry secrets).
// Threading: a RegistryClient may be used from several threads at once (token cache locked).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "oci/credentials.h"
#include "oci/http.h"
#include "oci/reference.h"
#include "util/result.h"

namespace wasmlet::oci {

struct RetryPolicy {
  int max_attempts = 5;
  std::chrono::milliseconds initial_backoff{200};
  std::chrono::milliseconds max_backoff{5000};
};

// Called while blobs move: `digest` of the blob, bytes so far, total bytes (0 if unknown).
using ProgressFn = std::function<void(const std::string& digest, uint64_t done, uint64_t total)>;

struct ClientOptions {
  std::vector<std::string> insecure_registries;  // "host[:port]": plain HTTP allowed
  RetryPolicy retry;
  // Blobs larger than this are uploaded in chunks (PATCH) of this size; 0: always monolithic.
  uint64_t chunk_size = 16ull << 20;
  size_t max_manifest_bytes = 4u << 20;
  ProgressFn progress;
  // Injectable for tests; default sleeps.
  std::function<void(std::chrono::milliseconds)> sleep;
};

struct FetchedManifest {
  std::string media_type;
  std::string digest;  // sha256 of `bytes`, verified
  std::string bytes;
};

class RegistryClient {
 public:
  // `transport` and `credentials` (may be null: anonymous only) must outlive the client.
  RegistryClient(HttpTransport& transport, const CredentialSource* credentials,
                 ClientOptions options);

  // GET a manifest or index by tag or digest; verifies the digest of the bytes.
  Result<FetchedManifest> GetManifest(const Reference& ref, const std::string& target);
  // HEAD a manifest: the registry's Docker-Content-Digest for `target`, or "" if it does not
  // say (then GetManifest is needed).
  Result<std::string> HeadManifest(const Reference& ref, const std::string& target);
  // Streams a blob to `sink` (restarted with `restart` before a retry that follows a partial
  // body). The caller verifies the digest (BlobWriter::Commit).
  Status FetchBlob(const Reference& ref, const std::string& digest, uint64_t size,
                   const BodySink& sink, const std::function<Status()>& restart);
  Result<bool> HasBlob(const Reference& ref, const std::string& digest);
  // Uploads a blob unless the registry has it. Returns true if uploaded, false if skipped.
  Result<bool> PushBlob(const Reference& ref, const std::string& digest, std::string_view data);
  // PUT a manifest under a tag (or digest); returns its digest.
  Result<std::string> PutManifest(const Reference& ref, const std::string& target,
                                  std::string_view media_type, std::string_view bytes);

  // "http://host" or "https://host" per the plain-HTTP policy.
  std::string BaseUrl(const Reference& ref) const;

 private:
  struct Reply {
    HttpResponse response;
    int attempts = 0;
  };
  struct CallOptions {
    const BodySink* sink = nullptr;
    const std::function<Status()>* restart = nullptr;
    bool retry = true;  // retry 429/5xx/transport failures here
    bool push = false;  // needs push scope
  };
  Result<Reply> Do(const Reference& ref, HttpRequest request, const CallOptions& call,
                   const std::string& what);
  Status Authenticate(const Reference& ref, const std::string& challenge, bool push,
                      const std::string& what);
  std::string AuthHeader(const Reference& ref, bool push);
  bool PlainHttpAllowed(const std::string& host) const;
  Error StatusError(const std::string& what, const Reference& ref, const Reply& reply) const;
  void Sleep(std::chrono::milliseconds d) const;
  Result<bool> UploadOnce(const Reference& ref, const std::string& digest, std::string_view data,
                          std::string* problem, bool* retryable);

  HttpTransport& transport_;
  const CredentialSource* credentials_;
  ClientOptions options_;
  std::mutex mu_;
  // Authorization header values: "registry" -> Basic, "registry|repo|pull|push" -> Bearer.
  std::map<std::string, std::string> auth_;  // GUARDED_BY(mu_)
};

// Helpers shared with tests.
// Splits `WWW-Authenticate: Bearer realm="...",service="..."` into scheme and parameters.
struct Challenge {
  std::string scheme;  // lower case: "basic", "bearer"
  std::map<std::string, std::string> params;
};
Challenge ParseChallenge(std::string_view header);
// Resolves a Location header against the URL it came from.
std::string ResolveUrl(const std::string& base, const std::string& location);
std::string PercentEncode(std::string_view text);
// "https://host:5000/v2/x?secret" -> "https://host:5000/v2/x"
std::string RedactUrl(const std::string& url);

}  // namespace wasmlet::oci
