// The gateway core, independent of the HTTP library: a loaded configuration (Snapshot: apps,
// their lazily loaded modules and the router), the bounded worker pool that runs guest code,
// request dispatch (built-ins, routing, lazy loading, per-app concurrency, CGI mapping, invoke,
// streaming response) and metrics.
//
// Threading: Gateway is thread-safe. Handle() is called on I/O threads and never blocks.
// Module loading, and the guests of apps that block or run long, run on the pool's worker
// threads; the guests of quick apps run as jobs deferred to the I/O thread's InlineRunner
// (util/blocking.h), which brings in a spare thread if such a guest turns out to block. A
// Snapshot's configuration is immutable once published; what changes is each app's load state
// (App: loaded once, then fixed) and the router (replaced, never mutated, when a loaded app's
// `_routes` adds sub-routes). A reload publishes a new Snapshot while requests in flight keep
// the old one alive through their shared_ptr.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>
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
// A request's stderr is capped (request_cap bytes, 64 KiB by default): the rest is dropped
// and one line "[stderr truncated: N bytes dropped]" says so when the request ends.
class StderrLog {
 public:
  static constexpr size_t kDefaultRequestCap = 64 * 1024;
  StderrLog(std::string route, std::string path, size_t request_cap = kDefaultRequestCap);
  ~StderrLog();
  // Appends as is (uncapped; e.g. `_routes`, which runs once per load).
  void Write(std::string_view data);
  // The stderr callback of one request: keeps its first request_cap bytes; the truncation note
  // is written when the last copy of the callback is destroyed (the request's sandbox ended).
  // The StderrLog must outlive the callback.
  runtime::OutputCallback ForRequest();
  const std::string& path() const { return path_; }

 private:
  const std::string route_;
  const std::string path_;
  const size_t request_cap_;
  std::mutex mu_;
  FILE* file_ = nullptr;  // guarded by mu_
};

// Identity of a module file when it was loaded: (device, inode, size, mtime). A failed load is
// retried only when this changes; a reload keeps a loaded module whose file kept it.
std::string ModuleFileStamp(const std::string& path);

// What loading an app's module produces. Immutable once built; a reload shares it with the
// next snapshot when the module file did not change.
struct LoadedModule {
  std::shared_ptr<const runtime::Module> module;
  std::vector<std::pair<std::string, std::string>> sub_routes;  // `_routes` output: (pattern, export)
  std::vector<std::string> warnings;  // e.g. the entrypoint is not exported
  std::string stamp;                  // ModuleFileStamp before the load
};

// Compiles or maps the module (runtime LoadFile: the in-process table, the cache's path index,
// else a compile), calls `_routes` if exported and validates its lines. Runs guest code
// (`_routes`): call it on a worker thread or before serving, never on an I/O thread.
Result<std::shared_ptr<const LoadedModule>> LoadAppModule(const AppConfig& config, runtime::Runtime& runtime,
                                                          StderrLog* stderr_log);

// One configured app. Registering it costs its config and nothing else (no module, no file,
// no log file): the module is loaded by the first request that needs it and then kept.
//
// Threading: loaded() never blocks (I/O threads call it). Load() may block: the first caller
// loads while concurrent callers wait for that one load (no thundering compile).
class App {
 public:
  App(AppConfig config, std::string stderr_log_path);

  const AppConfig config;
  const std::string sub_route_base;      // SubRouteBase(config.route)
  mutable std::atomic<uint32_t> active{0};  // queued + running requests
  // Loaded and its sub-routes are in the snapshot's router (Snapshot::Activate).
  mutable std::atomic<bool> routed{false};
  // Its last run blocked, ran long (more than a millisecond or two) or failed: its requests go
  // to the worker pool rather than run inline on an I/O thread, until a run there is quick and
  // clean again.
  mutable std::atomic<bool> runs_long{false};

  // Null until the module is loaded.
  const LoadedModule* loaded() const { return loaded_.load(std::memory_order_acquire); }
  // True once a load was attempted and failed (until a retry succeeds).
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  // Valid once loaded() is non-null.
  StderrLog* stderr_log() const { return stderr_log_.get(); }

  struct LoadOutcome {
    bool loaded_now = false;  // this call did the load (and succeeded)
    bool failed_now = false;  // this call did the load and it failed
  };
  // Loads once; a failed load is remembered and answered again without retrying until the
  // module file changes (its stamp), so a broken module is not recompiled on every request.
  Result<const LoadedModule*> Load(runtime::Runtime& runtime, LoadOutcome* outcome = nullptr) const;
  // Reuses a module loaded by a previous snapshot (reload, file unchanged).
  void Adopt(std::shared_ptr<const LoadedModule> loaded) const;
  std::shared_ptr<const LoadedModule> shared_loaded() const;

