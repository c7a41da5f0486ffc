// Registry credentials: where they come from and how they are looked up. Secrets are never
// logged; Credentials has no printing helpers on purpose.
//
// Lookup order for a registry host:
//   1. explicit credentials (`--username` + `--password-stdin`), for the registry being used;
//   2. environment: WASMLET_REGISTRY_USERNAME + WASMLET_REGISTRY_PASSWORD;
//   3. docker config: ${DOCKER_CONFIG:-~/.docker}/config.json "auths" (keys "host",
//      "https://host", "http://host"; docker.io also "https://index.docker.io/v1/"), entries with
//      "auth" (base64 user:password), "username"/"password" or "identitytoken".
// Credential helpers (credsStore/credHelpers) are not supported.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "util/base64.h"

#include "util/result.h"

namespace wasmlet::oci {

struct Credentials {
  std::string username;
  std::string password;        // or a registry token used as password
  std::string identity_token;  // docker "identitytoken" (OAuth refresh token)
};

class CredentialSource {
 public:
  virtual ~CredentialSource() = default;
  virtual std::optional<Credentials> Lookup(const std::string& registry) const = 0;
};

// The default chain described above. `home` and `env` are injectable for tests: `env` returns
// the value of a variable or nullopt.
struct DefaultCredentialOptions {
  std::optional<Credentials> explicit_credentials;
  std::string explicit_registry;  // explicit credentials apply to this registry only ("" = all)
  std::string docker_config_path;  // empty: ${DOCKER_CONFIG:-$HOME/.docker}/config.json
  bool use_environment = true;
};
std::unique_ptr<CredentialSource> MakeDefaultCredentialSource(DefaultCredentialOptions options);

// Standard base64 (for Basic auth and docker config "auth").
// Base64 lives in util/base64.h (also used by the node for kubeconfig and Secret data).
using ::wasmlet::Base64Decode;
using ::wasmlet::Base64Encode;

}  // namespace wasmlet::oci
