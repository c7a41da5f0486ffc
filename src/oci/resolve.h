// Resolving a module reference to a verified local file: the entry point for `wasmlet run
// oci:REF`, `module = "oci:REF"` in modules.toml / spin.toml, and pods.
//
//   oci::PullOptions options;                  // policy missing, default data dir, libcurl
//   auto path = oci::ResolveToLocalPath("oci:localhost:5000/hello:v1", options);
//   if (!path.ok()) -> path.error() (Phase::kPull for registry failures, kUsage for a bad ref)
//   else runtime->LoadFile(*path)              // blobs/sha256/<hex>: its name is its digest
//
// - Accepts references with or without the "oci:" prefix.
// - Policy (kubelet-like): kAlways re-checks tags (one manifest HEAD; nothing downloaded if
//   the tag did not move), kMissing uses the store when the reference was pulled before,
//   kNever never touches the network. A digest reference already in the store never touches the
//   network, whatever the policy.
// - Concurrent calls for the same module (threads of one process, or several processes) share
//   one download. The returned file is read-only, complete and verified; it stays until
//   `wasmlet rmi`/`prune` removes its reference.
// Threading: thread-safe. The libcurl transport and the store for each data dir are
// process-wide singletons created on first use.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "oci/credentials.h"
#include "oci/http.h"
#include "oci/pull.h"
#include "oci/registry_client.h"
#include "store/blob_store.h"
#include "util/result.h"

namespace wasmlet::oci {

struct PullOptions {
  PullPolicy policy = PullPolicy::kMissing;
  std::string data_dir;  // "" = store::DefaultDataDir()
  std::vector<std::string> insecure_registries;
  // Used for the reference's registry; otherwise environment, then docker config (credentials.h).
  std::optional<Credentials> credentials;
  RetryPolicy retry;
  ProgressFn progress;                 // null: quiet
  HttpTransport* transport = nullptr;  // null: the process-wide libcurl transport
};

Result<std::string> ResolveToLocalPath(const std::string& ref, const PullOptions& options);
// The same, with the details (digests, whether it was cached).
Result<PullResult> PullModule(const std::string& ref, const PullOptions& options);

// The process-wide store for a data dir ("" = default), cleaning precompiled artifacts in
// store::DefaultArtifactDir() with its blobs.
store::BlobStore& SharedStore(const std::string& data_dir);
// The process-wide libcurl transport. WASMLET_REGISTRY_STALL_TIMEOUT (a duration, default 30s)
// sets how long a transfer may receive nothing before it is aborted (and retried).
HttpTransport& DefaultTransport();

}  // namespace wasmlet::oci
