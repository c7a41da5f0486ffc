// Unit tests of the oci layer against an in-memory registry behind a fake transport
// (faults injected per request). The real registry is exercised by tests/oci.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "oci/media_types.h"
#include "oci/pull.h"
#include "oci/push.h"
#include "oci/reference.h"
#include "oci/registry_client.h"
#include "oci/resolve.h"
#include "util/files.h"
#include "util/sha256.h"

namespace wasmlet::oci {
namespace {

namespace fs = std::filesystem;

// ---- references ----

TEST(ReferenceTest, ParsesFullForms) {
  auto r = ParseReference("oci:localhost:5000/org/app:v1.2");
  ASSERT_TRUE(r.ok()) << r.error().ToString();
  EXPECT_EQ(r->registry, "localhost:5000");
  EXPECT_EQ(r->repository, "org/app");
  EXPECT_EQ(r->tag, "v1.2");
  EXPECT_EQ(r->Canonical(), "localhost:5000/org/app:v1.2");

  std::string digest = "sha256:" + Sha256Hex("x");
  r = ParseReference("ghcr.io/a/b@" + digest);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->digest, digest);
  EXPECT_EQ(r->tag, "");
  EXPECT_EQ(r->Canonical(), "ghcr.io/a/b@" + digest);

  r = ParseReference("alpine");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "docker.io");
  EXPECT_EQ(r->repository, "library/alpine");
  EXPECT_EQ(r->tag, "latest");
  EXPECT_EQ(r->ApiHost(), "registry-1.docker.io");

  r = ParseReference("[::1]:5000/x:y");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->registry, "[::1]:5000");
  r = ParseReference("localhost/a__b-c.d/e:t@" + digest);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tag, "t");
  EXPECT_EQ(r->Target(), digest);
}

void ExpectBad(const std::string& text, const std::string& quoted_part) {
  auto r = ParseReference(text);
  ASSERT_FALSE(r.ok()) << text;
  EXPECT_EQ(r.error().phase, Phase::kUsage);
  EXPECT_NE(r.error().message.find(quoted_part), std::string::npos)
      << text << " -> " << r.error().message;
}

TEST(ReferenceTest, ErrorsShowTheWrongPart) {
  ExpectBad("localhost:5000/App:v1", "\"App\"");
  ExpectBad("localhost:5000/app:-bad", "\"-bad\"");
  ExpectBad("localhost:99999/app", "\"99999\"");
  ExpectBad("localhost:5000/app@sha256:abc", "\"sha256:abc\"");
  ExpectBad("localhost:5000/app@md5:abc", "\"md5:abc\"");
  ExpectBad("https://localhost/app", "\"https://\"");
  ExpectBad("host.io/a//b", "empty repository component");
  ExpectBad("oci:", "empty reference");
  ExpectBad("my_host.io/app", "'_'");
  ExpectBad("localhost:5000/", "missing repository");
}

TEST(ReferenceTest, Loopback) {
  EXPECT_TRUE(IsLoopbackRegistry("localhost:5000"));
  EXPECT_TRUE(IsLoopbackRegistry("127.0.0.1:1"));
  EXPECT_TRUE(IsLoopbackRegistry("[::1]:5000"));
  EXPECT_FALSE(IsLoopbackRegistry("example.com"));
  EXPECT_FALSE(IsLoopbackRegistry("localhost.evil.com"));
}

