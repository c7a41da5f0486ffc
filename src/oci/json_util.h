// Reading JSON from registries without exceptions: nlohmann's value()/get() throw on a type
// mismatch, and registry documents are untrusted input (STYLE.md 4).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace wasmlet::oci {

// j[key] if j is an object and the member is a string, else "".
inline std::string StringField(const nlohmann::json& j, const char* key) {
  if (!j.is_object()) return {};
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// j[key] if j is an object and the member is an integer, else `fallback`.
inline long long IntField(const nlohmann::json& j, const char* key, long long fallback) {
  if (!j.is_object()) return fallback;
  auto it = j.find(key);
  return it != j.end() && it->is_number_integer() ? it->get<long long>() : fallback;
}

// dump() that cannot throw on invalid UTF-8 (file names end up in annotations).
inline std::string SafeDump(const nlohmann::ordered_json& j) {
  return j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

}  // namespace wasmlet::oci
