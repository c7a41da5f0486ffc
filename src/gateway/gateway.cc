#include "gateway/gateway.h"

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <filesystem>

#include "util/files.h"
#include "util/log.h"

namespace wasmlet::gateway {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string LogFileName(const std::string& route) {
  std::string name;
  for (char c : route) {
    unsigned char u = static_cast<unsigned char>(c);
    name.push_back(std::isalnum(u) || c == '-' ? c : '_');
  }
  while (!name.empty() && name.front() == '_') name.erase(0, 1);
  while (!name.empty() && name.back() == '_') name.pop_back();
  if (name.empty()) name = "root";
  return name + ".stderr.log";
}

std::string EscapeLabel(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

}  // namespace

StderrLog::StderrLog(std::string route, std::string path) : route_(std::move(route)), path_(std::move(path)) {}

StderrLog::~StderrLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void StderrLog::Write(std::string_view data) {
  WLOG_DEBUG("stderr {}: {}", route_, std::string_view(data.data(), data.size() && data.back() == '\n' ? data.size() - 1 : data.size()));
  if (path_.empty()) return;
  std::lock_guard lock(mu_);
  if (file_ == nullptr) {
    file_ = std::fopen(path_.c_str(), "ae");
    if (file_ == nullptr) return;
  }
  std::fwrite(data.data(), 1, data.size(), file_);
  std::fflush(file_);
}

Result<std::vector<std::pair<std::string, std::string>>> ParseRoutesOutput(std::string_view output,
                                                                            const std::string& module) {
  std::vector<std::pair<std::string, std::string>> out;
  size_t start = 0, line_no = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string_view::npos) end = output.size();
    std::string_view line = output.substr(start, end - start);
    start = end + 1;
    ++line_no;
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.remove_suffix(1);
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.front()))) line.remove_prefix(1);
    if (line.empty()) continue;
    auto space = line.find_first_of(" \t");
    std::string_view pattern = line.substr(0, space);
    std::string_view name;
    if (space != std::string_view::npos) {
      name = line.substr(space);
      while (!name.empty() && std::isspace(static_cast<unsigned char>(name.front()))) name.remove_prefix(1);
    }
    bool bad = name.empty() || name.find_first_of(" \t") != std::string_view::npos || pattern.empty() ||
               pattern[0] != '/';
    auto dots = pattern.find("...");
    if (dots != std::string_view::npos && (dots != pattern.size() - 3 || pattern.size() < 4 ||
                                           pattern[pattern.size() - 4] != '/')) {
      bad = true;
    }
    if (bad) {
      return MakeError(Phase::kConfig,
                       "_routes line " + std::to_string(line_no) + " is not '<pattern> <export>': '" +
                           std::string(line.substr(0, 120)) + "'",
                       module);
    }
    out.emplace_back(std::string(pattern), std::string(name));
  }
  return out;
}

