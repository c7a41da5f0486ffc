// Where each microsecond of a WAGI request goes (issue 6 item 2), for the C hello example:
// the steps the gateway runs for one request, each timed alone over many iterations (median):
//   HTTP parse     Boost.Beast request_parser on a typical browser GET (as server.cc does)
//   route          Router::Match on the bundled examples' routes
//   CGI env        BuildCgiEnv + BuildArgv
//   runtime        Store+limits, WASI context, instantiate, guest run, teardown
//                  (InvokeRequest::measure_phases), and the whole Invoke measured outside
//   CGI response   CgiHeadParser on the module's output
//   total          all of the above in sequence, per iteration
// Not included: socket I/O, the worker-pool hand-off and response writing (bench/gateway
// measures the whole server over loopback).
// Usage: breakdown_bench [iterations] [csv path]   (bench/breakdown/breakdown.sh runs it)
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gateway/cgi.h"
#include "gateway/response.h"
#include "gateway/router.h"
#include "runtime/runtime.h"

using namespace wasmlet;
namespace http = boost::beast::http;
using Clock = std::chrono::steady_clock;

namespace {

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}
double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

// Median microseconds of fn() over `n` runs after `n / 10` warm-up runs.
double Time(int n, const std::function<void()>& fn) {
  for (int i = 0; i < n / 10; ++i) fn();
  std::vector<double> us;
  us.reserve(n);
  for (int i = 0; i < n; ++i) {
    auto t = Clock::now();
    fn();
    us.push_back(Micros(Clock::now() - t));
  }
  return Median(us);
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "breakdown_bench: %s\n", what.c_str());
  std::exit(1);
}

const char kRequest[] =
    "GET /hello?name=world HTTP/1.1\r\n"
    "Host: localhost:3000\r\n"
    "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    "Accept-Language: en-US,en;q=0.5\r\n"
    "Accept-Encoding: gzip, deflate, br\r\n"
    "Connection: keep-alive\r\n"
    "\r\n";

