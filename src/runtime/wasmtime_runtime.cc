// Runtime on Wasmtime's C/C++ API. The only file (with runtime/ itself) that sees Wasmtime.
//
// Design (docs/architecture.md):
//  - One Engine per Runtime: Cranelift, pooling allocator with copy-on-write memory images,
//    epoch interruption driven by a ticker thread; each Store gets its own deadline.
//  - Modules are compiled once per sha256 digest: an in-process table of weak references, then a
//    disk cache of precompiled artifacts named <digest>-<engine fingerprint>.cwasm loaded with
//    mmap. An artifact that fails to load (stale, truncated, corrupt) is recompiled and replaced.
//  - Each Module is linked once (InstancePre); an invocation is a Store + WASI context +
//    instantiate + call.
#include <wasmtime.hh>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "runtime/runtime.h"
#include "util/blocking.h"
#include "util/files.h"
#include "util/log.h"
#include "util/sha256.h"

// From third_party/wasmtime-capi/src/lib.rs: synchronous output callbacks (see there for why).
extern "C" bool wasmlet_wasi_config_set_output_callback(
    wasi_config_t* config, int32_t stream, ptrdiff_t (*callback)(void*, const unsigned char*, size_t),
    void* data);
extern "C" void wasmlet_store_memory_limiter(wasmtime_store_t* store, int64_t memory_size,
                                             bool trap_on_grow_failure);
extern "C" void wasmlet_pooling_allocation_config_total_stacks_set(
    wasmtime_pooling_allocation_config_t* config, uint32_t count);

namespace wasmlet::runtime {

namespace {

constexpr char kWasmtimeVersion[] = WASMTIME_VERSION;

std::string TakeErrorMessage(wasmtime_error_t* error) {
  wasm_name_t message;
  wasmtime_error_message(error, &message);
  std::string out(message.data, message.size);
  wasm_byte_vec_delete(&message);
  wasmtime_error_delete(error);
  return out;
}

std::string FirstLine(const std::string& text) {
  auto end = text.find('\n');
  return end == std::string::npos ? text : text.substr(0, end);
}

// Wasmtime's trap text is "error while executing at wasm backtrace:\n <frames>\n\nCaused by:\n
//     0: <detail>\n    1: wasm trap: <reason>"; people want "<reason> (<detail>)" on one line.
std::string TrapReason(const std::string& text) {
  auto caused = text.rfind("Caused by:");
  if (caused == std::string::npos) return FirstLine(text);
  std::vector<std::string> causes;
  size_t pos = caused + 10;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    size_t start = line.find_first_not_of(" \t");
    if (start == std::string::npos) continue;
    line = line.substr(start);
    size_t colon = line.find(": ");
    if (colon != std::string::npos && colon > 0 &&
        line.find_first_not_of("0123456789") == colon) {
      line = line.substr(colon + 2);
    }
    if (line.rfind("wasm trap: ", 0) == 0) line = line.substr(11);
    causes.push_back(line);
  }
  if (causes.empty()) return FirstLine(text);
  std::string out = causes.back();
  if (causes.size() > 1) out += " (" + causes.front() + ")";
  return out;
}

// Formats a wasm backtrace, one frame per line: "  0: hello.wasm!main (func 12 @ 0x1f3)".
std::string FormatTrace(const wasm_frame_vec_t& frames, const std::string& module_name) {
  std::string out;
  for (size_t i = 0; i < frames.size; ++i) {
    const wasm_frame_t* frame = frames.data[i];
    const wasm_name_t* func = wasmtime_frame_func_name(frame);
    const wasm_name_t* mod = wasmtime_frame_module_name(frame);
    out += "  " + std::to_string(i) + ": ";
    out += mod != nullptr ? std::string(mod->data, mod->size) : module_name;
    out += "!";
    out += func != nullptr ? std::string(func->data, func->size)
                           : "<func " + std::to_string(wasm_frame_func_index(frame)) + ">";
    size_t module_offset = wasm_frame_module_offset(frame);
    if (module_offset != SIZE_MAX) {
      char offset[32];
      std::snprintf(offset, sizeof offset, " @ 0x%zx", module_offset);
      out += offset;
    }
    out += "\n";
  }
  return out;
}

bool LooksLikeWasm(std::string_view bytes) {
  return bytes.size() >= 4 && bytes.substr(0, 4) == std::string_view("\0asm", 4);
}
bool LooksLikeArtifact(std::string_view bytes) {
  return bytes.size() >= 4 && bytes.substr(0, 4) == "\x7f" "ELF";
}

// Increments the engine epoch every tick while the runtime lives.
class EpochTicker {
 public:
  EpochTicker(wasm_engine_t* engine, std::chrono::milliseconds tick) {
    thread_ = std::thread([this, engine, tick] {
      std::unique_lock lock(mutex_);
      while (!stop_) {
        cv_.wait_for(lock, tick);
        wasmtime_engine_increment_epoch(engine);
      }
    });
  }
  ~EpochTicker() {
    {
      std::lock_guard lock(mutex_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mutex_
  std::thread thread_;
};

class WasmtimeRuntime;

// ---- Per-invocation state and our poll_oneoff ------------------------------------------------
// The store data of every invocation: what host functions and the epoch callback need to know
// about the request. Lives on Invoke's stack and outlives the Store.
struct Sandbox {
  using TimePoint = std::chrono::steady_clock::time_point;
  TimePoint deadline = TimePoint::max();  // from Limits::timeout
  CancelToken* cancel = nullptr;          // InvokeRequest::cancel, kept alive by the request
  // Origin of the guest's monotonic clock: Wasmtime's clock counts from the creation of the
  // WASI context (wasi_config_new), and this is read just after it, so an absolute monotonic
  // deadline converted with it is never early (at most a few hundred ns late).
  TimePoint monotonic_origin;
  // Why a host function or the epoch callback stopped the guest (overrides the trap text).
  enum class Stop { kNone, kTimeout, kCancel } stop = Stop::kNone;
  // InvokeRequest::background_after: when the thread moves to the background, and whether it has.
  TimePoint background_at = TimePoint::max();
  bool backgrounded = false;
  int foreground_nice = 0;  // the thread's nice value before
};

// Moves the calling thread to the background (nice 19: about 1.5% of a CPU against a normal
// thread, yet never starved) or back to `nice`. Linux keeps the nice value per thread.
constexpr int kBackgroundNice = 19;
bool SetThreadNice(int nice) {
  return setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), nice) == 0;
}
int ThreadNice() {
  errno = 0;
  int nice = getpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)));
  return errno == 0 ? nice : 0;
}