TEST(HelpersTest, ChallengeAndUrls) {
  auto c = ParseChallenge(
      R"(Bearer realm="https://auth.io/token",service="registry.io",scope="repository:a/b:pull")");
  EXPECT_EQ(c.scheme, "bearer");
  EXPECT_EQ(c.params["realm"], "https://auth.io/token");
  EXPECT_EQ(c.params["service"], "registry.io");
  EXPECT_EQ(c.params["scope"], "repository:a/b:pull");
  EXPECT_EQ(ParseChallenge("Basic realm=\"x\"").scheme, "basic");
  EXPECT_EQ(ResolveUrl("http://h:1/v2/a/blobs/uploads/", "/v2/a/blobs/uploads/u?x=1"),
            "http://h:1/v2/a/blobs/uploads/u?x=1");
  EXPECT_EQ(ResolveUrl("http://h:1/v2/a", "https://s3/x"), "https://s3/x");
  EXPECT_EQ(RedactUrl("https://s3/x?X-Amz-Signature=secret"), "https://s3/x");
  EXPECT_EQ(Base64Decode(Base64Encode("user:pa ss")).value(), "user:pa ss");
  EXPECT_EQ(Base64Decode("dXNlcjpw").value(), "user:p");
}

// ---- an in-memory registry behind a fake transport ----

class FakeRegistry : public HttpTransport {
 public:
  // Runs before the registry; a response with status != 0 (or error set) is returned as is.
  std::function<std::optional<HttpResponse>(const HttpRequest&)> fault;
  // Required Authorization header value (empty: anonymous).
  std::string required_auth;
  std::string challenge;
  std::atomic<int> requests{0};
  std::atomic<int> blob_gets{0};
  std::vector<std::string> log;  // "METHOD path" lines
  std::function<void(std::string&)> tamper_blob;  // changes blob bytes as served

  HttpResponse Send(const HttpRequest& req, const BodySink* sink) override {
    ++requests;
    {
      std::lock_guard lock(mu_);
      log.push_back(req.method + " " + Path(req.url));
    }
    if (fault) {
      if (auto r = fault(req)) return *r;
    }
    std::string path = Path(req.url);
    if (path.rfind("/token", 0) == 0) {
      HttpResponse r;
      r.status = 200;
      r.body = R"({"token":"tok123"})";
      return r;
    }
    if (!required_auth.empty()) {
      std::string got;
      for (const auto& [k, v] : req.headers) {
        if (k == "Authorization") got = v;
      }
      if (got != required_auth) {
        HttpResponse r;
        r.status = 401;
        r.headers.emplace("www-authenticate", challenge);
        return r;
      }
    }
    std::lock_guard lock(mu_);
    return Serve(req, path, sink);
  }

  void PutBlob(const std::string& bytes) { blobs_["sha256:" + Sha256Hex(bytes)] = bytes; }
  void PutManifest(const std::string& repo, const std::string& tag, const std::string& bytes) {
    std::string d = "sha256:" + Sha256Hex(bytes);
    manifests_[repo + "@" + tag] = bytes;
    manifests_[repo + "@" + d] = bytes;
  }
  std::string Blob(const std::string& digest) { return blobs_[digest]; }
  std::vector<std::string> Log() {
    std::lock_guard lock(mu_);
    return log;
  }

 private:
  static std::string Path(const std::string& url) {
    size_t p = url.find('/', url.find("://") + 3);
    return url.substr(p);
  }
  HttpResponse Serve(const HttpRequest& req, const std::string& full_path, const BodySink* sink) {
    HttpResponse r;
    std::string path = full_path.substr(0, full_path.find('?'));
    std::string query = full_path.find('?') == std::string::npos ? "" : full_path.substr(full_path.find('?') + 1);
    // /v2/<repo>/(manifests|blobs)/<x>
    size_t m = path.find("/manifests/");
    size_t b = path.find("/blobs/");
    if (m != std::string::npos) {
      std::string repo = path.substr(4, m - 4), target = path.substr(m + 11);
      if (req.method == "PUT") {
        PutManifest(repo, target, std::string(req.body));
        r.status = 201;
        return r;
      }
      auto it = manifests_.find(repo + "@" + target);
      if (it == manifests_.end()) {
        r.status = 404;
        r.body = R"({"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]})";
        return r;
      }
      r.status = 200;
      r.headers.emplace("docker-content-digest", "sha256:" + Sha256Hex(it->second));
      if (req.method == "HEAD") return r;
      r.body = it->second;
      return r;
    }
    if (b == std::string::npos) {
      r.status = 404;
      return r;
    }
    std::string rest = path.substr(b + 7);
    if (rest.rfind("uploads/", 0) == 0) {
      std::string id = rest.substr(8);
      if (req.method == "POST") {
        r.status = 202;
        r.headers.emplace("location", path + "u" + std::to_string(next_upload_++));
        return r;
      }
      std::string& buf = uploads_[id];
      buf.append(req.body);
      if (req.method == "PATCH") {
        ++patches;
        r.status = 202;
        r.headers.emplace("location", path);
        return r;
      }
      std::string digest = query.substr(query.find("digest=") + 7);
      digest.replace(digest.find("%3A"), 3, ":");
      if ("sha256:" + Sha256Hex(buf) != digest) {
        r.status = 400;
        r.body = R"({"errors":[{"code":"DIGEST_INVALID","message":"digest mismatch"}]})";
        return r;
      }
      blobs_[digest] = buf;
      r.status = 201;
      return r;
    }
    auto it = blobs_.find(rest);
    if (it == blobs_.end()) {
      r.status = 404;
      return r;
    }
    r.status = 200;
    if (req.method == "HEAD") return r;
    ++blob_gets;
    std::string served = it->second;
    if (tamper_blob) tamper_blob(served);
    if (sink != nullptr) {
      // Deliver in two chunks, as a network would.
      std::string_view all = served;
      for (std::string_view part : {all.substr(0, all.size() / 2), all.substr(all.size() / 2)}) {
        if (auto s = (*sink)(part); !s.ok()) {
          HttpResponse failed;
          failed.error = s.error().message;
          return failed;
        }
      }
    } else {
      r.body = served;
    }
    return r;
  }

 public:
  int patches = 0;

 private:
  std::mutex mu_;
  std::map<std::string, std::string> blobs_;
  std::map<std::string, std::string> manifests_;
  std::map<std::string, std::string> uploads_;
  int next_upload_ = 0;
};

