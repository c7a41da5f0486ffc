// Unit tests of the gateway layer against a fake runtime and a fake connection: config
// parsing, routing, CGI mapping, the response parser and the streaming state machine.
#include <gtest/gtest.h>

#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <fstream>
#include <thread>
#include <unistd.h>

#include "gateway/cgi.h"
#include "gateway/config.h"
#include "gateway/gateway.h"
#include "gateway/response.h"
#include "gateway/router.h"

namespace wasmlet::gateway {
namespace {

namespace fs = std::filesystem;

// ---- fakes ---------------------------------------------------------------------------------

class FakeModule : public runtime::Module {
 public:
  using Handler = std::function<runtime::InvokeResult(const runtime::InvokeRequest&)>;
  FakeModule(std::string name, std::vector<std::string> exports, Handler handler)
      : name_(std::move(name)), exports_(std::move(exports)), handler_(std::move(handler)) {}
  const std::string& digest() const override { return name_; }
  const std::string& name() const override { return name_; }
  bool HasFunctionExport(std::string_view n) const override {
    return std::find(exports_.begin(), exports_.end(), n) != exports_.end();
  }
  std::vector<std::string> FunctionExports() const override { return exports_; }
  Result<runtime::InvokeResult> Invoke(const runtime::InvokeRequest& request) const override {
    if (!HasFunctionExport(request.entrypoint)) {
      return MakeError(Phase::kInstantiate, "no export " + request.entrypoint, name_);
    }
    return handler_(request);
  }

 private:
  std::string name_;
  std::vector<std::string> exports_;
  Handler handler_;
};

class FakeRuntime : public runtime::Runtime {
 public:
  std::map<std::string, std::shared_ptr<const runtime::Module>> modules;  // by path
  std::atomic<int> loads{0};                 // LoadFile calls
  std::chrono::milliseconds load_delay{0};  // a slow compile
  Result<std::shared_ptr<const runtime::Module>> Load(std::string_view, const std::string& name) override {
    return LoadFile(name);
  }
  Result<std::shared_ptr<const runtime::Module>> LoadFile(const std::string& path) override {
    loads.fetch_add(1);
    if (load_delay.count() > 0) std::this_thread::sleep_for(load_delay);
    auto it = modules.find(path);
    if (it == modules.end()) return MakeError(Phase::kIo, "no such module", path);
    return it->second;
  }
  Result<std::string> Precompile(std::string_view, const std::string&) override { return std::string(); }
  runtime::RuntimeStats Stats() const override { return {}; }
  std::string EngineDescription() const override { return "fake"; }
};

// Records what would go to the socket; timers fire only when the test says so.
class FakeSink : public ResponseSink, public Scheduler {
 public:
  void Send(std::string bytes) override {
    std::lock_guard lock(mu);
    out += bytes;
  }
  bool WaitWritable() override { return !gone; }
  void Complete(bool close) override {
    std::lock_guard lock(mu);
    completed = true;
    closed = close;
  }
  void Abort() override {
    std::lock_guard lock(mu);
    aborted = true;
  }
  void After(std::chrono::milliseconds, std::function<void()> fn) override { timer = std::move(fn); }
  std::string Out() {
    std::lock_guard lock(mu);
    return out;
  }

  std::mutex mu;
  std::string out;
  bool completed = false, closed = false, aborted = false, gone = false;
  std::function<void()> timer;
};

runtime::InvokeResult Exited(int code = 0) {
  runtime::InvokeResult r;
  r.exit_code = code;
  return r;
}

fs::path TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "wasmlet-gwunit-XXXXXX").string();
  return fs::path(mkdtemp(tmpl.data()));
}

void Write(const fs::path& p, const std::string& text) { std::ofstream(p) << text; }

// ---- config --------------------------------------------------------------------------------

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir();
    Write(dir_ / "a.wasm", "x");
    fs::create_directories(dir_ / "vol");
  }
  void TearDown() override { fs::remove_all(dir_); }
  Result<GatewayConfig> Parse(const std::string& text, LoadOptions options = {}) {
    options.working_dir = "/nonexistent-wd";
    return ParseModulesToml(text, (dir_ / "modules.toml").string(), options);
  }
  fs::path dir_;
};

