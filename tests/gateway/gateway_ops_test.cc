// End-to-end tests of `wasmlet serve` that need a server of their own: catch-all routes, the
// bundled examples, Spin manifests, config errors, overload, reload, TLS, shutdown.
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

// Runs `wasmlet ARGS` to completion (for --check), capturing stdout and stderr together.
CommandResult RunWasmlet(const std::vector<std::string>& args) {
  std::string cmd = std::string(WASMLET_BINARY);
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

class GatewayOps : public ::testing::Test {
 protected:
  void SetUp() override {
    curl_global_init(CURL_GLOBAL_ALL);
    dir_ = MakeTempDir("wasmlet-gwops-");
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string Module(const std::string& route, const std::string& extra = "") {
    return "[[module]]\nroute = \"" + route + "\"\nmodule = \"" + Guest("wagi_probe.wasm") + "\"\n" + extra + "\n";
  }
  fs::path dir_;
};

TEST_F(GatewayOps, CatchAllRouteScriptNameIsSlashAndPathInfoTheWholePath) {
  WriteText(dir_ / "m.toml", Module("/...") + Module("/exact"));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache"}, dir_)) << s.Stderr();
  auto env = ParseDump(Fetch(s.Url("/some/where%21?dump")).body);
  EXPECT_EQ(env["SCRIPT_NAME"], "/");
  EXPECT_EQ(env["PATH_INFO"], "/some/where!");
  EXPECT_EQ(env["X_MATCHED_ROUTE"], "/...");
  EXPECT_EQ(ParseDump(Fetch(s.Url("/exact?dump")).body)["X_MATCHED_ROUTE"], "/exact");
  EXPECT_EQ(Fetch(s.Url("/healthz")).body, "OK");  // built-in first, even with a catch-all
}

TEST_F(GatewayOps, DuplicateRoutesWarnAndTheLaterEntryWins) {
  WriteText(dir_ / "m.toml", Module("/dup", "environment = { WHO = \"first\" }") +
                                 Module("/dup", "environment = { WHO = \"second\" }"));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache"}, dir_)) << s.Stderr();
  EXPECT_EQ(ParseDump(Fetch(s.Url("/dup?dump")).body)["WHO"], "second");
  EXPECT_NE(s.Stderr().find("duplicate route '/dup'"), std::string::npos) << s.Stderr();
}

TEST_F(GatewayOps, BundledExamplesWithNoConfig) {
  ServerProcess s;
  ASSERT_TRUE(s.Start({"--no-cache"}, dir_)) << s.Stderr();
  EXPECT_NE(s.Stdout().find("/hello"), std::string::npos);
  auto hello = Fetch(s.Url("/hello"));
  EXPECT_EQ(hello.status, 200);
  EXPECT_EQ(hello.body, "Hello from wasmlet!\n");
  auto env = Fetch(s.Url("/env/x?y=1"));
  EXPECT_NE(env.body.find("PATH_INFO=/x"), std::string::npos) << env.body;
  auto form = Fetch(s.Url("/form"), Request{.method = "POST", .body = "name=Ada+L&message=%3Chi%3E"});
  EXPECT_NE(form.body.find("<dd>Ada L</dd>"), std::string::npos) << form.body;
  EXPECT_NE(form.body.find("&lt;hi&gt;"), std::string::npos);
  auto page = Fetch(s.Url("/static/"));
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.body.find("Static files"), std::string::npos);
  auto css = Fetch(s.Url("/static/style.css"));
  EXPECT_EQ(css.Header("content-type"), "text/css");
  EXPECT_EQ(Fetch(s.Url("/static/../../etc/passwd")).status, 404);
  auto go = Fetch(s.Url("/go?name=Gopher"));
  EXPECT_EQ(go.status, 200);
  EXPECT_NE(go.body.find("Hello, Gopher, from Go!"), std::string::npos) << go.body;
}

TEST_F(GatewayOps, SpinManifestWithTheWagiExecutor) {
  fs::create_directories(dir_ / "assets");
  WriteText(dir_ / "assets" / "hello.txt", "spin file\n");
  fs::copy_file(Guest("wagi_probe.wasm"), dir_ / "probe.wasm");
  WriteText(dir_ / "spin.toml",
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n"
            "[[trigger.http]]\nroute = \"/spin/...\"\ncomponent = \"probe\"\n"
            "executor = { type = \"wagi\", argv = \"${SCRIPT_NAME} spin ${ARGS}\" }\n"
            "[component.probe]\nsource = \"probe.wasm\"\nenvironment = { SPIN = \"yes\" }\n"
            "files = [{ source = \"assets\", destination = \"/data\" }]\n"
            "allowed_outbound_hosts = []\n");
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "spin.toml").string(), "--no-cache"}, dir_)) << s.Stderr();
  auto env = ParseDump(Fetch(s.Url("/spin/x?dump")).body);
  EXPECT_EQ(env["SPIN"], "yes");
  EXPECT_EQ(env["ARG1"], "spin");
  EXPECT_EQ(env["X_MATCHED_ROUTE"], "/spin/...");
  EXPECT_EQ(Fetch(s.Url("/spin/x?file")).body, "spin file\n");
}

