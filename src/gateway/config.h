// Gateway configuration: WAGI modules.toml and Spin v2 manifests (WAGI executor) loaded into one
// GatewayConfig. Pure data + parsing: no modules are compiled here (gateway/gateway.h loads them
// lazily); module files are only checked to exist and be readable.
//
// Threading: the functions are reentrant; a GatewayConfig is a plain value.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "runtime/runtime.h"
#include "util/result.h"
#include "util/units.h"

namespace wasmlet::gateway {

// Defaults of the per-app limits (documented in docs/gateway.md). WAGI had none.
inline constexpr uint64_t kDefaultMemoryBytes = 128ull << 20;
inline constexpr std::chrono::milliseconds kDefaultTimeout{30000};
inline constexpr uint32_t kDefaultMaxConcurrency = 64;

struct AppLimits {
  uint64_t memory_bytes = kDefaultMemoryBytes;     // `memory_limit` ("64MiB" or bytes)
  std::chrono::milliseconds timeout = kDefaultTimeout;  // `timeout` ("2s", "500ms" or ms)
  uint32_t max_concurrency = kDefaultMaxConcurrency;    // `max_concurrency` (instances)
};

// One [[module]] entry (or one Spin trigger + component).
struct AppConfig {
  std::string route;        // as written, e.g. "/static/..."
  std::string module_ref;   // as written: path, file://..., oci:...
  std::string module_path;  // resolved local file
  std::string entrypoint = "_start";
  std::vector<runtime::Preopen> volumes;
  std::vector<std::pair<std::string, std::string>> environment;
  std::vector<std::string> allowed_hosts;
  uint32_t http_max_concurrency = 0;  // 0 = unlimited
  std::optional<std::string> argv;    // argv template
  AppLimits limits;
  std::string where;  // "modules.toml: module #2 (route /x)" for messages
};

struct GatewayConfig {
  std::string source_path;  // the file it came from ("" for built-in)
  std::vector<AppConfig> apps;
  std::vector<std::string> warnings;  // already worded for the operator
};

// Returns the local path of the pulled wasm for an `oci:` reference (without the "oci:").
using OciResolver = std::function<Result<std::string>(const std::string& oci_ref)>;

struct LoadOptions {
  OciResolver oci_resolver;  // empty: oci: references are a config error
  std::string working_dir;   // fallback for relative paths; empty = current directory
};

// Detects the format (spin_manifest_version => Spin) and parses the file.
Result<GatewayConfig> LoadConfigFile(const std::string& path, const LoadOptions& options);
// `path` is used for messages and as the base for relative paths.
Result<GatewayConfig> ParseModulesToml(std::string_view text, const std::string& path,
                                       const LoadOptions& options);
Result<GatewayConfig> ParseSpinToml(std::string_view text, const std::string& path,
                                    const LoadOptions& options);

// Limits in the config use util/units.h: ParseSize ("64MiB") and ParseDuration ("2s").
using ::wasmlet::ParseDuration;
using ::wasmlet::ParseSize;

}  // namespace wasmlet::gateway

namespace wasmlet::gateway {

// The bundled example apps' modules.toml: $WASMLET_EXAMPLES_DIR, then the build tree's
// examples output (compiled in), then <binary dir>/../share/wasmlet/examples and
// <binary dir>/examples. Empty if none exists.
std::string FindBundledExamples();

}  // namespace wasmlet::gateway
