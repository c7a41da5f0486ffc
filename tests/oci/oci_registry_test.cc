// End-to-end tests of push/pull/images/rmi/prune against Debian's docker-registry
// (distribution v2) on loopback, once anonymous and once with htpasswd Basic auth; faults
// (tampering, 500s, slowness, Bearer tokens) come from tests/oci/proxy.py in front of it.
#include <gtest/gtest.h>

#include <atomic>
#include <nlohmann/json.hpp>

#include "harness.h"
#include "oci/http.h"
#include "oci/media_types.h"
#include "oci/push.h"
#include "oci/registry_client.h"
#include "util/sha256.h"

namespace wasmlet::testing {
namespace {

class RegistryTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_dir_ = new std::string(MakeTempDir("oci-suite"));
    open_ = new Registry();
    ASSERT_TRUE(open_->Start(*suite_dir_ + "/open")) << "docker-registry did not start";
    basic_ = new Registry();
    ASSERT_TRUE(basic_->Start(*suite_dir_ + "/basic", "alice", "s3cret-pw"));
  }
  static void TearDownTestSuite() {
    delete open_;
    delete basic_;
    fs::remove_all(*suite_dir_);
    delete suite_dir_;
  }
  void SetUp() override {
    dir_ = MakeTempDir("oci-test");
    fs::create_directories(dir_ + "/home");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::vector<std::string> Env(std::vector<std::string> extra = {}) const {
    std::vector<std::string> env = {"HOME=" + dir_ + "/home", "XDG_DATA_HOME=" + dir_ + "/data",
                                    "XDG_CACHE_HOME=" + dir_ + "/cache", "DOCKER_CONFIG=",
                                    "WASMLET_REGISTRY_USERNAME=", "WASMLET_REGISTRY_PASSWORD="};
    env.insert(env.end(), extra.begin(), extra.end());
    return env;
  }
  Output Wasmlet(std::vector<std::string> args, const std::string& input = "",
                 std::vector<std::string> extra_env = {}) const {
    args.insert(args.begin(), WASMLET_BINARY);
    return Child::Spawn(args, Env(extra_env), input).Wait();
  }
  std::string Store() const { return dir_ + "/data/wasmlet"; }
  // Pushes a guest; returns the manifest digest printed.
  std::string Push(const std::string& guest, const std::string& ref, bool legacy = false) {
    std::vector<std::string> args = {"push", Guest(guest), ref};
    if (legacy) args.push_back("--legacy");
    Output o = Wasmlet(args);
    EXPECT_EQ(o.code, 0) << o.err;
    std::string digest = o.out.substr(0, o.out.find('\n'));
    EXPECT_EQ(digest.rfind("sha256:", 0), 0u) << o.out;
    return digest;
  }
  static std::string FileDigest(const std::string& path) { return "sha256:" + Sha256Hex(Slurp(path)); }
  std::string BlobPath(const std::string& digest) const {
    return Store() + "/blobs/sha256/" + digest.substr(7);
  }

  static std::string* suite_dir_;
  static Registry* open_;
  static Registry* basic_;
  std::string dir_;
};

std::string* RegistryTest::suite_dir_ = nullptr;
Registry* RegistryTest::open_ = nullptr;
Registry* RegistryTest::basic_ = nullptr;

TEST_F(RegistryTest, PushPullRoundTripAndRun) {
  std::string ref = open_->host() + "/roundtrip/hello:v1";
  std::string digest = Push("hello.wasm", ref);
  Output pulled = Wasmlet({"pull", ref});
  ASSERT_EQ(pulled.code, 0) << pulled.err;
  EXPECT_EQ(Field(pulled.out, "Digest"), digest);
  EXPECT_EQ(Field(pulled.out, "Module"), FileDigest(Guest("hello.wasm")));
  std::string path = Field(pulled.out, "Path");
  EXPECT_EQ(path, BlobPath(FileDigest(Guest("hello.wasm"))));
  EXPECT_EQ(Slurp(path), Slurp(Guest("hello.wasm")));
  Output run = Wasmlet({"run", path});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.out.find("Hello"), std::string::npos) << run.out;