TEST_F(GatewayOps, SpinComponentWithoutWagiExecutorIsRejected) {
  fs::copy_file(Guest("wagi_probe.wasm"), dir_ / "probe.wasm");
  WriteText(dir_ / "spin.toml",
            "spin_manifest_version = 2\n[application]\nname = \"t\"\n"
            "[[trigger.http]]\nroute = \"/x\"\ncomponent = \"probe\"\n"
            "[component.probe]\nsource = \"probe.wasm\"\n");
  auto r = RunWasmlet({"serve", "--check", "--no-cache", "-c", (dir_ / "spin.toml").string()});
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("component model"), std::string::npos) << r.out;
}

TEST_F(GatewayOps, WatTextModulesAreAccepted) {
  std::string body = "Content-Type: text/plain\\0a\\0afrom wat\\0a";  // WAT string escapes
  WriteText(dir_ / "app.wat",
            "(module\n"
            "  (import \"wasi_snapshot_preview1\" \"fd_write\" (func $w (param i32 i32 i32 i32) (result i32)))\n"
            "  (memory (export \"memory\") 1)\n"
            "  (data (i32.const 16) \"" + body + "\")\n"
            "  (func (export \"_start\")\n"
            "    (i32.store (i32.const 0) (i32.const 16))\n"
            "    (i32.store (i32.const 4) (i32.const 35))\n"
            "    (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))\n");
  WriteText(dir_ / "m.toml", "[[module]]\nroute = \"/wat\"\nmodule = \"app.wat\"\n");
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache"}, dir_)) << s.Stderr();
  auto r = Fetch(s.Url("/wat"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "from wat\n");
}

TEST_F(GatewayOps, CheckValidatesAndExits) {
  WriteText(dir_ / "m.toml", Module("/a"));
  auto ok = RunWasmlet({"serve", "--check", "--no-cache", "-c", (dir_ / "m.toml").string()});
  EXPECT_EQ(ok.code, 0) << ok.out;
  EXPECT_NE(ok.out.find("OK"), std::string::npos);
}

TEST_F(GatewayOps, ConfigErrorsAreClear) {
  struct Case {
    std::string toml, expect;
  };
  std::vector<Case> cases = {
      {"[[module]]\nroute = \"/a\"\nmodule = \"oci:localhost:1/App:1\"\n", "must be lowercase"},
      {"[[module]]\nroute = \"/a\"\nmodule = \"nope.wasm\"\n", "module 'nope.wasm' not found"},
      {"[[module]]\nmodule = \"x.wasm\"\n", "has no 'route'"},
      {"[[module]]\nroute = \"a\"\nmodule = \"x.wasm\"\n", "route must start with '/'"},
      {"[[module]]\nroute = \"/a\"\nmodule = \"" + Guest("wagi_probe.wasm") + "\"\ntimeout = \"fast\"\n",
       "'timeout'"},
      {"[[module]\n", "invalid TOML"},
      {"[[module]]\nroute = \"/a\"\nmodule = \"" + Guest("wagi_bad_routes.wasm") + "\"\n",
       "_routes line 2"},
  };
  for (const auto& c : cases) {
    WriteText(dir_ / "bad.toml", c.toml);
    auto r = RunWasmlet({"serve", "--check", "--no-cache", "-c", (dir_ / "bad.toml").string()});
    EXPECT_NE(r.code, 0) << c.toml;
    EXPECT_NE(r.out.find(c.expect), std::string::npos) << c.toml << "\n" << r.out;
  }
}

TEST_F(GatewayOps, RelativeModulePathFallsBackToTheWorkingDirectoryWithAWarning) {
  fs::create_directories(dir_ / "conf");
  fs::copy_file(Guest("wagi_probe.wasm"), dir_ / "cwd_probe.wasm");
  WriteText(dir_ / "conf" / "m.toml", "[[module]]\nroute = \"/a\"\nmodule = \"cwd_probe.wasm\"\n");
  ServerProcess s;  // runs in dir_, the config is in dir_/conf
  ASSERT_TRUE(s.Start({"-c", (dir_ / "conf" / "m.toml").string(), "--no-cache"}, dir_)) << s.Stderr();
  EXPECT_EQ(Fetch(s.Url("/a?status")).status, 404);
  EXPECT_NE(s.Stderr().find("working directory"), std::string::npos) << s.Stderr();
}

TEST_F(GatewayOps, OverloadAnswers503WithRetryAfter) {
  WriteText(dir_ / "m.toml", Module("/p"));
  ServerProcess s;
  // --no-inline: every guest takes the worker queue (a quick app would run on an I/O thread).
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache", "--workers", "1", "--queue", "1",
                       "--no-inline"},
                      dir_))
      << s.Stderr();
  // Waits until /metrics shows `line` (instances running, queue depth).
  auto wait_metric = [&](const std::string& line) {
    for (int i = 0; i < 500; ++i) {
      if (Fetch(s.Url("/metrics")).body.find(line) != std::string::npos) return true;
      std::this_thread::sleep_for(10ms);
    }
    return false;
  };
  std::vector<Response> slow(2);
  std::vector<std::thread> threads;
  threads.emplace_back([&] { slow[0] = Fetch(s.Url("/p?sleep=1500")); });
  EXPECT_TRUE(wait_metric("\nwasmlet_instances_running 1\n"));  // the only worker is busy
  threads.emplace_back([&] { slow[1] = Fetch(s.Url("/p?sleep=10")); });
  EXPECT_TRUE(wait_metric("\nwasmlet_queue_depth 1\n"));  // the only queue slot is taken
  auto third = Fetch(s.Url("/p?status"));
  for (auto& t : threads) t.join();
  EXPECT_EQ(third.status, 503);
  EXPECT_EQ(third.Header("retry-after"), "1");
  EXPECT_EQ(slow[0].status, 200);
  EXPECT_EQ(slow[1].status, 200);
}