const std::string kWasm = std::string("\0asm\x01\0\0\0", 8) + std::string(1000, 'w');

class OciTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wasmlet-oci-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    store_ = std::make_unique<store::BlobStore>(dir_);
    options_.sleep = [this](std::chrono::milliseconds d) { slept_ += d; };
    options_.retry.max_attempts = 3;
  }
  void TearDown() override { fs::remove_all(dir_); }
  RegistryClient Client(const CredentialSource* creds = nullptr) {
    return RegistryClient(registry_, creds, options_);
  }
  Reference Ref(const std::string& text) { return ParseReference(text).value(); }
  // Pushes kWasm (or `wasm`) under repo:tag with the given layout; returns the manifest digest.
  std::string PushFixture(const std::string& ref, bool legacy = false, std::string wasm = kWasm) {
    auto client = Client();
    auto pushed = PushModule(client, Ref(ref), wasm, {legacy, "m.wasm"});
    EXPECT_TRUE(pushed.ok()) << pushed.error().ToString();
    return pushed.ok() ? pushed->manifest_digest : "";
  }

  std::string dir_;
  FakeRegistry registry_;
  std::unique_ptr<store::BlobStore> store_;
  ClientOptions options_;
  std::chrono::milliseconds slept_{0};
};

TEST_F(OciTest, PushThenPullRoundTripBothLayouts) {
  for (bool legacy : {false, true}) {
    std::string tag = legacy ? "legacy" : "cncf";
    std::string digest = PushFixture("localhost:5000/app:" + tag, legacy);
    auto client = Client();
    auto pulled = Pull(Ref("localhost:5000/app:" + tag), PullPolicy::kAlways, &client, *store_);
    ASSERT_TRUE(pulled.ok()) << pulled.error().ToString();
    EXPECT_EQ(pulled->manifest_digest, digest);
    EXPECT_EQ(pulled->module_digest, "sha256:" + Sha256Hex(kWasm));
    EXPECT_EQ(pulled->config_media_type, legacy ? kWasmConfigLegacy : kWasmConfig);
    EXPECT_EQ(*ReadFile(pulled->path), kWasm);
  }
}

