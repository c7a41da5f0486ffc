// Hostile modules through the real gateway (docs/gateway.md, "Limits and hostile input"): each
// attack is contained (the guest sees a denial, or the request ends with the documented status
// and a log line saying why) and the server keeps serving other requests.
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "hostile_util.h"

namespace hostile {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kSecret = "s3cr3t-host-value-7f2c";

std::string Entry(const std::string& route, const std::string& module, const std::string& extra = "") {
  return "[[module]]\nroute = \"" + route + "\"\nmodule = \"" + module + "\"\n" + extra + "\n";
}

class HostileModules : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    curl_global_init(CURL_GLOBAL_ALL);
    // A host variable the modules are not given: it must not reach them.
    setenv("WASMLET_HOSTILE_SECRET", kSecret, 1);
    dir_ = MakeTempDir("wasmlet-hostile-modules-");
    fs::path vol = dir_ / "vol";
    fs::create_directories(vol / "sub");
    WriteText(dir_ / "secret.txt", std::string(kSecret) + "\n");
    WriteText(vol / "file.txt", "inside the volume\n");
    fs::create_directory_symlink(dir_, vol / "link-dir");         // absolute, to the parent
    fs::create_symlink(dir_ / "secret.txt", vol / "link-abs");    // absolute, to a file outside
    fs::create_symlink("../secret.txt", vol / "link-rel");        // relative, out of the volume
    fs::create_hard_link(dir_ / "secret.txt", vol / "hard");      // the same file, inside
    std::string hostile = Guest("hostile.wasm");
    std::string vols = "volumes = { \"/data\" = \"vol\" }\n";
    WriteText(dir_ / "modules.toml",
              Entry("/hello", hostile) + Entry("/escape", hostile, vols) +
                  Entry("/loop", Guest("loop.wasm"), "timeout = \"1s\"") +
                  Entry("/hog", Guest("memory_hog.wasm"), "memory_limit = \"32MiB\"") +
                  Entry("/recurse", Guest("recursion.wasm")) +
                  Entry("/flood", hostile, "timeout = \"3s\"") +
                  Entry("/fds", hostile, vols + "timeout = \"5s\"") +
                  Entry("/sleep", hostile, "timeout = \"1s\""));
    server_ = new ServerProcess();
    ASSERT_TRUE(server_->Start({"-c", (dir_ / "modules.toml").string(), "--no-cache", "--workers", "4",
                                "--log-dir", (dir_ / "logs").string()},
                               dir_))
        << server_->Stderr();
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(ServesNormally(*server_));
    rss_before_ = RssKiB(server_->pid());
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static std::string Url(const std::string& path) { return server_->Url(path); }
  static void ExpectRssBounded() {
    long now = RssKiB(server_->pid());
    if (!kRssIsMeaningful) return;
    EXPECT_LT(now - rss_before_, kRssBudgetKiB) << "RSS grew from " << rss_before_ << " KiB to " << now << " KiB";
  }
  static bool LogHas(const std::string& text) {
    return Eventually([&] { return server_->Stderr().find(text) != std::string::npos; }, 5000);
  }
  static std::string RouteLog(const std::string& name) { return ReadText(dir_ / "logs" / (name + ".stderr.log")); }

  static inline ServerProcess* server_ = nullptr;
  static inline fs::path dir_;
  static inline long rss_before_ = 0;
};

