#include "oci/resolve.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>

#include "util/log.h"
#include "util/units.h"

namespace wasmlet::oci {

store::BlobStore& SharedStore(const std::string& data_dir) {
  static std::mutex mu;
  static auto* stores = new std::map<std::string, std::unique_ptr<store::BlobStore>>();
  std::string root = data_dir.empty() ? store::DefaultDataDir() : data_dir;
  std::lock_guard lock(mu);
  auto& slot = (*stores)[root];
  if (!slot) {
    slot = std::make_unique<store::BlobStore>(root,
                                              std::vector<std::string>{store::DefaultArtifactDir()});
  }
  return *slot;
}

namespace {
CurlOptions DefaultCurlOptions() {
  CurlOptions options;
  const char* stall = std::getenv("WASMLET_REGISTRY_STALL_TIMEOUT");
  if (stall != nullptr && *stall != '\0') {
    auto d = ParseDuration(stall);
    if (d.ok() && d->count() > 0) {
      options.stall_timeout = std::max<std::chrono::seconds>(
          std::chrono::seconds(1), std::chrono::ceil<std::chrono::seconds>(*d));
    } else {
      WLOG_WARN("ignoring WASMLET_REGISTRY_STALL_TIMEOUT=\"{}\" (want a duration such as 30s)", stall);
    }
  }
  return options;
}
}  // namespace

HttpTransport& DefaultTransport() {
  // Leaked on purpose: usable from static destructors and detached threads.
  static HttpTransport* transport = MakeCurlTransport(DefaultCurlOptions()).release();
  return *transport;
}

Result<PullResult> PullModule(const std::string& text, const PullOptions& options) {
  auto ref = ParseReference(text);
  if (!ref.ok()) return ref.take_error();
  store::BlobStore& store = SharedStore(options.data_dir);
  DefaultCredentialOptions cred_options;
  if (options.credentials) {
    cred_options.explicit_credentials = options.credentials;
    cred_options.explicit_registry = ref->registry;
  }
  auto credentials = MakeDefaultCredentialSource(cred_options);
  ClientOptions client_options;
  client_options.insecure_registries = options.insecure_registries;
  client_options.retry = options.retry;
  client_options.progress = options.progress;
  if (options.policy == PullPolicy::kNever) return Pull(*ref, options.policy, nullptr, store);
  HttpTransport& transport = options.transport != nullptr ? *options.transport : DefaultTransport();
  RegistryClient client(transport, credentials.get(), client_options);
  return Pull(*ref, options.policy, &client, store);
}

Result<std::string> ResolveToLocalPath(const std::string& ref, const PullOptions& options) {
  auto pulled = PullModule(ref, options);
  if (!pulled.ok()) return pulled.take_error();
  return pulled->path;
}

}  // namespace wasmlet::oci
