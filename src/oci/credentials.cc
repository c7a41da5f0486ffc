#include "oci/credentials.h"

#include <openssl/evp.h>

#include <cstdlib>

#include <nlohmann/json.hpp>

#include "util/files.h"
#include "util/log.h"

namespace wasmlet::oci {


namespace {

class DefaultCredentialSource final : public CredentialSource {
 public:
  explicit DefaultCredentialSource(DefaultCredentialOptions options) : options_(std::move(options)) {}

  std::optional<Credentials> Lookup(const std::string& registry) const override {
    if (options_.explicit_credentials &&
        (options_.explicit_registry.empty() || options_.explicit_registry == registry)) {
      return options_.explicit_credentials;
    }
    if (options_.use_environment) {
      const char* user = std::getenv("WASMLET_REGISTRY_USERNAME");
      const char* pass = std::getenv("WASMLET_REGISTRY_PASSWORD");
      if (user != nullptr && pass != nullptr && *user != '\0') return Credentials{user, pass, {}};
    }
    return FromDockerConfig(registry);
  }

 private:
  std::optional<Credentials> FromDockerConfig(const std::string& registry) const {
    std::string path = options_.docker_config_path;
    if (path.empty()) {
      const char* dir = std::getenv("DOCKER_CONFIG");
      const char* home = std::getenv("HOME");
      if (dir != nullptr && *dir != '\0') {
        path = std::string(dir) + "/config.json";
      } else if (home != nullptr && *home != '\0') {
        path = std::string(home) + "/.docker/config.json";
      } else {
        return std::nullopt;
      }
    }
    auto text = ReadFile(path);
    if (!text.ok()) return std::nullopt;
    auto json = nlohmann::json::parse(*text, nullptr, false);
    if (!json.is_object() || !json.contains("auths") || !json["auths"].is_object()) {
      if (json.is_discarded()) WLOG_WARN("ignoring {}: not valid JSON", path);
      return std::nullopt;
    }
    std::vector<std::string> keys = {registry, "https://" + registry, "http://" + registry,
                                     "https://" + registry + "/v1/", "https://" + registry + "/v2/"};
    if (registry == "docker.io") {
      keys.push_back("https://index.docker.io/v1/");
      keys.push_back("index.docker.io");
      keys.push_back("registry-1.docker.io");
    }
    const auto& auths = json["auths"];
    for (const auto& key : keys) {
      auto it = auths.find(key);
      if (it == auths.end() || !it->is_object()) continue;
      Credentials c;
      if (it->contains("auth") && (*it)["auth"].is_string()) {
        auto decoded = Base64Decode((*it)["auth"].get<std::string>());
        if (decoded) {
          size_t colon = decoded->find(':');
          if (colon != std::string::npos) {
            c.username = decoded->substr(0, colon);
            c.password = decoded->substr(colon + 1);
          }
        } else {
          WLOG_WARN("ignoring the malformed \"auth\" entry for {} in {}", key, path);
        }
      }
      if (it->contains("username") && (*it)["username"].is_string()) {
        c.username = (*it)["username"].get<std::string>();
      }
      if (it->contains("password") && (*it)["password"].is_string()) {
        c.password = (*it)["password"].get<std::string>();
      }
      if (it->contains("identitytoken") && (*it)["identitytoken"].is_string()) {
        c.identity_token = (*it)["identitytoken"].get<std::string>();
      }
      if (!c.username.empty() || !c.identity_token.empty()) return c;
    }
    return std::nullopt;
  }

  DefaultCredentialOptions options_;
};

}  // namespace

std::unique_ptr<CredentialSource> MakeDefaultCredentialSource(DefaultCredentialOptions options) {
  return std::make_unique<DefaultCredentialSource>(std::move(options));
}

}  // namespace wasmlet::oci