TEST_F(OciTest, CachedDigestReferenceNeverTouchesTheNetwork) {
  std::string digest = PushFixture("localhost:5000/app:v1");
  auto client = Client();
  ASSERT_TRUE(Pull(Ref("localhost:5000/app:v1"), PullPolicy::kMissing, &client, *store_).ok());
  int before = registry_.requests;
  for (auto policy : {PullPolicy::kAlways, PullPolicy::kMissing, PullPolicy::kNever}) {
    auto pulled = Pull(Ref("localhost:5000/app@" + digest), policy, &client, *store_);
    ASSERT_TRUE(pulled.ok()) << pulled.error().ToString();
    EXPECT_TRUE(pulled->cached);
  }
  auto by_tag = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kMissing, &client, *store_);
  ASSERT_TRUE(by_tag.ok());
  EXPECT_EQ(registry_.requests, before);
  // Always re-resolves the tag with one HEAD, and downloads nothing if it did not move.
  int gets = registry_.blob_gets;
  ASSERT_TRUE(Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_).ok());
  EXPECT_EQ(registry_.requests, before + 1);
  EXPECT_EQ(registry_.Log().back(), "HEAD /v2/app/manifests/v1");
  EXPECT_EQ(registry_.blob_gets, gets);
  // When the tag moves, the new module is pulled.
  std::string wasm2 = kWasm + "v2";
  PushFixture("localhost:5000/app:v1", false, wasm2);
  auto moved = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_TRUE(moved.ok()) << moved.error().ToString();
  EXPECT_EQ(moved->module_digest, "sha256:" + Sha256Hex(wasm2));
  EXPECT_FALSE(moved->cached);
}

TEST_F(OciTest, NeverPolicyFailsWhenAbsent) {
  auto pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kNever, nullptr, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("never"), std::string::npos);
  EXPECT_EQ(registry_.requests, 0);
}

TEST_F(OciTest, RetriesServerErrorsThenSucceeds) {
  PushFixture("localhost:5000/app:v1");
  std::atomic<int> failures{2};
  registry_.fault = [&](const HttpRequest& req) -> std::optional<HttpResponse> {
    if (req.url.find("/blobs/") != std::string::npos && failures-- > 0) {
      HttpResponse r;
      r.status = 500;
      return r;
    }
    return std::nullopt;
  };
  auto client = Client();
  auto pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_TRUE(pulled.ok()) << pulled.error().ToString();
  EXPECT_EQ(slept_, std::chrono::milliseconds(200 + 400));
}

TEST_F(OciTest, FinalErrorNamesBlobStatusAndAttempts) {
  PushFixture("localhost:5000/app:v1");
  std::string layer = "sha256:" + Sha256Hex(kWasm);
  registry_.fault = [&](const HttpRequest& req) -> std::optional<HttpResponse> {
    if (req.url.find(layer) != std::string::npos) {
      HttpResponse r;
      r.status = 503;
      r.headers.emplace("retry-after", "1");
      return r;
    }
    return std::nullopt;
  };
  auto client = Client();
  auto pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  const std::string& msg = pulled.error().message;
  EXPECT_NE(msg.find(layer), std::string::npos) << msg;
  EXPECT_NE(msg.find("HTTP 503"), std::string::npos) << msg;
  EXPECT_NE(msg.find("3 attempts"), std::string::npos) << msg;
  EXPECT_EQ(slept_, std::chrono::milliseconds(2000));  // Retry-After: 1 s, twice
}

TEST_F(OciTest, TransportFailuresAreRetriedAndReported) {
  registry_.fault = [&](const HttpRequest&) -> std::optional<HttpResponse> {
    HttpResponse r;
    r.error = "Couldn't connect to server";
    r.retryable = true;
    return r;
  };
  auto client = Client();
  auto pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("Couldn't connect"), std::string::npos);
  EXPECT_NE(pulled.error().message.find("after 3 attempts"), std::string::npos);
  EXPECT_EQ(registry_.requests, 3);
}

TEST_F(OciTest, TamperedBlobIsRejectedAndNotStored) {
  PushFixture("localhost:5000/app:v1");
  registry_.tamper_blob = [](std::string& bytes) {
    if (bytes.size() > 100) bytes[100] ^= 1;
  };
  auto client = Client();
  auto pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("does not match"), std::string::npos)
      << pulled.error().message;
  EXPECT_FALSE(store_->Has(Sha256Hex(kWasm)));
  EXPECT_TRUE(fs::is_empty(dir_ + "/tmp"));
}

