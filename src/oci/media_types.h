// OCI / Docker / wasm media types that wasmlet reads and writes.
#pragma once

#include <string_view>

namespace wasmlet::oci {

inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";

// CNCF TAG Runtime wasm OCI artifact layout (the default for push).
inline constexpr std::string_view kWasmConfig = "application/vnd.wasm.config.v0+json";
inline constexpr std::string_view kWasmLayer = "application/wasm";
// Legacy wasm-to-oci / Krustlet / WAGI types (`push --legacy`).
inline constexpr std::string_view kWasmConfigLegacy = "application/vnd.wasm.config.v1+json";
inline constexpr std::string_view kWasmLayerLegacy = "application/vnd.wasm.content.layer.v1+wasm";

inline bool IsWasmConfig(std::string_view t) { return t == kWasmConfig || t == kWasmConfigLegacy; }
inline bool IsWasmLayer(std::string_view t) { return t == kWasmLayer || t == kWasmLayerLegacy; }
inline bool IsImageManifest(std::string_view t) { return t == kOciManifest || t == kDockerManifest; }
inline bool IsIndex(std::string_view t) { return t == kOciIndex || t == kDockerManifestList; }

}  // namespace wasmlet::oci
