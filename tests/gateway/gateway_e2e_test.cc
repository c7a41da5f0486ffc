// End-to-end tests of `wasmlet serve`: the real binary on a free port, real HTTP, real WAGI
// modules (tests/guests/wagi). One test (or group) per rule of specs/wagi.md.
#include <atomic>
#include <thread>

#include "server_process.h"

namespace gwtest {
namespace {

using namespace std::chrono_literals;

std::string ProbeConfig(const std::string& probe) {
  std::string p = "module = \"" + probe + "\"\n";
  return "[[module]]\nroute = \"/probe\"\n" + p +
         "environment = { OVERRIDE = \"module\", QUERY_STRING = \"fake\", MODULE_ONLY = \"m\" }\n"
         "\n[[module]]\nroute = \"/probe/...\"\n" + p +
         "environment = { OVERRIDE = \"module\", QUERY_STRING = \"fake\", MODULE_ONLY = \"m\" }\n"
         "\n[[module]]\nroute = \"/probe/deep/...\"\n" + p +
         "\n[[module]]\nroute = \"/caf%C3%A9\"\n" + p +
         "\n[[module]]\nroute = \"/tmpl/...\"\n" + p + "argv = \"${SCRIPT_NAME} extra ${ARGS}\"\n"
         "\n[[module]]\nroute = \"/limited/...\"\n" + p + "timeout = \"300ms\"\nmemory_limit = \"32MiB\"\n"
         "\n[[module]]\nroute = \"/one/...\"\n" + p + "max_concurrency = 1\n"
         "\n[[module]]\nroute = \"/app/...\"\nmodule = \"" + Guest("wagi_routes.wasm") + "\"\n"
         "\n[[module]]\nroute = \"/files\"\nmodule = \"probe_copy.wasm\"\nvolumes = { \"/data\" = \"data\" }\n"
         "\n[[module]]\nroute = \"/missing-entry\"\n" + p + "entrypoint = \"nope\"\n"
         "\n[[module]]\nroute = \"/warned\"\n" + p + "frobnicate = true\n";
}

class GatewayE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    curl_global_init(CURL_GLOBAL_ALL);
    dir_ = MakeTempDir("wasmlet-gw-");
    fs::create_directories(dir_ / "config" / "data");
    WriteText(dir_ / "config" / "data" / "hello.txt", "hello from a volume\n");
    fs::copy_file(Guest("wagi_probe.wasm"), dir_ / "config" / "probe_copy.wasm");
    WriteText(dir_ / "config" / "modules.toml", ProbeConfig(Guest("wagi_probe.wasm")));
    WriteText(dir_ / "env.txt", "# comment\nFROM_FILE=f\nOVERRIDE=file\n");
    server_ = new ServerProcess();
    bool started = server_->Start({"-c", (dir_ / "config" / "modules.toml").string(), "--log-dir",
                                   (dir_ / "logs").string(), "--env-file", (dir_ / "env.txt").string(),
                                   "-e", "GLOBAL=g", "-e", "OVERRIDE=global", "--module-cache",
                                   (dir_ / "cache").string(), "--max-body", "24MiB", "--hostname",
                                   "fallback.example:9999", "--workers", "4"},
                                  dir_);
    ASSERT_TRUE(started) << server_->Stderr();
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  static std::string Url(const std::string& path) { return server_->Url(path); }

