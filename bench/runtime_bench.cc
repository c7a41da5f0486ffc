// Runtime benchmark (issue 2): prints a table of medians and p99s measured in one run.
//  1. per-invocation cost: fresh Store + WASI context + instantiate + run the C hello to exit
//     (also with a CancelToken, as the node runs guests)
//  2. loading the precompiled ~2.7 MB Go module from the disk cache (fresh runtime, mmap)
//  3. whole-process `wasmlet run hello.wasm` (warm cache) vs the native C hello, and the ratio
// Usage: runtime_bench [iterations]   (bench/runtime.sh builds and runs it)
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "runtime/runtime.h"
#include "util/files.h"

using namespace wasmlet;
using Clock = std::chrono::steady_clock;

namespace {

struct Stats {
  double median_us, p99_us, min_us;
};

Stats Summarize(std::vector<double> us) {
  std::sort(us.begin(), us.end());
  return {us[us.size() / 2], us[std::min(us.size() - 1, us.size() * 99 / 100)], us.front()};
}

double Micros(Clock::duration d) { return std::chrono::duration<double, std::micro>(d).count(); }

void Row(const char* what, const Stats& s, const char* target) {
  std::printf("| %-52s | %10.1f | %10.1f | %10.1f | %-14s |\n", what, s.median_us, s.p99_us,
              s.min_us, target);
}

Stats TimeProcess(const std::vector<std::string>& argv, int iterations) {
  std::vector<double> samples;
  for (int i = 0; i < iterations; ++i) {
    auto start = Clock::now();
    pid_t pid = fork();
    if (pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      dup2(devnull, 1);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    samples.push_back(Micros(Clock::now() - start));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "%s failed (status %d)\n", argv[0].c_str(), status);
      std::exit(1);
    }
  }
  return Summarize(samples);
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 2000;
  std::string guests = WASMLET_GUEST_DIR;
  auto cache = std::filesystem::temp_directory_path() / ("wasmlet-bench-" + std::to_string(getpid()));
  std::filesystem::remove_all(cache);

  runtime::RuntimeOptions options;
  options.cache_dir = cache.string();
  options.max_instances = 16;
  auto rt = runtime::CreateWasmtimeRuntime(options);
  if (!rt.ok()) {
    std::fprintf(stderr, "%s\n", rt.error().ToString().c_str());
    return 1;
  }
  auto hello = (*rt)->LoadFile(guests + "/hello.wasm");
  if (!hello.ok()) {
    std::fprintf(stderr, "%s\n", hello.error().ToString().c_str());
    return 1;
  }

  // 1. Per-invocation cost.
  size_t bytes = 0;
  runtime::InvokeRequest request;
  request.args = {"hello"};
  request.stdout_mode = runtime::OutputMode::kCallback;
  request.stdout_callback = [&](std::string_view s) { bytes += s.size(); return true; };
  std::vector<double> invoke;
  for (int i = 0; i < iterations + 100; ++i) {
    auto start = Clock::now();
    auto r = (*hello)->Invoke(request);
    auto elapsed = Clock::now() - start;
    if (!r.ok() || !r->success()) {
      std::fprintf(stderr, "invoke failed\n");
      return 1;
    }
    if (i >= 100) invoke.push_back(Micros(elapsed));  // first 100 warm up
  }
  // The node's path: the same with a CancelToken (an epoch-deadline callback per Store).
  request.cancel = std::make_shared<runtime::CancelToken>();
  std::vector<double> invoke_token;
  for (int i = 0; i < iterations; ++i) {
    auto start = Clock::now();
    auto r = (*hello)->Invoke(request);
    invoke_token.push_back(Micros(Clock::now() - start));
    if (!r.ok() || !r->success()) {
      std::fprintf(stderr, "invoke with a CancelToken failed\n");
      return 1;
    }
  }
  request.cancel.reset();
  request.stdout_mode = runtime::OutputMode::kDiscard;
  std::vector<double> invoke_discard;
  for (int i = 0; i < iterations; ++i) {
    auto start = Clock::now();
    auto r = (*hello)->Invoke(request);
    invoke_discard.push_back(Micros(Clock::now() - start));
  }

