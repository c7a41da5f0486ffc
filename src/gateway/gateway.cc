#include "gateway/gateway.h"

#include <algorithm>
#include <cctype>
#include <cinttypes>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <unordered_set>

#include "util/blocking.h"
#include "util/files.h"
#include "util/log.h"

namespace wasmlet::gateway {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A run this long (wall time, sleeping included), or one that failed, sends the app's next
// requests to the worker pool instead of running them inline on an I/O thread (App::runs_long).
constexpr auto kLongRun = std::chrono::milliseconds(2);

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

StderrLog::StderrLog(std::string route, std::string path, size_t request_cap)
    : route_(std::move(route)), path_(std::move(path)), request_cap_(request_cap) {}

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

runtime::OutputCallback StderrLog::ForRequest() {
  // Called on the guest's thread only, one write at a time.
  struct State {
    StderrLog* log = nullptr;
    size_t kept = 0;
    uint64_t dropped = 0;
    bool at_line_start = true;
    ~State() {
      if (dropped == 0) return;
      log->Write(std::string(at_line_start ? "" : "\n") + "[stderr truncated: " + std::to_string(dropped) +
                 " bytes dropped]\n");
    }
  };
  auto state = std::make_shared<State>();
  state->log = this;
  return [state](std::string_view data) {
    size_t room = state->log->request_cap_ - state->kept;
    size_t take = std::min(room, data.size());
    if (take > 0) {
      state->log->Write(data.substr(0, take));
      state->kept += take;
      state->at_line_start = data[take - 1] == '\n';
    }
    state->dropped += data.size() - take;
    return true;
  };
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

std::string ModuleFileStamp(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return std::string("error ") + std::strerror(errno);
  return std::to_string(st.st_dev) + " " + std::to_string(st.st_ino) + " " + std::to_string(st.st_size) + " " +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

namespace {

Result<std::shared_ptr<LoadedModule>> LoadModuleOf(const AppConfig& ac, runtime::Runtime& runtime,
                                                   StderrLog* stderr_log) {
  auto module = runtime.LoadFile(ac.module_path);
  if (!module.ok()) {
    Error e = module.take_error();
    e.message += " (" + ac.where + ")";
    return e;
  }
  auto loaded = std::make_shared<LoadedModule>();
  loaded->module = *module;
  if (!loaded->module->HasFunctionExport(ac.entrypoint)) {
    // Not fatal (the module may still serve _routes), but every request to it will fail.
    loaded->warnings.push_back(ac.where + ": module " + ac.module_path + " has no exported function '" +
                               ac.entrypoint + "'; requests to " + ac.route + " will answer 500");
  }
  if (!loaded->module->HasFunctionExport("_routes")) return loaded;
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
  req.stderr_callback = [stderr_log](std::string_view d) {
    if (stderr_log != nullptr) stderr_log->Write(d);
    return true;
  };
  req.limits.memory_bytes = ac.limits.memory_bytes;
  req.limits.timeout = std::min(ac.limits.timeout, std::chrono::milliseconds(10000));
  auto result = loaded->module->Invoke(req);
  if (!result.ok()) {
    Error e = result.take_error();
    e.message = "calling _routes failed: " + e.message + " (" + ac.where + ")";
    return e;
  }
  if (!result->success()) {
    return MakeError(Phase::kConfig, "_routes failed: " + result->Describe(), ac.module_path + " (" + ac.where + ")");
  }
  auto lines = ParseRoutesOutput(output, ac.module_path + " (" + ac.where + ")");
  if (!lines.ok()) return lines.take_error();
  for (const auto& [pattern, name] : *lines) {
    if (!loaded->module->HasFunctionExport(name)) {
      return MakeError(Phase::kConfig,
                       "_routes names export '" + name + "' for '" + pattern + "', which the module does not export",
                       ac.module_path + " (" + ac.where + ")");
    }
  }
  loaded->sub_routes = std::move(*lines);
  return loaded;
}

}  // namespace

Result<std::shared_ptr<const LoadedModule>> LoadAppModule(const AppConfig& config, runtime::Runtime& runtime,
                                                          StderrLog* stderr_log) {
  auto loaded = LoadModuleOf(config, runtime, stderr_log);
  if (!loaded.ok()) return loaded.take_error();
  (*loaded)->stamp = ModuleFileStamp(config.module_path);
  return std::shared_ptr<const LoadedModule>(std::move(*loaded));
}

App::App(AppConfig app_config, std::string stderr_log_path)
    : config(std::move(app_config)),
      sub_route_base(SubRouteBase(config.route)),
      stderr_log_path_(std::move(stderr_log_path)) {}

void App::PublishLocked(std::shared_ptr<const LoadedModule> loaded) const {
  if (!stderr_log_) stderr_log_ = std::make_unique<StderrLog>(config.route, stderr_log_path_);
  holder_ = std::move(loaded);
  error_.reset();
  failed_.store(false, std::memory_order_release);
  loaded_.store(holder_.get(), std::memory_order_release);
}

void App::Adopt(std::shared_ptr<const LoadedModule> loaded) const {
  std::lock_guard lock(mu_);
  if (holder_) return;
  PublishLocked(std::move(loaded));
}

std::shared_ptr<const LoadedModule> App::shared_loaded() const {
  std::lock_guard lock(mu_);
  return holder_;
}

Result<const LoadedModule*> App::Load(runtime::Runtime& runtime, LoadOutcome* outcome) const {
  if (const LoadedModule* done = loaded()) return done;
  std::unique_lock lock(mu_);
  // Concurrent first requests: one loads, the others wait for its result.
  cv_.wait(lock, [this] { return !loading_; });
  if (const LoadedModule* done = loaded_.load(std::memory_order_acquire)) return done;
  // The stamp is taken before loading: a file replaced during the load is retried next time.
  std::string stamp = ModuleFileStamp(config.module_path);
  if (error_ && stamp == error_stamp_) return *error_;
  loading_ = true;
  if (!stderr_log_) stderr_log_ = std::make_unique<StderrLog>(config.route, stderr_log_path_);
  StderrLog* log = stderr_log_.get();
  lock.unlock();
  auto result = LoadModuleOf(config, runtime, log);
  lock.lock();
  loading_ = false;
  Result<const LoadedModule*> out = static_cast<const LoadedModule*>(nullptr);
  if (result.ok()) {
    (*result)->stamp = std::move(stamp);
    PublishLocked(std::move(*result));
    if (outcome != nullptr) outcome->loaded_now = true;
    out = holder_.get();
  } else {
    error_ = result.error();
    error_stamp_ = std::move(stamp);
    failed_.store(true, std::memory_order_release);
    if (outcome != nullptr) outcome->failed_now = true;
    out = result.take_error();
  }
  lock.unlock();
  cv_.notify_all();
  return out;
}

std::shared_ptr<const Router> Snapshot::router() const {
  std::lock_guard lock(router_mu_);
  return router_;
}

void Snapshot::AppsUnder(std::string_view raw_path, std::vector<size_t>* out) const {
  std::string key;
  Router::ForEachBasePrefix(raw_path, [&](std::string_view prefix) {
    key.assign(prefix);
    auto it = apps_by_base_.find(key);
    if (it != apps_by_base_.end()) out->insert(out->end(), it->second.begin(), it->second.end());
  });
}

bool Snapshot::RoutingSettled(std::string_view raw_path) const {
  bool settled = true;
  std::string key;
  Router::ForEachBasePrefix(raw_path, [&](std::string_view prefix) {
    if (!settled) return;
    key.assign(prefix);
    auto it = apps_by_base_.find(key);
    if (it == apps_by_base_.end()) return;
    for (size_t i : it->second) {
      const App& app = *apps[i];
      if (!app.routed.load(std::memory_order_acquire) && !app.failed()) settled = false;
    }
  });
  return settled;
}

std::vector<Route> Snapshot::RoutesLocked() const {
  // Config order, each app's sub-routes right after its own route: the same order (and so the
  // same precedence among duplicates) as loading every app at startup would give.
  std::vector<Route> routes;
  routes.reserve(apps.size());
  for (size_t i = 0; i < apps.size(); ++i) {
    const AppConfig& ac = apps[i]->config;
    routes.push_back(Route{ac.route, i, ac.entrypoint, ac.where});
    if (!installed_[i]) continue;
    for (const auto& [pattern, name] : apps[i]->loaded()->sub_routes) {
      routes.push_back(Route{JoinRoute(ac.route, pattern), i, name, ac.where + " _routes"});
    }
  }
  return routes;
}

void Snapshot::BuildRouter(std::vector<std::string>* warnings) {
  std::lock_guard lock(router_mu_);
  installed_.assign(apps.size(), false);
  apps_by_base_.clear();
  for (size_t i = 0; i < apps.size(); ++i) {
    apps_by_base_[apps[i]->sub_route_base].push_back(i);
    if (apps[i]->loaded() != nullptr) {
      installed_[i] = true;
      apps[i]->routed.store(true, std::memory_order_release);
      loaded_count_.fetch_add(1);
    }
  }
  std::vector<std::string> router_warnings;
  router_ = std::make_shared<const Router>(Router::Build(RoutesLocked(), &router_warnings));
  for (auto& w : router_warnings) {
    router_warnings_.insert(w);
    if (warnings != nullptr) warnings->push_back(std::move(w));
  }
}

void Snapshot::Activate(const std::vector<size_t>& app_indexes) const {
  std::lock_guard lock(router_mu_);
  bool rebuild = false;
  for (size_t i : app_indexes) {
    const App& app = *apps[i];
    if (installed_[i] || app.loaded() == nullptr) continue;
    installed_[i] = true;
    loaded_count_.fetch_add(1);
    rebuild = rebuild || !app.loaded()->sub_routes.empty();
  }
  if (rebuild) {
    std::vector<std::string> router_warnings;
    auto next = std::make_shared<const Router>(Router::Build(RoutesLocked(), &router_warnings));
    for (auto& w : router_warnings) {
      if (router_warnings_.insert(w).second) WLOG_WARN("{}", w);
    }
    router_ = std::move(next);
  }
  // Only now may requests take the fast path for these apps: the router has their sub-routes.
  for (size_t i : app_indexes) {
    if (installed_[i]) apps[i]->routed.store(true, std::memory_order_release);
  }
}

Result<std::shared_ptr<Snapshot>> LoadSnapshot(GatewayConfig config, runtime::Runtime& runtime,
                                               const std::string& log_dir, const Snapshot* previous) {
  (void)runtime;  // modules load on first use (App::Load) or in PreloadSnapshot
  auto snapshot = std::make_shared<Snapshot>();
  if (!log_dir.empty()) {
    if (auto s = MakeDirs(log_dir); !s.ok()) return s.take_error();
  }
  // A reload keeps what the previous configuration loaded, for files that did not change.
  std::unordered_map<std::string, std::shared_ptr<const LoadedModule>> kept;
  if (previous != nullptr) {
    for (const auto& app : previous->apps) {
      if (auto loaded = app->shared_loaded()) kept.emplace(app->config.module_path, std::move(loaded));
    }
  }
  snapshot->apps.reserve(config.apps.size());
  for (const AppConfig& ac : config.apps) {
    std::string log_path = log_dir.empty() ? "" : (fs::path(log_dir) / LogFileName(ac.route)).string();
    auto app = std::make_unique<App>(ac, std::move(log_path));
    if (auto it = kept.find(ac.module_path); it != kept.end()) {
      if (it->second->stamp == ModuleFileStamp(ac.module_path)) app->Adopt(it->second);
    }
    snapshot->apps.push_back(std::move(app));
  }
  // Duplicate [[module]] routes were reported by the config loader; the router reports the
  // rest (overlaps, _routes duplicates) without repeating them.
  std::vector<std::string> router_warnings;
  snapshot->BuildRouter(&router_warnings);
  std::unordered_set<std::string> seen(config.warnings.begin(), config.warnings.end());
  for (auto& w : router_warnings) {
    if (seen.insert(w).second) config.warnings.push_back(std::move(w));
  }
  snapshot->config = std::move(config);
  return snapshot;
}

Status PreloadSnapshot(Snapshot& snapshot, runtime::Runtime& runtime, size_t threads,
                       const std::function<void(size_t, size_t)>& progress) {
  const size_t total = snapshot.apps.size();
  std::atomic<size_t> next{0}, done{0};
  std::mutex mu;
  std::optional<Error> first_error;  // guarded by mu
  size_t first_error_index = total;  // guarded by mu
  std::vector<std::string> warnings(total);
  auto work = [&] {
    for (;;) {
      size_t i = next.fetch_add(1);
      if (i >= total) return;
      {
        std::lock_guard lock(mu);
        if (first_error) return;
      }
      App::LoadOutcome outcome;
      auto loaded = snapshot.apps[i]->Load(runtime, &outcome);
      if (!loaded.ok()) {
        std::lock_guard lock(mu);
        if (i < first_error_index) {
          first_error = loaded.error();
          first_error_index = i;
        }
      } else if (outcome.loaded_now) {
        for (const auto& w : (*loaded)->warnings) warnings[i] += w + "\n";
      }
      done.fetch_add(1);
    }
  };
  threads = std::max<size_t>(1, std::min(threads, total));
  std::vector<std::thread> pool;
  for (size_t t = 1; t < threads; ++t) pool.emplace_back(work);
  std::thread reporter;
  std::atomic<bool> finished{false};
  if (progress) {
    reporter = std::thread([&] {
      while (!finished.load()) {
        for (int i = 0; i < 20 && !finished.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        if (!finished.load()) progress(done.load(), total);
      }
    });
  }
  work();
  for (auto& t : pool) t.join();
  finished = true;
  if (reporter.joinable()) reporter.join();
  if (first_error) return *first_error;
  for (const auto& w : warnings) {
    size_t start = 0;
    while (start < w.size()) {
      size_t nl = w.find('\n', start);
      snapshot.config.warnings.push_back(w.substr(start, nl - start));
      start = nl + 1;
    }
  }
  std::vector<size_t> all(total);
  for (size_t i = 0; i < total; ++i) all[i] = i;
  snapshot.Activate(all);
  // The router may have new warnings (overlapping _routes); they were logged by Activate.
  return OkStatus();
}

namespace {
thread_local bool retire_this_thread = false;
}  // namespace

WorkerPool::WorkerPool(size_t threads, size_t queue_limit) : queue_limit_(queue_limit) {
  std::lock_guard lock(mu_);
  for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
}

WorkerPool::~WorkerPool() { Stop(); }

void WorkerPool::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    for (Idle* idle : idle_) idle->cv.notify_one();
  }
  // No thread is added or retired once stopping_ is set, so the lists are stable now.
  std::vector<std::thread> all;
  {
    std::lock_guard lock(mu_);
    all = std::move(threads_);
    for (auto& t : retired_) all.push_back(std::move(t));
    retired_.clear();
  }
  for (auto& t : all) {
    if (t.joinable()) t.join();
  }
}

size_t WorkerPool::threads() const {
  std::lock_guard lock(mu_);
  return threads_.size();
}

void WorkerPool::RetireCurrentThread() { retire_this_thread = true; }

bool WorkerPool::TryPost(std::function<void()> job) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return false;
    if (!idle_.empty()) {
      Idle* idle = idle_.back();
      idle_.pop_back();
      idle->job = std::move(job);
      idle->has_job = true;
      idle->cv.notify_one();  // under the lock: the waiter's Idle lives on its stack
      return true;
    }
    if (queue_.size() >= queue_limit_) return false;
    queue_.push_back(std::move(job));
  }
  return true;
}