  // Pushing again skips the blob the registry has and gives the same digest.
  Output again = Wasmlet({"push", Guest("hello.wasm"), ref});
  EXPECT_EQ(again.out, digest + "\n");
  EXPECT_NE(again.err.find("already in the registry"), std::string::npos) << again.err;

  Output images = Wasmlet({"images"});
  EXPECT_NE(images.out.find(ref), std::string::npos) << images.out;
}

TEST_F(RegistryTest, PullByDigestThenOfflineFromStore) {
  Registry own;
  ASSERT_TRUE(own.Start(dir_ + "/own-registry"));
  std::string repo = own.host() + "/bydigest/go";
  std::string digest = Push("go_hello.wasm", repo + ":v1");
  Output pulled = Wasmlet({"pull", "oci:" + repo + "@" + digest});
  ASSERT_EQ(pulled.code, 0) << pulled.err;
  EXPECT_EQ(Field(pulled.out, "Module"), FileDigest(Guest("go_hello.wasm")));
  own.Stop();
  // A digest reference in the store never needs the registry, even with --pull always.
  Output cached = Wasmlet({"pull", "--pull", "always", repo + "@" + digest});
  ASSERT_EQ(cached.code, 0) << cached.err;
  EXPECT_EQ(Field(cached.out, "Status"), "up to date");
  Output tag_cached = Wasmlet({"pull", "--pull", "missing", repo + ":v1"});
  EXPECT_NE(tag_cached.code, 0);  // never pulled by tag, registry down
  Output run = Wasmlet({"run", Field(cached.out, "Path")});
  EXPECT_EQ(run.code, 0) << run.err;
}

TEST_F(RegistryTest, BothMediaTypeFamilies) {
  for (bool legacy : {false, true}) {
    std::string ref = open_->host() + "/families/hello:" + (legacy ? "legacy" : "cncf");
    std::string digest = Push("hello.wasm", ref, legacy);
    // What the registry holds has the expected types.
    auto transport = oci::MakeCurlTransport();
    oci::RegistryClient client(*transport, nullptr, {});
    auto manifest = client.GetManifest(*oci::ParseReference(ref), legacy ? "legacy" : "cncf");
    ASSERT_TRUE(manifest.ok()) << manifest.error().ToString();
    EXPECT_EQ(manifest->digest, digest);
    auto json = nlohmann::json::parse(manifest->bytes);
    EXPECT_EQ(json["config"]["mediaType"], legacy ? oci::kWasmConfigLegacy : oci::kWasmConfig);
    EXPECT_EQ(json["layers"][0]["mediaType"], legacy ? oci::kWasmLayerLegacy : oci::kWasmLayer);
    Output pulled = Wasmlet({"pull", "-q", ref});
    ASSERT_EQ(pulled.code, 0) << pulled.err;
    Output run = Wasmlet({"run", pulled.out.substr(0, pulled.out.find('\n'))});
    EXPECT_NE(run.out.find("Hello"), std::string::npos);
  }
}

// Pushes a config + layer + manifest with arbitrary media types through the library.
std::string PushRaw(const std::string& ref_text, const std::string& tag, const std::string& config_type,
                    const std::string& layer_type, const std::string& layer) {
  auto transport = oci::MakeCurlTransport();
  oci::RegistryClient client(*transport, nullptr, {});
  auto ref = *oci::ParseReference(ref_text);
  std::string config = "{}";
  EXPECT_TRUE(client.PushBlob(ref, "sha256:" + Sha256Hex(config), config).ok());
  EXPECT_TRUE(client.PushBlob(ref, "sha256:" + Sha256Hex(layer), layer).ok());
  nlohmann::json manifest = {
      {"schemaVersion", 2},
      {"mediaType", oci::kOciManifest},
      {"config", {{"mediaType", config_type}, {"digest", "sha256:" + Sha256Hex(config)}, {"size", 2}}},
      {"layers", {{{"mediaType", layer_type}, {"digest", "sha256:" + Sha256Hex(layer)},
                   {"size", layer.size()}}}}};
  auto digest = client.PutManifest(ref, tag, oci::kOciManifest, manifest.dump());
  EXPECT_TRUE(digest.ok()) << digest.error().ToString();
  return digest.ok() ? *digest : "";
}

