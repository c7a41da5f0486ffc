// `wasmlet serve`: the WAGI-compatible HTTP gateway (docs/gateway.md).
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <thread>
#include <tuple>

#include "exe/commands.h"
#include "oci/resolve.h"
#include "gateway/config.h"
#include "gateway/gateway.h"
#include "gateway/server.h"
#include "runtime/runtime.h"
#include "util/files.h"
#include "util/log.h"

namespace wasmlet::exe {
namespace {

namespace fs = std::filesystem;

struct ServeOptions {
  std::string config;
  std::string listen = "127.0.0.1:3000";
  std::string hostname;
  std::string tls_cert;
  std::string tls_key;
  std::string log_dir;
  std::string cache_dir;
  bool no_cache = false;
  std::vector<std::string> envs;
  std::vector<std::string> env_files;
  bool check = false;
  bool preload = false;
  size_t workers = 0;
  size_t queue = 1024;
  size_t io_threads = 0;  // 0 = one per CPU
  bool no_inline = false;
  std::string max_body = "32MiB";
  std::string hold_bytes = "64KiB";
  std::string hold_time = "50ms";
  std::string shutdown_grace = "10s";
  size_t max_connections = 0;  // 0 = from the descriptor limit (gateway::DefaultMaxConnections)
  std::string header_timeout = "10s";
  std::string background_after = "50ms";
  std::string body_timeout = "60s";
  std::string idle_timeout = "60s";
  std::string write_timeout = "60s";
  bool no_watch = false;
};

std::string DefaultCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::string base = xdg != nullptr && *xdg ? xdg : std::string(home != nullptr ? home : "/tmp") + "/.cache";
  return base + "/wasmlet/modules";
}

Status AddEnv(const std::string& kv, const std::string& where, gateway::EnvList& env) {
  auto eq = kv.find('=');
  if (eq == std::string::npos) {
    // `-e NAME` passes the host's value, like `wasmlet run`.
    const char* v = std::getenv(kv.c_str());
    if (v == nullptr) return MakeError(Phase::kUsage, "host variable '" + kv + "' is not set", where);
    env.emplace_back(kv, v);
    return OkStatus();
  }
  if (eq == 0) return MakeError(Phase::kUsage, "expected NAME=VALUE, got '" + kv + "'", where);
  env.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  return OkStatus();
}

Status ReadEnvFile(const std::string& path, gateway::EnvList& env) {
  auto content = ReadFile(path);
  if (!content.ok()) return MakeError(Phase::kUsage, content.error().message, path);
  size_t line_no = 0, start = 0;
  while (start < content->size()) {
    size_t end = content->find('\n', start);
    if (end == std::string::npos) end = content->size();
    std::string line = content->substr(start, end - start);
    start = end + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    line = line.substr(first);
    if (line.rfind("export ", 0) == 0) line = line.substr(7);
    if (line.find('=') == std::string::npos) {
      return MakeError(Phase::kUsage, "expected NAME=VALUE, got '" + line + "'", path + ":" + std::to_string(line_no));
    }
    if (auto s = AddEnv(line, path + ":" + std::to_string(line_no), env); !s.ok()) return s;
  }
  return OkStatus();
}

// Loads the config file (or the bundled examples) and registers its apps; modules load on
// first request (`preload`: all of them now, failing on the first that does not load). With
// `previous` (a reload), modules whose file did not change stay loaded.
Result<std::shared_ptr<gateway::Snapshot>> LoadAll(const std::string& config_path, runtime::Runtime& rt,
                                                   const std::string& log_dir, bool preload, size_t threads,
                                                   const gateway::Snapshot* previous = nullptr) {
  gateway::LoadOptions load_options;
  // `module = "oci:REGISTRY/REPO:TAG"` pulls into the content store (if missing) at load time.
  load_options.oci_resolver = [](const std::string& ref) {
    return oci::ResolveToLocalPath(ref, oci::PullOptions{});
  };
  auto config = gateway::LoadConfigFile(config_path, load_options);
  if (!config.ok()) return config.take_error();
  auto snapshot = gateway::LoadSnapshot(std::move(*config), rt, log_dir, previous);
  if (!snapshot.ok() || !preload) return snapshot;
  auto begin = std::chrono::steady_clock::now();
  size_t total = (*snapshot)->apps.size();
  auto status = gateway::PreloadSnapshot(**snapshot, rt, threads, [](size_t done, size_t all) {
    WLOG_INFO("loading modules: {}/{}", done, all);
  });
  if (!status.ok()) return status.take_error();
  WLOG_INFO("loaded {} modules in {:.1f}s", total,
            std::chrono::duration<double>(std::chrono::steady_clock::now() - begin).count());
  return snapshot;
}

time_t ModifiedTime(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return 0;
  return st.st_mtime;
}

int DoServe(const ServeOptions& o) {
  std::string config_path = o.config;
  bool bundled = false;
  if (config_path.empty()) {
    config_path = gateway::FindBundledExamples();
    bundled = true;
    if (config_path.empty()) {
      return ReportError(
          "usage error: no --config given and the bundled examples were not found (build the "
          "'examples' target, or set WASMLET_EXAMPLES_DIR)",
          kExitUsage);
    }
  } else {
    std::error_code ec;
    if (!fs::is_regular_file(config_path, ec)) {
      return ReportError("usage error: " + config_path + ": no such config file", kExitUsage);
    }
  }

  gateway::GatewayOptions gopts;
  for (const auto& f : o.env_files) {
    if (auto s = ReadEnvFile(f, gopts.global_env); !s.ok()) return ReportError(s.error().ToString(), kExitUsage);
  }
  for (const auto& e : o.envs) {
    if (auto s = AddEnv(e, "--env", gopts.global_env); !s.ok()) return ReportError(s.error().ToString(), kExitUsage);
  }
  auto hold_bytes = gateway::ParseSize(o.hold_bytes);
  auto hold_time = gateway::ParseDuration(o.hold_time);
  auto max_body = gateway::ParseSize(o.max_body);
  auto grace = gateway::ParseDuration(o.shutdown_grace);
  for (const Error* e : {hold_bytes.ok() ? nullptr : &hold_bytes.error(), hold_time.ok() ? nullptr : &hold_time.error(),
                         max_body.ok() ? nullptr : &max_body.error(), grace.ok() ? nullptr : &grace.error()}) {
    if (e != nullptr) return ReportError("usage error: " + e->message, kExitUsage);
  }
  gopts.stream.hold_bytes = *hold_bytes;
  gopts.stream.hold_time = *hold_time;
  gopts.workers = o.workers;
  gopts.queue_limit = std::max<size_t>(1, o.queue);
  auto background_after = gateway::ParseDuration(o.background_after);
  if (!background_after.ok()) {
    return ReportError("usage error: --background-after: " + background_after.error().message, kExitUsage);
  }
  gopts.background_after = std::chrono::duration_cast<std::chrono::milliseconds>(*background_after);
  std::string listen = o.listen;
  gopts.default_host = o.hostname.empty() ? "localhost:3000" : o.hostname;

  runtime::RuntimeOptions ropts;
  ropts.cache_dir = o.no_cache ? "" : (o.cache_dir.empty() ? DefaultCacheDir() : o.cache_dir);
  // More workers than CPUs: a guest that sleeps, waits on a slow client or spins until its
  // timeout holds a worker, and must not starve the other routes (bench/hostile/p99.sh).
  size_t workers = o.workers != 0 ? o.workers
                                  : std::max<size_t>(8, 4 * std::max(1u, std::thread::hardware_concurrency()));
  gopts.workers = workers;
  gopts.run_inline = !o.no_inline;
  // One I/O thread per CPU: each also runs the guests of quick apps (the gateway's inline runs),
  // and up to `workers` spare threads stand in for I/O threads whose guest blocks.
  const size_t cpus = std::max(1u, std::thread::hardware_concurrency());
  const size_t io_threads = o.io_threads != 0 ? o.io_threads : cpus;
  // Instance slots: the workers, the I/O threads and their spares, and the warm-up.
  ropts.max_instances = static_cast<uint32_t>(2 * workers + io_threads + 8);
  auto rt = runtime::CreateWasmtimeRuntime(ropts);
  if (!rt.ok()) return ReportError(rt.error().ToString(), kExitFailure);

  // --check and --preload load every module now (compiling what the cache lacks, in parallel),
  // so a broken module fails here instead of on its first request.
  const bool preload = o.check || o.preload;
  // Loading is CPU-bound: no more threads than CPUs (and never more than the instance slots,
  // which are sized by workers: `_routes` runs guests).
  const size_t load_threads = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, workers);
  auto snapshot = LoadAll(config_path, **rt, o.log_dir, preload, load_threads);
  if (!snapshot.ok()) return ReportError(snapshot.error().ToString(), kExitFailure);
  for (const auto& w : (*snapshot)->config.warnings) WLOG_WARN("{}", w);
  if (o.check) {
    std::printf("%s: OK (%zu modules, %zu routes, %zu warnings)\n", config_path.c_str(),
                (*snapshot)->apps.size(), (*snapshot)->router()->routes().size(),
                (*snapshot)->config.warnings.size());
    return 0;
  }