size_t WorkerPool::queue_depth() const {
  std::lock_guard lock(mu_);
  return queue_.size();
}

void WorkerPool::Loop() {
  Idle self;
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lock(mu_);
      if (!queue_.empty()) {
        job = std::move(queue_.front());
        queue_.pop_front();
      } else if (stopping_) {
        return;  // stopping and drained
      } else {
        idle_.push_back(&self);
        self.cv.wait(lock, [&] { return self.has_job || stopping_; });
        if (!self.has_job) {  // stopping: TryPost hands nothing over any more
          idle_.erase(std::find(idle_.begin(), idle_.end(), &self));
          continue;  // drain what is queued, then return
        }
        job = std::move(self.job);
        self.job = nullptr;
        self.has_job = false;
      }
    }
    job();
    if (retire_this_thread) {
      retire_this_thread = false;
      std::vector<std::thread> finished;
      {
        std::lock_guard lock(mu_);
        if (stopping_) continue;  // Stop joins this thread with the others
        auto mine = std::find_if(threads_.begin(), threads_.end(),
                                 [](const std::thread& t) { return t.get_id() == std::this_thread::get_id(); });
        if (mine == threads_.end()) continue;
        // Threads retired before this one have left Loop; join them outside the lock.
        finished = std::move(retired_);
        retired_.clear();
        retired_.push_back(std::move(*mine));
        *mine = std::thread([this] { Loop(); });
      }
      for (auto& t : finished) t.join();
      return;
    }
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

