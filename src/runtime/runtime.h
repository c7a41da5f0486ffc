// The runtime interface: everything above src/runtime sees only these types, never Wasmtime's.
// The gateway and the node are written against Runtime/Module so they can be tested with a fake
// (see runtime/fake_runtime.h).
//
// Threading: a Runtime and the Modules it returns are thread-safe; Load and Invoke may be called
// from any number of threads at once. Each Invoke runs guest code on the calling thread, in a
// fresh sandbox (its own Store and WASI context) that dies when Invoke returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "util/result.h"

namespace wasmlet::runtime {

// A host directory made visible to the guest. Nothing is visible unless preopened.
struct Preopen {
  std::string host_path;
  std::string guest_path;
  bool read_only = false;
};

enum class StdinMode { kEmpty, kBytes, kFile, kInherit };
enum class OutputMode { kDiscard, kCallback, kFile, kInherit };

// Receives guest output in write order, synchronously on the thread running the guest (the
// guest waits while it runs: a slow callback is back-pressure). Returning false
// makes that write fail in the guest (EPIPE), e.g. when the HTTP client went away.
using OutputCallback = std::function<bool(std::string_view)>;

// Stops running invocations from another thread (a pod being deleted, the agent stopping).
// Effective within a few milliseconds whether the guest runs wasm code (checked at every epoch
// tick) or sleeps in poll_oneoff (woken at once); the invocation ends as Outcome::kCancelled.
// A guest blocked in another host call (a slow output callback, a read of an inherited stdin)
// stops when that call returns. Thread-safe; one token may serve several requests (all the
// containers of a pod); once cancelled it stays cancelled, and requests started later end at
// once.
class CancelToken {
 public:
  void Cancel();
  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }
  // Blocks until `deadline` or Cancel(), whichever comes first; true when cancelled.
  bool WaitUntil(std::chrono::steady_clock::time_point deadline) const;

 private:
  std::atomic<bool> cancelled_{false};
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
};

struct Limits {
  // Maximum linear memory of the instance in bytes; 0 = the engine's per-instance maximum.
  uint64_t memory_bytes = 0;
  // Wall-clock budget for the guest; zero = unlimited. Enforced with epoch interruption in wasm
  // code and by our own poll_oneoff (a guest sleeping past the deadline is woken and stopped).
  std::chrono::milliseconds timeout{0};
  // true: a guest whose memory would grow past memory_bytes is stopped at that moment
  // (Outcome::kMemoryLimit, exact; the kubelet's OOMKilled). false: the grow fails in the guest
  // (as in wasmtime run), which may handle it; if the guest then fails near the limit the
  // outcome is still kMemoryLimit.
  bool trap_on_memory_limit = false;
};

struct InvokeRequest {
  std::string entrypoint = "_start";
  std::vector<std::string> args;  // argv, argv[0] included
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<Preopen> preopens;

  StdinMode stdin_mode = StdinMode::kEmpty;
  std::string stdin_data;  // the bytes (kBytes) or a host path (kFile)

  OutputMode stdout_mode = OutputMode::kDiscard;
  OutputCallback stdout_callback;  // kCallback
  std::string stdout_path;         // kFile
  OutputMode stderr_mode = OutputMode::kDiscard;
  OutputCallback stderr_callback;
  std::string stderr_path;

  Limits limits;
  // Optional: Cancel() stops the guest from another thread (Outcome::kCancelled).
  std::shared_ptr<CancelToken> cancel;
  // Fill InvokeResult::phases (a few clock reads; off on the request path).
  bool measure_phases = false;
  // A guest still running wasm code after this long moves its thread to the background
  // (nice 19) until the invocation ends, so that short requests keep the CPU when long or
  // hostile ones compete for it. Zero = never.
  std::chrono::milliseconds background_after{0};
};

enum class Outcome {
  kExited,       // returned from the entrypoint (exit code 0) or called proc_exit
  kTrapped,      // a wasm trap (unreachable, bad memory access, ...)
  kTimedOut,     // the deadline in Limits::timeout passed
  kMemoryLimit,  // the guest failed after its memory reached Limits::memory_bytes
  kStackOverflow,
  kCancelled,    // InvokeRequest::cancel was cancelled
};

const char* OutcomeName(Outcome outcome);