 private:
  void PublishLocked(std::shared_ptr<const LoadedModule> loaded) const;

  const std::string stderr_log_path_;
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  mutable bool loading_ = false;                        // guarded by mu_
  mutable std::shared_ptr<const LoadedModule> holder_;  // guarded by mu_; set once
  mutable std::optional<Error> error_;                  // guarded by mu_: the last failure
  mutable std::string error_stamp_;                     // guarded by mu_: file stamp of that failure
  // Created with the first load (module stderr during `_routes`); the file opens on first write.
  mutable std::unique_ptr<StderrLog> stderr_log_;       // written under mu_ before loaded_ is set
  mutable std::atomic<const LoadedModule*> loaded_{nullptr};
  mutable std::atomic<bool> failed_{false};
};

// A loaded configuration. Apps load lazily; the router grows when a loaded app's `_routes`
// adds sub-routes (a new Router is published, in config order, so precedence is the same as
// if every app had been loaded at startup).
class Snapshot {
 public:
  GatewayConfig config;
  std::vector<std::unique_ptr<App>> apps;

  std::shared_ptr<const Router> router() const;
  // Apps whose `_routes` entries could match `raw_path` (their SubRouteBase is a segment prefix
  // of it). Routing is final for the path once all of them are loaded or failed.
  void AppsUnder(std::string_view raw_path, std::vector<size_t>* out) const;
  // True when every app whose `_routes` could claim `raw_path` is routed or failed, so the
  // router's answer for it is final. Never blocks on a load.
  bool RoutingSettled(std::string_view raw_path) const;
  // For apps that finished loading: counts them loaded and adds their sub-routes to the router
  // (one rebuild for the batch; new router warnings are logged), then marks them routed.
  // Idempotent per app.
  void Activate(const std::vector<size_t>& app_indexes) const;
  size_t loaded_count() const { return loaded_count_.load(); }

  // Indexes the apps and builds the router from their routes (and the sub-routes of apps
  // already loaded). Called once, before the snapshot is shared.
  void BuildRouter(std::vector<std::string>* warnings);

 private:
  std::vector<Route> RoutesLocked() const;
  std::unordered_map<std::string, std::vector<size_t>> apps_by_base_;  // sub_route_base -> apps
  mutable std::mutex router_mu_;
  mutable std::shared_ptr<const Router> router_;   // guarded by router_mu_
  mutable std::vector<bool> installed_;            // guarded by router_mu_: sub-routes in router_
  mutable std::unordered_set<std::string> router_warnings_;  // guarded by router_mu_: reported
  mutable std::atomic<size_t> loaded_count_{0};
};

// Registers every app and builds the router: no module is loaded here (only the config was
// checked). With `previous` (a reload), apps whose module file is unchanged keep the module
// loaded there. Warnings (duplicates, overlaps) are appended to snapshot->config.warnings.
Result<std::shared_ptr<Snapshot>> LoadSnapshot(GatewayConfig config, runtime::Runtime& runtime,
                                               const std::string& log_dir, const Snapshot* previous = nullptr);

// Loads every app not loaded yet (`serve --preload`, `serve --check`) on `threads` threads;
// the first failure is returned, naming the app. Load warnings are appended to
// snapshot.config.warnings. `progress(done, total)` is called about once a second.
Status PreloadSnapshot(Snapshot& snapshot, runtime::Runtime& runtime, size_t threads,
                       const std::function<void(size_t, size_t)>& progress = {});

// "<pattern> <export>" lines from `_routes` output -> (pattern, export). Errors name the line.
Result<std::vector<std::pair<std::string, std::string>>> ParseRoutesOutput(std::string_view output,
                                                                            const std::string& module);

// A fixed set of threads taking jobs from a bounded FIFO queue. A job goes straight to the
// most recently idle thread (LIFO): under steady load the same few threads, as many as the
// CPUs keep busy, do the work with warm caches, and the others wait until guests that sleep or
// block hold those (a FIFO wake-up would rotate through every thread, costing a third of the
// throughput at 8 threads on 2 CPUs).
class WorkerPool {
 public:
  WorkerPool(size_t threads, size_t queue_limit);
  ~WorkerPool();  // finishes queued jobs, joins
  // False when the queue is full (the caller answers 503).
  bool TryPost(std::function<void()> job);
  size_t queue_depth() const;
  size_t threads() const;
  void Stop();
  // Called from a job: once the job returns, its thread ends and a fresh one takes its place
  // (for a thread left in the background by a guest, whose priority could not be restored).
  static void RetireCurrentThread();