TEST(WorkerPoolTest, ARetiredThreadIsReplacedAndJobsKeepRunning) {
  WorkerPool pool(2, 100);
  std::mutex mu;
  std::condition_variable cv;
  int done = 0, on_retired_thread = 0;
  static thread_local bool retired = false;
  auto run = [&](bool retire) {
    ASSERT_TRUE(pool.TryPost([&, retire] {
      std::lock_guard lock(mu);
      on_retired_thread += retired;
      if (retire) {
        WorkerPool::RetireCurrentThread();
        retired = true;
      }
      ++done;
      cv.notify_all();
    }));
  };
  // Each retiring job ends its thread and a fresh one replaces it: no job ever runs on a
  // thread that retired, and the pool keeps its size.
  for (int i = 1; i <= 5; ++i) {
    run(true);
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done == i; }));
  }
  EXPECT_EQ(pool.threads(), 2u);
  for (int i = 0; i < 50; ++i) run(false);
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return done == 55; }));
  }
  EXPECT_EQ(on_retired_thread, 0);
  EXPECT_EQ(pool.threads(), 2u);
  pool.Stop();  // joins the workers and the retired threads
}

TEST_F(ConfigTest, AllWagiKeysAndExtensions) {
  auto c = Parse(R"(
[[module]]
route = "/x/..."
module = "a.wasm"
entrypoint = "serve"
volumes = { "/data" = "vol" }
environment = { A = "1", B = "two" }
allowed_hosts = ["https://example.com"]
http_max_concurrency = 4
argv = "${SCRIPT_NAME} ${ARGS}"
memory_limit = "16MiB"
timeout = "250ms"
max_concurrency = 3
)");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  ASSERT_EQ(c->apps.size(), 1u);
  const AppConfig& a = c->apps[0];
  EXPECT_EQ(a.route, "/x/...");
  EXPECT_EQ(a.module_path, (dir_ / "a.wasm").string());
  EXPECT_EQ(a.entrypoint, "serve");
  ASSERT_EQ(a.volumes.size(), 1u);
  EXPECT_EQ(a.volumes[0].guest_path, "/data");
  EXPECT_EQ(a.volumes[0].host_path, (dir_ / "vol").string());
  EXPECT_FALSE(a.volumes[0].read_only);
  EXPECT_EQ(a.environment.size(), 2u);
  EXPECT_EQ(a.allowed_hosts, std::vector<std::string>{"https://example.com"});
  EXPECT_EQ(a.http_max_concurrency, 4u);
  EXPECT_EQ(*a.argv, "${SCRIPT_NAME} ${ARGS}");
  EXPECT_EQ(a.limits.memory_bytes, 16u << 20);
  EXPECT_EQ(a.limits.timeout.count(), 250);
  EXPECT_EQ(a.limits.max_concurrency, 3u);
  EXPECT_TRUE(c->warnings.empty());
}

TEST_F(ConfigTest, DefaultsAreDocumentedValues) {
  auto c = Parse("[[module]]\nroute = \"/\"\nmodule = \"file://" + (dir_ / "a.wasm").string() + "\"\n");
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  EXPECT_EQ(c->apps[0].entrypoint, "_start");
  EXPECT_EQ(c->apps[0].limits.memory_bytes, kDefaultMemoryBytes);
  EXPECT_EQ(c->apps[0].limits.timeout, kDefaultTimeout);
  EXPECT_EQ(c->apps[0].limits.max_concurrency, kDefaultMaxConcurrency);
  EXPECT_FALSE(c->apps[0].argv.has_value());
}

TEST_F(ConfigTest, UnknownKeysWarnByName) {
  auto c = Parse("[[module]]\nroute = \"/\"\nmodule = \"a.wasm\"\ncolour = \"red\"\n[other]\n");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->warnings.size(), 2u);
  EXPECT_NE(c->warnings[0].find("'other'"), std::string::npos);
  EXPECT_NE(c->warnings[1].find("'colour'"), std::string::npos);
}

TEST_F(ConfigTest, DuplicateRoutesWarnNamingBothEntries) {
  auto c = Parse("[[module]]\nroute = \"/d\"\nmodule = \"a.wasm\"\n[[module]]\nroute = \"/d\"\nmodule = \"a.wasm\"\n");
  ASSERT_TRUE(c.ok());
  ASSERT_EQ(c->warnings.size(), 1u);
  EXPECT_NE(c->warnings[0].find("module #1"), std::string::npos);
  EXPECT_NE(c->warnings[0].find("module #2"), std::string::npos);
}

TEST_F(ConfigTest, OciWithoutResolverIsAClearErrorAndWithOneUsesIt) {
  std::string text = "[[module]]\nroute = \"/\"\nmodule = \"oci:reg.example/app@sha256:abc\"\n";
  auto no = Parse(text);
  ASSERT_FALSE(no.ok());
  EXPECT_NE(no.error().message.find("oci: references need"), std::string::npos);
  LoadOptions options;
  std::string asked;
  options.oci_resolver = [&](const std::string& ref) -> Result<std::string> {
    asked = ref;
    return std::string("/pulled/app.wasm");
  };
  auto yes = Parse(text, options);
  ASSERT_TRUE(yes.ok()) << yes.error().ToString();
  EXPECT_EQ(asked, "reg.example/app@sha256:abc");
  EXPECT_EQ(yes->apps[0].module_path, "/pulled/app.wasm");
}