TEST_F(RegistryTest, WrongMediaTypeIsNamed) {
  std::string repo = open_->host() + "/wrongtype/image";
  PushRaw(repo, "v1", "application/vnd.oci.image.config.v1+json",
          "application/vnd.oci.image.layer.v1.tar+gzip", "not a wasm layer");
  Output pulled = Wasmlet({"pull", repo + ":v1"});
  EXPECT_EQ(pulled.code, 1);
  EXPECT_NE(pulled.err.find("\"application/vnd.oci.image.config.v1+json\""), std::string::npos)
      << pulled.err;
  PushRaw(repo, "v2", std::string(oci::kWasmConfig), "application/vnd.oci.image.layer.v1.tar",
          "not a wasm layer");
  pulled = Wasmlet({"pull", repo + ":v2"});
  EXPECT_EQ(pulled.code, 1);
  EXPECT_NE(pulled.err.find("\"application/vnd.oci.image.layer.v1.tar\""), std::string::npos)
      << pulled.err;
}

TEST_F(RegistryTest, IndexSelectsTheWasmEntry) {
  std::string repo = open_->host() + "/index/app";
  std::string linux_digest = PushRaw(repo, "linux", "application/vnd.oci.image.config.v1+json",
                                     "application/vnd.oci.image.layer.v1.tar", "linux bits");
  std::string wasm_digest = Push("hello.wasm", repo + ":wasm");
  nlohmann::json index = {
      {"schemaVersion", 2},
      {"mediaType", oci::kOciIndex},
      {"manifests",
       {{{"mediaType", oci::kOciManifest}, {"digest", linux_digest}, {"size", 400},
         {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}},
        {{"mediaType", oci::kOciManifest}, {"digest", wasm_digest}, {"size", 400},
         {"platform", {{"os", "wasip1"}, {"architecture", "wasm"}}}}}}};
  auto transport = oci::MakeCurlTransport();
  oci::RegistryClient client(*transport, nullptr, {});
  auto index_digest = client.PutManifest(*oci::ParseReference(repo), "multi", oci::kOciIndex, index.dump());
  ASSERT_TRUE(index_digest.ok()) << index_digest.error().ToString();
  Output pulled = Wasmlet({"pull", repo + ":multi"});
  ASSERT_EQ(pulled.code, 0) << pulled.err;
  EXPECT_EQ(Field(pulled.out, "Digest"), *index_digest);
  EXPECT_EQ(Field(pulled.out, "Module"), FileDigest(Guest("hello.wasm")));
}

TEST_F(RegistryTest, TamperedBlobIsRejected) {
  std::string path = "/tamper/hello:v1";
  Push("hello.wasm", open_->host() + path);
  Proxy proxy;
  ASSERT_TRUE(proxy.Start(open_->port(), "tamper"));
  Output pulled = Wasmlet({"pull", proxy.host() + path});
  EXPECT_EQ(pulled.code, 1);
  EXPECT_NE(pulled.err.find("does not match its digest"), std::string::npos) << pulled.err;
  EXPECT_FALSE(fs::exists(BlobPath(FileDigest(Guest("hello.wasm")))));
  EXPECT_TRUE(!fs::exists(Store() + "/tmp") || fs::is_empty(Store() + "/tmp"));
}