std::string Metrics::Text(const runtime::RuntimeStats& stats, const Gauges& gauges) const {
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
  out += "wasmlet_instances_running " + std::to_string(gauges.instances_running) + "\n";
  out += "# HELP wasmlet_queue_depth Requests waiting for a worker.\n";
  out += "# TYPE wasmlet_queue_depth gauge\n";
  out += "wasmlet_queue_depth " + std::to_string(gauges.queue_depth) + "\n";
  out += "# HELP wasmlet_apps Apps in the configuration, and how many have their module loaded.\n";
  out += "# TYPE wasmlet_apps gauge\n";
  out += "wasmlet_apps{state=\"configured\"} " + std::to_string(gauges.apps_configured) + "\n";
  out += "wasmlet_apps{state=\"loaded\"} " + std::to_string(gauges.apps_loaded) + "\n";
  out += "# HELP wasmlet_app_loads_total Module loads (lazy, on first request) by result.\n";
  out += "# TYPE wasmlet_app_loads_total counter\n";
  out += "wasmlet_app_loads_total{result=\"ok\"} " + std::to_string(gauges.app_loads_ok) + "\n";
  out += "wasmlet_app_loads_total{result=\"error\"} " + std::to_string(gauges.app_loads_failed) + "\n";
  out += "# HELP wasmlet_guest_runs_total Requests run by a guest, by the thread that ran it: an I/O thread "
         "(quick apps, inline) or a worker.\n";
  out += "# TYPE wasmlet_guest_runs_total counter\n";
  out += "wasmlet_guest_runs_total{thread=\"io\"} " + std::to_string(gauges.runs_inline) + "\n";
  out += "wasmlet_guest_runs_total{thread=\"worker\"} " + std::to_string(gauges.runs_on_workers) + "\n";
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

namespace {
// Writes a CGI response to stdout through WASI, as a WAGI guest does.
constexpr std::string_view kWarmUpGuest = R"((module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "Content-Type: text/plain\n\nok\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 16))
    (i32.store (i32.const 4) (i32.const 29))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))))";
}  // namespace