TEST_F(HostileModules, EscapesFromTheVolumeAreDenied) {
  auto r = Fetch(Url("/escape?escape"));
  ASSERT_EQ(r.status, 200) << r.body;
  for (const char* label : {"dotdot", "deep-dotdot", "absolute", "absolute-secret", "proc-environ", "proc-maps",
                            "proc-via-volume", "symlink-dir", "symlink-abs", "symlink-rel"}) {
    EXPECT_NE(r.body.find(std::string(label) + ": denied\n"), std::string::npos) << label << "\n" << r.body;
  }
  EXPECT_NE(r.body.find("inside: opened (inside the volume"), std::string::npos) << r.body;  // the control
  // A hard link is the file itself: the host put it in the volume, so it is readable.
  EXPECT_NE(r.body.find("hardlink-host: opened"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("escaped=0"), std::string::npos) << r.body;
  // The denials are in the route's log for the operator.
  EXPECT_TRUE(Eventually([] { return RouteLog("escape").find("hostile: dotdot: open(/data/../secret.txt) denied") != std::string::npos; }))
      << RouteLog("escape");
  EXPECT_TRUE(ServesNormally(*server_));
}

TEST_F(HostileModules, LinksOutOfTheVolumeCannotBeMade) {
  auto r = Fetch(Url("/escape?link"));
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("hardlink-create: denied"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find(kSecret), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("opened"), std::string::npos) << r.body;
  EXPECT_FALSE(fs::exists(dir_ / "vol" / "hard-made"));
}

TEST_F(HostileModules, HostEnvironmentIsNotVisible) {
  auto r = Fetch(Url("/hello?env"));
  ASSERT_EQ(r.status, 200);
  EXPECT_NE(r.body.find("QUERY_STRING=env\n"), std::string::npos) << r.body;  // the control
  EXPECT_EQ(r.body.find("WASMLET_HOSTILE_SECRET"), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find(kSecret), std::string::npos) << r.body;
  EXPECT_EQ(r.body.find("HOME="), std::string::npos) << r.body;
}

TEST_F(HostileModules, OutboundHttpImportFailsNamingTheMissingImport) {
  // Its own server: depending on when modules load, the import fails the start (exit 1) or
  // the route's first request (500); either way the message names the import.
  fs::path dir = MakeTempDir("wasmlet-hostile-http-");
  WriteText(dir / "modules.toml", Entry("/hello", Guest("hostile.wasm")) +
                                      Entry("/http", Guest("hostile_http_import.wasm")));
  ServerProcess server;
  bool started = server.Start({"-c", (dir / "modules.toml").string(), "--no-cache"}, dir);
  if (started) {
    auto r = Fetch(server.Url("/http"));
    EXPECT_EQ(r.status, 500) << r.body;
    EXPECT_TRUE(ServesNormally(server));
  }
  std::string log;
  Eventually([&] {
    log = server.Stderr();
    return log.find("wasi_experimental_http::req") != std::string::npos;
  });
  EXPECT_NE(log.find("wasi_experimental_http::req"), std::string::npos) << log;
  EXPECT_NE(log.find("hostile_http_import.wasm"), std::string::npos) << log;
  server.Stop();
  std::error_code ec;
  fs::remove_all(dir, ec);
}

TEST_F(HostileModules, InfiniteLoopIs504AtTheDeadline) {
  auto start = Clock::now();
  auto r = Fetch(Url("/loop"), Request{.timeout_ms = 30000});
  EXPECT_EQ(r.status, 504);
  EXPECT_GE(Clock::now() - start, 900ms);
  EXPECT_NE(r.body.find("time limit"), std::string::npos) << r.body;
  EXPECT_TRUE(LogHas("route /loop: GET /loop")) << server_->Stderr();
  EXPECT_TRUE(ServesNormally(*server_));
}

TEST_F(HostileModules, MemoryBombIs500WithTheLimitLogged) {
  auto r = Fetch(Url("/hog"), Request{.timeout_ms = 30000});
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("memory limit"), std::string::npos) << r.body;
  EXPECT_TRUE(LogHas("route /hog: GET /hog")) << server_->Stderr();
  EXPECT_TRUE(LogHas("memory limit")) << server_->Stderr();
  EXPECT_TRUE(ServesNormally(*server_));
  ExpectRssBounded();
}

TEST_F(HostileModules, DeepRecursionIs500StackOverflow) {
  auto r = Fetch(Url("/recurse"), Request{.timeout_ms = 30000});
  EXPECT_EQ(r.status, 500);
  EXPECT_TRUE(LogHas("route /recurse: GET /recurse")) << server_->Stderr();
  EXPECT_TRUE(LogHas("stack overflow")) << server_->Stderr();
  EXPECT_TRUE(ServesNormally(*server_));
}

TEST_F(HostileModules, StdoutFloodStreamsWithBoundedMemoryAndEndsWhenTheClientLeaves) {
  {
    Sock s(server_->port());
    s.Send("GET /flood?stdout HTTP/1.1\r\nHost: x\r\n\r\n");
    // Read 16 MiB of the endless body, then hang up.
    while (s.received().size() < (16u << 20) && !s.closed()) s.Pump(1000);
    EXPECT_GE(s.received().size(), 16u << 20);
    EXPECT_NE(s.received().find("Transfer-Encoding: chunked"), std::string::npos);
    ExpectRssBounded();
  }
  // The guest ends (write errors, then the 3 s deadline at the latest) and is logged.
  EXPECT_TRUE(WaitForMetric(*server_, "\nwasmlet_instances_running 0\n", 15000));
  EXPECT_TRUE(LogHas("\"GET /flood?stdout HTTP/1.1\" 200")) << server_->Stderr();
  EXPECT_TRUE(ServesNormally(*server_));
}