TEST_F(RegistryTest, ServerErrorsAreRetried) {
  std::string path = "/flaky/hello:v1";
  Push("hello.wasm", open_->host() + path);
  Proxy proxy;
  ASSERT_TRUE(proxy.Start(open_->port(), "fail:3"));
  Output pulled = Wasmlet({"pull", proxy.host() + path});
  ASSERT_EQ(pulled.code, 0) << pulled.err;
  EXPECT_NE(pulled.err.find("HTTP 500; retrying"), std::string::npos) << pulled.err;
  EXPECT_EQ(Field(pulled.out, "Module"), FileDigest(Guest("hello.wasm")));

  Proxy always_failing;
  ASSERT_TRUE(always_failing.Start(open_->port(), "fail:1000"));
  pulled = Wasmlet({"pull", always_failing.host() + path});
  EXPECT_EQ(pulled.code, 1);
  EXPECT_NE(pulled.err.find("HTTP 500 Internal Server Error (UNKNOWN: injected) after 5 attempts"),
            std::string::npos)
      << pulled.err;
}

TEST_F(RegistryTest, RegistryDownIsAClearError) {
  int port = FreePort();
  auto start = std::chrono::steady_clock::now();
  Output pulled = Wasmlet({"pull", "127.0.0.1:" + std::to_string(port) + "/down/app:v1"});
  EXPECT_EQ(pulled.code, 1);
  EXPECT_NE(pulled.err.find("Couldn't connect to server (after 5 attempts)"), std::string::npos)
      << pulled.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST_F(RegistryTest, MalformedReferenceIsAUsageError) {
  Output pulled = Wasmlet({"pull", open_->host() + "/Bad/Name:v1"});
  EXPECT_EQ(pulled.code, 2);
  EXPECT_NE(pulled.err.find("\"Bad\""), std::string::npos) << pulled.err;
  Output pushed = Wasmlet({"push", Guest("hello.wasm"), open_->host() + "/ok:bad tag"});
  EXPECT_EQ(pushed.code, 2);
  Output help = Wasmlet({"pull", "--help"});
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("--pull"), std::string::npos);
}

TEST_F(RegistryTest, ConcurrentPullsShareOneDownload) {
  std::string path = "/concurrent/go:v1";
  Push("go_hello.wasm", open_->host() + path);
  Proxy proxy;
  ASSERT_TRUE(proxy.Start(open_->port(), "slow:4000000"));  // ~0.7 s for 2.6 MB
  std::vector<Child> children;
  for (int i = 0; i < 4; ++i) {
    children.push_back(Child::Spawn({WASMLET_BINARY, "pull", proxy.host() + path}, Env()));
  }
  for (auto& c : children) {
    Output o = c.Wait();
    EXPECT_EQ(o.code, 0) << o.err;
    EXPECT_EQ(Field(o.out, "Module"), FileDigest(Guest("go_hello.wasm")));
  }
  Output stats = Child::Spawn({"python3", "-c",
                               "import urllib.request,sys;print(urllib.request.urlopen("
                               "'http://" + proxy.host() + "/_stats').read().decode())"},
                              {}).Wait();
  auto json = nlohmann::json::parse(stats.out);
  std::string layer_get = "GET /v2/concurrent/go/blobs/" + FileDigest(Guest("go_hello.wasm"));
  EXPECT_EQ(json.value(layer_get, 0), 1) << stats.out;
}

TEST_F(RegistryTest, KillDuringPullLeavesNoPartialBlob) {
  std::string path = "/killed/go:v1";
  Push("go_hello.wasm", open_->host() + path);
  Proxy proxy;
  ASSERT_TRUE(proxy.Start(open_->port(), "slow:1000000"));  // ~2.7 s for 2.6 MB
  std::string blob = BlobPath(FileDigest(Guest("go_hello.wasm")));
  Child pull = Child::Spawn({WASMLET_BINARY, "pull", proxy.host() + path}, Env());
  // Wait until the download is under way.
  bool partial = false;
  for (int i = 0; i < 200 && !partial; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(Store() + "/tmp", ec)) {
      if (fs::file_size(e.path(), ec) > 100000) partial = true;
    }
  }
  ASSERT_TRUE(partial) << "no partial download seen";
  pull.Kill(SIGKILL);
  EXPECT_FALSE(fs::exists(blob));
  Output again = Wasmlet({"pull", proxy.host() + path});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(Slurp(blob), Slurp(Guest("go_hello.wasm")));
  EXPECT_TRUE(fs::is_empty(Store() + "/tmp"));  // the leftover was cleaned under the lock
}

