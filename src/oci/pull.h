// Pulling wasm modules into the store, and the manifest rules for wasm artifacts.
// Most callers want resolve.h (ResolveToLocalPath), which builds the client and store.
//
// A pull resolves the reference to a manifest (an OCI image index / Docker manifest list is
// accepted and its wasm entry selected), checks the media types (CNCF
// application/vnd.wasm.config.v0+json + application/wasm, or the legacy
// application/vnd.wasm.config.v1+json + application/vnd.wasm.content.layer.v1+wasm), and stores
// manifest, config and the single wasm layer, each verified against its digest while streaming.
// Threading: Pull may run concurrently on one store; one digest is downloaded once.
#pragma once

#include <cstdint>
#include <string>

#include "oci/reference.h"
#include "oci/registry_client.h"
#include "store/blob_store.h"
#include "util/result.h"

namespace wasmlet::oci {

// Kubelet-like: always re-resolve tags; missing: use the store if the reference was pulled
// before; never: the store only. A digest reference is immutable: with the blob in the store it
// never touches the network, whatever the policy.
enum class PullPolicy { kAlways, kMissing, kNever };
Result<PullPolicy> ParsePullPolicy(const std::string& text);
const char* PullPolicyName(PullPolicy policy);

struct PullResult {
  std::string reference;        // canonical
  std::string manifest_digest;  // what the reference resolved to (the index, if any)
  std::string module_digest;    // the wasm layer
  std::string path;             // verified wasm blob in the store
  uint64_t size = 0;
  std::string config_media_type;
  bool cached = false;          // served from the store without downloading
};

// `client` may be null with PullPolicy::kNever.
Result<PullResult> Pull(const Reference& ref, PullPolicy policy, RegistryClient* client,
                        store::BlobStore& store);

// A wasm image manifest's parts, validated.
struct WasmManifest {
  std::string config_digest;
  std::string config_media_type;
  uint64_t config_size = 0;
  std::string layer_digest;
  std::string layer_media_type;
  uint64_t layer_size = 0;
};
Result<WasmManifest> ParseWasmManifest(const std::string& bytes, const std::string& where);
// From an index: the digest of the wasm entry (platform wasm/wasi*, or artifactType, or the only
// entry).
Result<std::string> SelectWasmEntry(const std::string& index_bytes, const std::string& where);

}  // namespace wasmlet::oci