TEST_F(ConfigTest, Errors) {
  EXPECT_FALSE(Parse("").ok());
  EXPECT_FALSE(Parse("[[module]]\nroute = \"/\"\n").ok());
  EXPECT_FALSE(Parse("[[module]]\nroute = \"/x/.../y\"\nmodule = \"a.wasm\"\n").ok());
  EXPECT_FALSE(Parse("[[module]]\nroute = \"/x...\"\nmodule = \"a.wasm\"\n").ok());
  EXPECT_FALSE(Parse("[[module]]\nroute = \"/\"\nmodule = \"a.wasm\"\nvolumes = { \"/d\" = \"missing\" }\n").ok());
  EXPECT_FALSE(Parse("[[module]]\nroute = \"/\"\nmodule = \"a.wasm\"\nmemory_limit = \"lots\"\n").ok());
  EXPECT_FALSE(Parse("[[module]]\nroute = \"/\"\nmodule = \"a.wasm\"\nenvironment = { A = 1 }\n").ok());
  auto err = Parse("[[module]]\nroute = 3\nmodule = \"a.wasm\"\n");
  ASSERT_FALSE(err.ok());
  EXPECT_NE(err.error().where.find("modules.toml:2"), std::string::npos) << err.error().where;
}

TEST_F(ConfigTest, SpinManifest) {
  auto c = ParseSpinToml(R"(
spin_manifest_version = 2
[application]
name = "x"
[[trigger.http]]
route = "/s/..."
component = "c"
executor = { type = "wagi", argv = "${ARGS}", entrypoint = "go" }
[component.c]
source = "a.wasm"
environment = { K = "v" }
allowed_outbound_hosts = ["https://a.example"]
files = [{ source = "vol", destination = "/v" }, "vol/*.txt"]
)", (dir_ / "spin.toml").string(), {});
  ASSERT_TRUE(c.ok()) << c.error().ToString();
  const AppConfig& a = c->apps[0];
  EXPECT_EQ(a.route, "/s/...");
  EXPECT_EQ(*a.argv, "${ARGS}");
  EXPECT_EQ(a.entrypoint, "go");
  ASSERT_EQ(a.volumes.size(), 2u);
  EXPECT_EQ(a.volumes[0].guest_path, "/v");
  EXPECT_TRUE(a.volumes[0].read_only);
  EXPECT_EQ(a.volumes[1].guest_path, "/vol");
  EXPECT_EQ(a.allowed_hosts.size(), 1u);
}

TEST_F(ConfigTest, SpinWithoutWagiExecutorIsRejected) {
  auto c = ParseSpinToml(
      "spin_manifest_version = 2\n[[trigger.http]]\nroute = \"/\"\ncomponent = \"c\"\n"
      "[component.c]\nsource = \"a.wasm\"\n",
      (dir_ / "spin.toml").string(), {});
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.error().message.find("component model"), std::string::npos);
}

TEST(ParseSizeDuration, Units) {
  EXPECT_EQ(*ParseSize("64MiB"), 64u << 20);
  EXPECT_EQ(*ParseSize("1G"), 1u << 30);
  EXPECT_EQ(*ParseSize("512"), 512u);
  EXPECT_FALSE(ParseSize("x").ok());
  EXPECT_EQ(ParseDuration("2s")->count(), 2000);
  EXPECT_EQ(ParseDuration("150ms")->count(), 150);
  EXPECT_FALSE(ParseDuration("soon").ok());
}

// ---- router --------------------------------------------------------------------------------

Router MakeRouter(std::vector<std::string> patterns, std::vector<std::string>* warnings = nullptr) {
  std::vector<Route> routes;
  for (size_t i = 0; i < patterns.size(); ++i) routes.push_back(Route{patterns[i], i, "_start", "#" + std::to_string(i)});
  return Router::Build(std::move(routes), warnings);
}

std::string MatchOf(const Router& r, const std::string& path) {
  auto m = r.Match(path);
  return m ? m->route->pattern + "|" + m->script_name + "|" + m->raw_path_info : "none";
}