TEST_F(RegistryTest, BasicAuthFromFlagsEnvAndDockerConfig) {
  std::string ref = basic_->host() + "/private/hello:v1";
  Output anonymous = Wasmlet({"push", Guest("hello.wasm"), ref});
  EXPECT_EQ(anonymous.code, 1);
  EXPECT_NE(anonymous.err.find("requires authentication"), std::string::npos) << anonymous.err;

  Output pushed = Wasmlet({"push", "-u", "alice", "--password-stdin", Guest("hello.wasm"), ref},
                          "s3cret-pw\n");
  ASSERT_EQ(pushed.code, 0) << pushed.err;

  Output wrong = Wasmlet({"pull", "-u", "alice", "--password-stdin", ref}, "nope-pw\n");
  EXPECT_EQ(wrong.code, 1);
  EXPECT_NE(wrong.err.find("rejected the credentials"), std::string::npos) << wrong.err;
  EXPECT_EQ(wrong.err.find("nope-pw"), std::string::npos);

  Output from_env = Wasmlet({"--log-level", "debug", "pull", ref}, "",
                            {"WASMLET_REGISTRY_USERNAME=alice", "WASMLET_REGISTRY_PASSWORD=s3cret-pw"});
  ASSERT_EQ(from_env.code, 0) << from_env.err;
  EXPECT_EQ(from_env.err.find("s3cret-pw"), std::string::npos);
  EXPECT_EQ(from_env.err.find(oci::Base64Encode("alice:s3cret-pw")), std::string::npos);

  fs::create_directories(dir_ + "/home/.docker");
  std::ofstream(dir_ + "/home/.docker/config.json")
      << R"({"auths":{")" << basic_->host() << R"(":{"auth":")"
      << oci::Base64Encode("alice:s3cret-pw") << R"("}}})";
  Output from_config = Wasmlet({"pull", "--data-dir", dir_ + "/other", ref});
  ASSERT_EQ(from_config.code, 0) << from_config.err;
  EXPECT_EQ(Field(from_config.out, "Module"), FileDigest(Guest("hello.wasm")));
}

TEST_F(RegistryTest, BearerTokenFlow) {
  Proxy gate;
  ASSERT_TRUE(gate.Start(open_->port(), "token:bob:tok-pw"));
  std::string ref = gate.host() + "/bearer/hello:v1";
  Output anonymous = Wasmlet({"push", Guest("hello.wasm"), ref});
  EXPECT_EQ(anonymous.code, 1);
  EXPECT_NE(anonymous.err.find("rejected anonymous access"), std::string::npos) << anonymous.err;
  Output pushed = Wasmlet({"push", "-u", "bob", "--password-stdin", Guest("hello.wasm"), ref}, "tok-pw");
  ASSERT_EQ(pushed.code, 0) << pushed.err;
  Output pulled = Wasmlet({"pull", "-u", "bob", "--password-stdin", ref}, "tok-pw");
  ASSERT_EQ(pulled.code, 0) << pulled.err;
  EXPECT_EQ(Field(pulled.out, "Module"), FileDigest(Guest("hello.wasm")));
}

