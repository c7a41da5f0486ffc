// The gateway core, independent of the HTTP library: a loaded configuration (Snapshot: apps
// with their compiled modules and the router), the bounded worker pool that runs guest code,
// request dispatch (built-ins, routing, per-app concurrency, CGI mapping, invoke, streaming
// response) and metrics.
//
// Threading: Gateway is thread-safe. Handle() is called on I/O threads and never blocks or
// runs guest code; guest code runs only on the pool's worker threads. A Snapshot is immutable
// once published (apart from atomics); a reload publishes a new one while requests in flight
// keep the old one alive through their shared_ptr.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gateway/cgi.h"
#include "gateway/config.h"
#include "gateway/response.h"
#include "gateway/router.h"
#include "runtime/runtime.h"
#include "util/result.h"

namespace wasmlet::gateway {

// Appends module stderr to <log-dir>/<route>.stderr.log (and the server log at debug level).
class StderrLog {
 public:
  StderrLog(std::string route, std::string path);
  ~StderrLog();
  void Write(std::string_view data);
  const std::string& path() const { return path_; }

 private:
  const std::string route_;
  const std::string path_;
  std::mutex mu_;
  FILE* file_ = nullptr;  // guarded by mu_
};

struct App {
  AppConfig config;
  std::shared_ptr<const runtime::Module> module;
  std::unique_ptr<StderrLog> stderr_log;
  mutable std::atomic<uint32_t> active{0};  // queued + running requests
};

struct Snapshot {
  GatewayConfig config;
  std::vector<std::unique_ptr<App>> apps;
  Router router;
};

// Compiles (or loads from the cache) every module, calls `_routes` where exported, builds the
// router. Warnings (duplicates, overlaps) are appended to snapshot->config.warnings.
Result<std::shared_ptr<Snapshot>> LoadSnapshot(GatewayConfig config, runtime::Runtime& runtime,
                                               const std::string& log_dir);

// "<pattern> <export>" lines from `_routes` output -> (pattern, export). Errors name the line.
Result<std::vector<std::pair<std::string, std::string>>> ParseRoutesOutput(std::string_view output,
                                                                            const std::string& module);

// A fixed set of threads taking jobs from a bounded FIFO queue.
class WorkerPool {
 public:
  WorkerPool(size_t threads, size_t queue_limit);
  ~WorkerPool();  // finishes queued jobs, joins
  // False when the queue is full (the caller answers 503).
  bool TryPost(std::function<void()> job);
  size_t queue_depth() const;
  size_t threads() const { return threads_.size(); }
  void Stop();

 private:
  void Loop();
  const size_t queue_limit_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;  // guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;
};

// Prometheus counters and a latency histogram.
class Metrics {
 public:
  void Record(const std::string& route, int status, std::chrono::nanoseconds duration);
  std::string Text(const runtime::RuntimeStats& stats, size_t queue_depth,
                   uint64_t instances_running) const;

 private:
  static constexpr double kBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25, 0.5, 1, 2.5, 5, 10};
  static constexpr size_t kBucketCount = sizeof(kBuckets) / sizeof(kBuckets[0]);
  mutable std::mutex mu_;
  std::map<std::pair<std::string, std::string>, uint64_t> requests_;  // (route, class); guarded
  uint64_t buckets_[kBucketCount + 1] = {};  // guarded by mu_; last = +Inf
  double duration_sum_ = 0;                  // guarded by mu_
  uint64_t duration_count_ = 0;              // guarded by mu_
};

struct GatewayOptions {
  std::string default_host = "localhost:3000";  // --hostname
  EnvList global_env;                           // -e / --env-file
  StreamSettings stream;
  size_t workers = 0;        // 0 = number of CPUs
  size_t queue_limit = 1024;
  bool metrics = true;       // serve /metrics (unless a route claims it exactly)
};

class Gateway {
 public:
  Gateway(runtime::Runtime& runtime, GatewayOptions options);
  ~Gateway();

  void SetSnapshot(std::shared_ptr<const Snapshot> snapshot);
  std::shared_ptr<const Snapshot> snapshot() const;

  // Called on an I/O thread with a complete request; answers through `sink`.
  void Handle(RequestInfo request, std::string body, std::shared_ptr<ResponseSink> sink);

  std::string MetricsText() const;
  // Lets queued jobs finish and joins the workers.
  void Shutdown();
  const GatewayOptions& options() const { return options_; }

 private:
  void Run(std::shared_ptr<const Snapshot> snapshot, const App& app, RouteMatch match,
           RequestInfo request, std::string body, std::shared_ptr<ResponseWriter> writer,
           std::chrono::steady_clock::time_point start);
  void Log(const RequestInfo& request, const std::string& route, int status, uint64_t bytes,
           std::chrono::steady_clock::time_point start, const char* note);

  runtime::Runtime& runtime_;
  const GatewayOptions options_;
  mutable std::mutex snapshot_mu_;
  std::shared_ptr<const Snapshot> snapshot_;  // guarded by snapshot_mu_
  Metrics metrics_;
  TimerThread timers_;
  std::atomic<uint64_t> running_{0};
  std::unique_ptr<WorkerPool> pool_;
};

}  // namespace wasmlet::gateway