Result<std::shared_ptr<Snapshot>> LoadSnapshot(GatewayConfig config, runtime::Runtime& runtime,
                                               const std::string& log_dir) {
  auto snapshot = std::make_shared<Snapshot>();
  if (!log_dir.empty()) {
    if (auto s = MakeDirs(log_dir); !s.ok()) return s.take_error();
  }
  std::vector<Route> routes;
  for (size_t i = 0; i < config.apps.size(); ++i) {
    auto app = std::make_unique<App>();
    app->config = config.apps[i];
    const AppConfig& ac = app->config;
    auto module = runtime.LoadFile(ac.module_path);
    if (!module.ok()) {
      Error e = module.take_error();
      e.message += " (" + ac.where + ")";
      return e;
    }
    app->module = *module;
    app->stderr_log = std::make_unique<StderrLog>(
        ac.route, log_dir.empty() ? "" : (fs::path(log_dir) / LogFileName(ac.route)).string());
    if (!app->module->HasFunctionExport(ac.entrypoint)) {
      // Not fatal (the module may still serve _routes), but every request to it will fail.
      config.warnings.push_back(ac.where + ": module " + ac.module_path + " has no exported function '" +
                                ac.entrypoint + "'; requests to " + ac.route + " will answer 500");
    }
    routes.push_back(Route{ac.route, i, ac.entrypoint, ac.where});
    if (app->module->HasFunctionExport("_routes")) {
      std::string output;
      runtime::InvokeRequest req;
      req.entrypoint = "_routes";
      req.args = {fs::path(ac.module_path).filename().string()};
      req.stdout_mode = runtime::OutputMode::kCallback;
      req.stdout_callback = [&output](std::string_view d) {
        if (output.size() + d.size() > (1u << 20)) return false;
        output.append(d);
        return true;
      };
      req.stderr_mode = runtime::OutputMode::kCallback;
      StderrLog* log = app->stderr_log.get();
      req.stderr_callback = [log](std::string_view d) {
        log->Write(d);
        return true;
      };
      req.limits.memory_bytes = ac.limits.memory_bytes;
      req.limits.timeout = std::min(ac.limits.timeout, std::chrono::milliseconds(10000));
      auto result = app->module->Invoke(req);
      if (!result.ok()) {
        Error e = result.take_error();
        e.message = "calling _routes failed: " + e.message + " (" + ac.where + ")";
        return e;
      }
      if (!result->success()) {
        return MakeError(Phase::kConfig, "_routes failed: " + result->Describe(),
                         ac.module_path + " (" + ac.where + ")");
      }
      auto lines = ParseRoutesOutput(output, ac.module_path + " (" + ac.where + ")");
      if (!lines.ok()) return lines.take_error();
      for (const auto& [pattern, name] : *lines) {
        if (!app->module->HasFunctionExport(name)) {
          return MakeError(Phase::kConfig,
                           "_routes names export '" + name + "' for '" + pattern +
                               "', which the module does not export",
                           ac.module_path + " (" + ac.where + ")");
        }
        routes.push_back(Route{JoinRoute(ac.route, pattern), i, name, ac.where + " _routes"});
      }
    }
    snapshot->apps.push_back(std::move(app));
  }
  // Duplicate [[module]] routes were reported by the config loader; the router reports the
  // rest (overlaps, _routes duplicates) without repeating them.
  std::vector<std::string> router_warnings;
  snapshot->router = Router::Build(std::move(routes), &router_warnings);
  for (auto& w : router_warnings) {
    if (std::find(config.warnings.begin(), config.warnings.end(), w) == config.warnings.end()) {
      config.warnings.push_back(std::move(w));
    }
  }
  snapshot->config = std::move(config);
  return snapshot;
}

WorkerPool::WorkerPool(size_t threads, size_t queue_limit) : queue_limit_(queue_limit) {
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
}

bool WorkerPool::TryPost(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= queue_limit_) return false;
    queue_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

size_t WorkerPool::queue_depth() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void WorkerPool::Loop() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping and drained
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    job();
  }
}

void Metrics::Record(const std::string& route, int status, std::chrono::nanoseconds duration) {
  std::string cls = std::to_string(status / 100) + "xx";
  double seconds = std::chrono::duration<double>(duration).count();
  std::lock_guard lock(mu_);
  ++requests_[{route, cls}];
  size_t i = 0;
  while (i < kBucketCount && seconds > kBuckets[i]) ++i;
  ++buckets_[i];
  duration_sum_ += seconds;
  ++duration_count_;
}

std::string Metrics::Text(const runtime::RuntimeStats& stats, size_t queue_depth,
                          uint64_t instances_running) const {
  std::string out;
  std::lock_guard lock(mu_);
  out += "# HELP wasmlet_http_requests_total HTTP requests by route and status class.\n";
  out += "# TYPE wasmlet_http_requests_total counter\n";
  for (const auto& [key, count] : requests_) {
    out += "wasmlet_http_requests_total{route=\"" + EscapeLabel(key.first) + "\",code=\"" + key.second +
           "\"} " + std::to_string(count) + "\n";
  }
  out += "# HELP wasmlet_http_request_duration_seconds Time from request to response end.\n";
  out += "# TYPE wasmlet_http_request_duration_seconds histogram\n";
  uint64_t cumulative = 0;
  char buf[64];
  for (size_t i = 0; i < kBucketCount; ++i) {
    cumulative += buckets_[i];
    std::snprintf(buf, sizeof buf, "%g", kBuckets[i]);
    out += std::string("wasmlet_http_request_duration_seconds_bucket{le=\"") + buf + "\"} " +
           std::to_string(cumulative) + "\n";
  }
  cumulative += buckets_[kBucketCount];
  out += "wasmlet_http_request_duration_seconds_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + "\n";
  std::snprintf(buf, sizeof buf, "%.6f", duration_sum_);
  out += std::string("wasmlet_http_request_duration_seconds_sum ") + buf + "\n";
  out += "wasmlet_http_request_duration_seconds_count " + std::to_string(duration_count_) + "\n";
  out += "# HELP wasmlet_instances_running Guest instances running now.\n";
  out += "# TYPE wasmlet_instances_running gauge\n";
  out += "wasmlet_instances_running " + std::to_string(instances_running) + "\n";
  out += "# HELP wasmlet_queue_depth Requests waiting for a worker.\n";
  out += "# TYPE wasmlet_queue_depth gauge\n";
  out += "wasmlet_queue_depth " + std::to_string(queue_depth) + "\n";
  out += "# HELP wasmlet_module_cache_hits_total Modules loaded from the compiled-module cache.\n";
  out += "# TYPE wasmlet_module_cache_hits_total counter\n";
  out += "wasmlet_module_cache_hits_total{cache=\"disk\"} " + std::to_string(stats.disk_cache_hits) + "\n";
  out += "wasmlet_module_cache_hits_total{cache=\"memory\"} " + std::to_string(stats.memory_cache_hits) + "\n";
  out += "# HELP wasmlet_module_cache_misses_total Modules compiled from wasm in this process.\n";
  out += "# TYPE wasmlet_module_cache_misses_total counter\n";
  out += "wasmlet_module_cache_misses_total " + std::to_string(stats.modules_compiled) + "\n";
  out += "# HELP wasmlet_instances_total Guest instances created.\n";
  out += "# TYPE wasmlet_instances_total counter\n";
  out += "wasmlet_instances_total " + std::to_string(stats.instances_total) + "\n";
  return out;
}