bool Gateway::RunWarmUpGuest() {
  const auto& m = warm_up_module_;
  if (!m) return false;
  runtime::InvokeRequest inv;
  inv.args = {"warm-up"};
  inv.env = {{"REQUEST_METHOD", "GET"}};
  inv.stdout_mode = runtime::OutputMode::kCallback;
  std::string out;
  inv.stdout_callback = [&out](std::string_view bytes) { out.append(bytes); return true; };
  inv.limits.timeout = std::chrono::seconds(5);
  auto r = m->Invoke(inv);
  warm_up_instances_.fetch_add(1);
  return r.ok() && r->success() && out.ends_with("\n\nok\n");
}

void Gateway::WarmUp() {
  auto begin = Clock::now();
  const runtime::RuntimeStats before = runtime_.Stats();
  auto module = runtime_.Load(kWarmUpGuest, "(warm-up guest)");
  if (!module.ok()) {
    WLOG_WARN("warm-up skipped: {}", module.error().ToString());
    return;
  }
  // The built-in module's load; its instances, here and on the I/O threads, are counted in
  // warm_up_instances_.
  warm_up_stats_ = runtime_.Stats() - before;
  warm_up_module_ = *module;
  // One job per worker: each waits (briefly) until all have started, so no worker takes two.
  const size_t workers = pool_->threads();
  std::mutex mu;
  std::condition_variable cv;
  size_t started = 0, finished = 0, failed = 0, posted = 0;
  for (size_t i = 0; i < workers; ++i, ++posted) {
    bool queued = pool_->TryPost([&] {
      bool ok = RunWarmUpGuest();
      std::unique_lock lock(mu);
      ++started;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::milliseconds(200), [&] { return started >= workers; });
      failed += ok ? 0 : 1;
      ++finished;
      cv.notify_all();
    });
    if (!queued) break;
  }
  // Every job ends (a 5 s guest limit, a 200 ms wait): wait for all, they use our locals.
  std::unique_lock lock(mu);
  cv.wait(lock, [&] { return finished >= posted; });
  if (failed != 0) WLOG_WARN("warm-up: {} of {} runs of the built-in guest failed", failed, workers);
  WLOG_DEBUG("warm-up: {} workers in {:.3f}ms", workers,
             std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
}