// Epoch ticks between checks of a CancelToken while the guest runs wasm code.
constexpr uint64_t kCancelCheckTicks = 2;

// Called every kCancelCheckTicks when a Store has a CancelToken or a background_after, or runs
// on a thread with an InlineRunner (util/blocking.h).
wasmtime_error_t* OnEpochDeadline(wasmtime_context_t*, void* data, uint64_t* delta,
                                  wasmtime_update_deadline_kind_t* kind) {
  auto* sandbox = static_cast<Sandbox*>(data);
  // A millisecond or two of wasm code: long for a thread that serves other clients too.
  MarkBlocking();
  if (sandbox->cancel != nullptr && sandbox->cancel->cancelled()) {
    sandbox->stop = Sandbox::Stop::kCancel;
    return wasmtime_error_new("cancelled");
  }
  if (std::chrono::steady_clock::now() >= sandbox->deadline) {
    sandbox->stop = Sandbox::Stop::kTimeout;
    return wasmtime_error_new("time limit exceeded");
  }
  if (sandbox->background_at != Sandbox::TimePoint::max() && std::chrono::steady_clock::now() >= sandbox->background_at) {
    sandbox->background_at = Sandbox::TimePoint::max();  // once
    sandbox->foreground_nice = ThreadNice();
    sandbox->backgrounded = sandbox->foreground_nice < kBackgroundNice && SetThreadNice(kBackgroundNice);
    if (!sandbox->backgrounded) WLOG_DEBUG("cannot move a guest to the background: {}", std::strerror(errno));
  }
  *delta = kCancelCheckTicks;
  *kind = WASMTIME_UPDATE_DEADLINE_CONTINUE;
  return nullptr;
}

// WASI preview 1 layouts (witx; wasi-libc's wasi/api.h asserts the same sizes and offsets).
namespace wasi {
constexpr uint32_t kSubscriptionSize = 48;  // userdata u64 @0, tag u8 @8, payload @16
constexpr uint32_t kEventSize = 32;         // userdata u64 @0, error u16 @8, type u8 @10,
                                            // fd_readwrite {nbytes u64 @16, flags u16 @24}
constexpr uint8_t kEventClock = 0, kEventFdRead = 1, kEventFdWrite = 2;
constexpr uint32_t kClockRealtime = 0, kClockMonotonic = 1;
constexpr uint16_t kSubclockAbstime = 1;
constexpr int32_t kSuccess = 0, kFault = 21, kInval = 28;
}  // namespace wasi