Gateway::Gateway(runtime::Runtime& runtime, GatewayOptions options)
    : runtime_(runtime), options_(std::move(options)) {
  size_t workers = options_.workers;
  if (workers == 0) workers = std::max(2u, std::thread::hardware_concurrency());
  pool_ = std::make_unique<WorkerPool>(workers, options_.queue_limit);
}

Gateway::~Gateway() { Shutdown(); }

void Gateway::Shutdown() {
  if (pool_) pool_->Stop();
}

void Gateway::SetSnapshot(std::shared_ptr<const Snapshot> snapshot) {
  std::lock_guard lock(snapshot_mu_);
  snapshot_ = std::move(snapshot);
}

std::shared_ptr<const Snapshot> Gateway::snapshot() const {
  std::lock_guard lock(snapshot_mu_);
  return snapshot_;
}

std::string Gateway::MetricsText() const {
  return metrics_.Text(runtime_.Stats(), pool_->queue_depth(), running_.load());
}

void Gateway::Log(const RequestInfo& request, const std::string& route, int status, uint64_t bytes,
                  Clock::time_point start, const char* note) {
  auto elapsed = Clock::now() - start;
  metrics_.Record(route, status, elapsed);
  WLOG_INFO("{} \"{} {} {}\" {} {} {:.3f}ms route={}{}{}", request.remote_addr, request.method,
            request.target, request.protocol, status, bytes,
            std::chrono::duration<double, std::milli>(elapsed).count(), route.empty() ? "-" : route,
            *note ? " " : "", note);
}

void Gateway::Handle(RequestInfo request, std::string body, std::shared_ptr<ResponseSink> sink) {
  auto start = Clock::now();
  std::string_view path = PathOf(request.target);
  RequestFraming framing{request.keep_alive, request.method == "HEAD", request.protocol == "HTTP/1.0"};
  auto reply = [&](int status, std::string_view type, std::string_view text, const HeaderList& extra,
                   const std::string& route, const char* note) {
    std::string b = request.method == "HEAD" ? std::string() : std::string(text);
    HeaderList headers = extra;
    if (framing.http10 && request.keep_alive) headers.emplace_back("Connection", "keep-alive");
    sink->Send(SimpleResponse(status, type, b, request.keep_alive, headers));
    sink->Complete(!request.keep_alive);
    Log(request, route, status, b.size(), start, note);
  };
  if (path == "/healthz") {
    reply(200, "text/plain", "OK", {}, "/healthz", "");
    return;
  }
  std::shared_ptr<const Snapshot> snap = snapshot();
  std::optional<RouteMatch> match;
  if (snap) match = snap->router.Match(path);
  if (options_.metrics && path == "/metrics" && (!match || match->route->pattern != "/metrics")) {
    reply(200, "text/plain; version=0.0.4", MetricsText(), {}, "/metrics", "");
    return;
  }
  if (!match) {
    reply(404, "text/plain; charset=utf-8", "404 Not Found: no route for " + std::string(path) + "\n", {},
          "", "");
    return;
  }
  const App& app = *snap->apps[match->route->app];
  auto& active = app.active;
  if (active.fetch_add(1) >= app.config.limits.max_concurrency) {
    active.fetch_sub(1);
    WLOG_WARN("route {}: {} instances already running or queued (max_concurrency); answering 503",
              match->route->pattern, app.config.limits.max_concurrency);
    reply(503, "text/plain; charset=utf-8", "503 Service Unavailable: too many concurrent requests\n",
          {{"Retry-After", "1"}}, match->route->pattern, "(max_concurrency)");
    return;
  }
  auto writer = std::make_shared<ResponseWriter>(sink, options_.stream, framing);
  // The job owns everything it needs; `request` stays valid here for the overload path.
  auto shared_request = std::make_shared<RequestInfo>(std::move(request));
  auto shared_body = std::make_shared<std::string>(std::move(body));
  bool posted = pool_->TryPost([this, snap, &app, m = *match, shared_request, shared_body, writer, start] {
    Run(snap, app, m, std::move(*shared_request), std::move(*shared_body), writer, start);
  });
  if (!posted) {
    active.fetch_sub(1);
    WLOG_WARN("worker queue full ({} waiting); answering 503", options_.queue_limit);
    writer->Fail(503, "server overloaded, retry later", {{"Retry-After", "1"}});
    Log(*shared_request, match->route->pattern, 503, writer->body_bytes(), start, "(queue full)");
  }
}