  gateway::Gateway gw(**rt, gopts);
  gw.SetSnapshot(*snapshot);
  gw.WarmUp();

  std::mutex reload_mu;
  auto reload = [&] {
    std::lock_guard lock(reload_mu);
    // Runs on the signal/watcher thread: requests keep being served from the current snapshot.
    auto next = LoadAll(config_path, **rt, o.log_dir, o.preload, load_threads, gw.snapshot().get());
    if (!next.ok()) {
      WLOG_ERROR("reload failed, keeping the previous configuration: {}", next.error().ToString());
      return;
    }
    for (const auto& w : (*next)->config.warnings) WLOG_WARN("{}", w);
    gw.SetSnapshot(*next);
    WLOG_INFO("reloaded {}: {} routes", config_path, (*next)->router()->routes().size());
  };

  gateway::ServerOptions sopts;
  sopts.listen = listen;
  sopts.io_threads = io_threads;
  sopts.max_spare_threads = workers;
  sopts.on_io_thread_start = [&gw] { gw.WarmUpThisThread(); };
  sopts.max_body_bytes = *max_body;
  sopts.shutdown_grace = *grace;
  sopts.max_connections = o.max_connections;
  for (auto [text, flag, field] : {std::tuple{&o.header_timeout, "--header-timeout", &sopts.header_timeout},
                                   std::tuple{&o.body_timeout, "--body-timeout", &sopts.body_timeout},
                                   std::tuple{&o.idle_timeout, "--idle-timeout", &sopts.idle_timeout},
                                   std::tuple{&o.write_timeout, "--write-timeout", &sopts.write_timeout}}) {
    auto d = gateway::ParseDuration(*text);
    if (!d.ok()) return ReportError(std::string("usage error: ") + flag + ": " + d.error().message, kExitUsage);
    if (d->count() <= 0) return ReportError(std::string("usage error: ") + flag + " must be positive", kExitUsage);
    *field = *d;
  }
  sopts.tls_cert = o.tls_cert;
  sopts.tls_key = o.tls_key;
  sopts.on_reload = reload;
  auto server = gateway::Server::Create(gw, sopts);
  if (!server.ok()) {
    const Error& e = server.error();
    return ReportError(e.ToString(), e.phase == Phase::kUsage ? kExitUsage : kExitFailure);
  }
  std::string scheme = (*server)->tls() ? "https" : "http";
  std::string host = listen.substr(0, listen.rfind(':'));
  if (host.empty() || host == "0.0.0.0") host = "127.0.0.1";
  std::string base = scheme + "://" + host + ":" + std::to_string((*server)->port());
  // The first stdout line is machine-readable (tests and scripts wait for it).
  std::printf("Listening on %s\n", base.c_str());
  if (bundled) std::printf("Serving the bundled examples (%s):\n", config_path.c_str());
  for (const auto& route : (*snapshot)->router()->routes()) {
    std::string path = route.pattern;
    if (gateway::Router::IsWildcard(path)) path = path.substr(0, path.size() - 3);
    std::printf("  %s%s\n", base.c_str(), path.c_str());
  }
  std::fflush(stdout);

