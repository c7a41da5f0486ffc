#include "oci/resolve.h"

#include <map>
#include <memory>
#include <mutex>

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

HttpTransport& DefaultTransport() {
  // Leaked on purpose: usable from static destructors and detached threads.
  static HttpTransport* transport = MakeCurlTransport().release();
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