 private:
  void Loop();
  // A thread waiting for work; lives on its stack.
  struct Idle {
    std::condition_variable cv;
    std::function<void()> job;  // handed over by TryPost; guarded by mu_
    bool has_job = false;       // guarded by mu_
  };
  const size_t queue_limit_;
  mutable std::mutex mu_;
  std::vector<Idle*> idle_;                  // waiting threads, most recent last; guarded by mu_
  std::deque<std::function<void()>> queue_;  // jobs no thread was free for; guarded by mu_
  bool stopping_ = false;                    // guarded by mu_
  std::vector<std::thread> threads_;         // guarded by mu_
  std::vector<std::thread> retired_;         // ended (or ending) threads to join; guarded by mu_
};

// Prometheus counters and a latency histogram.
class Metrics {
 public:
  struct Gauges {
    size_t queue_depth = 0;
    uint64_t instances_running = 0;
    size_t apps_configured = 0;
    size_t apps_loaded = 0;
    uint64_t app_loads_ok = 0;      // loads done by requests or preload, in this process
    uint64_t app_loads_failed = 0;
    uint64_t runs_inline = 0;      // guests run on an I/O thread
    uint64_t runs_on_workers = 0;  // guests run on a worker thread
  };
  void Record(const std::string& route, int status, std::chrono::nanoseconds duration);
  std::string Text(const runtime::RuntimeStats& stats, const Gauges& gauges) const;

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
  // A guest running longer than this continues in the background (nice 19), so short
  // requests keep the CPU while long or hostile ones spin; zero = never (--background-after).
  std::chrono::milliseconds background_after{50};
  // Run the guests of quick apps on the I/O thread that read the request (when it has an
  // InlineRunner) instead of handing them to a worker (--no-inline turns it off).
  bool run_inline = true;
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
  // Runs a tiny built-in guest once on every worker, so that the first real request does not
  // pay for one-time setup (code pages faulted in, per-thread runtime state, the first instance
  // slot). Takes a few milliseconds; `wasmlet serve` calls it before it starts listening.
  void WarmUp();
  // The same for the calling thread alone (the server's I/O threads, which run quick guests).
  void WarmUpThisThread();
  // Lets queued jobs finish and joins the workers.
  void Shutdown();
  const GatewayOptions& options() const { return options_; }

 private:
  // `router` keeps match.route alive (the snapshot's router is replaced when sub-routes arrive).
  void Run(std::shared_ptr<const Snapshot> snapshot, std::shared_ptr<const Router> router, const App& app,
           RouteMatch match, RequestInfo request, std::string body, std::shared_ptr<ResponseWriter> writer,
           std::chrono::steady_clock::time_point start);
  // On a worker: loads the apps the path needs (its app, and apps whose `_routes` could claim
  // it), routes again, then runs the request or answers 404/500/503.
  void LoadAndRun(std::shared_ptr<const Snapshot> snapshot, RequestInfo request, std::string body,
                  std::shared_ptr<ResponseSink> sink, std::chrono::steady_clock::time_point start);
  // Loads one app, counting and logging the outcome; null (and logged) when it failed.
  const LoadedModule* LoadApp(const Snapshot& snapshot, size_t app_index);
  // Per-app concurrency check, then Run (on_worker) or a job posted for it.
  void Dispatch(std::shared_ptr<const Snapshot> snapshot, std::shared_ptr<const Router> router, RouteMatch match,
                RequestInfo request, std::string body, std::shared_ptr<ResponseSink> sink,
                std::chrono::steady_clock::time_point start, bool on_worker);
  // A complete response from the gateway itself (404, 503, built-ins), logged.
  void Reply(const RequestInfo& request, ResponseSink& sink, int status, std::string_view type, std::string_view text,
             const HeaderList& extra, const std::string& route, const char* note,
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
  std::atomic<uint64_t> app_loads_ok_{0};
  std::atomic<uint64_t> app_loads_failed_{0};
  std::atomic<uint64_t> runs_inline_{0};
  std::atomic<uint64_t> runs_on_workers_{0};
  // What the built-in guest adds to the runtime's counters (not the user's: left out of
  // /metrics): its load, and its instances.
  runtime::RuntimeStats warm_up_stats_;
  std::atomic<uint64_t> warm_up_instances_{0};
  std::shared_ptr<const runtime::Module> warm_up_module_;  // set by WarmUp, before serving
  // Runs the built-in guest once on the calling thread; true when it answered as expected.
  bool RunWarmUpGuest();
  std::unique_ptr<WorkerPool> pool_;
};

}  // namespace wasmlet::gateway
