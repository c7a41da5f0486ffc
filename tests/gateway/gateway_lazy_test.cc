// End-to-end tests of lazy app loading in `wasmlet serve` (docs/gateway.md, "Loading"): apps
// are registered at startup and their modules loaded by the first request that needs them;
// --preload and --check load everything up front.
#include <sys/wait.h>

#include <atomic>
#include <thread>

#include "server_process.h"

namespace gwtest {
namespace {

using namespace std::chrono_literals;

struct CommandResult {
  int code = -1;
  std::string out;
};

// Runs `wasmlet ARGS` to completion (bounded by `timeout`, so a server that wrongly starts
// ends the test instead of hanging it), capturing stdout and stderr together.
CommandResult RunWasmlet(const std::vector<std::string>& args) {
  std::string cmd = "timeout 120 " + std::string(WASMLET_BINARY);
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " 2>&1";
  CommandResult r;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

size_t Count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

// The value of a metric line "NAME VALUE" in /metrics, or -1.
long Metric(const ServerProcess& s, const std::string& name) {
  std::string body = Fetch(s.Url("/metrics")).body;
  auto pos = body.find("\n" + name + " ");
  if (pos == std::string::npos) return -1;
  return std::stol(body.substr(pos + name.size() + 2));
}

class GatewayLazy : public ::testing::Test {
 protected:
  void SetUp() override {
    curl_global_init(CURL_GLOBAL_ALL);
    dir_ = MakeTempDir("wasmlet-gwlazy-");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static std::string Entry(const std::string& route, const std::string& module, const std::string& extra = "") {
    return "[[module]]\nroute = \"" + route + "\"\nmodule = \"" + module + "\"\n" + extra + "\n";
  }
  fs::path dir_;
};

TEST_F(GatewayLazy, ABrokenModuleAnswers500WhileTheOthersServeAndIsRetriedOnlyWhenItChanges) {
  WriteText(dir_ / "broken.wasm", "this is not WebAssembly\n");
  WriteText(dir_ / "m.toml", Entry("/good", Guest("wagi_probe.wasm")) + Entry("/broken", "broken.wasm") +
                                 Entry("/other", Guest("wagi_routes.wasm")));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--module-cache", (dir_ / "cache").string()}, dir_))
      << s.Stderr();
  // Registered, nothing loaded yet.
  EXPECT_EQ(Metric(s, "wasmlet_apps{state=\"configured\"}"), 3);
  EXPECT_EQ(Metric(s, "wasmlet_apps{state=\"loaded\"}"), 0);

  EXPECT_EQ(Fetch(s.Url("/good?location")).status, 302);
  auto broken = Fetch(s.Url("/broken"));
  EXPECT_EQ(broken.status, 500);
  EXPECT_NE(broken.body.find("could not be loaded"), std::string::npos) << broken.body;
  std::string log = s.Stderr();
  // One line naming the route, the file and the reason.
  auto line_at = log.find("route /broken: cannot load module " + (dir_ / "broken.wasm").string());
  ASSERT_NE(line_at, std::string::npos) << log;
  std::string line = log.substr(line_at, log.find('\n', line_at) - line_at);
  EXPECT_NE(line.find("not a WebAssembly module"), std::string::npos) << line;
  EXPECT_EQ(Fetch(s.Url("/other")).status, 200);  // the server stays up and serves the rest

  // Not retried while the file is unchanged: the same 500, no second load attempt.
  EXPECT_EQ(Fetch(s.Url("/broken")).status, 500);
  EXPECT_EQ(Fetch(s.Url("/broken/x")).status, 404);  // an exact route: nothing below it
  EXPECT_EQ(Count(s.Stderr(), "route /broken: cannot load module"), 1u) << s.Stderr();
  EXPECT_EQ(Metric(s, "wasmlet_app_loads_total{result=\"error\"}"), 1);

  // Fixed on disk: the next request loads it.
  fs::remove(dir_ / "broken.wasm");
  fs::copy_file(Guest("wagi_probe.wasm"), dir_ / "broken.wasm");
  EXPECT_EQ(Fetch(s.Url("/broken?location")).status, 302);
  EXPECT_EQ(Metric(s, "wasmlet_apps{state=\"loaded\"}"), 3);
}

TEST_F(GatewayLazy, ConcurrentFirstRequestsCompileTheModuleOnce) {
  // The 2.8 MB Go example takes long enough to compile that the requests overlap it.
  WriteText(dir_ / "m.toml", Entry("/go", std::string(WASMLET_EXAMPLES_OUT) + "/go_hello.wasm"));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache", "--workers", "4"}, dir_)) << s.Stderr();
  constexpr int kClients = 6;
  std::vector<Response> responses(kClients);
  std::vector<std::thread> threads;
  std::atomic<int> ready{0};
  for (int i = 0; i < kClients; ++i) {
    threads.emplace_back([&, i] {
      ready.fetch_add(1);
      while (ready.load() < kClients) std::this_thread::yield();
      responses[i] = Fetch(s.Url("/go"), Request{.timeout_ms = 120000});
    });
  }
  for (auto& t : threads) t.join();
  for (const auto& r : responses) {
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_NE(r.body.find("Go"), std::string::npos);
  }
  EXPECT_EQ(Metric(s, "wasmlet_module_cache_misses_total"), 1);  // compiled once
  EXPECT_EQ(Metric(s, "wasmlet_app_loads_total{result=\"ok\"}"), 1);
}

TEST_F(GatewayLazy, RoutesSubRoutesWorkOnTheFirstRequestAfterALazyLoad) {
  // Under a wildcard app, and under an exact-route app (whose own route does not cover them).
  WriteText(dir_ / "m.toml", Entry("/app/...", Guest("wagi_routes.wasm")) + Entry("/x", Guest("wagi_routes.wasm")));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache"}, dir_)) << s.Stderr();
  auto hello = Fetch(s.Url("/app/hello"));  // the first request of all goes to a sub-route
  EXPECT_EQ(hello.status, 200);
  EXPECT_NE(hello.body.find("hello export"), std::string::npos) << hello.body;
  EXPECT_NE(hello.body.find("X_MATCHED_ROUTE=/app/hello\n"), std::string::npos) << hello.body;
  auto files = Fetch(s.Url("/x/files/a"));
  EXPECT_EQ(files.status, 200);
  EXPECT_NE(files.body.find("files export"), std::string::npos) << files.body;
  EXPECT_NE(files.body.find("SCRIPT_NAME=/x/files\n"), std::string::npos) << files.body;
  EXPECT_EQ(Fetch(s.Url("/x/nothing")).status, 404);
  auto main = Fetch(s.Url("/x"));
  EXPECT_NE(main.body.find("main"), std::string::npos) << main.body;
}

TEST_F(GatewayLazy, PreloadAndCheckFailAtStartupOnABrokenModule) {
  WriteText(dir_ / "broken.wasm", "this is not WebAssembly\n");
  WriteText(dir_ / "m.toml", Entry("/good", Guest("wagi_probe.wasm")) + Entry("/broken", "broken.wasm"));
  for (const std::string flag : {"--preload", "--check"}) {
    auto r = RunWasmlet({"serve", flag, "--no-cache", "-l", "127.0.0.1:0", "-c", (dir_ / "m.toml").string()});
    EXPECT_EQ(r.code, 1) << flag << "\n" << r.out;
    EXPECT_NE(r.out.find("not a WebAssembly module"), std::string::npos) << flag << "\n" << r.out;
    EXPECT_NE(r.out.find("route /broken"), std::string::npos) << flag << "\n" << r.out;
    EXPECT_EQ(r.out.find("Listening on"), std::string::npos) << flag << "\n" << r.out;
  }
}

TEST_F(GatewayLazy, PreloadLoadsEverythingAtStartupAndWarnsThere) {
  WriteText(dir_ / "m.toml", Entry("/a", Guest("wagi_probe.wasm")) + Entry("/b", Guest("wagi_routes.wasm")) +
                                 Entry("/nope", Guest("wagi_probe.wasm"), "entrypoint = \"nope\""));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache", "--preload"}, dir_)) << s.Stderr();
  // Before any request: every module loaded, the missing entrypoint already reported.
  EXPECT_NE(s.Stderr().find("no exported function 'nope'"), std::string::npos) << s.Stderr();
  EXPECT_EQ(Metric(s, "wasmlet_apps{state=\"loaded\"}"), 3);
  EXPECT_EQ(Fetch(s.Url("/b/hello")).status, 200);
  EXPECT_EQ(Fetch(s.Url("/nope")).status, 500);
}

TEST_F(GatewayLazy, CheckFillsTheModuleCacheSoTheFirstRequestCompilesNothing) {
  WriteText(dir_ / "m.toml", Entry("/a", Guest("wagi_probe.wasm")) + Entry("/b", Guest("wagi_routes.wasm")));
  std::string cache = (dir_ / "cache").string();
  auto check = RunWasmlet({"serve", "--check", "--module-cache", cache, "-c", (dir_ / "m.toml").string()});
  ASSERT_EQ(check.code, 0) << check.out;
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--module-cache", cache}, dir_)) << s.Stderr();
  EXPECT_EQ(Fetch(s.Url("/a?location")).status, 302);
  EXPECT_EQ(Fetch(s.Url("/b/hello")).status, 200);
  EXPECT_EQ(Metric(s, "wasmlet_module_cache_misses_total"), 0);
  EXPECT_EQ(Metric(s, "wasmlet_module_cache_hits_total{cache=\"disk\"}"), 2);
}

TEST_F(GatewayLazy, ReloadKeepsLoadedModulesAndKeepsServing) {
  WriteText(dir_ / "m.toml", Entry("/a", Guest("wagi_probe.wasm")));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache", "--no-watch"}, dir_)) << s.Stderr();
  EXPECT_EQ(Fetch(s.Url("/a?location")).status, 302);
  EXPECT_EQ(Metric(s, "wasmlet_app_loads_total{result=\"ok\"}"), 1);
  WriteText(dir_ / "m.toml", Entry("/a", Guest("wagi_probe.wasm")) + Entry("/b", Guest("wagi_routes.wasm")));
  s.Signal(SIGHUP);
  Response r;
  for (int i = 0; i < 300; ++i) {
    r = Fetch(s.Url("/b/hello"));
    if (r.status == 200) break;
    EXPECT_EQ(Fetch(s.Url("/a?location")).status, 302);  // served throughout the reload
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(r.status, 200);
  // /a kept its module (unchanged file): loaded in the new configuration without a new load.
  EXPECT_EQ(Fetch(s.Url("/a?location")).status, 302);
  EXPECT_EQ(Metric(s, "wasmlet_app_loads_total{result=\"ok\"}"), 2);  // /a once, /b once
  EXPECT_EQ(Metric(s, "wasmlet_apps{state=\"loaded\"}"), 2);
}

}  // namespace
}  // namespace gwtest