void Gateway::Run(std::shared_ptr<const Snapshot> snapshot, const App& app, RouteMatch match,
                  RequestInfo request, std::string body, std::shared_ptr<ResponseWriter> writer,
                  Clock::time_point start) {
  (void)snapshot;  // keeps `app` alive across a reload
  const AppConfig& config = app.config;
  const std::string& route = match.route->pattern;
  CgiSettings settings{options_.default_host, &options_.global_env};
  runtime::InvokeRequest inv;
  inv.entrypoint = match.route->entrypoint;
  inv.args = BuildArgv(request, config.argv);
  inv.env = BuildCgiEnv(request, match, config.environment, settings);
  inv.preopens = config.volumes;
  inv.stdin_mode = runtime::StdinMode::kBytes;
  inv.stdin_data = std::move(body);
  inv.stdout_mode = runtime::OutputMode::kCallback;
  ResponseWriter* w = writer.get();
  inv.stdout_callback = [w](std::string_view data) { return w->OnOutput(data); };
  inv.stderr_mode = runtime::OutputMode::kCallback;
  StderrLog* log = app.stderr_log.get();
  inv.stderr_callback = [log](std::string_view data) {
    if (log != nullptr) log->Write(data);
    return true;
  };
  inv.limits.memory_bytes = config.limits.memory_bytes;
  inv.limits.timeout = config.limits.timeout;

  running_.fetch_add(1);
  writer->Start(timers_);
  auto result = app.module->Invoke(inv);
  running_.fetch_sub(1);
  app.active.fetch_sub(1);

  std::string note;
  if (!result.ok()) {
    WLOG_ERROR("route {}: module {} could not run: {}", route, config.module_path,
               result.error().ToString());
    writer->Finish(false, 500, "the module could not be started (see the server log)");
    note = "(" + result.error().message + ")";
  } else if (result->success()) {
    writer->Finish(true, 0, "");
  } else {
    const runtime::InvokeResult& r = *result;
    int status = r.outcome == runtime::Outcome::kTimedOut ? 504 : 500;
    std::string reason;
    switch (r.outcome) {
      case runtime::Outcome::kTimedOut: reason = "the module exceeded its time limit"; break;
      case runtime::Outcome::kMemoryLimit: reason = "the module exceeded its memory limit"; break;
      case runtime::Outcome::kExited: reason = "the module exited with code " + std::to_string(r.exit_code); break;
      default: reason = "the module failed (trap)"; break;
    }
    WLOG_ERROR("route {}: {} {}: {}", route, request.method, request.target, r.Describe());
    if (!r.backtrace.empty()) WLOG_DEBUG("route {}: wasm backtrace:\n{}", route, r.backtrace);
    writer->Finish(false, status, reason);
    note = "(" + r.Describe() + ")";
  }
  for (const auto& warning : writer->TakeWarnings()) WLOG_WARN("route {}: {}", route, warning);
  if (writer->aborted()) note += note.empty() ? "(aborted)" : " (aborted)";
  Log(request, route, writer->status(), writer->body_bytes(), start, note.c_str());
}

}  // namespace wasmlet::gateway