TEST(RouterTest, PrecedenceAndWildcardBoundaries) {
  std::vector<std::string> warnings;
  Router r = MakeRouter({"/...", "/a/...", "/a", "/a/b/...", "/x/"}, &warnings);
  EXPECT_EQ(MatchOf(r, "/a"), "/a|/a|");
  EXPECT_EQ(MatchOf(r, "/a/"), "/a/...|/a|/");
  EXPECT_EQ(MatchOf(r, "/a/c"), "/a/...|/a|/c");
  EXPECT_EQ(MatchOf(r, "/a/b"), "/a/b/...|/a/b|");
  EXPECT_EQ(MatchOf(r, "/a/b/c/d"), "/a/b/...|/a/b|/c/d");
  EXPECT_EQ(MatchOf(r, "/ab"), "/...|/|/ab");
  EXPECT_EQ(MatchOf(r, "/x/"), "/x/|/x/|");
  EXPECT_EQ(MatchOf(r, "/x"), "/...|/|/x");
  EXPECT_FALSE(warnings.empty());  // overlaps are reported
}

TEST(RouterTest, NoMatchAndDuplicates) {
  std::vector<std::string> warnings;
  Router r = MakeRouter({"/a", "/a", "/b/..."}, &warnings);
  EXPECT_EQ(MatchOf(r, "/c"), "none");
  EXPECT_EQ(MatchOf(r, "/bb"), "none");
  EXPECT_EQ(r.Match("/a")->route->app, 1u);  // later wins
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("#0"), std::string::npos);
  EXPECT_NE(warnings[0].find("#1"), std::string::npos);
}

TEST(RouterTest, JoinRoute) {
  EXPECT_EQ(JoinRoute("/app/...", "/a"), "/app/a");
  EXPECT_EQ(JoinRoute("/app/...", "/a/..."), "/app/a/...");
  EXPECT_EQ(JoinRoute("/...", "/a"), "/a");
  EXPECT_EQ(JoinRoute("/app", "/a"), "/app/a");
  // Every sub-route of an app lies at or below its SubRouteBase (what lazy routing relies on).
  EXPECT_EQ(SubRouteBase("/app/..."), "/app");
  EXPECT_EQ(SubRouteBase("/x/"), "/x");
  EXPECT_EQ(SubRouteBase("/..."), "");
}

TEST(RouterTest, ManyWildcardRoutesMatchByPathSegment) {
  std::vector<std::string> patterns;
  for (int i = 0; i < 5000; ++i) patterns.push_back("/app" + std::to_string(i) + "/...");
  patterns.push_back("/app1/deep/...");
  Router r = MakeRouter(patterns);
  EXPECT_EQ(MatchOf(r, "/app4999/x"), "/app4999/...|/app4999|/x");
  EXPECT_EQ(MatchOf(r, "/app1/deep/er"), "/app1/deep/...|/app1/deep|/er");
  EXPECT_EQ(MatchOf(r, "/app1/deeper"), "/app1/...|/app1|/deeper");
  EXPECT_EQ(MatchOf(r, "/app49999"), "none");
  EXPECT_EQ(MatchOf(r, "*"), "none");
}

TEST(RoutesOutputTest, ParsesAndRejectsMalformedLines) {
  auto ok = ParseRoutesOutput("/a one\n\n  /b/...   two  \n", "m.wasm");
  ASSERT_TRUE(ok.ok());
  ASSERT_EQ(ok->size(), 2u);
  EXPECT_EQ((*ok)[1].first, "/b/...");
  EXPECT_EQ((*ok)[1].second, "two");
  auto bad = ParseRoutesOutput("/a one\nnope\n", "m.wasm");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.error().message.find("line 2"), std::string::npos);
  EXPECT_EQ(bad.error().where, "m.wasm");
  EXPECT_FALSE(ParseRoutesOutput("/a one two\n", "m").ok());
  EXPECT_FALSE(ParseRoutesOutput("/a\n", "m").ok());
}

// ---- CGI -----------------------------------------------------------------------------------

TEST(CgiTest, PercentDecode) {
  EXPECT_EQ(PercentDecode("/a%20b%2Fc"), "/a b/c");
  EXPECT_EQ(PercentDecode("%zz%4"), "%zz%4");
  EXPECT_EQ(PercentDecode("a+b"), "a+b");
}

TEST(CgiTest, ArgvWithAndWithoutTemplate) {
  RequestInfo r;
  r.target = "/p/x?a=1&b&c=3";
  EXPECT_EQ(BuildArgv(r, std::nullopt), (std::vector<std::string>{"/p/x", "a=1", "b", "c=3"}));
  EXPECT_EQ(BuildArgv(r, std::string("  run ${SCRIPT_NAME}  --q ${ARGS} ")),
            (std::vector<std::string>{"run", "/p/x", "--q", "a=1", "b", "c=3"}));
  r.target = "/p";
  EXPECT_EQ(BuildArgv(r, std::nullopt), (std::vector<std::string>{"/p"}));
  r.target = "/${ARGS}?z";
  EXPECT_EQ(BuildArgv(r, std::string("${SCRIPT_NAME}")), (std::vector<std::string>{"/${ARGS}"}));
}

