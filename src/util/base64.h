// Standard base64 (RFC 4648, with padding) for registry credentials, kubeconfig *-data fields
// and Kubernetes Secret data. Thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace wasmlet {

std::string Base64Encode(std::string_view data);
// Ignores line breaks and spaces; accepts missing padding. nullopt on invalid input.
std::optional<std::string> Base64Decode(std::string_view text);

}  // namespace wasmlet