  static inline ServerProcess* server_ = nullptr;
  static inline fs::path dir_;
};

TEST_F(GatewayE2E, HealthzAnswersOkBeforeAnyRoute) {
  auto r = Fetch(Url("/healthz"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "OK");
}

TEST_F(GatewayE2E, UnknownPathIs404) {
  auto r = Fetch(Url("/nothing-here"));
  EXPECT_EQ(r.status, 404);
  EXPECT_NE(r.body.find("/nothing-here"), std::string::npos);
}

TEST_F(GatewayE2E, ExactRoutesBeatWildcardsAndLongestPrefixWins) {
  auto matched = [](const std::string& path) {
    auto r = Fetch(Url(path));
    return r.status == 200 ? ParseDump(r.body)["X_MATCHED_ROUTE"] : "status " + std::to_string(r.status);
  };
  EXPECT_EQ(matched("/probe"), "/probe");
  EXPECT_EQ(matched("/probe/"), "/probe/...");
  EXPECT_EQ(matched("/probe/x/y"), "/probe/...");
  EXPECT_EQ(matched("/probe/deep"), "/probe/deep/...");
  EXPECT_EQ(matched("/probe/deep/er"), "/probe/deep/...");
  EXPECT_EQ(matched("/probe/deeper"), "/probe/...");
  EXPECT_EQ(matched("/probex"), "status 404");
  EXPECT_EQ(matched("/one"), "/one/...");
}

TEST_F(GatewayE2E, RoutesMatchTheRawPercentEncodedPath) {
  auto r = Fetch(Url("/caf%C3%A9"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(ParseDump(r.body)["X_MATCHED_ROUTE"], "/caf%C3%A9");
  auto other = Fetch(Url("/caf%c3%a9"));  // a different raw path
  EXPECT_EQ(other.status, 404);
}

TEST_F(GatewayE2E, EveryCgiVariable) {
  Request req;
  req.method = "POST";
  req.body = "hello";
  req.headers = {"Host: example.com:8080", "Content-Type: text/x-test", "X-Foo: a", "X-Foo: b",
                 "Authorization: Bearer secret", "User-Agent: e2e"};
  auto r = Fetch(Url("/probe/a%2Fb%20c?dump&x=1"), req);
  ASSERT_EQ(r.status, 200) << r.body;
  auto env = ParseDump(r.body);
  EXPECT_EQ(env["AUTH_TYPE"], "");
  EXPECT_EQ(env["REMOTE_USER"], "");
  EXPECT_EQ(env["CONTENT_LENGTH"], "5");
  EXPECT_EQ(env["CONTENT_TYPE"], "text/x-test");
  EXPECT_EQ(env["GATEWAY_INTERFACE"], "CGI/1.1");
  EXPECT_EQ(env["SERVER_SOFTWARE"], "WAGI/1");
  EXPECT_EQ(env["SERVER_PROTOCOL"], "HTTP/1.1");
  EXPECT_EQ(env["REQUEST_METHOD"], "POST");
  EXPECT_EQ(env["QUERY_STRING"], "dump&x=1");
  EXPECT_EQ(env["REMOTE_ADDR"], "127.0.0.1");
  EXPECT_EQ(env["REMOTE_HOST"], "127.0.0.1");
  EXPECT_EQ(env["SCRIPT_NAME"], "/probe");
  EXPECT_EQ(env["PATH_INFO"], "/a/b c");
  EXPECT_EQ(env["X_RAW_PATH_INFO"], "/a%2Fb%20c");
  EXPECT_EQ(env["PATH_TRANSLATED"], "/a/b c");
  EXPECT_EQ(env["X_MATCHED_ROUTE"], "/probe/...");
  EXPECT_EQ(env["X_FULL_URL"], "http://example.com:8080/probe/a%2Fb%20c?dump&x=1");
  EXPECT_EQ(env["SERVER_NAME"], "example.com");
  EXPECT_EQ(env["SERVER_PORT"], "8080");
  EXPECT_EQ(env["HTTP_X_FOO"], "a, b");
  EXPECT_EQ(env["HTTP_USER_AGENT"], "e2e");
  EXPECT_EQ(env["HTTP_HOST"], "example.com:8080");
  EXPECT_EQ(env["HTTP_CONTENT_TYPE"], "text/x-test");
  EXPECT_EQ(env["HTTP_CONTENT_LENGTH"], "5");
  EXPECT_EQ(env.count("HTTP_AUTHORIZATION"), 0u);
  EXPECT_EQ(env.count("HTTP_CONNECTION"), 0u);
  // argv: the path, then the query split on '&'.
  EXPECT_EQ(env["ARG0"], "/probe/a%2Fb%20c");
  EXPECT_EQ(env["ARG1"], "dump");
  EXPECT_EQ(env["ARG2"], "x=1");
  EXPECT_EQ(env.count("ARG3"), 0u);
}

TEST_F(GatewayE2E, ExactRouteHasEmptyPathInfo) {
  auto env = ParseDump(Fetch(Url("/probe?dump")).body);
  EXPECT_EQ(env["SCRIPT_NAME"], "/probe");
  EXPECT_EQ(env["PATH_INFO"], "");
  EXPECT_EQ(env["X_RAW_PATH_INFO"], "");
}

TEST_F(GatewayE2E, VariablePrecedenceGlobalThenModuleThenCgi) {
  auto env = ParseDump(Fetch(Url("/probe?dump")).body);
  EXPECT_EQ(env["GLOBAL"], "g");
  EXPECT_EQ(env["FROM_FILE"], "f");
  EXPECT_EQ(env["MODULE_ONLY"], "m");
  EXPECT_EQ(env["OVERRIDE"], "module");       // module beats -e and --env-file
  EXPECT_EQ(env["QUERY_STRING"], "dump");     // CGI beats the module's environment
  auto deep = ParseDump(Fetch(Url("/probe/deep/x?dump")).body);
  EXPECT_EQ(deep["OVERRIDE"], "global");      // -e given after --env-file wins among globals
  EXPECT_EQ(deep.count("MODULE_ONLY"), 0u);   // per-module, not shared
}

TEST_F(GatewayE2E, ServerNameFallsBackToHostnameWithoutHostHeader) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  c.Send("GET /probe?dump HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(c.ReadToEof());
  auto env = ParseDump(c.received());
  EXPECT_EQ(env["SERVER_NAME"], "fallback.example");
  EXPECT_EQ(env["SERVER_PORT"], "9999");
  EXPECT_EQ(env["SERVER_PROTOCOL"], "HTTP/1.0");
}

TEST_F(GatewayE2E, HostWithoutPortUsesTheArrivalPort) {
  auto env = ParseDump(Fetch(Url("/probe?dump"), Request{.headers = {"Host: bare.example"}}).body);
  EXPECT_EQ(env["SERVER_NAME"], "bare.example");
  EXPECT_EQ(env["SERVER_PORT"], std::to_string(server_->port()));
}

TEST_F(GatewayE2E, ArgvTemplate) {
  auto env = ParseDump(Fetch(Url("/tmpl/x?dump&b=2")).body);
  EXPECT_EQ(env["ARG0"], "/tmpl/x");
  EXPECT_EQ(env["ARG1"], "extra");
  EXPECT_EQ(env["ARG2"], "dump");
  EXPECT_EQ(env["ARG3"], "b=2");
  EXPECT_EQ(env.count("ARG4"), 0u);
}

TEST_F(GatewayE2E, StatusHeaderSetsTheStatus) {
  auto r = Fetch(Url("/probe?status"));
  EXPECT_EQ(r.status, 404);
  EXPECT_EQ(r.body, "not here\n");
  EXPECT_EQ(r.Header("content-type"), "text/plain");
}

TEST_F(GatewayE2E, LocationAloneIs302AndExplicitStatusWins) {
  auto r = Fetch(Url("/probe?location"));
  EXPECT_EQ(r.status, 302);
  EXPECT_EQ(r.Header("location"), "/elsewhere");
  auto s = Fetch(Url("/probe?location_status"));
  EXPECT_EQ(s.status, 301);
  EXPECT_EQ(s.Header("location"), "/moved");
}

TEST_F(GatewayE2E, RepeatedHeadersStayRepeated) {
  auto r = Fetch(Url("/probe?cookies"));
  EXPECT_EQ(r.status, 200);
  ASSERT_EQ(r.Count("set-cookie"), 2u);
  auto range = r.headers.equal_range("set-cookie");
  EXPECT_EQ(range.first->second, "a=1");
  EXPECT_EQ(std::next(range.first)->second, "b=2");
  EXPECT_EQ(r.Header("x-custom"), "yes");
}

TEST_F(GatewayE2E, CrlfHeaderBlock) {
  auto r = Fetch(Url("/probe?crlf"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/html");
  EXPECT_EQ(r.Header("x-line"), "crlf");
  EXPECT_EQ(r.body, "<p>crlf body</p>\r\n");
}

TEST_F(GatewayE2E, NoContentTypeStatusOrLocationIs500SayingWhatIsMissing) {
  auto r = Fetch(Url("/probe?noheaders"));
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(r.body.find("no Content-Type, Status or Location"), std::string::npos) << r.body;
}

TEST_F(GatewayE2E, UnparsableStatusIs502) {
  auto r = Fetch(Url("/probe?badstatus"));
  EXPECT_EQ(r.status, 502);
  EXPECT_NE(r.body.find("Status"), std::string::npos);
}

TEST_F(GatewayE2E, InvalidHeaderLinesAreDroppedNotFatal) {
  auto r = Fetch(Url("/probe?badheader"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("x-ok"), "fine");
  EXPECT_EQ(r.Count("x-ctl"), 0u);
  EXPECT_EQ(r.Count("bad header"), 0u);
  EXPECT_EQ(r.body, "ok\n");
}

TEST_F(GatewayE2E, ProcExitZeroAfterOutputIsSuccess) {
  auto r = Fetch(Url("/probe?procexit0"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "exited cleanly\n");
}

TEST_F(GatewayE2E, TrapAndNonZeroExitAre500AndLogged) {
  auto trap = Fetch(Url("/probe?trap"));
  EXPECT_EQ(trap.status, 500);
  EXPECT_EQ(trap.body.find("partial"), std::string::npos);  // held-back output is discarded
  auto exit3 = Fetch(Url("/probe?exit3"));
  EXPECT_EQ(exit3.status, 500);
  EXPECT_NE(exit3.body.find("code 3"), std::string::npos);
  std::string log = server_->Stderr();
  EXPECT_NE(log.find("route /probe: GET /probe?trap"), std::string::npos) << log;
  EXPECT_NE(log.find("exited with code 3"), std::string::npos);
}

// Modules load lazily: the warning comes when the module is loaded, i.e. before the answer to
// its first request (at startup only with --preload/--check, see gateway_lazy_test.cc).
TEST_F(GatewayE2E, MissingEntrypointIs500AndLoadWarns) {
  auto r = Fetch(Url("/missing-entry"));
  EXPECT_EQ(r.status, 500);
  EXPECT_NE(server_->Stderr().find("no exported function 'nope'"), std::string::npos);
}

TEST_F(GatewayE2E, UnknownConfigKeyIsAWarningNamingIt) {
  EXPECT_NE(server_->Stderr().find("unknown key 'frobnicate'"), std::string::npos) << server_->Stderr();
  EXPECT_EQ(Fetch(Url("/warned?status")).status, 404);  // the entry still works
}

TEST_F(GatewayE2E, Status204HasNoBody) {
  auto r = Fetch(Url("/probe?nocontent"));
  EXPECT_EQ(r.status, 204);
  EXPECT_EQ(r.body, "");
}

TEST_F(GatewayE2E, ModuleContentLengthShortOfTheBodyAbortsWhenStreaming) {
  // Declared 10 bytes, wrote 5: when the whole output fits the hold-back buffer the real length
  // is used.
  auto r = Fetch(Url("/probe?cl=10"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello");
  EXPECT_EQ(r.Header("content-length"), "5");
}

TEST_F(GatewayE2E, StreamingFirstBytesArriveBeforeTheModuleEnds) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  auto start = std::chrono::steady_clock::now();
  c.Send("GET /probe?slow=1500 HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(c.ReadUntil("first\n", 5000)) << c.received();
  auto first = std::chrono::steady_clock::now() - start;
  // The module is still sleeping: its second line has not been written yet.
  EXPECT_EQ(c.received().find("second"), std::string::npos);
  EXPECT_NE(c.received().find("Transfer-Encoding: chunked"), std::string::npos);
  ASSERT_TRUE(c.ReadUntil("0\r\n\r\n", 10000)) << c.received();
  auto total = std::chrono::steady_clock::now() - start;
  EXPECT_LT(first, 1000ms);
  EXPECT_GE(total, 1500ms);
  EXPECT_NE(c.received().find("second\n"), std::string::npos);
}

TEST_F(GatewayE2E, FailureAfterStreamingBeganAbortsTheResponse) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  c.Send("GET /probe?slowfail=300 HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(c.ReadToEof(10000));
  EXPECT_NE(c.received().find("HTTP/1.1 200"), std::string::npos);
  EXPECT_NE(c.received().find("first\n"), std::string::npos);
  EXPECT_EQ(c.received().find("0\r\n\r\n"), std::string::npos);  // no final chunk
  auto r = Fetch(Url("/probe?slowfail=300"));
  EXPECT_NE(r.error, CURLE_OK);  // the client sees a broken transfer, not a complete 200
}

TEST_F(GatewayE2E, LargeResponseStreamsChunked) {
  const long size = 50L << 20;
  auto r = Fetch(Url("/probe?big=" + std::to_string(size)));
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.error, CURLE_OK);
  ASSERT_EQ(static_cast<long>(r.body.size()), size);
  EXPECT_EQ(r.Header("transfer-encoding"), "chunked");
  for (size_t i = 0; i < r.body.size(); i += 65536 * 7 + 13) {
    ASSERT_EQ(r.body[i], static_cast<char>('a' + (i % 65536) % 26)) << i;
  }
}

TEST_F(GatewayE2E, LargeRequestBodyReachesTheModule) {
  std::string body(20 << 20, 'z');
  for (size_t i = 0; i < body.size(); i += 4099) body[i] = static_cast<char>('0' + i % 10);
  auto r = Fetch(Url("/probe?echo"), Request{.method = "POST", .body = body});
  ASSERT_EQ(r.status, 200);
  EXPECT_TRUE(r.body == body) << "echoed " << r.body.size() << " bytes";
}

TEST_F(GatewayE2E, BodyOverTheLimitIs413) {
  std::string body(25 << 20, 'x');
  auto r = Fetch(Url("/probe?count"), Request{.method = "POST", .body = body});
  EXPECT_EQ(r.status, 413);
}

TEST_F(GatewayE2E, ChunkedRequestBody) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  c.Send("POST /probe?count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n");
  ASSERT_TRUE(c.ReadUntil("\r\n\r\n11\n")) << c.received();
}

TEST_F(GatewayE2E, ExpectContinue) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  c.Send("POST /probe?count HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_TRUE(c.ReadUntil("HTTP/1.1 100 Continue\r\n\r\n")) << c.received();
  c.Send("abcd");
  ASSERT_TRUE(c.ReadUntil("\r\n\r\n4\n")) << c.received();
}

TEST_F(GatewayE2E, ExpectContinueOverTheLimitIs413WithoutReadingTheBody) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  c.Send("POST /probe?count HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\nExpect: 100-continue\r\n\r\n");
  ASSERT_TRUE(c.ReadUntil("\r\n\r\n")) << c.received();
  EXPECT_EQ(c.received().rfind("HTTP/1.1 413", 0), 0u) << c.received();
}

TEST_F(GatewayE2E, KeepAliveAndPipelining) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  c.Send("GET /probe?status HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
         "GET /probe?cookies HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(c.ReadUntil("cookies\n")) << c.received();
  const std::string& all = c.received();
  auto a = all.find("HTTP/1.1 404");
  auto b = all.find("HTTP/1.1 200", a);
  auto d = all.find("Set-Cookie", b);
  EXPECT_NE(a, std::string::npos);
  EXPECT_NE(b, std::string::npos);
  EXPECT_NE(d, std::string::npos);
  EXPECT_LT(a, b);
  // Same connection still usable afterwards.
  c.Clear();
  c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(c.ReadUntil("\r\n\r\nOK"));
}

TEST_F(GatewayE2E, Http10KeepAlive) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  c.Send("GET /probe?status HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  ASSERT_TRUE(c.ReadUntil("not here\n")) << c.received();
  EXPECT_NE(c.received().find("Connection: keep-alive\r\n"), std::string::npos);
  c.Clear();
  c.Send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  EXPECT_TRUE(c.ReadUntil("\r\n\r\nOK"));
  c.Clear();
  c.Send("GET /probe?status HTTP/1.0\r\n\r\n");  // no keep-alive: the server closes
  EXPECT_TRUE(c.ReadToEof());
  EXPECT_NE(c.received().find("Connection: close\r\n"), std::string::npos);
}

TEST_F(GatewayE2E, OversizedHeaderIsRejected) {
  RawConnection c(server_->port());
  ASSERT_TRUE(c.ok());
  c.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(100000, 'a') + "\r\n\r\n");
  ASSERT_TRUE(c.ReadUntil("\r\n\r\n")) << c.received();
  EXPECT_EQ(c.received().rfind("HTTP/1.1 431", 0), 0u) << c.received().substr(0, 100);
}

TEST_F(GatewayE2E, InfiniteLoopHitsTheDeadlineWhileOtherRoutesAnswer) {
  Response looped;
  std::thread t([&] { looped = Fetch(Url("/limited/x?loop")); });
  EXPECT_TRUE(WaitForMetric(*server_, "\nwasmlet_instances_running 1\n"));  // the loop is running
  for (int i = 0; i < 5; ++i) {
    auto r = Fetch(Url("/probe?status"));
    EXPECT_EQ(r.status, 404);
    EXPECT_LT(r.total_seconds, 0.25);
  }
  t.join();
  EXPECT_EQ(looped.status, 504);
  EXPECT_NE(looped.body.find("time limit"), std::string::npos);
  EXPECT_GE(looped.total_seconds, 0.29);
}

TEST_F(GatewayE2E, MemoryHogHitsTheLimitAndTheServerStaysUp) {
  auto r = Fetch(Url("/limited/x?hog"));
  EXPECT_EQ(r.status, 500);
  EXPECT_EQ(Fetch(Url("/healthz")).status, 200);
  EXPECT_EQ(Fetch(Url("/probe?status")).status, 404);
}

TEST_F(GatewayE2E, MaxConcurrencyPerAppAnswers503WithRetryAfter) {
  Response slow;
  std::thread t([&] { slow = Fetch(Url("/one/x?sleep=1500")); });
  // Once the first request holds the app's only slot, a second one is refused.
  EXPECT_TRUE(WaitForMetric(*server_, "\nwasmlet_instances_running 1\n"));
  Response r = Fetch(Url("/one/x?status"));
  EXPECT_EQ(r.status, 503);
  EXPECT_EQ(r.Header("retry-after"), "1");
  t.join();
  EXPECT_EQ(slow.status, 200);
  EXPECT_EQ(Fetch(Url("/one/x?status")).status, 404);  // the slot is free again
}

TEST_F(GatewayE2E, RoutesExportAddsSubRoutes) {
  auto hello = Fetch(Url("/app/hello"));
  EXPECT_EQ(hello.status, 200);
  EXPECT_NE(hello.body.find("hello export"), std::string::npos);
  EXPECT_NE(hello.body.find("SCRIPT_NAME=/app/hello\n"), std::string::npos) << hello.body;
  EXPECT_NE(hello.body.find("X_MATCHED_ROUTE=/app/hello\n"), std::string::npos);
  auto files = Fetch(Url("/app/files/a/b"));
  EXPECT_NE(files.body.find("files export"), std::string::npos);
  EXPECT_NE(files.body.find("SCRIPT_NAME=/app/files\n"), std::string::npos) << files.body;
  EXPECT_NE(files.body.find("PATH_INFO=/a/b\n"), std::string::npos);
  auto main = Fetch(Url("/app/other"));
  EXPECT_NE(main.body.find("main"), std::string::npos);
  EXPECT_NE(main.body.find("X_MATCHED_ROUTE=/app/...\n"), std::string::npos);
}

TEST_F(GatewayE2E, VolumesResolveAgainstTheConfigFolder) {
  auto r = Fetch(Url("/files?file"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello from a volume\n");
}

TEST_F(GatewayE2E, ModuleStderrGoesToThePerRouteLogFile) {
  EXPECT_EQ(Fetch(Url("/probe/x?stderr")).status, 200);
  std::string log;
  for (int i = 0; i < 100 && log.find("probe says hello") == std::string::npos; ++i) {
    log = ReadText(dir_ / "logs" / "probe.stderr.log");
    if (log.empty()) std::this_thread::sleep_for(10ms);
  }
  EXPECT_NE(log.find("probe says hello on stderr"), std::string::npos);
}

TEST_F(GatewayE2E, AccessLogLine) {
  Fetch(Url("/probe?status&access-log-marker"));
  // The line is written right after the response went out: poll for it.
  const std::string line = "\"GET /probe?status&access-log-marker HTTP/1.1\" 404 9 ";
  std::string log;
  for (int i = 0; i < 200 && log.find(line) == std::string::npos; ++i) {
    if (i > 0) std::this_thread::sleep_for(10ms);
    log = server_->Stderr();
  }
  EXPECT_NE(log.find("\"GET /probe?status&access-log-marker HTTP/1.1\" 404 9 "), std::string::npos) << log;
}

TEST_F(GatewayE2E, MetricsInPrometheusFormat) {
  Fetch(Url("/probe?status"));
  // Counted right after the response went out: poll.
  EXPECT_TRUE(WaitForMetric(*server_, "wasmlet_http_requests_total{route=\"/probe\",code=\"4xx\"}"));
  auto r = Fetch(Url("/metrics"));
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.Header("content-type"), "text/plain; version=0.0.4");
  EXPECT_NE(r.body.find("wasmlet_http_request_duration_seconds_bucket{le=\"+Inf\"}"), std::string::npos);
  EXPECT_NE(r.body.find("wasmlet_queue_depth"), std::string::npos);
  EXPECT_NE(r.body.find("wasmlet_instances_running"), std::string::npos);
  EXPECT_NE(r.body.find("wasmlet_module_cache_misses_total"), std::string::npos);
}

TEST_F(GatewayE2E, HeadRequestHasNoBody) {
  auto r = Fetch(Url("/probe?cookies"), Request{.method = "HEAD"});
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "");
  EXPECT_EQ(r.Header("content-length"), "8");
}

}  // namespace
}  // namespace gwtest
