#include "oci/reference.h"

#include <cctype>

#include "util/sha256.h"

namespace wasmlet::oci {
namespace {

Error Invalid(std::string_view text, const std::string& why) {
  return MakeError(Phase::kUsage, "invalid reference \"" + std::string(text) + "\": " + why);
}

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*
bool IsPathComponent(std::string_view c) {
  if (c.empty() || !IsLowerAlnum(c.front()) || !IsLowerAlnum(c.back())) return false;
  size_t i = 0;
  while (i < c.size()) {
    if (IsLowerAlnum(c[i])) {
      ++i;
      continue;
    }
    size_t start = i;
    while (i < c.size() && !IsLowerAlnum(c[i])) ++i;
    std::string_view sep = c.substr(start, i - start);
    bool dashes = sep.find_first_not_of('-') == std::string_view::npos;
    if (!(sep == "." || sep == "_" || sep == "__" || dashes)) return false;
  }
  return true;
}

// [\w][\w.-]{0,127}
bool IsTag(std::string_view t) {
  if (t.empty() || t.size() > 128) return false;
  auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; };
  if (!word(t[0])) return false;
  for (char c : t) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

// host[:port] where host is a DNS name, an IPv4 address or [IPv6].
std::string CheckRegistry(std::string_view r) {
  std::string_view host = r, port;
  if (!r.empty() && r.front() == '[') {
    size_t close = r.find(']');
    if (close == std::string_view::npos) return "unterminated IPv6 address";
    host = r.substr(0, close + 1);
    std::string_view rest = r.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return "unexpected \"" + std::string(rest) + "\" after IPv6 address";
      port = rest.substr(1);
      if (port.empty()) return "empty port";
    }
  } else {
    size_t colon = r.find(':');
    if (colon != std::string_view::npos) {
      host = r.substr(0, colon);
      port = r.substr(colon + 1);
      if (port.empty()) return "empty port";
    }
    if (host.empty()) return "empty registry host";
    for (char c : host) {
      if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-') {
        return "registry host \"" + std::string(host) + "\" has an invalid character '" +
               std::string(1, c) + "'";
      }
    }
    if (host.front() == '-' || host.front() == '.' || host.back() == '-' || host.back() == '.') {
      return "registry host \"" + std::string(host) + "\" must start and end with a letter or digit";
    }
  }
  if (!port.empty()) {
    if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
        std::stoul(std::string(port)) > 65535 || std::stoul(std::string(port)) == 0) {
      return "port \"" + std::string(port) + "\" must be a number from 1 to 65535";
    }
  }
  return {};
}

}  // namespace

std::string Reference::Canonical() const {
  if (!digest.empty()) return registry + "/" + repository + "@" + digest;
  return registry + "/" + repository + ":" + tag;
}

std::string Reference::String() const {
  std::string s = registry + "/" + repository;
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

std::string Reference::ApiHost() const {
  return registry == "docker.io" ? std::string("registry-1.docker.io") : registry;
}

bool HasOciPrefix(std::string_view text) { return text.substr(0, kOciPrefix.size()) == kOciPrefix; }

bool IsLoopbackRegistry(std::string_view registry) {
  std::string_view host = registry;
  if (!host.empty() && host.front() == '[') {
    host = host.substr(0, host.find(']') + 1);
    return host == "[::1]";
  }
  host = host.substr(0, host.find(':'));
  return host == "localhost" || host.substr(0, 4) == "127.";
}

Result<Reference> ParseReference(std::string_view original) {
  std::string_view text = original;
  if (HasOciPrefix(text)) text.remove_prefix(kOciPrefix.size());
  if (text.empty()) return Invalid(original, "empty reference");
  if (text.find_first_of(" \t\r\n") != std::string_view::npos) {
    return Invalid(original, "contains whitespace");
  }
  if (text.find("://") != std::string_view::npos) {
    return Invalid(original, "\"" + std::string(text.substr(0, text.find("://") + 3)) +
                                 "\": give REGISTRY/REPO[:TAG], without a URL scheme");
  }
  Reference ref;
  std::string_view name = text;
  size_t at = text.find('@');
  if (at != std::string_view::npos) {
    std::string_view digest = text.substr(at + 1);
    name = text.substr(0, at);
    if (digest.substr(0, 7) != "sha256:") {
      return Invalid(original, "digest \"" + std::string(digest) +
                                   "\" must start with sha256: (the only supported algorithm)");
    }
    if (!IsSha256Hex(digest.substr(7))) {
      return Invalid(original, "digest \"" + std::string(digest) +
                                   "\" must be sha256: and 64 lowercase hex digits");
    }
    ref.digest = std::string(digest);
  }
  // The tag is after the last ':' that follows the last '/'.
  size_t slash = name.rfind('/');
  size_t colon = name.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    std::string_view tag = name.substr(colon + 1);
    if (!IsTag(tag)) {
      return Invalid(original, "tag \"" + std::string(tag) +
                                   "\" must be 1-128 letters, digits, '_', '.' or '-', not "
                                   "starting with '.' or '-'");
    }
    ref.tag = std::string(tag);
    name = name.substr(0, colon);
  }
  if (name.empty()) return Invalid(original, "missing repository");
  size_t first_slash = name.find('/');
  std::string_view first = name.substr(0, first_slash);
  std::string_view repo = name;
  if (first_slash != std::string_view::npos &&
      (first.find_first_of(".:") != std::string_view::npos || first == "localhost" ||
       first.front() == '[')) {
    if (std::string why = CheckRegistry(first); !why.empty()) {
      return Invalid(original, "registry \"" + std::string(first) + "\": " + why);
    }
    ref.registry = std::string(first);
    repo = name.substr(first_slash + 1);
  } else {
    ref.registry = "docker.io";
  }
  if (repo.empty()) return Invalid(original, "missing repository after \"" + ref.registry + "/\"");
  size_t start = 0;
  while (start <= repo.size()) {
    size_t end = repo.find('/', start);
    if (end == std::string_view::npos) end = repo.size();
    std::string_view component = repo.substr(start, end - start);
    if (component.empty()) return Invalid(original, "empty repository component (\"//\" or a trailing '/')");
    if (!IsPathComponent(component)) {
      return Invalid(original, "repository component \"" + std::string(component) +
                                   "\" must be lowercase letters, digits and separators (. _ __ -)");
    }
    start = end + 1;
  }
  ref.repository = std::string(repo);
  if (ref.registry == "docker.io" && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (ref.repository.size() > 255) return Invalid(original, "repository longer than 255 characters");
  if (ref.tag.empty() && ref.digest.empty()) ref.tag = "latest";
  return ref;
}

}  // namespace wasmlet::oci
