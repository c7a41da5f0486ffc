// Hostile configuration text through the modules.toml and spin.toml parsers: errors are
// results, never crashes. Paths resolve against a folder that does not exist.
#include <cstdint>
#include <string_view>

#include "gateway/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  wasmlet::gateway::LoadOptions options;
  options.working_dir = "/nonexistent-wasmlet-fuzz";
  options.oci_resolver = [](const std::string& ref) -> wasmlet::Result<std::string> {
    return "/nonexistent-wasmlet-fuzz/" + ref;
  };
  (void)wasmlet::gateway::ParseModulesToml(text, "/nonexistent-wasmlet-fuzz/modules.toml", options);
  (void)wasmlet::gateway::ParseSpinToml(text, "/nonexistent-wasmlet-fuzz/spin.toml", options);
  return 0;
}