// A quick app's guests run on the I/O thread that read the request; one that sleeps there has
// a spare thread serve the others meanwhile, and sends its app's next request to a worker.
TEST_F(GatewayOps, QuickAppsRunOnTheIoThreadAndABlockingGuestDoesNotHoldIt) {
  WriteText(dir_ / "m.toml", Module("/p"));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache", "--io-threads", "1"}, dir_)) << s.Stderr();
  auto runs = [&](const char* thread) {
    std::string body = Fetch(s.Url("/metrics")).body;
    std::string key = std::string("\nwasmlet_guest_runs_total{thread=\"") + thread + "\"} ";
    auto pos = body.find(key);
    return pos == std::string::npos ? -1 : std::atoi(body.c_str() + pos + key.size());
  };
  EXPECT_EQ(Fetch(s.Url("/p?status")).status, 404);  // the first request loads the module on a worker
  EXPECT_EQ(Fetch(s.Url("/p?status")).status, 404);  // then the app is known to be quick
  EXPECT_EQ(runs("worker"), 1);
  EXPECT_EQ(runs("io"), 1);

  std::atomic<bool> slow_done{false};
  Response slow;
  std::thread t([&] {
    slow = Fetch(s.Url("/p?sleep=1500"));
    slow_done = true;
  });
  // The only I/O thread sleeps in that guest: /metrics and this request are served by a spare.
  EXPECT_TRUE(WaitForMetric(s, "\nwasmlet_instances_running 1\n")) << Fetch(s.Url("/metrics")).body << s.Stderr();
  auto quick = Fetch(s.Url("/p?status"));
  EXPECT_EQ(quick.status, 404);
  EXPECT_FALSE(slow_done.load());
  t.join();
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.body, "slept\n");
  EXPECT_EQ(runs("io"), 3);

  // The sleep made the app long-running: the next request goes to a worker; that run is quick
  // again, so the one after runs inline.
  EXPECT_EQ(Fetch(s.Url("/p?status")).status, 404);
  EXPECT_EQ(runs("worker"), 2);
  EXPECT_EQ(Fetch(s.Url("/p?status")).status, 404);
  EXPECT_EQ(runs("io"), 4);

  // A response larger than the connection's buffer bound, streamed from an inline guest.
  auto big = Fetch(s.Url("/p?big=3000000"));
  EXPECT_EQ(big.body.size(), 3000000u);
}

