// Pushing a wasm module as an OCI artifact: the wasm layer (skipped if the registry has it;
// chunked above ClientOptions::chunk_size), the config, then the manifest under the tag.
// Layout: CNCF wasm artifact by default, the legacy wasm-to-oci types with `legacy`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "oci/reference.h"
#include "oci/registry_client.h"
#include "util/result.h"

namespace wasmlet::oci {

struct PushOptions {
  bool legacy = false;
  std::string title;  // org.opencontainers.image.title of the layer (the file name); optional
};

struct PushResult {
  std::string manifest_digest;
  std::string module_digest;
  uint64_t size = 0;
  bool module_uploaded = false;  // false: the registry already had the blob
  std::string manifest;          // the manifest bytes pushed
};

// The config and manifest documents for a module (deterministic: no timestamps, so the same
// module and options always give the same manifest digest).
std::string MakeWasmConfig(const std::string& module_digest, bool legacy);
std::string MakeWasmManifest(const std::string& config, const std::string& module_digest,
                             uint64_t module_size, const PushOptions& options);

Result<PushResult> PushModule(RegistryClient& client, const Reference& ref, std::string_view wasm,
                              const PushOptions& options);

}  // namespace wasmlet::oci
