// Registry references: REGISTRY[:PORT]/REPO[:TAG][@sha256:DIGEST], optionally prefixed "oci:"
// where a module may also be a file path (modules.toml, `wasmlet run`). Pure functions,
// thread-safe.
//
// Like docker: a first component without '.' or ':' that is not "localhost" is part of the
// repository on docker.io ("alpine" -> docker.io/library/alpine:latest); no tag means "latest".
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace wasmlet::oci {

inline constexpr std::string_view kOciPrefix = "oci:";

struct Reference {
  std::string registry;    // "localhost:5000", "ghcr.io", "docker.io"
  std::string repository;  // "org/app"
  std::string tag;         // "v1"; "latest" if neither tag nor digest was given
  std::string digest;      // "sha256:<hex>" or empty

  // The manifest to ask for: the digest if any, else the tag.
  const std::string& Target() const { return digest.empty() ? tag : digest; }
  // "registry/repo@sha256:..." if pinned by digest, else "registry/repo:tag".
  std::string Canonical() const;
  // Everything given, "registry/repo:tag@sha256:..." (for messages).
  std::string String() const;
  // Host (and port) to connect to: docker.io is served by registry-1.docker.io.
  std::string ApiHost() const;
};

// True if `text` starts with "oci:".
bool HasOciPrefix(std::string_view text);

// Parses a reference (with or without the "oci:" prefix). Errors are Phase::kUsage and quote
// the part that is wrong, e.g.: invalid reference "localhost:5000/App:v1": repository
// component "App" must be lowercase letters, digits and separators (. _ __ -).
Result<Reference> ParseReference(std::string_view text);

// True for localhost, 127.0.0.0/8 and ::1 (with or without a port): plain HTTP is allowed there.
bool IsLoopbackRegistry(std::string_view registry);

}  // namespace wasmlet::oci