template <class T>
T LoadLe(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);  // wasm memory is little-endian, like the hosts we build for
  return v;
}
template <class T>
void StoreLe(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

// `now + ns`, saturating far beyond any real deadline instead of overflowing.
Sandbox::TimePoint AddNanos(Sandbox::TimePoint now, uint64_t ns) {
  constexpr uint64_t kMax = uint64_t{1} << 62;  // ~146 years
  return now + std::chrono::nanoseconds(static_cast<int64_t>(std::min(ns, kMax)));
}

// wasi_snapshot_preview1.poll_oneoff(in, out, nsubscriptions, nevents_ptr) -> errno, replacing
// Wasmtime's, whose sleep cannot be interrupted: a guest sleeping for hours would hold its
// thread past Limits::timeout and ignore cancellation. Semantics follow Wasmtime 48's p1
// implementation for clock subscriptions (relative and absolute, realtime and monotonic; the
// CPU-time clocks are EINVAL as there; all ready subscriptions reported in subscription order)
// and the sleep waits on the CancelToken, woken by Cancel() or the deadline.
// Differences, documented in docs/architecture.md: fd_read/fd_write subscriptions are reported
// ready at once (nbytes 1), which is what Wasmtime does for the descriptors our sandboxes have
// (files, in-memory stdin, stdout/stderr sinks) except that an inherited stdin (`wasmlet run`)
// is not waited for and an fd that is not open is reported ready rather than EBADF (the next
// read or write fails instead); an out-of-bounds or misaligned pointer is EFAULT (Wasmtime
// traps).
wasm_trap_t* PollOneoff(void*, wasmtime_caller_t* caller, const wasmtime_val_t* args, size_t,
                        wasmtime_val_t* results, size_t) {
  results[0].kind = WASMTIME_I32;
  auto fail = [&](int32_t errno_value) {
    results[0].of.i32 = errno_value;
    return nullptr;
  };
  wasmtime_context_t* context = wasmtime_caller_context(caller);
  auto* sandbox = static_cast<Sandbox*>(wasmtime_context_get_data(context));
  wasmtime_extern_t item;
  if (!wasmtime_caller_export_get(caller, "memory", 6, &item)) {
    return wasmtime_trap_new("poll_oneoff: the module exports no memory", 41);
  }
  if (item.kind != WASMTIME_EXTERN_MEMORY) {
    wasmtime_extern_delete(&item);
    return wasmtime_trap_new("poll_oneoff: the export 'memory' is not a memory", 48);
  }
  const wasmtime_memory_t memory = item.of.memory;
  const uint64_t in = static_cast<uint32_t>(args[0].of.i32);
  const uint64_t out = static_cast<uint32_t>(args[1].of.i32);
  const uint64_t count = static_cast<uint32_t>(args[2].of.i32);
  const uint64_t nevents_at = static_cast<uint32_t>(args[3].of.i32);
  if (count == 0) return fail(wasi::kInval);  // would sleep forever; not allowed in preview 1
  uint64_t size = wasmtime_memory_data_size(context, &memory);
  if (in % 8 != 0 || out % 8 != 0 || nevents_at % 4 != 0 ||
      in + count * wasi::kSubscriptionSize > size || out + count * wasi::kEventSize > size ||
      nevents_at + 4 > size) {
    return fail(wasi::kFault);
  }

  // Read every subscription first (any error before waiting), as Wasmtime does.
  auto now = std::chrono::steady_clock::now();
  auto wake = Sandbox::TimePoint::max();
  bool fd_ready = false;
  std::vector<Sandbox::TimePoint> due(count, Sandbox::TimePoint::min());  // min: an fd, ready
  {
    const uint8_t* base = wasmtime_memory_data(context, &memory);
    for (uint64_t i = 0; i < count; ++i) {
      const uint8_t* sub = base + in + i * wasi::kSubscriptionSize;
      uint8_t tag = sub[8];
      if (tag == wasi::kEventFdRead || tag == wasi::kEventFdWrite) {
        fd_ready = true;
        continue;
      }
      if (tag != wasi::kEventClock) return fail(wasi::kInval);
      uint32_t clock = LoadLe<uint32_t>(sub + 16);
      uint64_t timeout = LoadLe<uint64_t>(sub + 24);
      uint16_t flags = LoadLe<uint16_t>(sub + 40);
      if ((flags & ~wasi::kSubclockAbstime) != 0) return fail(wasi::kInval);
      bool absolute = (flags & wasi::kSubclockAbstime) != 0;
      Sandbox::TimePoint at;
      if (!absolute && (clock == wasi::kClockRealtime || clock == wasi::kClockMonotonic)) {
        at = AddNanos(now, timeout);
      } else if (clock == wasi::kClockMonotonic) {
        at = AddNanos(sandbox->monotonic_origin, timeout);
      } else if (clock == wasi::kClockRealtime) {
        auto since_epoch = std::chrono::duration_cast<std::chrono::nanoseconds>(
            std::chrono::system_clock::now().time_since_epoch());
        uint64_t wall = since_epoch.count() > 0 ? static_cast<uint64_t>(since_epoch.count()) : 0;
        // The steady clock read after the wall clock: never early.
        at = timeout > wall ? AddNanos(std::chrono::steady_clock::now(), timeout - wall) : now;
      } else {
        return fail(wasi::kInval);  // the CPU-time clocks, or no clock at all
      }
      due[i] = at;
      wake = std::min(wake, at);
    }
  }

  if (!fd_ready && wake > now) {
    MarkBlocking();
    // Sleep until the earliest clock, the deadline or Cancel(), in slices of at most an hour
    // (so no time arithmetic below ever overflows).
    while (true) {
      auto target = std::min(wake, sandbox->deadline);
      auto slice_end = std::min(target, std::chrono::steady_clock::now() + std::chrono::hours(1));
      bool cancelled = sandbox->cancel != nullptr ? sandbox->cancel->WaitUntil(slice_end)
                                                  : (std::this_thread::sleep_until(slice_end), false);
      if (cancelled) {
        sandbox->stop = Sandbox::Stop::kCancel;
        return wasmtime_trap_new("cancelled", 9);
      }
      now = std::chrono::steady_clock::now();
      if (now >= wake) break;
      if (now >= sandbox->deadline) {
        sandbox->stop = Sandbox::Stop::kTimeout;
        return wasmtime_trap_new_code(WASMTIME_TRAP_CODE_INTERRUPT);
      }
    }
  }

  // Memory cannot have moved (the guest was waiting), but read the base again anyway.
  uint8_t* base = wasmtime_memory_data(context, &memory);
  uint32_t ready = 0;
  for (uint64_t i = 0; i < count; ++i) {
    if (due[i] > now) continue;
    const uint8_t* sub = base + in + i * wasi::kSubscriptionSize;
    uint8_t* event = base + out + uint64_t{ready} * wasi::kEventSize;
    uint64_t userdata = LoadLe<uint64_t>(sub);
    uint8_t type = sub[8];
    std::memset(event, 0, wasi::kEventSize);
    StoreLe<uint64_t>(event, userdata);
    StoreLe<uint16_t>(event + 8, 0);  // error: success
    event[10] = type;
    // nbytes: Wasmtime reports 1 for ready descriptors and 0 for clocks.
    StoreLe<uint64_t>(event + 16, type == wasi::kEventClock ? 0 : 1);
    ++ready;
  }
  StoreLe<uint32_t>(base + nevents_at, ready);
  return fail(wasi::kSuccess);
}

// Output sinks handed to WASI as custom stdout/stderr.
ptrdiff_t WriteToCallback(void* data, const unsigned char* buffer, size_t size) {
  auto* callback = static_cast<const OutputCallback*>(data);
  if (!(*callback)(std::string_view(reinterpret_cast<const char*>(buffer), size))) {
    return -EPIPE;
  }
  return static_cast<ptrdiff_t>(size);
}

class WasmtimeModule final : public Module {
 public:
  WasmtimeModule(WasmtimeRuntime* runtime, wasmtime_module_t* module,
                 wasmtime_instance_pre_t* pre, std::string digest, std::string name)
      : runtime_(runtime), module_(module), pre_(pre), digest_(std::move(digest)),
        name_(std::move(name)) {
    wasm_exporttype_vec_t exports;
    wasmtime_module_exports(module_, &exports);
    for (size_t i = 0; i < exports.size; ++i) {
      const wasm_externtype_t* type = wasm_exporttype_type(exports.data[i]);
      if (wasm_externtype_kind(type) == WASM_EXTERN_FUNC) {
        const wasm_name_t* n = wasm_exporttype_name(exports.data[i]);
        function_exports_.emplace_back(n->data, n->size);
      }
    }
    wasm_exporttype_vec_delete(&exports);
  }
  ~WasmtimeModule() override {
    wasmtime_instance_pre_delete(pre_);
    wasmtime_module_delete(module_);
  }

  const std::string& digest() const override { return digest_; }
  const std::string& name() const override { return name_; }
  bool HasFunctionExport(std::string_view name) const override {
    for (const auto& e : function_exports_) {
      if (e == name) return true;
    }
    return false;
  }
  std::vector<std::string> FunctionExports() const override { return function_exports_; }
  Result<InvokeResult> Invoke(const InvokeRequest& request) const override;

 private:
  WasmtimeRuntime* runtime_;
  wasmtime_module_t* module_;
  wasmtime_instance_pre_t* pre_;
  std::string digest_;
  std::string name_;
  std::vector<std::string> function_exports_;
};

class WasmtimeRuntime final : public Runtime {
 public:
  static Result<std::unique_ptr<Runtime>> Create(const RuntimeOptions& options) {
    auto runtime = std::unique_ptr<WasmtimeRuntime>(new WasmtimeRuntime(options));
    if (auto status = runtime->Init(); !status.ok()) return status.take_error();
    return std::unique_ptr<Runtime>(std::move(runtime));
  }

  ~WasmtimeRuntime() override {
    ticker_.reset();
    if (linker_ != nullptr) wasmtime_linker_delete(linker_);
  }

  Result<std::shared_ptr<const Module>> Load(std::string_view bytes,
                                             const std::string& name) override {
    std::string digest = Sha256Hex(bytes);
    if (auto cached = FromTable(digest)) return cached;

    wasmtime_module_t* module = nullptr;
    if (LooksLikeArtifact(bytes)) {
      if (!options_.allow_precompiled) {
        return MakeError(Phase::kCompile, "precompiled artifacts are not allowed here", name);
      }
      wasmtime_error_t* error = wasmtime_module_deserialize(
          engine_.capi(), reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), &module);
      if (error != nullptr) {
        return MakeError(Phase::kCompile,
                         "cannot load precompiled artifact (built by another wasmlet or "
                         "Wasmtime version?): " + FirstLine(TakeErrorMessage(error)),
                         name);
      }
    } else {
      std::string artifact_path = ArtifactPath(digest);
      if (!artifact_path.empty()) module = LoadArtifact(artifact_path, name);
      if (module != nullptr) {
        disk_cache_hits_.fetch_add(1);
      } else {
        auto compiled = CompileBytes(bytes, name);
        if (!compiled.ok()) return compiled.take_error();
        module = *compiled;
        if (!artifact_path.empty()) StoreArtifact(module, artifact_path, name);
      }
    }
    return Finish(module, digest, name);
  }

  Result<std::shared_ptr<const Module>> LoadFile(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      return MakeError(Phase::kIo, std::string("cannot open module: ") + std::strerror(errno),
                       path);
    }
    if (S_ISDIR(st.st_mode)) return MakeError(Phase::kIo, "is a directory, not a module", path);
    std::string name = std::filesystem::path(path).filename().string();
    // Fast path: a file seen before (same inode, size and mtime) has a known digest, so a cached
    // artifact is mapped without reading or hashing the module (a 2.7 MB Go module costs
    // ~2.5 ms to hash).
    std::string stamp = FileStamp(st);
    std::string index_path = IndexPath(path);
    std::string digest = KnownDigest(path, index_path, stamp);
    if (!digest.empty()) {
      if (auto cached = FromTable(digest)) return cached;
      std::string artifact_path = ArtifactPath(digest);
      if (wasmtime_module_t* module = LoadArtifact(artifact_path, name)) {
        disk_cache_hits_.fetch_add(1);
        return Finish(module, digest, name);
      }
    }
    auto bytes = ReadFile(path);
    if (!bytes.ok()) return bytes.take_error();
    if (bytes->empty()) return MakeError(Phase::kCompile, "file is empty", path);
    auto loaded = Load(*bytes, name);
    if (loaded.ok() && !index_path.empty() && !LooksLikeArtifact(*bytes)) {
      RememberDigest(path, index_path, stamp, (*loaded)->digest());
    }
    return loaded;
  }

  Result<std::string> Precompile(std::string_view bytes, const std::string& name) override {
    if (LooksLikeArtifact(bytes)) {
      return MakeError(Phase::kCompile, "already a precompiled artifact", name);
    }
    auto compiled = CompileBytes(bytes, name);
    if (!compiled.ok()) return compiled.take_error();
    wasm_byte_vec_t serialized;
    wasmtime_error_t* error = wasmtime_module_serialize(*compiled, &serialized);
    wasmtime_module_delete(*compiled);
    if (error != nullptr) return MakeError(Phase::kCompile, TakeErrorMessage(error), name);
    std::string out(serialized.data, serialized.size);
    wasm_byte_vec_delete(&serialized);
    return out;
  }

  RuntimeStats Stats() const override {
    RuntimeStats stats;
    stats.modules_compiled = modules_compiled_.load();
    stats.disk_cache_hits = disk_cache_hits_.load();
    stats.memory_cache_hits = memory_cache_hits_.load();
    stats.instances_running = instances_running_.load();
    stats.instances_total = instances_total_.load();
    return stats;
  }

  std::string EngineDescription() const override {
    return std::string("wasmtime ") + kWasmtimeVersion;
  }

  wasm_engine_t* engine() const { return const_cast<wasm_engine_t*>(engine_.capi()); }
  const RuntimeOptions& options() const { return options_; }
  uint64_t TicksFor(std::chrono::milliseconds timeout) const {
    auto tick = options_.epoch_tick.count() > 0 ? options_.epoch_tick.count() : 1;
    return static_cast<uint64_t>((timeout.count() + tick - 1) / tick) + 1;
  }
  std::atomic<uint64_t> instances_running_{0};
  std::atomic<uint64_t> instances_total_{0};

 private:
  static wasmtime::Config MakeConfig(const RuntimeOptions& options) {
    wasmtime::Config config;
    config.strategy(wasmtime::Strategy::Cranelift);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.epoch_interruption(true);
    config.memory_init_cow(true);
#ifdef WASMLET_SERIAL_COMPILATION
    config.parallel_compilation(false);
#endif
    wasmtime::PoolAllocationConfig pool;
    pool.total_core_instances(options.max_instances);
    pool.total_memories(options.max_instances);
    pool.total_tables(options.max_instances);
    pool.total_gc_heaps(options.max_instances);
    // Async stacks are unused (all calls are synchronous) but pooled by default: 1000 of them
    // cost ~10 ms of mprotect at startup.
    wasmlet_pooling_allocation_config_total_stacks_set(
        const_cast<wasmtime_pooling_allocation_config_t*>(pool.capi()), 1);
    pool.max_memory_size(static_cast<size_t>(options.max_memory_bytes));
    // Reset the first pages of a slot with memset instead of madvise: a small module touches
    // little memory, and madvise costs page faults plus TLB shootdowns on every request.
    pool.linear_memory_keep_resident(1 << 20);
    pool.table_keep_resident(64 << 10);
    pool.decommit_batch_size(16);
    config.pooling_allocation_strategy(pool);
    return config;
  }

  explicit WasmtimeRuntime(const RuntimeOptions& options)
      : options_(options), engine_(MakeConfig(options)) {
    // Everything that changes generated code goes into the fingerprint; Wasmtime also checks
    // compatibility itself when an artifact is loaded.
    fingerprint_ = Sha256Hex(std::string("wasmtime-") + kWasmtimeVersion +
                             ";cranelift;speed;epoch;cow;pooling;x86_64")
                       .substr(0, 16);
  }

  Status Init() {
    linker_ = wasmtime_linker_new(engine_.capi());
    wasmtime_error_t* error = wasmtime_linker_define_wasi(linker_);
    if (error != nullptr) return MakeError(Phase::kLink, TakeErrorMessage(error), "wasi");
    // Our interruptible poll_oneoff replaces Wasmtime's (see PollOneoff).
    wasmtime_linker_allow_shadowing(linker_, true);
    {
      wasm_valtype_vec_t params, results;
      wasm_valtype_t* p[4] = {wasm_valtype_new_i32(), wasm_valtype_new_i32(),
                              wasm_valtype_new_i32(), wasm_valtype_new_i32()};
      wasm_valtype_t* r[1] = {wasm_valtype_new_i32()};
      wasm_valtype_vec_new(&params, 4, p);
      wasm_valtype_vec_new(&results, 1, r);
      wasm_functype_t* type = wasm_functype_new(&params, &results);
      static constexpr std::string_view kModule = "wasi_snapshot_preview1", kName = "poll_oneoff";
      error = wasmtime_linker_define_func(linker_, kModule.data(), kModule.size(), kName.data(),
                                          kName.size(), type, PollOneoff, nullptr, nullptr);
      wasm_functype_delete(type);
      if (error != nullptr) return MakeError(Phase::kLink, TakeErrorMessage(error), "poll_oneoff");
    }
    wasmtime_linker_allow_shadowing(linker_, false);
    if (!options_.cache_dir.empty()) {
      if (auto status = MakeDirs(options_.cache_dir); !status.ok()) return status;
    }
    ticker_ = std::make_unique<EpochTicker>(engine_.capi(), options_.epoch_tick);
    return OkStatus();
  }

  std::shared_ptr<const Module> FromTable(const std::string& digest) {
    std::lock_guard lock(mutex_);
    auto it = modules_.find(digest);
    if (it == modules_.end()) return nullptr;
    auto module = it->second.lock();
    if (module) memory_cache_hits_.fetch_add(1);
    return module;
  }

  static std::string FileStamp(const struct stat& st) {
    return std::to_string(st.st_dev) + " " + std::to_string(st.st_ino) + " " +
           std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
           std::to_string(st.st_mtim.tv_nsec);
  }

  // <cache>/index/<sha256 of the absolute path>: "<stamp>\n<digest>\n".
  std::string IndexPath(const std::string& path) const {
    if (options_.cache_dir.empty()) return {};
    std::error_code ec;
    auto absolute = std::filesystem::absolute(path, ec);
    if (ec) return {};
    return options_.cache_dir + "/index/" + Sha256Hex(absolute.string()).substr(0, 32);
  }

  std::string KnownDigest(const std::string& path, const std::string& index_path,
                          const std::string& stamp) {
    {
      std::lock_guard lock(mutex_);
      auto it = path_digests_.find(path);
      if (it != path_digests_.end() && it->second.first == stamp) return it->second.second;
    }
    if (index_path.empty()) return {};
    auto content = ReadFile(index_path);
    if (!content.ok()) return {};
    auto newline = content->find('\n');
    if (newline == std::string::npos || content->substr(0, newline) != stamp) return {};
    std::string digest = content->substr(newline + 1, 64);
    return IsSha256Hex(digest) ? digest : std::string();
  }

  void RememberDigest(const std::string& path, const std::string& index_path,
                      const std::string& stamp, const std::string& digest) {
    {
      std::lock_guard lock(mutex_);
      path_digests_[path] = {stamp, digest};
    }
    if (MakeDirs(options_.cache_dir + "/index").ok()) {
      (void)WriteFileAtomic(index_path, stamp + "\n" + digest + "\n");
    }
  }

  std::string ArtifactPath(const std::string& digest) const {
    if (options_.cache_dir.empty()) return {};
    return options_.cache_dir + "/" + digest + "-" + fingerprint_ + ".cwasm";
  }

  wasmtime_module_t* LoadArtifact(const std::string& path, const std::string& name) {
    if (path.empty()) return nullptr;
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return nullptr;
    wasmtime_module_t* module = nullptr;
    wasmtime_error_t* error = wasmtime_module_deserialize_file(engine_.capi(), path.c_str(), &module);
    if (error != nullptr) {
      WLOG_WARN("cached artifact for {} is unusable, recompiling: {}: {}", name, path,
                FirstLine(TakeErrorMessage(error)));
      ::unlink(path.c_str());
      return nullptr;
    }
    return module;
  }

  void StoreArtifact(wasmtime_module_t* module, const std::string& path, const std::string& name) {
    wasm_byte_vec_t serialized;
    wasmtime_error_t* error = wasmtime_module_serialize(module, &serialized);
    if (error != nullptr) {
      WLOG_WARN("cannot serialize {} for the cache: {}", name, TakeErrorMessage(error));
      return;
    }
    auto status = WriteFileAtomic(path, std::string_view(serialized.data, serialized.size));
    wasm_byte_vec_delete(&serialized);
    if (!status.ok()) WLOG_WARN("cannot write compile cache: {}", status.error().ToString());
  }

  Result<wasmtime_module_t*> CompileBytes(std::string_view bytes, const std::string& name) {
    wasm_byte_vec_t wasm;
    bool converted = false;
    if (!LooksLikeWasm(bytes)) {
      if (LooksLikeArtifact(bytes)) {
        return MakeError(Phase::kCompile, "expected wasm or WAT, got a precompiled artifact", name);
      }
      // Not binary wasm: try the text format, and say which it was when both fail.
      bool printable_start = !bytes.empty() && (bytes[0] == '(' || bytes[0] == ';' ||
                                                std::isspace(static_cast<unsigned char>(bytes[0])));
      wasmtime_error_t* error = wasmtime_wat2wasm(bytes.data(), bytes.size(), &wasm);
      if (error != nullptr) {
        std::string message = TakeErrorMessage(error);
        if (!printable_start) {
          return MakeError(Phase::kCompile,
                           "not a WebAssembly module (no \\0asm magic and not WAT text)", name);
        }
        return MakeError(Phase::kCompile, "invalid WAT: " + message, name);
      }
      converted = true;
    }
    const uint8_t* data = converted ? reinterpret_cast<const uint8_t*>(wasm.data)
                                    : reinterpret_cast<const uint8_t*>(bytes.data());
    size_t size = converted ? wasm.size : bytes.size();
    wasmtime_module_t* module = nullptr;
    wasmtime_error_t* error = wasmtime_module_new(engine_.capi(), data, size, &module);
    if (converted) wasm_byte_vec_delete(&wasm);
    if (error != nullptr) {
      return MakeError(Phase::kCompile, "invalid module: " + FirstLine(TakeErrorMessage(error)),
                       name);
    }
    modules_compiled_.fetch_add(1);
    return module;
  }

  Result<std::shared_ptr<const Module>> Finish(wasmtime_module_t* module, const std::string& digest,
                                               const std::string& name) {
    wasmtime_instance_pre_t* pre = nullptr;
    wasmtime_error_t* error = wasmtime_linker_instantiate_pre(linker_, module, &pre);
    if (error != nullptr) {
      wasmtime_module_delete(module);
      return MakeError(Phase::kLink, FirstLine(TakeErrorMessage(error)), name);
    }
    auto result = std::make_shared<WasmtimeModule>(this, module, pre, digest, name);
    std::lock_guard lock(mutex_);
    auto& slot = modules_[digest];
    if (auto existing = slot.lock()) return std::shared_ptr<const Module>(existing);
    slot = result;
    return std::shared_ptr<const Module>(result);
  }

  RuntimeOptions options_;
  wasmtime::Engine engine_;
  std::string fingerprint_;
  wasmtime_linker_t* linker_ = nullptr;  // immutable after Init; shared by all threads
  std::unique_ptr<EpochTicker> ticker_;
  std::mutex mutex_;
  std::map<std::string, std::weak_ptr<WasmtimeModule>> modules_;  // guarded by mutex_
  // path -> (file stamp, digest) for files loaded before; guarded by mutex_
  std::map<std::string, std::pair<std::string, std::string>> path_digests_;
  std::atomic<uint64_t> modules_compiled_{0};
  std::atomic<uint64_t> disk_cache_hits_{0};
  std::atomic<uint64_t> memory_cache_hits_{0};
};