TEST_F(OciTest, WrongMediaTypeIsNamed) {
  std::string config = "{}";
  registry_.PutBlob(config);
  registry_.PutBlob(kWasm);
  nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kOciManifest},
      {"config", {{"mediaType", "application/vnd.oci.image.config.v1+json"},
                  {"digest", "sha256:" + Sha256Hex(config)}, {"size", 2}}},
      {"layers", {{{"mediaType", "application/vnd.oci.image.layer.v1.tar+gzip"},
                   {"digest", "sha256:" + Sha256Hex(kWasm)}, {"size", kWasm.size()}}}}};
  registry_.PutManifest("app", "image", manifest.dump());
  auto client = Client();
  auto pulled = Pull(Ref("localhost:5000/app:image"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("application/vnd.oci.image.config.v1+json"),
            std::string::npos)
      << pulled.error().message;
  manifest["config"]["mediaType"] = kWasmConfig;
  registry_.PutManifest("app", "image", manifest.dump());
  pulled = Pull(Ref("localhost:5000/app:image"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("application/vnd.oci.image.layer.v1.tar+gzip"),
            std::string::npos)
      << pulled.error().message;
}

TEST_F(OciTest, IndexSelectsTheWasmEntry) {
  std::string wasm_manifest_digest = PushFixture("localhost:5000/app:wasm-only");
  nlohmann::json index = {
      {"schemaVersion", 2},
      {"mediaType", kOciIndex},
      {"manifests",
       {{{"mediaType", kOciManifest}, {"digest", "sha256:" + Sha256Hex("other")}, {"size", 5},
         {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}},
        {{"mediaType", kOciManifest}, {"digest", wasm_manifest_digest}, {"size", 300},
         {"platform", {{"os", "wasip1"}, {"architecture", "wasm"}}}}}}};
  registry_.PutManifest("app", "multi", index.dump());
  auto client = Client();
  auto pulled = Pull(Ref("localhost:5000/app:multi"), PullPolicy::kAlways, &client, *store_);
  ASSERT_TRUE(pulled.ok()) << pulled.error().ToString();
  EXPECT_EQ(pulled->manifest_digest, "sha256:" + Sha256Hex(index.dump()));
  EXPECT_EQ(pulled->module_digest, "sha256:" + Sha256Hex(kWasm));

  index["manifests"].erase(1);
  index["manifests"].push_back(index["manifests"][0]);
  index["manifests"][1]["platform"]["architecture"] = "arm64";
  registry_.PutManifest("app", "nowasm", index.dump());
  pulled = Pull(Ref("localhost:5000/app:nowasm"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("linux/amd64, linux/arm64"), std::string::npos)
      << pulled.error().message;
}

struct StaticCreds : CredentialSource {
  std::optional<Credentials> creds;
  std::optional<Credentials> Lookup(const std::string&) const override { return creds; }
};

TEST_F(OciTest, BearerTokenFlow) {
  PushFixture("localhost:5000/app:v1");
  registry_.required_auth = "Bearer tok123";
  registry_.challenge =
      R"(Bearer realm="http://127.0.0.1:9/token",service="test",scope="repository:app:pull")";
  StaticCreds creds;
  creds.creds = Credentials{"alice", "secret", {}};
  auto client = Client(&creds);
  auto pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_TRUE(pulled.ok()) << pulled.error().ToString();
  int tokens = 0;
  for (const auto& line : registry_.Log()) {
    if (line.find("/token?service=test&scope=repository%3Aapp%3Apull") != std::string::npos) ++tokens;
  }
  EXPECT_EQ(tokens, 1);  // the token is cached for the following requests
}

TEST_F(OciTest, BasicAuthWithoutCredentialsIsAClearError) {
  registry_.required_auth = "Basic " + Base64Encode("alice:secret");
  registry_.challenge = R"(Basic realm="Registry")";
  auto client = Client();
  auto pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("requires authentication"), std::string::npos);

  StaticCreds wrong;
  wrong.creds = Credentials{"alice", "wrong", {}};
  auto client2 = Client(&wrong);
  pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client2, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("rejected the credentials"), std::string::npos)
      << pulled.error().message;
  EXPECT_EQ(pulled.error().message.find("wrong"), std::string::npos);  // never the secret
}