TEST(CgiTest, EnvironmentPrecedenceAndHeaders) {
  Route route{"/r/...", 0, "_start", ""};
  RouteMatch match{&route, "/r", "/x%20y"};
  RequestInfo req;
  req.method = "PUT";
  req.target = "/r/x%20y?q=1";
  req.headers = {{"Host", "h.example"}, {"X-Multi", "1"}, {"x-multi", "2"}, {"Connection", "keep-alive"},
                 {"Authorization", "secret"}, {"Content-Type", "a/b"}};
  req.body_size = 7;
  req.remote_addr = "10.0.0.1";
  req.local_port = 8443;
  req.tls = true;
  EnvList global = {{"G", "g"}, {"SAME", "global"}, {"REQUEST_METHOD", "nope"}};
  EnvList module = {{"SAME", "module"}};
  auto env = BuildCgiEnv(req, match, module, CgiSettings{"unused:1", &global});
  std::map<std::string, std::string> m(env.begin(), env.end());
  EXPECT_EQ(m.size(), env.size());  // no duplicate names
  EXPECT_EQ(m["G"], "g");
  EXPECT_EQ(m["SAME"], "module");
  EXPECT_EQ(m["REQUEST_METHOD"], "PUT");
  EXPECT_EQ(m["HTTP_X_MULTI"], "1, 2");
  EXPECT_EQ(m.count("HTTP_CONNECTION"), 0u);
  EXPECT_EQ(m.count("HTTP_AUTHORIZATION"), 0u);
  EXPECT_EQ(m["CONTENT_TYPE"], "a/b");
  EXPECT_EQ(m["CONTENT_LENGTH"], "7");
  EXPECT_EQ(m["SERVER_NAME"], "h.example");
  EXPECT_EQ(m["SERVER_PORT"], "8443");
  EXPECT_EQ(m["X_FULL_URL"], "https://h.example:8443/r/x%20y?q=1");
  EXPECT_EQ(m["PATH_INFO"], "/x y");
  EXPECT_EQ(m["X_RAW_PATH_INFO"], "/x%20y");
  EXPECT_EQ(m["SCRIPT_NAME"], "/r");
}

TEST(CgiTest, Ipv6HostHeader) {
  Route route{"/r", 0, "_start", ""};
  RouteMatch match{&route, "/r", ""};
  RequestInfo req;
  req.target = "/r";
  req.headers = {{"Host", "[::1]:3000"}};
  auto env = BuildCgiEnv(req, match, {}, {});
  std::map<std::string, std::string> m(env.begin(), env.end());
  EXPECT_EQ(m["SERVER_NAME"], "[::1]");
  EXPECT_EQ(m["SERVER_PORT"], "3000");
}

// ---- response parser -----------------------------------------------------------------------

TEST(HeadParserTest, SplitAcrossWritesAndCrlf) {
  CgiHeadParser p;
  std::string out = "Content-Type: text/plain\r\nX-A: 1\r";
  EXPECT_EQ(p.Feed(out), out.size());
  std::string rest = "\n\r\nbody";
  size_t used = p.Feed(rest);
  EXPECT_EQ(rest.substr(used), "body");
  EXPECT_EQ(p.state(), CgiHeadParser::State::kBody);
  EXPECT_EQ(p.head().headers.size(), 2u);
}

TEST(HeadParserTest, StatusRules) {
  auto parse = [](const std::string& s) {
    CgiHeadParser p;
    p.Feed(s);
    p.EndOfOutput();
    return p;
  };
  EXPECT_EQ(parse("Status: 418 Teapot\n\n").head().status, 418);
  EXPECT_EQ(parse("Status: 418 Teapot\n\n").head().reason, "Teapot");
  EXPECT_EQ(parse("Location: /x\n\n").head().status, 302);
  EXPECT_EQ(parse("Location: /x\nStatus: 201\n\n").head().status, 201);
  EXPECT_EQ(parse("Status: 201\nLocation: /x\n\n").head().status, 201);
  EXPECT_EQ(parse("Status: 2000\n\n").error_status(), 502);
  EXPECT_EQ(parse("Status: 99\n\n").error_status(), 502);
  EXPECT_EQ(parse("Status: \n\n").error_status(), 502);
  EXPECT_EQ(parse("X-Only: 1\n\n").error_status(), 500);
  EXPECT_EQ(parse("").error_status(), 500);
  // No blank line at all: the output is the head.
  EXPECT_EQ(parse("Content-Type: a/b\n").state(), CgiHeadParser::State::kBody);
  auto p = parse("Content-Type: a/b\nno colon\nBad Name: x\nX-Bin: a\x01z\nTransfer-Encoding: chunked\n\n");
  EXPECT_EQ(p.state(), CgiHeadParser::State::kBody);
  EXPECT_EQ(p.head().headers.size(), 1u);
  EXPECT_EQ(p.warnings().size(), 4u);
}