void Gateway::WarmUpThisThread() {
  if (warm_up_module_ && !RunWarmUpGuest()) WLOG_WARN("warm-up: the built-in guest failed on an I/O thread");
}

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
  Metrics::Gauges gauges;
  gauges.queue_depth = pool_->queue_depth();
  gauges.instances_running = running_.load();
  if (auto snap = snapshot()) {
    gauges.apps_configured = snap->apps.size();
    gauges.apps_loaded = snap->loaded_count();
  }
  gauges.app_loads_ok = app_loads_ok_.load();
  gauges.app_loads_failed = app_loads_failed_.load();
  gauges.runs_inline = runs_inline_.load();
  gauges.runs_on_workers = runs_on_workers_.load();
  runtime::RuntimeStats stats = runtime_.Stats() - warm_up_stats_;
  stats.instances_total -= std::min(stats.instances_total, warm_up_instances_.load());
  return metrics_.Text(stats, gauges);
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

void Gateway::Reply(const RequestInfo& request, ResponseSink& sink, int status, std::string_view type,
                    std::string_view text, const HeaderList& extra, const std::string& route, const char* note,
                    Clock::time_point start) {
  std::string b = request.method == "HEAD" ? std::string() : std::string(text);
  HeaderList headers = extra;
  if (request.protocol == "HTTP/1.0" && request.keep_alive) headers.emplace_back("Connection", "keep-alive");
  sink.Send(SimpleResponse(status, type, b, request.keep_alive, headers));
  sink.Complete(!request.keep_alive);
  Log(request, route, status, b.size(), start, note);
}

