// Hostile modules: arbitrary bytes (binary wasm or WAT text) go through Runtime::Load, and
// whatever loads is run with small limits. Must never crash the host, whatever the module does.
#include <cstdint>
#include <memory>
#include <string_view>

#include "runtime/runtime.h"

namespace {
wasmlet::runtime::Runtime& SharedRuntime() {
  static std::unique_ptr<wasmlet::runtime::Runtime> runtime = [] {
    wasmlet::runtime::RuntimeOptions options;
    options.max_instances = 4;
    options.max_memory_bytes = 64ull << 20;
    options.allow_precompiled = false;  // artifacts are native code: never from untrusted input
    auto created = wasmlet::runtime::CreateWasmtimeRuntime(options);
    if (!created.ok()) __builtin_trap();
    return std::move(created).value();
  }();
  return *runtime;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto module = SharedRuntime().Load(bytes, "fuzz.wasm");
  if (!module.ok()) return 0;
  wasmlet::runtime::InvokeRequest request;
  request.args = {"fuzz"};
  request.limits.timeout = std::chrono::milliseconds(50);
  request.limits.memory_bytes = 16ull << 20;
  for (const char* entry : {"_start", "_routes"}) {
    if (!(*module)->HasFunctionExport(entry)) continue;
    request.entrypoint = entry;
    auto result = (*module)->Invoke(request);
    (void)result;
  }
  return 0;
}