  // A changed config file reloads it too (polled; SIGHUP is immediate).
  std::atomic<bool> done{false};
  std::thread watcher;
  if (!o.no_watch && !bundled) {
    watcher = std::thread([&] {
      time_t last = ModifiedTime(config_path);
      while (!done.load()) {
        for (int i = 0; i < 20 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        time_t now = ModifiedTime(config_path);
        if (now != 0 && now != last) {
          last = now;
          WLOG_INFO("{} changed: reloading", config_path);
          reload();
        }
      }
    });
  }
  // Guests that outlived the grace period would stop only at their time limit: exit without
  // tearing down what their threads still use.
  auto exit_anyway = [] {
    WLOG_WARN("guest code still running after the shutdown grace period; exiting anyway");
    std::fflush(nullptr);
    std::_Exit(0);
  };
  bool clean = (*server)->Run();
  done = true;
  if (!clean) exit_anyway();  // an I/O thread is still inside a guest
  if (watcher.joinable()) watcher.join();
  // Requests still running on workers: give them a moment, then exit regardless.
  std::atomic<bool> joined{false};
  std::thread reaper([&] {
    for (int i = 0; i < 100 && !joined.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!joined.load()) exit_anyway();
  });
  gw.Shutdown();
  joined = true;
  reaper.join();
  WLOG_INFO("stopped");
  return 0;
}

const CommandRegistration kServe({
    .name = "serve",
    .order = 20,
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto o = std::make_shared<ServeOptions>();
          CLI::App* cmd = root.add_subcommand(
              "serve",
              "Serve WAGI modules over HTTP: a fresh sandbox per request (docs/gateway.md).\n"
              "With no --config, serves the bundled example apps.");
          cmd->add_option("-c,--config", o->config, "modules.toml (WAGI) or spin.toml (Spin v2, WAGI executor)");
          cmd->add_option("-l,--listen", o->listen, "Address to listen on, HOST:PORT (port 0 = any free port)")
              ->capture_default_str();
          cmd->add_option("--hostname", o->hostname,
                          "Host (and port) for SERVER_NAME/SERVER_PORT when a request has no Host header "
                          "(default localhost:3000)");
          cmd->add_option("--tls-cert", o->tls_cert, "TLS certificate chain (PEM); serve HTTPS");
          cmd->add_option("--tls-key", o->tls_key, "TLS private key (PEM)");
          cmd->add_option("--log-dir", o->log_dir, "Directory for per-route module stderr logs");
          cmd->add_option("--module-cache", o->cache_dir,
                          "Compiled-module cache directory (default ${XDG_CACHE_HOME:-~/.cache}/wasmlet/modules)");
          cmd->add_flag("--no-cache", o->no_cache, "Do not read or write the compiled-module cache");
          cmd->add_option("-e,--env", o->envs, "Variable NAME=VALUE for every module (repeatable)");
          cmd->add_option("--env-file", o->env_files, "NAME=VALUE lines for every module (repeatable)");
          cmd->add_flag("--check", o->check,
                        "Validate the configuration, load (compile and cache) every module, call _routes, and exit");
          cmd->add_flag("--preload", o->preload,
                        "Load every module at startup and reload (fail on a broken one) instead of on first request");
          cmd->add_option("--workers", o->workers, "Threads running guest code (default: 4 x CPUs, min 8)");
          cmd->add_option("--background-after", o->background_after,
                          "Run a guest that is still busy after this long at the lowest CPU priority (nice 19), so "
                          "short requests go first (0 = never)")->capture_default_str();
          cmd->add_option("--queue", o->queue, "Requests waiting for a worker before 503")->capture_default_str();
          cmd->add_option("--io-threads", o->io_threads,
                          "Network I/O threads, which also run the guests of quick apps (default: one per CPU)");
          cmd->add_flag("--no-inline", o->no_inline,
                        "Run every guest on a worker thread, never inline on an I/O thread");
          cmd->add_option("--max-body", o->max_body, "Largest request body (413 above)")->capture_default_str();
          cmd->add_option("--hold-bytes", o->hold_bytes,
                          "Response output held back before streaming starts")->capture_default_str();
          cmd->add_option("--hold-time", o->hold_time,
                          "Time output is held back before streaming starts")->capture_default_str();
          cmd->add_option("--max-connections", o->max_connections,
                          "Open connections at once; more wait to be accepted (default: 3/4 of the "
                          "open-files limit, at most 10000)");
          cmd->add_option("--header-timeout", o->header_timeout,
                          "Time to receive a request head once it started")->capture_default_str();
          cmd->add_option("--body-timeout", o->body_timeout, "Time to receive a request body")->capture_default_str();
          cmd->add_option("--idle-timeout", o->idle_timeout,
                          "Time a keep-alive connection may wait for its next request")->capture_default_str();
          cmd->add_option("--write-timeout", o->write_timeout,
                          "Time a client gets to accept response bytes")->capture_default_str();
          cmd->add_option("--shutdown-grace", o->shutdown_grace,
                          "Time in-flight requests get at SIGTERM/SIGINT")->capture_default_str();
          cmd->add_flag("--no-watch", o->no_watch, "Do not reload when the config file changes (SIGHUP still does)");
          cmd->callback([o, &env] { env.exit_code = DoServe(*o); });
        },
});

}  // namespace
}  // namespace wasmlet::exe