TEST_F(HostileModules, StdoutFloodToAClientThatReadsEverythingEndsAtTheTimeout) {
  Sock s(server_->port());
  auto start = Clock::now();
  s.Send("GET /flood?stdout HTTP/1.1\r\nHost: x\r\n\r\n");
  size_t seen = 0;
  while (!s.closed() && Clock::now() - start < 30s) {
    s.Pump(1000);
    seen += s.received().size();
    const_cast<std::string&>(s.received()).clear();  // keep the test's own memory flat
  }
  EXPECT_TRUE(s.closed()) << "the response never ended";
  EXPECT_LT(Clock::now() - start, 20s);
  EXPECT_GT(seen, 1u << 20);
  ExpectRssBounded();
  EXPECT_TRUE(LogHas("route /flood: GET /flood?stdout")) << server_->Stderr();  // the 504-after-streaming
  EXPECT_TRUE(ServesNormally(*server_));
}

TEST_F(HostileModules, StderrFloodIsCappedPerRequestInTheRouteLog) {
  for (int i = 0; i < 3; ++i) {
    auto r = Fetch(Url("/flood?stderr=20000000"), Request{.timeout_ms = 30000});
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.body.find("done"), std::string::npos);
  }
  std::string log;
  EXPECT_TRUE(Eventually([&] {
    log = RouteLog("flood");
    size_t n = 0;
    for (size_t p = 0; (p = log.find("[stderr truncated: ", p)) != std::string::npos; ++p) ++n;
    return n == 3;
  })) << log.size() << " bytes of log";
  // 3 requests of 20 MB each: at most the per-request cap (64 KiB) each, plus the notes.
  EXPECT_LE(log.size(), 3u * (64u * 1024 + 200));
  EXPECT_NE(log.find("bytes dropped]\n"), std::string::npos);
  ExpectRssBounded();
  EXPECT_TRUE(ServesNormally(*server_));
}

TEST_F(HostileModules, ManyOpenFilesDoNotStopTheServerAccepting) {
  // The guest opens files in a loop until the process runs out of descriptors, then ends.
  // A limit of 4096 (the default is often 20k-1M) keeps that loop well inside its 5 s deadline
  // on a loaded machine (ASan, a parallel ctest); the behaviour under test does not depend on
  // the number.
  rlimit lower{4096, 4096};
  ASSERT_EQ(prlimit(server_->pid(), RLIMIT_NOFILE, &lower, nullptr), 0) << strerror(errno);
  auto r = Fetch(Url("/fds?fds"), Request{.timeout_ms = 60000});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_NE(r.body.find("opened "), std::string::npos);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(ServesNormally(*server_));
  // Holding them until its deadline: a connection made meanwhile is accepted once they close.
  auto holder = std::async(std::launch::async, [] { return Fetch(Url("/fds?fds&hold"), Request{.timeout_ms = 60000}); });
  size_t limit = OpenFilesLimit(server_->pid());
  ASSERT_GT(limit, 64u);
  EXPECT_TRUE(Eventually([&] { return OpenFds(server_->pid()) + 16 >= limit; }, 20000))
      << OpenFds(server_->pid()) << " of " << limit << " descriptors open";
  EXPECT_EQ(Fetch(Url("/healthz"), Request{.timeout_ms = 30000}).status, 200);
  EXPECT_EQ(holder.get().status, 504);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(ServesNormally(*server_));
}

TEST_F(HostileModules, SleepForeverInPollOneoffIs504WithinTheTimeout) {
  auto start = Clock::now();
  auto sleeper = std::async(std::launch::async, [] { return Fetch(Url("/sleep?sleep"), Request{.timeout_ms = 30000}); });
  EXPECT_TRUE(ServesNormally(*server_));
  auto r = sleeper.get();
  EXPECT_EQ(r.status, 504) << "curl " << r.error;
  EXPECT_LT(Clock::now() - start, 10s) << "the sleeping guest outlived its 1 s timeout";
  EXPECT_TRUE(ServesNormally(*server_));
}

}  // namespace
}  // namespace hostile