  // 2. Load the precompiled Go module from the disk cache in a fresh runtime (process restart).
  auto go_bytes = ReadFile(guests + "/go_hello.wasm");
  if (!go_bytes.ok()) return 1;
  { auto warm = (*rt)->LoadFile(guests + "/go_hello.wasm"); (void)warm; }  // compiles, caches, indexes
  std::vector<double> load;
  for (int i = 0; i < 30; ++i) {
    runtime::RuntimeOptions o = options;
    o.max_instances = 1;
    auto fresh = runtime::CreateWasmtimeRuntime(o);
    if (!fresh.ok()) return 1;
    auto start = Clock::now();
    auto m = (*fresh)->Load(*go_bytes, "go_hello.wasm");
    load.push_back(Micros(Clock::now() - start));
    if (!m.ok() || (*fresh)->Stats().disk_cache_hits != 1) {
      std::fprintf(stderr, "expected a disk cache hit\n");
      return 1;
    }
  }
  std::vector<double> load_file;  // by path: a file seen before maps its artifact without hashing
  for (int i = 0; i < 30; ++i) {
    runtime::RuntimeOptions o = options;
    o.max_instances = 1;
    auto fresh = runtime::CreateWasmtimeRuntime(o);
    auto start = Clock::now();
    auto m = (*fresh)->LoadFile(guests + "/go_hello.wasm");
    load_file.push_back(Micros(Clock::now() - start));
    if (!m.ok() || (*fresh)->Stats().disk_cache_hits != 1 || (*fresh)->Stats().modules_compiled != 0) {
      std::fprintf(stderr, "expected a disk cache hit by path\n");
      return 1;
    }
  }

  // 3. Whole process: wasmlet run (warm cache) vs native.
  std::string cache_flag = "--module-cache=" + cache.string();
  int processes = std::max(50, iterations / 20);
  TimeProcess({WASMLET_BINARY, "run", cache_flag, guests + "/hello.wasm"}, 5);  // warm the cache
  Stats wasmlet_proc = TimeProcess({WASMLET_BINARY, "run", cache_flag, guests + "/hello.wasm"}, processes);
  Stats native_proc = TimeProcess({NATIVE_HELLO}, processes);

  Stats inv = Summarize(invoke);
  std::printf("wasmlet runtime benchmark (%s), %d invocations, %d processes\n\n",
              (*rt)->EngineDescription().c_str(), iterations, processes);
  std::printf("| %-52s | %10s | %10s | %10s | %-14s |\n", "measure (microseconds)", "median", "p99",
              "min", "target");
  std::printf("|%s|%s|%s|%s|%s|\n", std::string(54, '-').c_str(), std::string(12, '-').c_str(),
              std::string(12, '-').c_str(), std::string(12, '-').c_str(), std::string(16, '-').c_str());
  Row("invoke C hello: Store+WASI+instantiate+run, stdout cb", inv, "<= 20 (goal 10)");
  Row("invoke C hello, stdout cb, with a CancelToken", Summarize(invoke_token), "");
  Row("invoke C hello, stdout discarded", Summarize(invoke_discard), "");
  Row("load 2.7 MB Go module from bytes (sha256 + cached artifact)", Summarize(load), "");
  Row("load precompiled 2.7 MB Go module from disk cache, by path", Summarize(load_file), "<= 1000");
  Row("process: wasmlet run hello.wasm (warm cache)", wasmlet_proc, "");
  Row("process: native hello", native_proc, "");
  std::printf("\nwhole-process ratio wasmlet/native (medians): %.2fx\n",
              wasmlet_proc.median_us / native_proc.median_us);
  std::printf("per-invocation target %s: median %.1f us\n", inv.median_us <= 20 ? "MET" : "MISSED",
              inv.median_us);
  std::filesystem::remove_all(cache);
  return 0;
}