// Holds a Store for one invocation and releases it on every path (or earlier, in Release).
struct StoreGuard {
  wasmtime_store_t* store;
  std::atomic<uint64_t>* running;
  void Release() {
    if (store == nullptr) return;
    wasmtime_store_delete(store);
    store = nullptr;
    running->fetch_sub(1);
  }
  ~StoreGuard() { Release(); }
};

// Phase stamps for InvokeRequest::measure_phases; no clock reads when off.
class PhaseClock {
 public:
  PhaseClock(bool on, std::chrono::steady_clock::time_point start) : on_(on), last_(start) {}
  void Mark(std::chrono::nanoseconds& into) {
    if (!on_) return;
    auto now = std::chrono::steady_clock::now();
    into = now - last_;
    last_ = now;
  }

 private:
  bool on_;
  std::chrono::steady_clock::time_point last_;
};

Result<InvokeResult> WasmtimeModule::Invoke(const InvokeRequest& request) const {
  auto started = std::chrono::steady_clock::now();
  if (request.cancel && request.cancel->cancelled()) {
    InvokeResult r;
    r.outcome = Outcome::kCancelled;
    r.message = "cancelled before the guest started";
    return r;
  }
  InvokePhases phases;
  PhaseClock phase_clock(request.measure_phases, started);
  Sandbox sandbox;  // outlives the Store, whose data it is
  struct Foreground {  // error paths too leave the thread in the foreground (finish reports it)
    Sandbox& sandbox;
    ~Foreground() {
      if (sandbox.backgrounded) SetThreadNice(sandbox.foreground_nice);
    }
  } foreground{sandbox};
  sandbox.cancel = request.cancel.get();
  if (request.limits.timeout.count() > 0) sandbox.deadline = started + request.limits.timeout;
  if (request.background_after.count() > 0) sandbox.background_at = started + request.background_after;
  runtime_->instances_running_.fetch_add(1);
  runtime_->instances_total_.fetch_add(1);
  StoreGuard guard{wasmtime_store_new(runtime_->engine(), &sandbox, nullptr),
                   &runtime_->instances_running_};
  wasmtime_context_t* context = wasmtime_store_context(guard.store);

  uint64_t memory_limit = request.limits.memory_bytes;
  if (memory_limit == 0 || memory_limit > runtime_->options().max_memory_bytes) {
    memory_limit = runtime_->options().max_memory_bytes;
  }
  wasmlet_store_memory_limiter(guard.store, static_cast<int64_t>(memory_limit),
                               request.limits.trap_on_memory_limit);
  if (sandbox.cancel != nullptr || request.background_after.count() > 0 || InlineRunner::Current() != nullptr) {
    // The epoch callback checks the token, the deadline and the background time every few
    // ticks, and tells an inline runner that this guest runs long.
    wasmtime_store_epoch_deadline_callback(guard.store, OnEpochDeadline, &sandbox, nullptr);
    wasmtime_context_set_epoch_deadline(context, kCancelCheckTicks);
  } else {
    // No timeout still needs a deadline: the epoch keeps advancing.
    wasmtime_context_set_epoch_deadline(
        context, request.limits.timeout.count() > 0 ? runtime_->TicksFor(request.limits.timeout)
                                                    : UINT64_MAX / 2);
  }
  phase_clock.Mark(phases.store);

  wasi_config_t* wasi = wasi_config_new();
  sandbox.monotonic_origin = std::chrono::steady_clock::now();
  {
    std::vector<const char*> argv;
    for (const auto& a : request.args) argv.push_back(a.c_str());
    wasi_config_set_argv(wasi, argv.size(), argv.data());
    std::vector<const char*> names, values;
    for (const auto& [k, v] : request.env) {
      names.push_back(k.c_str());
      values.push_back(v.c_str());
    }
    wasi_config_set_env(wasi, names.size(), names.data(), values.data());
  }
  for (const auto& p : request.preopens) {
    // preopen_dir opens the directory itself, so a missing one fails here (no extra stat on
    // the request path).
    if (!wasi_config_preopen_dir(wasi, p.host_path.c_str(), p.guest_path.c_str(), !p.read_only)) {
      wasi_config_delete(wasi);
      return MakeError(Phase::kInstantiate, "preopened directory does not exist or cannot be opened",
                       p.host_path);
    }
  }
  switch (request.stdin_mode) {
    case StdinMode::kEmpty: break;
    case StdinMode::kBytes: {
      wasm_byte_vec_t bytes;
      wasm_byte_vec_new(&bytes, request.stdin_data.size(), request.stdin_data.data());
      wasi_config_set_stdin_bytes(wasi, &bytes);
      break;
    }
    case StdinMode::kFile:
      if (!wasi_config_set_stdin_file(wasi, request.stdin_data.c_str())) {
        wasi_config_delete(wasi);
        return MakeError(Phase::kInstantiate, "cannot open stdin file", request.stdin_data);
      }
      break;
    case StdinMode::kInherit: wasi_config_inherit_stdin(wasi); break;
  }
  auto set_output = [&](OutputMode mode, const OutputCallback& callback, const std::string& path,
                        bool is_stdout) -> Status {
    switch (mode) {
      case OutputMode::kDiscard: break;
      case OutputMode::kCallback:
        wasmlet_wasi_config_set_output_callback(wasi, is_stdout ? 1 : 2, WriteToCallback,
                                                const_cast<OutputCallback*>(&callback));
        break;
      case OutputMode::kFile:
        if (!(is_stdout ? wasi_config_set_stdout_file(wasi, path.c_str())
                        : wasi_config_set_stderr_file(wasi, path.c_str()))) {
          return MakeError(Phase::kInstantiate, "cannot open output file", path);
        }
        break;
      case OutputMode::kInherit:
        if (is_stdout) {
          wasi_config_inherit_stdout(wasi);
        } else {
          wasi_config_inherit_stderr(wasi);
        }
        break;
    }
    return OkStatus();
  };
  if (auto s = set_output(request.stdout_mode, request.stdout_callback, request.stdout_path, true); !s.ok()) {
    wasi_config_delete(wasi);
    return s.take_error();
  }
  if (auto s = set_output(request.stderr_mode, request.stderr_callback, request.stderr_path, false); !s.ok()) {
    wasi_config_delete(wasi);
    return s.take_error();
  }
  if (wasmtime_error_t* error = wasmtime_context_set_wasi(context, wasi); error != nullptr) {
    return MakeError(Phase::kInstantiate, TakeErrorMessage(error), name_);
  }
  phase_clock.Mark(phases.wasi);

  InvokeResult result;
  auto finish = [&](InvokeResult& r, wasmtime_instance_t* instance) {
    if (instance != nullptr) {
      wasmtime_extern_t item;
      if (wasmtime_instance_export_get(context, instance, "memory", 6, &item)) {
        if (item.kind == WASMTIME_EXTERN_MEMORY) {
          r.memory_bytes = wasmtime_memory_data_size(context, &item.of.memory);
        }
        wasmtime_extern_delete(&item);
      }
    }
    // Stopped by our poll_oneoff or epoch callback: whatever the trap text said.
    if (sandbox.stop == Sandbox::Stop::kCancel) {
      r.outcome = Outcome::kCancelled;
      r.exit_code = 0;
      r.message = "stopped by its CancelToken";
    } else if (sandbox.stop == Sandbox::Stop::kTimeout) {
      r.outcome = Outcome::kTimedOut;
      r.exit_code = 0;
      r.message = "time limit of " + std::to_string(request.limits.timeout.count()) + " ms exceeded";
    }
    // The C API has no hook for a denied memory.grow, so a failure with memory at the limit is
    // reported as the memory limit: growth within one Go arena (4 MiB) or 1/16 of the limit.
    if (!r.success() && r.outcome != Outcome::kTimedOut && r.outcome != Outcome::kStackOverflow &&
        r.outcome != Outcome::kMemoryLimit && r.outcome != Outcome::kCancelled) {
      uint64_t slack = std::max<uint64_t>(4ull << 20, memory_limit / 16);
      if (r.memory_bytes > 0 && r.memory_bytes + slack > memory_limit) {
        std::string previous = r.Describe();
        r.outcome = Outcome::kMemoryLimit;
        r.message = "memory limit of " + std::to_string(memory_limit) + " bytes reached (" +
                    previous + ")";
      }
    }
    if (request.measure_phases) {
      guard.Release();
      phase_clock.Mark(phases.teardown);
      r.phases = phases;
    }
    r.duration = std::chrono::steady_clock::now() - started;
    if (sandbox.backgrounded) {
      r.backgrounded = true;
      r.priority_restored = SetThreadNice(sandbox.foreground_nice);
      sandbox.backgrounded = false;
    }
  };
  auto from_trap = [&](wasm_trap_t* trap, InvokeResult& r) {
    wasm_message_t message;
    wasm_trap_message(trap, &message);
    std::string text(message.data, message.size);
    wasm_byte_vec_delete(&message);
    while (!text.empty() && text.back() == '\0') text.pop_back();
    wasmtime_trap_code_t code;
    r.outcome = Outcome::kTrapped;
    if (wasmtime_trap_code(trap, &code)) {
      if (code == WASMTIME_TRAP_CODE_INTERRUPT) {
        r.outcome = Outcome::kTimedOut;
        text = "time limit of " + std::to_string(request.limits.timeout.count()) + " ms exceeded";
      } else if (code == WASMTIME_TRAP_CODE_STACK_OVERFLOW) {
        r.outcome = Outcome::kStackOverflow;
      }
    }
    r.message = TrapReason(text);
    if (text.find("forcing trap when growing memory") != std::string::npos) {
      r.outcome = Outcome::kMemoryLimit;
      r.message = "memory limit of " + std::to_string(memory_limit) +
                  " bytes reached: the guest tried to grow past it";
    }
    wasm_frame_vec_t frames;
    wasm_trap_trace(trap, &frames);
    r.backtrace = FormatTrace(frames, name_);
    wasm_frame_vec_delete(&frames);
    wasm_trap_delete(trap);
  };
  auto from_error = [&](wasmtime_error_t* error, InvokeResult& r) -> bool {
    int status = 0;
    if (wasmtime_error_exit_status(error, &status)) {
      wasmtime_error_delete(error);
      r.outcome = Outcome::kExited;
      r.exit_code = status;
      return true;
    }
    wasm_frame_vec_t frames;
    wasmtime_error_wasm_trace(error, &frames);
    r.backtrace = FormatTrace(frames, name_);
    wasm_frame_vec_delete(&frames);
    r.outcome = Outcome::kTrapped;
    std::string text = TakeErrorMessage(error);
    if (text.find("forcing trap when growing memory") != std::string::npos) {
      r.outcome = Outcome::kMemoryLimit;
      r.message = "memory limit of " + std::to_string(memory_limit) +
                  " bytes reached: the guest tried to grow past it";
      return true;
    }
    r.message = TrapReason(text);
    return frames.size > 0;
  };

  wasmtime_instance_t instance;
  wasm_trap_t* trap = nullptr;
  wasmtime_error_t* error = wasmtime_instance_pre_instantiate(pre_, context, &instance, &trap);
  if (trap == nullptr && error != nullptr && sandbox.stop != Sandbox::Stop::kNone) {
    InvokeResult r;  // a start function stopped by the deadline or its CancelToken
    wasmtime_error_delete(error);
    finish(r, nullptr);
    return r;
  }
  if (trap != nullptr) {
    from_trap(trap, result);
    finish(result, nullptr);
    return result;
  }
  if (error != nullptr) {
    InvokeResult r;
    from_error(error, r);
    if (r.outcome == Outcome::kExited) {  // proc_exit from a start function
      finish(r, nullptr);
      return r;
    }
    return MakeError(Phase::kInstantiate, r.message, name_);
  }

  wasmtime_extern_t entry;
  if (!wasmtime_instance_export_get(context, &instance, request.entrypoint.data(),
                                    request.entrypoint.size(), &entry)) {
    return MakeError(Phase::kInstantiate, "module has no export named '" + request.entrypoint + "'",
                     name_);
  }
  if (entry.kind != WASMTIME_EXTERN_FUNC) {
    wasmtime_extern_delete(&entry);
    return MakeError(Phase::kInstantiate, "export '" + request.entrypoint + "' is not a function",
                     name_);
  }
  wasm_functype_t* type = wasmtime_func_type(context, &entry.of.func);
  size_t params = wasm_functype_params(type)->size;
  size_t results = wasm_functype_results(type)->size;
  wasm_functype_delete(type);
  if (params != 0) {
    return MakeError(Phase::kInstantiate,
                     "export '" + request.entrypoint + "' takes " + std::to_string(params) +
                         " parameters; only functions without parameters can be invoked",
                     name_);
  }
  std::vector<wasmtime_val_t> outs(results);
  phase_clock.Mark(phases.instantiate);
  error = wasmtime_func_call(context, &entry.of.func, nullptr, 0, outs.data(), outs.size(), &trap);
  phase_clock.Mark(phases.run);
  if (trap != nullptr) {
    from_trap(trap, result);
  } else if (error != nullptr) {
    from_error(error, result);
  } else {
    result.outcome = Outcome::kExited;
    result.exit_code = 0;
  }
  finish(result, &instance);
  return result;
}

}  // namespace