TEST_F(GatewayOps, SighupReloadsAndABrokenConfigKeepsTheOldOne) {
  WriteText(dir_ / "m.toml", Module("/old"));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache", "--no-watch"}, dir_)) << s.Stderr();
  EXPECT_EQ(Fetch(s.Url("/old?status")).status, 404);
  EXPECT_EQ(Fetch(s.Url("/new?status")).status, 404);  // no route: the gateway's 404
  WriteText(dir_ / "m.toml", Module("/new"));
  s.Signal(SIGHUP);
  Response r;
  for (int i = 0; i < 200; ++i) {
    r = Fetch(s.Url("/new?location"));
    if (r.status == 302) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(Fetch(s.Url("/old?location")).status, 404);
  WriteText(dir_ / "m.toml", "[[module]]\nroute = \"/broken\"\nmodule = \"missing.wasm\"\n");
  s.Signal(SIGHUP);
  std::string log;
  for (int i = 0; i < 200 && log.find("keeping the previous configuration") == std::string::npos; ++i) {
    std::this_thread::sleep_for(20ms);
    log = s.Stderr();
  }
  EXPECT_NE(log.find("keeping the previous configuration"), std::string::npos) << log;
  EXPECT_EQ(Fetch(s.Url("/new?location")).status, 302);
}

TEST_F(GatewayOps, ChangedConfigFileReloads) {
  WriteText(dir_ / "m.toml", Module("/before"));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache"}, dir_)) << s.Stderr();
  std::this_thread::sleep_for(1100ms);  // mtime has one-second resolution on some filesystems
  WriteText(dir_ / "m.toml", Module("/after"));
  Response r;
  for (int i = 0; i < 300; ++i) {
    r = Fetch(s.Url("/after?location"));
    if (r.status == 302) break;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_EQ(r.status, 302);
}

TEST_F(GatewayOps, GracefulShutdownFinishesInFlightRequests) {
  WriteText(dir_ / "m.toml", Module("/p"));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache"}, dir_)) << s.Stderr();
  Response slow;
  std::thread t([&] { slow = Fetch(s.Url("/p?sleep=700")); });
  EXPECT_TRUE(WaitForMetric(s, "\nwasmlet_instances_running 1\n"));  // the request is in flight
  int code = s.Stop(SIGTERM);
  t.join();
  EXPECT_EQ(code, 0) << s.Stderr();
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(slow.body, "slept\n");
}

TEST_F(GatewayOps, ShutdownGraceIsABoundEvenForAGuestThatNeverEnds) {
  WriteText(dir_ / "m.toml", Module("/p", "timeout = \"60s\""));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache", "--shutdown-grace", "300ms"}, dir_))
      << s.Stderr();
  Response looped;
  std::thread t([&] { looped = Fetch(s.Url("/p?loop"), Request{.timeout_ms = 20000}); });
  EXPECT_TRUE(WaitForMetric(s, "\nwasmlet_instances_running 1\n"));
  auto start = std::chrono::steady_clock::now();
  int code = s.Stop(SIGTERM);
  auto took = std::chrono::steady_clock::now() - start;
  t.join();
  EXPECT_EQ(code, 0) << s.Stderr();
  EXPECT_LT(took, 5s);
  EXPECT_NE(looped.error, CURLE_OK);  // the connection was closed, no answer
}

TEST_F(GatewayOps, Tls) {
  std::string cert = (dir_ / "cert.pem").string(), key = (dir_ / "key.pem").string();
  std::string cmd = "openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1 -keyout " + key +
                    " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  WriteText(dir_ / "m.toml", Module("/p"));
  ServerProcess s;
  ASSERT_TRUE(s.Start({"-c", (dir_ / "m.toml").string(), "--no-cache", "--tls-cert", cert, "--tls-key", key},
                      dir_))
      << s.Stderr();
  ASSERT_EQ(s.base_url().rfind("https://", 0), 0u) << s.base_url();
  auto r = Fetch(s.Url("/p?dump"), Request{.insecure = true});
  EXPECT_EQ(r.status, 200);
  auto env = ParseDump(r.body);
  EXPECT_EQ(env["X_FULL_URL"].rfind("https://", 0), 0u);
  auto big = Fetch(s.Url("/p?big=3000000"), Request{.insecure = true});
  EXPECT_EQ(big.body.size(), 3000000u);
}

}  // namespace
}  // namespace gwtest