TEST(HeadParserTest, OversizedHeadIs502) {
  CgiHeadParser p;
  p.Feed("Content-Type: a/b\nX: " + std::string(70000, 'a'));
  EXPECT_EQ(p.error_status(), 502);
}

// ---- streaming writer ----------------------------------------------------------------------

TEST(ResponseWriterTest, SmallOutputIsHeldAndGetsContentLength) {
  auto sink = std::make_shared<FakeSink>();
  auto w = std::make_shared<ResponseWriter>(sink, StreamSettings{}, RequestFraming{});
  w->Start(*sink);
  EXPECT_TRUE(w->OnOutput("Content-Type: text/plain\n\nhel"));
  EXPECT_TRUE(w->OnOutput("lo"));
  EXPECT_EQ(sink->Out(), "");  // held back
  w->Finish(true, 0, "");
  EXPECT_EQ(sink->Out(), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_TRUE(sink->completed);
  EXPECT_FALSE(sink->closed);
}

TEST(ResponseWriterTest, FailureWhileHoldingIsACleanError) {
  auto sink = std::make_shared<FakeSink>();
  auto w = std::make_shared<ResponseWriter>(sink, StreamSettings{}, RequestFraming{});
  w->OnOutput("Content-Type: text/plain\n\npartial");
  w->Finish(false, 504, "time limit");
  EXPECT_EQ(sink->Out().rfind("HTTP/1.1 504 Gateway Timeout\r\n", 0), 0u);
  EXPECT_EQ(sink->Out().find("partial"), std::string::npos);
  EXPECT_EQ(w->status(), 504);
}

TEST(ResponseWriterTest, TimerStartsStreamingChunkedAndFailureAborts) {
  auto sink = std::make_shared<FakeSink>();
  auto w = std::make_shared<ResponseWriter>(sink, StreamSettings{}, RequestFraming{});
  w->Start(*sink);
  ASSERT_TRUE(sink->timer);
  w->OnOutput("Content-Type: text/plain\n\nfirst");
  sink->timer();  // the hold time passed
  EXPECT_EQ(sink->Out(), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n");
  w->OnOutput("more");
  w->Finish(false, 500, "trap");
  EXPECT_TRUE(sink->aborted);
  EXPECT_FALSE(sink->completed);
  EXPECT_EQ(sink->Out().find("0\r\n\r\n"), std::string::npos);
  EXPECT_TRUE(w->aborted());
}

TEST(ResponseWriterTest, TimerBeforeTheHeadCompletesWaitsForIt) {
  auto sink = std::make_shared<FakeSink>();
  auto w = std::make_shared<ResponseWriter>(sink, StreamSettings{}, RequestFraming{});
  w->Start(*sink);
  w->OnOutput("Content-Type: te");
  sink->timer();
  EXPECT_EQ(sink->Out(), "");
  w->OnOutput("xt/plain\n\nx");  // head complete after the timer: streams at once
  EXPECT_NE(sink->Out().find("1\r\nx\r\n"), std::string::npos);
  w->Finish(true, 0, "");
  EXPECT_TRUE(sink->completed);
  EXPECT_NE(sink->Out().find("0\r\n\r\n"), std::string::npos);
}

TEST(ResponseWriterTest, ByteBoundStartsStreaming) {
  auto sink = std::make_shared<FakeSink>();
  StreamSettings s;
  s.hold_bytes = 10;
  auto w = std::make_shared<ResponseWriter>(sink, s, RequestFraming{});
  w->OnOutput("Content-Type: a/b\n\n0123456789");
  EXPECT_NE(sink->Out().find("Transfer-Encoding: chunked"), std::string::npos);
  w->Finish(true, 0, "");
  EXPECT_TRUE(w->streamed());
}

TEST(ResponseWriterTest, DeclaredContentLengthIsHonouredWhenStreaming) {
  auto sink = std::make_shared<FakeSink>();
  StreamSettings s;
  s.hold_bytes = 1;
  auto w = std::make_shared<ResponseWriter>(sink, s, RequestFraming{});
  w->OnOutput("Content-Type: a/b\nContent-Length: 3\n\nab");
  w->OnOutput("cdef");
  w->Finish(true, 0, "");
  EXPECT_EQ(sink->Out(), "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_TRUE(sink->completed);
}

TEST(ResponseWriterTest, Http10WithoutLengthIsCloseDelimited) {
  auto sink = std::make_shared<FakeSink>();
  StreamSettings s;
  s.hold_bytes = 1;
  auto w = std::make_shared<ResponseWriter>(sink, s, RequestFraming{false, false, true});
  w->OnOutput("Content-Type: a/b\n\nabc");
  w->Finish(true, 0, "");
  EXPECT_EQ(sink->Out(), "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nConnection: close\r\n\r\nabc");
  EXPECT_TRUE(sink->closed);
}

TEST(ResponseWriterTest, BadHeadFailsImmediatelyAndStopsTheModule) {
  auto sink = std::make_shared<FakeSink>();
  auto w = std::make_shared<ResponseWriter>(sink, StreamSettings{}, RequestFraming{});
  EXPECT_FALSE(w->OnOutput("Status: nope\n\n"));
  EXPECT_EQ(sink->Out().rfind("HTTP/1.1 502", 0), 0u);
  w->Finish(true, 0, "");  // no second response
  EXPECT_EQ(sink->Out().find("HTTP/1.1", 5), std::string::npos);
}

TEST(TimerThreadTest, RunsCallbacksInDeadlineOrderAfterTheirDelay) {
  TimerThread timers;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<int> order;
  auto start = std::chrono::steady_clock::now();
  auto add = [&](int id) {
    std::lock_guard lock(mu);
    order.push_back(id);
    cv.notify_all();
  };
  timers.After(std::chrono::milliseconds(60), [&] { add(2); });
  timers.After(std::chrono::milliseconds(20), [&] { add(1); });  // earlier deadline wakes the thread
  std::unique_lock lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return order.size() == 2; }));
  EXPECT_EQ(order, (std::vector<int>{1, 2}));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(60));
}

