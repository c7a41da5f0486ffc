// Pure helpers for pod semantics, kept apart from I/O so they are unit-tested directly:
// quantities, $(VAR) expansion, fieldRef values, downward API files, pod phase.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "node/kube_client.h"
#include "util/result.h"

namespace wasmlet::node {

// "64Mi" -> 67108864, "1G" -> 1e9, "500m" (milli) -> 0 for bytes; CPU: "500m" -> 500 millicores.
Result<uint64_t> ParseQuantityBytes(const std::string& text);
Result<uint64_t> ParseQuantityMillis(const std::string& text);

// Kubelet's $(VAR) expansion: $(NAME) is replaced when NAME is defined, $$ escapes to $, and
// unknown references stay as written.
std::string ExpandVars(const std::string& in, const std::map<std::string, std::string>& vars);

// Value of a fieldRef path ("metadata.name", "metadata.labels['app']", "status.podIP", ...)
// for a pod; error for unsupported paths.
Result<std::string> FieldRefValue(const Json& pod, const std::string& field_path,
                                  const std::string& host_ip);
// Value of a resourceFieldRef ("limits.memory", "requests.cpu") of a container, with divisor.
Result<std::string> ResourceFieldValue(const Json& container, const std::string& resource,
                                       const std::string& divisor);

// labels/annotations in the downward API file format: key="escaped value" lines, sorted.
std::string FormatDownwardMap(const Json& map);

// The kubelet's getPhase over container statuses (init statuses separately).
std::string ComputePodPhase(const Json& spec, const Json& init_statuses, const Json& statuses);

}  // namespace wasmlet::node