TEST_F(OciTest, RedirectsDropAuthAcrossHostsAndRefusePlainHttp) {
  PushFixture("localhost:5000/app:v1");
  std::string layer = "sha256:" + Sha256Hex(kWasm);
  registry_.required_auth = "Basic " + Base64Encode("u:p");
  registry_.challenge = "Basic realm=x";
  std::string storage_auth = "unset";
  registry_.fault = [&](const HttpRequest& req) -> std::optional<HttpResponse> {
    if (req.url.rfind("https://storage.example/", 0) == 0) {
      storage_auth = "";
      for (const auto& [k, v] : req.headers) {
        if (k == "Authorization") storage_auth = v;
      }
      HttpResponse r;
      r.status = 200;
      return r;  // empty body -> digest mismatch, fine: we only look at the headers
    }
    if (req.method == "GET" && req.url.find("/blobs/" + layer) != std::string::npos) {
      HttpResponse r;
      r.status = 307;
      r.headers.emplace("location", "https://storage.example/blob?sig=secret");
      return r;
    }
    return std::nullopt;
  };
  StaticCreds creds;
  creds.creds = Credentials{"u", "p", {}};
  auto client = Client(&creds);
  auto pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_EQ(storage_auth, "");

  registry_.fault = [&](const HttpRequest& req) -> std::optional<HttpResponse> {
    if (req.method == "GET" && req.url.find("/blobs/" + layer) != std::string::npos) {
      HttpResponse r;
      r.status = 302;
      r.headers.emplace("location", "http://storage.example/blob?sig=secret");
      return r;
    }
    return std::nullopt;
  };
  pulled = Pull(Ref("localhost:5000/app:v1"), PullPolicy::kAlways, &client, *store_);
  ASSERT_FALSE(pulled.ok());
  EXPECT_NE(pulled.error().message.find("refusing a redirect"), std::string::npos);
  EXPECT_EQ(pulled.error().message.find("secret"), std::string::npos);
}

TEST_F(OciTest, ChunkedPushAndSkipExisting) {
  options_.chunk_size = 300;
  std::string wasm = kWasm + std::string(2000, 'z');
  PushFixture("localhost:5000/app:big", false, wasm);
  EXPECT_EQ(registry_.patches, 11);  // 3008 bytes in 300-byte chunks; the config is monolithic
  EXPECT_EQ(registry_.Blob("sha256:" + Sha256Hex(wasm)), wasm);
  auto client = Client();
  auto again = PushModule(client, Ref("localhost:5000/app:big2"), wasm, {});
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->module_uploaded);
  EXPECT_EQ(registry_.patches, 11);
}

TEST_F(OciTest, PlainHttpOnlyForLoopbackAndInsecure) {
  auto client = Client();
  EXPECT_EQ(client.BaseUrl(Ref("localhost:5000/a")), "http://localhost:5000");
  EXPECT_EQ(client.BaseUrl(Ref("registry.example:5000/a")), "https://registry.example:5000");
  options_.insecure_registries = {"registry.example:5000"};
  auto insecure = Client();
  EXPECT_EQ(insecure.BaseUrl(Ref("registry.example:5000/a")), "http://registry.example:5000");
}

TEST_F(OciTest, ConcurrentResolvesShareOneDownload) {
  PushFixture("localhost:5000/app:v1");
  registry_.blob_gets = 0;
  PullOptions options;
  options.data_dir = dir_ + "/shared";
  options.transport = &registry_;
  options.policy = PullPolicy::kAlways;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 6; ++i) {
    threads.emplace_back([&] {
      auto path = ResolveToLocalPath("oci:localhost:5000/app:v1", options);
      if (path.ok()) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 6);
  EXPECT_LE(registry_.blob_gets.load(), 2);  // config + layer, each once
}

}  // namespace
}  // namespace wasmlet::oci