// ---- gateway dispatch with the fake runtime ------------------------------------------------

class GatewayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rt_.modules["/m/app.wasm"] = std::make_shared<FakeModule>(
        "app", std::vector<std::string>{"_start", "_routes", "sub"},
        [this](const runtime::InvokeRequest& req) {
          if (req.entrypoint == "_routes") {
            req.stdout_callback("/sub sub\n");
            return Exited();
          }
          {
            std::lock_guard lock(last_mu_);  // requests run on two workers at once
            last_ = req;
          }
          std::string body = "Content-Type: text/plain\n\n" + req.entrypoint + ":" + req.stdin_data;
          req.stdout_callback(body);
          if (req.stdin_data == "trap") {
            runtime::InvokeResult r;
            r.outcome = runtime::Outcome::kTrapped;
            return r;
          }
          return Exited();
        });
    GatewayConfig config;
    AppConfig app;
    app.route = "/app/...";
    app.module_path = "/m/app.wasm";
    app.environment = {{"E", "1"}};
    config.apps.push_back(app);
    auto snap = LoadSnapshot(config, rt_, "");
    ASSERT_TRUE(snap.ok()) << snap.error().ToString();
    GatewayOptions options;
    options.workers = 2;
    gateway_ = std::make_unique<Gateway>(rt_, options);
    gateway_->SetSnapshot(*snap);
  }

  std::string Serve(const std::string& target, const std::string& body = "") {
    auto sink = std::make_shared<FakeSink>();
    RequestInfo req;
    req.method = "POST";
    req.target = target;
    req.body_size = body.size();
    gateway_->Handle(req, body, sink);
    for (int i = 0; i < 500; ++i) {
      {
        std::lock_guard lock(sink->mu);
        if (sink->completed || sink->aborted) break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    return sink->Out();
  }

  FakeRuntime rt_;
  std::unique_ptr<Gateway> gateway_;
  std::mutex last_mu_;
  runtime::InvokeRequest last_;  // guarded by last_mu_ while requests run
};

TEST_F(GatewayTest, DispatchesToTheModuleWithBodyAndEnv) {
  std::string out = Serve("/app/x", "payload");
  EXPECT_NE(out.find("\r\n\r\n_start:payload"), std::string::npos) << out;
  EXPECT_EQ(last_.args[0], "/app/x");
  bool has_env = false;
  for (auto& [k, v] : last_.env) has_env = has_env || (k == "E" && v == "1");
  EXPECT_TRUE(has_env);
  EXPECT_EQ(last_.limits.memory_bytes, kDefaultMemoryBytes);
}

TEST_F(GatewayTest, RoutesExportEntriesCallTheirExport) {
  EXPECT_NE(Serve("/app/sub").find("sub:"), std::string::npos);
}

TEST_F(GatewayTest, TrapIs500) {
  EXPECT_EQ(Serve("/app/x", "trap").rfind("HTTP/1.1 500", 0), 0u);
}

TEST_F(GatewayTest, BuiltinsAndNotFound) {
  EXPECT_NE(Serve("/healthz").find("\r\n\r\nOK"), std::string::npos);
  EXPECT_EQ(Serve("/nope").rfind("HTTP/1.1 404", 0), 0u);
  Serve("/app/x");
  EXPECT_NE(Serve("/metrics").find("wasmlet_http_requests_total{route=\"/app/...\",code=\"2xx\"}"),
            std::string::npos);
}

TEST_F(GatewayTest, ConcurrentFirstRequestsLoadTheModuleOnce) {
  rt_.load_delay = std::chrono::milliseconds(200);
  std::vector<std::string> outs(4);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < outs.size(); ++i) threads.emplace_back([&, i] { outs[i] = Serve("/app/x"); });
  for (auto& t : threads) t.join();
  for (const auto& out : outs) EXPECT_EQ(out.rfind("HTTP/1.1 200", 0), 0u) << out;
  EXPECT_EQ(rt_.loads.load(), 1);
  EXPECT_NE(Serve("/metrics").find("wasmlet_app_loads_total{result=\"ok\"} 1\n"), std::string::npos);
}