TEST_F(RegistryTest, ImagesRmiPrune) {
  std::string repo = open_->host() + "/lifecycle/hello";
  Push("hello.wasm", repo + ":a");
  Push("hello.wasm", repo + ":b");
  ASSERT_EQ(Wasmlet({"pull", repo + ":a"}).code, 0);
  ASSERT_EQ(Wasmlet({"pull", repo + ":b"}).code, 0);
  std::string blob = BlobPath(FileDigest(Guest("hello.wasm")));
  // A precompiled artifact of the module lives in the runtime cache.
  Output run = Wasmlet({"run", blob});
  ASSERT_EQ(run.code, 0) << run.err;
  std::string hex = FileDigest(Guest("hello.wasm")).substr(7);
  auto artifacts = [&] {
    int n = 0;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir_ + "/cache/wasmlet/modules", ec)) {
      if (e.path().filename().string().rfind(hex, 0) == 0) ++n;
    }
    return n;
  };
  EXPECT_EQ(artifacts(), 1);

  Output images = Wasmlet({"images", "-q"});
  EXPECT_EQ(images.out, repo + ":a\n" + repo + ":b\n");
  Output rmi = Wasmlet({"rmi", repo + ":a"});
  EXPECT_EQ(rmi.code, 0) << rmi.err;
  EXPECT_TRUE(fs::exists(blob));  // still used by :b
  rmi = Wasmlet({"rmi", repo + ":b"});
  EXPECT_EQ(rmi.code, 0) << rmi.err;
  EXPECT_FALSE(fs::exists(blob));
  EXPECT_EQ(artifacts(), 0);
  EXPECT_EQ(Wasmlet({"rmi", repo + ":b"}).code, 1);

  ASSERT_EQ(Wasmlet({"pull", repo + ":a"}).code, 0);
  Output prune = Wasmlet({"prune"});
  EXPECT_TRUE(fs::exists(blob));
  prune = Wasmlet({"prune", "--all"});
  EXPECT_EQ(prune.code, 0);
  EXPECT_FALSE(fs::exists(blob));
  EXPECT_EQ(Wasmlet({"images", "-q"}).out, "");
}


// ---- Registry faults: nothing corrupt enters the store, and a pull recovers afterwards ----

class FaultTest : public RegistryTest {
 protected:
  // Nothing of `module_digest` in the store: no blob, no reference, no partial download.
  void ExpectNothingStored(const std::string& module_digest) {
    EXPECT_FALSE(fs::exists(BlobPath(module_digest))) << module_digest;
    EXPECT_EQ(Wasmlet({"images", "-q"}).out, "");
    EXPECT_TRUE(!fs::exists(Store() + "/tmp") || fs::is_empty(Store() + "/tmp"));
  }
  // Pulls `path` through a proxy in `mode`: fails with `error`, stores nothing; then the
  // registry behaves and the same pull succeeds with the right content.
  void FaultThenRecovery(const std::string& path, const std::string& mode, const std::string& error,
                         std::vector<std::string> env = {}) {
    std::string guest = "go_hello.wasm";
    Push(guest, open_->host() + path);
    Proxy proxy;
    ASSERT_TRUE(proxy.Start(open_->port(), mode));
    auto start = std::chrono::steady_clock::now();
    Output pulled = Wasmlet({"pull", proxy.host() + path}, "", env);
    auto took = std::chrono::steady_clock::now() - start;
    EXPECT_EQ(pulled.code, 1) << pulled.out;
    EXPECT_NE(pulled.err.find(error), std::string::npos) << pulled.err;
    EXPECT_LT(took, std::chrono::seconds(90));  // bounded, never a hang
    ExpectNothingStored(FileDigest(Guest(guest)));

    ASSERT_TRUE(proxy.SetMode("pass"));
    Output again = Wasmlet({"pull", proxy.host() + path}, "", env);
    ASSERT_EQ(again.code, 0) << again.err;
    EXPECT_EQ(Field(again.out, "Module"), FileDigest(Guest(guest)));
    EXPECT_EQ(Slurp(Field(again.out, "Path")), Slurp(Guest(guest)));
    EXPECT_EQ(Wasmlet({"images", "-q"}).out, "127.0.0.1:" + std::to_string(proxy.port()) + path + "\n");
  }
};

