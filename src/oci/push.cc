#include "oci/push.h"

#include <nlohmann/json.hpp>

#include "oci/json_util.h"
#include "oci/media_types.h"
#include "util/sha256.h"

namespace wasmlet::oci {

std::string MakeWasmConfig(const std::string& module_digest, bool legacy) {
  if (legacy) return "{}";
  nlohmann::ordered_json config = {
      {"architecture", "wasm"}, {"os", "wasip1"}, {"layerDigests", {module_digest}}};
  return SafeDump(config);
}

std::string MakeWasmManifest(const std::string& config, const std::string& module_digest,
                             uint64_t module_size, const PushOptions& options) {
  nlohmann::ordered_json layer = {
      {"mediaType", options.legacy ? kWasmLayerLegacy : kWasmLayer},
      {"digest", module_digest},
      {"size", module_size}};
  if (!options.title.empty()) {
    layer["annotations"] = {{"org.opencontainers.image.title", options.title}};
  }
  nlohmann::ordered_json manifest = {
      {"schemaVersion", 2},
      {"mediaType", kOciManifest},
      {"config",
       {{"mediaType", options.legacy ? kWasmConfigLegacy : kWasmConfig},
        {"digest", "sha256:" + Sha256Hex(config)},
        {"size", config.size()}}},
      {"layers", nlohmann::ordered_json::array({layer})}};
  return SafeDump(manifest);
}

Result<PushResult> PushModule(RegistryClient& client, const Reference& ref, std::string_view wasm,
                              const PushOptions& options) {
  if (!ref.digest.empty()) {
    return MakeError(Phase::kUsage, "push needs a tag, not a digest", ref.String());
  }
  if (wasm.size() < 8 || wasm.substr(0, 4) != std::string_view("\0asm", 4)) {
    return MakeError(Phase::kUsage, "not a wasm binary (no \\0asm header)", options.title);
  }
  PushResult result;
  result.module_digest = "sha256:" + Sha256Hex(wasm);
  result.size = wasm.size();
  auto uploaded = client.PushBlob(ref, result.module_digest, wasm);
  if (!uploaded.ok()) return uploaded.take_error();
  result.module_uploaded = *uploaded;
  std::string config = MakeWasmConfig(result.module_digest, options.legacy);
  auto config_pushed = client.PushBlob(ref, "sha256:" + Sha256Hex(config), config);
  if (!config_pushed.ok()) return config_pushed.take_error();
  result.manifest = MakeWasmManifest(config, result.module_digest, wasm.size(), options);
  auto digest = client.PutManifest(ref, ref.tag, kOciManifest, result.manifest);
  if (!digest.ok()) return digest.take_error();
  result.manifest_digest = *digest;
  return result;
}

}  // namespace wasmlet::oci