const char* OutcomeName(Outcome outcome) {
  switch (outcome) {
    case Outcome::kExited: return "exited";
    case Outcome::kTrapped: return "trapped";
    case Outcome::kTimedOut: return "timed out";
    case Outcome::kMemoryLimit: return "memory limit";
    case Outcome::kStackOverflow: return "stack overflow";
    case Outcome::kCancelled: return "cancelled";
  }
  return "unknown";
}

std::string InvokeResult::Describe() const {
  switch (outcome) {
    case Outcome::kExited: return "exited with code " + std::to_string(exit_code);
    case Outcome::kTrapped: return "trapped: " + message;
    case Outcome::kTimedOut: return "timed out: " + message;
    case Outcome::kMemoryLimit: return "out of memory: " + message;
    case Outcome::kStackOverflow: return "stack overflow: " + message;
    case Outcome::kCancelled: return "cancelled: " + message;
  }
  return message;
}

void CancelToken::Cancel() {
  {
    std::lock_guard lock(mutex_);
    cancelled_.store(true, std::memory_order_release);
  }
  cv_.notify_all();
}

bool CancelToken::WaitUntil(std::chrono::steady_clock::time_point deadline) const {
  std::unique_lock lock(mutex_);
  return cv_.wait_until(lock, deadline, [&] { return cancelled_.load(std::memory_order_relaxed); });
}

Result<std::unique_ptr<Runtime>> CreateWasmtimeRuntime(const RuntimeOptions& options) {
  return WasmtimeRuntime::Create(options);
}

std::string WasmtimeVersion() { return kWasmtimeVersion; }

}  // namespace wasmlet::runtime