TEST(AppTest, AFailedLoadIsRememberedUntilTheModuleFileChanges) {
  FakeRuntime rt;
  auto dir = std::filesystem::temp_directory_path() / ("wasmlet-app-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::string path = (dir / "m.wasm").string();
  std::ofstream(path) << "broken";
  AppConfig config;
  config.route = "/m";
  config.module_path = path;
  App app(config, "");
  App::LoadOutcome first, second, third;
  EXPECT_FALSE(app.Load(rt, &first).ok());
  EXPECT_TRUE(first.failed_now);
  auto again = app.Load(rt, &second);
  ASSERT_FALSE(again.ok());
  EXPECT_FALSE(second.failed_now);  // the remembered error, no new attempt
  EXPECT_NE(again.error().message.find("no such module"), std::string::npos);
  EXPECT_EQ(rt.loads.load(), 1);
  EXPECT_TRUE(app.failed());
  // Changed on disk (size differs): retried, and now it loads.
  std::ofstream(path) << "fixed module";
  rt.modules[path] = std::make_shared<FakeModule>("m", std::vector<std::string>{"_start"},
                                                  [](const runtime::InvokeRequest&) { return Exited(); });
  auto fixed = app.Load(rt, &third);
  EXPECT_TRUE(fixed.ok());
  EXPECT_TRUE(third.loaded_now);
  EXPECT_EQ(rt.loads.load(), 2);
  EXPECT_NE(app.loaded(), nullptr);
  EXPECT_FALSE(app.failed());
  std::filesystem::remove_all(dir);
}

TEST(SnapshotTest, RegistersAppsWithoutLoadingAndReloadKeepsUnchangedModules) {
  FakeRuntime rt;
  auto dir = std::filesystem::temp_directory_path() / ("wasmlet-snap-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  GatewayConfig config;
  for (int i = 0; i < 3; ++i) {
    std::string path = (dir / ("m" + std::to_string(i) + ".wasm")).string();
    std::ofstream(path) << "module " << i;
    rt.modules[path] = std::make_shared<FakeModule>("m", std::vector<std::string>{"_start"},
                                                    [](const runtime::InvokeRequest&) { return Exited(); });
    AppConfig app;
    app.route = "/m" + std::to_string(i);
    app.module_path = path;
    config.apps.push_back(app);
  }
  auto first = LoadSnapshot(config, rt, "");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(rt.loads.load(), 0);  // nothing loaded at startup
  EXPECT_EQ((*first)->router()->routes().size(), 3u);
  ASSERT_TRUE((*first)->apps[0]->Load(rt).ok());
  ASSERT_TRUE((*first)->apps[1]->Load(rt).ok());
  std::ofstream(config.apps[1].module_path) << "module 1, changed";
  auto second = LoadSnapshot(config, rt, "", first->get());
  ASSERT_TRUE(second.ok());
  EXPECT_NE((*second)->apps[0]->loaded(), nullptr);  // unchanged file: kept
  EXPECT_EQ((*second)->apps[1]->loaded(), nullptr);  // changed: loads again on first use
  EXPECT_EQ((*second)->apps[2]->loaded(), nullptr);
  EXPECT_EQ((*second)->loaded_count(), 1u);
  EXPECT_EQ(rt.loads.load(), 2);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace wasmlet::gateway