void Gateway::Handle(RequestInfo request, std::string body, std::shared_ptr<ResponseSink> sink) {
  auto start = Clock::now();
  std::string_view path = PathOf(request.target);
  if (path == "/healthz") {
    Reply(request, *sink, 200, "text/plain", "OK", {}, "/healthz", "", start);
    return;
  }
  std::shared_ptr<const Snapshot> snap = snapshot();
  std::shared_ptr<const Router> router = snap ? snap->router() : nullptr;
  std::optional<RouteMatch> match;
  if (router) match = router->Match(path);
  if (options_.metrics && path == "/metrics" && (!match || match->route->pattern != "/metrics")) {
    Reply(request, *sink, 200, "text/plain; version=0.0.4", MetricsText(), {}, "/metrics", "", start);
    return;
  }
  // Lazy loading: the answer is final when the matched app and every app whose `_routes` could
  // claim this path are loaded (or failed). Otherwise a worker loads them and routes again.
  bool ready = !snap || (snap->RoutingSettled(path) &&
                         (!match || snap->apps[match->route->app]->routed.load(std::memory_order_acquire)));
  if (!ready) {
    auto shared_request = std::make_shared<RequestInfo>(std::move(request));
    auto shared_body = std::make_shared<std::string>(std::move(body));
    bool posted = pool_->TryPost([this, snap, shared_request, shared_body, sink, start] {
      LoadAndRun(snap, std::move(*shared_request), std::move(*shared_body), sink, start);
    });
    if (!posted) {
      WLOG_WARN("worker queue full ({} waiting); answering 503", options_.queue_limit);
      Reply(*shared_request, *sink, 503, "text/plain; charset=utf-8",
            "503 Service Unavailable: server overloaded, retry later\n", {{"Retry-After", "1"}},
            match ? match->route->pattern : "", "(queue full)", start);
    }
    return;
  }
  if (!match) {
    Reply(request, *sink, 404, "text/plain; charset=utf-8", "404 Not Found: no route for " + std::string(path) + "\n",
          {}, "", "", start);
    return;
  }
  Dispatch(std::move(snap), std::move(router), std::move(*match), std::move(request), std::move(body), std::move(sink),
           start, false);
}