gateway::RequestInfo ParseRequest(const std::string& raw) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(64 * 1024);
  parser.body_limit(1 << 20);
  boost::beast::error_code ec;
  parser.put(boost::asio::buffer(raw), ec);
  if (ec || !parser.is_header_done()) Die("request parse failed: " + ec.message());
  const auto& req = parser.get();
  gateway::RequestInfo info;
  info.method = std::string(req.method_string());
  info.target = std::string(req.target());
  for (const auto& field : req) {
    info.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  info.remote_addr = "127.0.0.1";
  info.local_port = 3000;
  return info;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 5000;
  std::string csv_path = argc > 2 ? argv[2] : "";
  if (iterations < 10) Die("iterations must be at least 10");

  auto rt = runtime::CreateWasmtimeRuntime(runtime::RuntimeOptions{.max_instances = 16});
  if (!rt.ok()) Die(rt.error().ToString());
  auto module = (*rt)->LoadFile(std::string(WASMLET_EXAMPLES_DIR) + "/hello.wasm");
  if (!module.ok()) Die(module.error().ToString());

  std::vector<std::string> warnings;
  std::vector<gateway::Route> routes;
  size_t app = 0;
  for (const char* pattern : {"/hello", "/env/...", "/form", "/static/...", "/go"}) {
    routes.push_back({pattern, app++, "_start", "modules.toml"});
  }
  gateway::Router router = gateway::Router::Build(routes, &warnings);
  gateway::EnvList module_env, global_env;
  gateway::CgiSettings settings;
  settings.global_env = &global_env;
  const std::string raw(kRequest);
  const std::string_view output = "Content-Type: text/plain\n\nHello from wasmlet!\n";

  // Each step alone.
  gateway::RequestInfo info = ParseRequest(raw);
  double parse_us = Time(iterations * 4, [&] { info = ParseRequest(raw); });
  std::optional<gateway::RouteMatch> match;
  double route_us = Time(iterations * 4, [&] { match = router.Match(gateway::PathOf(info.target)); });
  if (!match || match->route->pattern != "/hello") Die("route /hello not matched");
  runtime::InvokeRequest request;
  double env_us = Time(iterations * 4, [&] {
    request.args = gateway::BuildArgv(info, std::nullopt);
    request.env = gateway::BuildCgiEnv(info, *match, module_env, settings);
  });
  std::string out;
  request.stdin_mode = runtime::StdinMode::kBytes;
  request.stdout_mode = runtime::OutputMode::kCallback;
  request.stdout_callback = [&](std::string_view s) { out += s; return true; };
  request.stderr_mode = runtime::OutputMode::kCallback;
  request.stderr_callback = [](std::string_view) { return true; };
  request.limits.timeout = std::chrono::milliseconds(10000);
  auto invoke = [&] {
    out.clear();
    auto r = (*module)->Invoke(request);
    if (!r.ok() || !r->success()) Die("invoke failed");
    return *r;
  };
  double invoke_us = Time(iterations, [&] { invoke(); });
  if (out != output) Die("unexpected output: " + out);
  request.measure_phases = true;
  std::vector<double> store, wasi, instantiate, run, teardown, measured;
  for (int i = 0; i < iterations + iterations / 10; ++i) {
    runtime::InvokeResult r = invoke();
    if (i < iterations / 10) continue;
    store.push_back(Micros(r.phases.store));
    wasi.push_back(Micros(r.phases.wasi));
    instantiate.push_back(Micros(r.phases.instantiate));
    run.push_back(Micros(r.phases.run));
    teardown.push_back(Micros(r.phases.teardown));
    measured.push_back(Micros(r.duration));
  }
  request.measure_phases = false;
  double response_us = Time(iterations * 4, [&] {
    gateway::CgiHeadParser parser;
    size_t head = parser.Feed(output);
    if (parser.state() != gateway::CgiHeadParser::State::kBody || head == 0) Die("response parse failed");
  });

  // All of it in sequence, per request.
  double total_us = Time(iterations, [&] {
    gateway::RequestInfo i = ParseRequest(raw);
    auto m = router.Match(gateway::PathOf(i.target));
    runtime::InvokeRequest req = request;
    req.args = gateway::BuildArgv(i, std::nullopt);
    req.env = gateway::BuildCgiEnv(i, *m, module_env, settings);
    out.clear();
    auto r = (*module)->Invoke(req);
    if (!r.ok() || !r->success()) Die("invoke failed");
    gateway::CgiHeadParser parser;
    parser.Feed(out);
  });

  struct Row {
    const char* metric;
    const char* what;
    double us;
  };
  double s = Median(store), w = Median(wasi), in = Median(instantiate), ru = Median(run),
         td = Median(teardown);
  std::vector<Row> rows = {
      {"http_parse", "HTTP request parse (Beast, 7 headers)", parse_us},
      {"route", "route lookup (Router::Match)", route_us},
      {"cgi_env", "CGI environment + argv", env_us},
      {"store", "runtime: Store + limits + deadline", s},
      {"wasi", "runtime: WASI context", w},
      {"instantiate", "runtime: instantiate (InstancePre) + entry", in},
      {"run", "runtime: guest run (_start to exit)", ru},
      {"teardown", "runtime: result + Store/WASI freed", td},
      {"invoke", "runtime: whole Invoke, phases not measured", invoke_us},
      {"invoke_measured", "runtime: whole Invoke, phases measured", Median(measured)},
      {"response_parse", "CGI response parse (CgiHeadParser)", response_us},
      {"total", "total, all steps in sequence", total_us},
  };
  std::printf("per-request breakdown, C hello WAGI module (%s), medians of %d iterations\n\n",
              (*rt)->EngineDescription().c_str(), iterations);
  std::printf("| %-46s | %9s |\n", "step", "median us");
  std::printf("|%s|%s|\n", std::string(48, '-').c_str(), std::string(11, '-').c_str());
  for (const auto& r : rows) std::printf("| %-46s | %9.2f |\n", r.what, r.us);
  double sandbox = s + in + ru;
  std::printf("\nStore + instantiate + run: %.2f us (target <= 10 us: %s)\n", sandbox,
              sandbox <= 10 ? "MET" : "MISSED");
  std::printf("sum of the step medians: %.2f us; gateway steps outside the runtime: %.2f us\n",
              parse_us + route_us + env_us + invoke_us + response_us,
              parse_us + route_us + env_us + response_us);
  if (!csv_path.empty()) {
    std::ofstream csv(csv_path);
    csv << "benchmark,case,subject,metric,value,unit\n";
    for (const auto& r : rows) csv << "breakdown,c-hello,wasmlet," << r.metric << "," << r.us << ",us\n";
    csv << "breakdown,c-hello,wasmlet,store_instantiate_run," << sandbox << ",us\n";
    if (!csv) Die("cannot write " + csv_path);
  }
  return 0;
}