TEST_F(FaultTest, TooManyRequestsHonoursRetryAfter) {
  std::string path = "/throttled/hello:v1";
  Push("hello.wasm", open_->host() + path);
  Proxy proxy;
  ASSERT_TRUE(proxy.Start(open_->port(), "throttle:2:1"));
  auto start = std::chrono::steady_clock::now();
  Output pulled = Wasmlet({"pull", proxy.host() + path});
  auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(pulled.code, 0) << pulled.err;
  EXPECT_NE(pulled.err.find("HTTP 429; retrying"), std::string::npos) << pulled.err;
  // Two answers of "Retry-After: 1": at least 2 s of waiting (the back-off alone is 0.6 s).
  EXPECT_GE(took, std::chrono::seconds(2));
  EXPECT_EQ(Field(pulled.out, "Module"), FileDigest(Guest("hello.wasm")));

  // A registry that keeps throttling: a clear final error, nothing stored.
  Proxy always;
  ASSERT_TRUE(always.Start(open_->port(), "throttle:1000:1"));
  Output refused = Wasmlet({"pull", "--data-dir", dir_ + "/other", always.host() + path});
  EXPECT_EQ(refused.code, 1);
  EXPECT_NE(refused.err.find("HTTP 429 Too Many Requests (TOOMANYREQUESTS: injected) after 5 attempts"),
            std::string::npos)
      << refused.err;
  EXPECT_FALSE(fs::exists(dir_ + "/other/tags") && !fs::is_empty(dir_ + "/other/tags"));
}

TEST_F(FaultTest, StalledBlobTimesOutThenRecovers) {
  FaultThenRecovery("/stalled/go:v1", "stall", "transfer stalled: no data received for 1 s (after 5 attempts)",
                    {"WASMLET_REGISTRY_STALL_TIMEOUT=1s"});
}

TEST_F(FaultTest, TruncatedBlobIsRetriedAndNeverStored) {
  FaultThenRecovery("/truncated/go:v1", "truncate", "Transferred a partial file (after 5 attempts)");
}

TEST_F(FaultTest, CorruptedBlobIsRejected) {
  FaultThenRecovery("/corrupted/go:v1", "tamper", "does not match its digest");
}

TEST_F(FaultTest, WrongBlobContentIsRejected) {
  FaultThenRecovery("/wrongblob/go:v1", "wrongblob", "content does not match its digest: expected sha256:");
}

TEST_F(FaultTest, ManifestNotMatchingItsDigestIsRejected) {
  // By tag: the body does not match the registry's Docker-Content-Digest.
  FaultThenRecovery("/wrongmanifest/go:v1", "wrongmanifest", "does not match the content");
  // By digest: the body does not match the digest asked for.
  std::string repo = "/wrongmanifest-digest/go";
  std::string digest = Push("go_hello.wasm", open_->host() + repo + ":v1");
  Proxy proxy;
  ASSERT_TRUE(proxy.Start(open_->port(), "wrongmanifest"));
  std::string ref = proxy.host() + repo + "@" + digest;
  Output pulled = Wasmlet({"pull", "--data-dir", dir_ + "/bydigest", ref});
  EXPECT_EQ(pulled.code, 1);
  EXPECT_NE(pulled.err.find("the registry returned content with digest sha256:"), std::string::npos)
      << pulled.err;
  EXPECT_FALSE(fs::exists(dir_ + "/bydigest/blobs/sha256/" + digest.substr(7)));
  ASSERT_TRUE(proxy.SetMode("pass"));
  Output again = Wasmlet({"pull", "--data-dir", dir_ + "/bydigest", ref});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(Field(again.out, "Digest"), digest);
}

// ---- Disk full (a small tmpfs as the store or the compile cache) ----