void Gateway::Dispatch(std::shared_ptr<const Snapshot> snap, std::shared_ptr<const Router> router, RouteMatch match,
                       RequestInfo request, std::string body, std::shared_ptr<ResponseSink> sink,
                       Clock::time_point start, bool on_worker) {
  const App& app = *snap->apps[match.route->app];
  auto& active = app.active;
  if (active.fetch_add(1) >= app.config.limits.max_concurrency) {
    active.fetch_sub(1);
    WLOG_WARN("route {}: {} instances already running or queued (max_concurrency); answering 503",
              match.route->pattern, app.config.limits.max_concurrency);
    Reply(request, *sink, 503, "text/plain; charset=utf-8", "503 Service Unavailable: too many concurrent requests\n",
          {{"Retry-After", "1"}}, match.route->pattern, "(max_concurrency)", start);
    return;
  }
  RequestFraming framing{request.keep_alive, request.method == "HEAD", request.protocol == "HTTP/1.0"};
  auto writer = std::make_shared<ResponseWriter>(sink, options_.stream, framing);
  if (on_worker) {
    Run(std::move(snap), std::move(router), app, std::move(match), std::move(request), std::move(body),
        std::move(writer), start);
    return;
  }
  InlineRunner* runner = options_.run_inline ? InlineRunner::Current() : nullptr;
  if (runner != nullptr && !app.runs_long.load(std::memory_order_relaxed)) {
    runner->Defer([this, snap = std::move(snap), router = std::move(router), &app, m = std::move(match),
                   request = std::move(request), body = std::move(body), writer = std::move(writer),
                   start]() mutable {
      Run(std::move(snap), std::move(router), app, std::move(m), std::move(request), std::move(body),
          std::move(writer), start);
    });
    return;
  }
  // The job owns everything it needs; `request` stays valid here for the overload path.
  auto shared_request = std::make_shared<RequestInfo>(std::move(request));
  auto shared_body = std::make_shared<std::string>(std::move(body));
  std::string route = match.route->pattern;
  bool posted = pool_->TryPost(
      [this, snap, router, &app, m = std::move(match), shared_request, shared_body, writer, start] {
        Run(snap, router, app, m, std::move(*shared_request), std::move(*shared_body), writer, start);
      });
  if (!posted) {
    active.fetch_sub(1);
    WLOG_WARN("worker queue full ({} waiting); answering 503", options_.queue_limit);
    writer->Fail(503, "server overloaded, retry later", {{"Retry-After", "1"}});
    Log(*shared_request, route, 503, writer->body_bytes(), start, "(queue full)");
  }
}