// Where an invocation's time went (InvokeRequest::measure_phases), in order.
struct InvokePhases {
  std::chrono::nanoseconds store{0};        // Store, memory limiter, deadline
  std::chrono::nanoseconds wasi{0};         // WASI context: argv, env, preopens, stdio
  std::chrono::nanoseconds instantiate{0};  // instance from the InstancePre + entry lookup
  std::chrono::nanoseconds run{0};          // the entry point, to its return or exit
  std::chrono::nanoseconds teardown{0};     // result, Store and WASI context freed
};

struct InvokeResult {
  Outcome outcome = Outcome::kExited;
  int exit_code = 0;
  std::string message;    // trap or limit description, empty on a plain exit
  std::string backtrace;  // wasm backtrace, one frame per line, for traps
  uint64_t memory_bytes = 0;  // linear memory size at the end
  std::chrono::nanoseconds duration{0};
  InvokePhases phases;  // zero unless InvokeRequest::measure_phases
  // InvokeRequest::background_after passed: the thread ran the rest of the guest in the
  // background. If its priority could not be raised again afterwards (no CAP_SYS_NICE and a
  // low RLIMIT_NICE), priority_restored is false and the thread is still in the background.
  bool backgrounded = false;
  bool priority_restored = true;

  bool success() const { return outcome == Outcome::kExited && exit_code == 0; }
  // One line: "exited with code 3", "trapped: wasm `unreachable` instruction executed", ...
  std::string Describe() const;
};

// A compiled and linked module, ready to be instantiated any number of times.
class Module {
 public:
  virtual ~Module() = default;
  // sha256 hex of the bytes the module was loaded from.
  virtual const std::string& digest() const = 0;
  // Name used in messages (file name or reference).
  virtual const std::string& name() const = 0;
  virtual bool HasFunctionExport(std::string_view name) const = 0;
  virtual std::vector<std::string> FunctionExports() const = 0;
  // Runs one fresh instance. An Error means the sandbox could not be set up (a missing
  // preopen directory, a missing export); guest failures are reported in InvokeResult.
  virtual Result<InvokeResult> Invoke(const InvokeRequest& request) const = 0;
};

struct RuntimeStats {
  uint64_t modules_compiled = 0;      // compiled from wasm in this process
  uint64_t disk_cache_hits = 0;       // loaded from a precompiled artifact in the cache dir
  uint64_t memory_cache_hits = 0;     // served from the in-process module table
  uint64_t instances_running = 0;
  uint64_t instances_total = 0;

  // Counter by counter: what happened between two readings (later - earlier).
  RuntimeStats operator-(const RuntimeStats& earlier) const {
    return {modules_compiled - earlier.modules_compiled, disk_cache_hits - earlier.disk_cache_hits,
            memory_cache_hits - earlier.memory_cache_hits, instances_running - earlier.instances_running,
            instances_total - earlier.instances_total};
  }
};

struct RuntimeOptions {
  // Directory for precompiled artifacts keyed by digest + engine fingerprint; empty = none.
  std::string cache_dir;
  // Accept precompiled artifacts given directly to Load/LoadFile (trusted input only:
  // artifacts are native code). Artifacts in cache_dir are always accepted.
  bool allow_precompiled = true;
  // Pooling allocator sizing: concurrent instances and their largest linear memory.
  uint32_t max_instances = 1000;
  uint64_t max_memory_bytes = 4ull << 30;
  // Resolution of deadlines.
  std::chrono::milliseconds epoch_tick{1};
};

class Runtime {
 public:
  virtual ~Runtime() = default;
  // Bytes may be a wasm binary, WAT text, or (if allowed) a precompiled artifact.
  virtual Result<std::shared_ptr<const Module>> Load(std::string_view bytes,
                                                     const std::string& name) = 0;
  virtual Result<std::shared_ptr<const Module>> LoadFile(const std::string& path) = 0;
  // Compiles wasm/WAT bytes into an artifact that Load accepts later (`wasmlet compile`).
  virtual Result<std::string> Precompile(std::string_view bytes, const std::string& name) = 0;
  virtual RuntimeStats Stats() const = 0;
  // "wasmtime 48.0.8" or "fake"
  virtual std::string EngineDescription() const = 0;
};

// The real runtime on Wasmtime (runtime/wasmtime_runtime.cc).
Result<std::unique_ptr<Runtime>> CreateWasmtimeRuntime(const RuntimeOptions& options);
std::string WasmtimeVersion();

}  // namespace wasmlet::runtime