class DiskFullTest : public RegistryTest {
 protected:
  // Mounts a tmpfs of `size` at `path`; false (and `why`) if mounting is not permitted.
  bool Mount(const std::string& path, const std::string& size, std::string* why) {
    fs::create_directories(path);
    Output o = Child::Spawn({"mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", path}, {}).Wait();
    if (o.code != 0) {
      *why = "cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): " + o.err;
      return false;
    }
    mounts_.push_back(path);
    return true;
  }
  bool Resize(const std::string& path, const std::string& size) {
    return Child::Spawn({"mount", "-o", "remount,size=" + size, path}, {}).Wait().code == 0;
  }
  void TearDown() override {
    for (const auto& m : mounts_) Child::Spawn({"umount", "-l", m}, {}).Wait();
    RegistryTest::TearDown();
  }
  std::vector<std::string> mounts_;
};

TEST_F(DiskFullTest, PullOntoAFullDiskFailsCleanlyThenSucceeds) {
  std::string why;
  if (!Mount(Store(), "1m", &why)) GTEST_SKIP() << why;
  std::string path = "/diskfull/go:v1";
  Push("go_hello.wasm", open_->host() + path);  // a 2.6 MB layer on a 1 MiB store
  std::string module = FileDigest(Guest("go_hello.wasm"));
  Output pulled = Wasmlet({"pull", open_->host() + path});
  EXPECT_EQ(pulled.code, 1);
  EXPECT_NE(pulled.err.find("No space left on device"), std::string::npos) << pulled.err;
  EXPECT_NE(pulled.err.find(Store() + "/tmp/" + module.substr(7)), std::string::npos) << pulled.err;
  EXPECT_FALSE(fs::exists(BlobPath(module)));
  EXPECT_EQ(Wasmlet({"images", "-q"}).out, "");
  EXPECT_TRUE(fs::is_empty(Store() + "/tmp"));  // the partial download is gone, space is free

  ASSERT_TRUE(Resize(Store(), "16m"));
  Output again = Wasmlet({"pull", open_->host() + path});
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_EQ(Slurp(BlobPath(module)), Slurp(Guest("go_hello.wasm")));
  Output run = Wasmlet({"run", BlobPath(module)});
  EXPECT_EQ(run.code, 0) << run.err;
}

TEST_F(DiskFullTest, CompileCacheOnAFullDiskStillRunsAndNeverKeepsAPartialArtifact) {
  std::string why;
  std::string cache = dir_ + "/cache/wasmlet/modules";
  if (!Mount(cache, "256k", &why)) GTEST_SKIP() << why;
  auto artifacts = [&] {
    std::vector<std::string> names;
    for (const auto& e : fs::recursive_directory_iterator(cache)) {
      if (e.is_regular_file() && e.path().extension() == ".cwasm") names.push_back(e.path().string());
    }
    return names;
  };
  auto leftovers = [&] {
    int n = 0;
    for (const auto& e : fs::recursive_directory_iterator(cache)) {
      if (e.path().filename().string().find(".tmp.") != std::string::npos) ++n;
    }
    return n;
  };
  Output run = Wasmlet({"run", Guest("go_hello.wasm")});  // its artifact is several MB
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_NE(run.out.find("Hello"), std::string::npos) << run.out;
  EXPECT_NE(run.err.find("cannot write compile cache"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("No space left on device"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find(cache + "/"), std::string::npos) << run.err;
  EXPECT_TRUE(artifacts().empty());
  EXPECT_EQ(leftovers(), 0);

  ASSERT_TRUE(Resize(cache, "64m"));
  run = Wasmlet({"run", Guest("go_hello.wasm")});
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.err.find("cannot write compile cache"), std::string::npos) << run.err;
  ASSERT_EQ(artifacts().size(), 1u);
  // The next run maps the artifact (no recompilation warning) and behaves the same.
  Output cached = Wasmlet({"--log-level", "debug", "run", Guest("go_hello.wasm")});
  EXPECT_EQ(cached.code, 0) << cached.err;
  EXPECT_EQ(cached.out, run.out);
  EXPECT_EQ(cached.err.find("unusable"), std::string::npos) << cached.err;
}

}  // namespace
}  // namespace wasmlet::testing