const LoadedModule* Gateway::LoadApp(const Snapshot& snapshot, size_t app_index) {
  const App& app = *snapshot.apps[app_index];
  App::LoadOutcome outcome;
  auto begin = Clock::now();
  auto loaded = app.Load(runtime_, &outcome);
  if (outcome.loaded_now) {
    app_loads_ok_.fetch_add(1);
    WLOG_DEBUG("route {}: loaded {} in {:.3f}ms", app.config.route, app.config.module_path,
               std::chrono::duration<double, std::milli>(Clock::now() - begin).count());
    for (const auto& w : (*loaded)->warnings) WLOG_WARN("{}", w);
  }
  if (outcome.failed_now) {
    app_loads_failed_.fetch_add(1);
    WLOG_ERROR("route {}: cannot load module {}: {}; its requests answer 500 until the file changes",
               app.config.route, app.config.module_path, loaded.error().ToString());
  }
  if (!loaded.ok()) return nullptr;
  snapshot.Activate({app_index});
  return *loaded;
}

void Gateway::LoadAndRun(std::shared_ptr<const Snapshot> snap, RequestInfo request, std::string body,
                         std::shared_ptr<ResponseSink> sink, Clock::time_point start) {
  std::string_view path = PathOf(request.target);
  // Apps whose `_routes` could claim the path first (a failed one is not retried for a path
  // that is not its own), then route again with their sub-routes installed.
  std::vector<size_t> candidates;
  snap->AppsUnder(path, &candidates);
  for (size_t i : candidates) {
    const App& app = *snap->apps[i];
    if (!app.routed.load(std::memory_order_acquire) && !app.failed()) LoadApp(*snap, i);
  }
  std::shared_ptr<const Router> router = snap->router();
  std::optional<RouteMatch> match = router->Match(path);
  if (!match) {
    Reply(request, *sink, 404, "text/plain; charset=utf-8", "404 Not Found: no route for " + std::string(path) + "\n",
          {}, "", "", start);
    return;
  }
  const App& app = *snap->apps[match->route->app];
  if (!app.routed.load(std::memory_order_acquire) && LoadApp(*snap, match->route->app) == nullptr) {
    Reply(request, *sink, 500, "text/plain; charset=utf-8",
          "500 Internal Server Error: the module of route " + app.config.route +
              " could not be loaded (see the server log)\n",
          {}, match->route->pattern, "(module failed to load)", start);
    return;
  }
  Dispatch(std::move(snap), std::move(router), std::move(*match), std::move(request), std::move(body), std::move(sink),
           start, true);
}

void Gateway::Run(std::shared_ptr<const Snapshot> snapshot, std::shared_ptr<const Router> router, const App& app,
                  RouteMatch match, RequestInfo request, std::string body, std::shared_ptr<ResponseWriter> writer,
                  Clock::time_point start) {
  (void)snapshot;  // keeps `app` alive across a reload
  (void)router;    // keeps `match.route` alive when sub-routes replace the router
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
  StderrLog* log = app.stderr_log();
  inv.stderr_callback = log != nullptr ? log->ForRequest() : [](std::string_view) { return true; };
  inv.limits.memory_bytes = config.limits.memory_bytes;
  inv.limits.timeout = config.limits.timeout;
  inv.background_after = options_.background_after;

  running_.fetch_add(1);
  writer->Start(timers_);
  (InlineRunner::Current() != nullptr ? runs_inline_ : runs_on_workers_).fetch_add(1, std::memory_order_relaxed);
  (void)TakeBlocked();
  auto result = app.loaded()->module->Invoke(inv);
  // Whether the next request of this app may run inline on an I/O thread: not after a run that
  // blocked, ran long or failed (a trap, a limit: a guest misbehaving is kept off the I/O
  // threads, on the pool where --background-after applies, until a run there is clean).
  bool long_run = TakeBlocked() || !result.ok() || !result->success() || result->duration >= kLongRun;
  if (app.runs_long.load(std::memory_order_relaxed) != long_run) app.runs_long.store(long_run);
  if (result.ok() && !result->priority_restored) WorkerPool::RetireCurrentThread();
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
