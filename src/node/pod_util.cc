#include "node/pod_util.h"

#include <cmath>

namespace wasmlet::node {
namespace {

// Parses a Kubernetes quantity into a value scaled by `scale` (1 for bytes, 1000 for millis).
Result<uint64_t> ParseQuantity(const std::string& text, double scale) {
  if (text.empty()) return MakeError(Phase::kConfig, "empty quantity");
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return MakeError(Phase::kConfig, "not a quantity: '" + text + "'");
  }
  std::string suffix = text.substr(pos);
  double mult = 1;
  if (suffix.empty()) mult = 1;
  else if (suffix == "m") mult = 1e-3;
  else if (suffix == "k") mult = 1e3;
  else if (suffix == "M") mult = 1e6;
  else if (suffix == "G") mult = 1e9;
  else if (suffix == "T") mult = 1e12;
  else if (suffix == "P") mult = 1e15;
  else if (suffix == "E") mult = 1e18;
  else if (suffix == "Ki") mult = 1024.0;
  else if (suffix == "Mi") mult = 1024.0 * 1024;
  else if (suffix == "Gi") mult = 1024.0 * 1024 * 1024;
  else if (suffix == "Ti") mult = 1024.0 * 1024 * 1024 * 1024;
  else if (suffix == "Pi") mult = 1024.0 * 1024 * 1024 * 1024 * 1024;
  else if (suffix == "Ei") mult = 1024.0 * 1024 * 1024 * 1024 * 1024 * 1024;
  else if (suffix[0] == 'e' || suffix[0] == 'E') {
    try {
      mult = std::pow(10.0, std::stod(suffix.substr(1)));
    } catch (...) {
      return MakeError(Phase::kConfig, "not a quantity: '" + text + "'");
    }
  } else {
    return MakeError(Phase::kConfig, "unknown quantity suffix in '" + text + "'");
  }
  double result = std::ceil(value * mult * scale);
  if (result < 0) return MakeError(Phase::kConfig, "negative quantity '" + text + "'");
  // NaN, infinity and values past 2^64 ("1e30", "inf") do not convert to an integer.
  if (!(result < 18446744073709551616.0)) return MakeError(Phase::kConfig, "quantity out of range: '" + text + "'");
  return static_cast<uint64_t>(result);
}

std::string MapLookup(const Json& map, const std::string& key) {
  if (!map.is_object() || !map.contains(key) || !map[key].is_string()) return "";
  return map[key].get<std::string>();
}

}  // namespace

Result<uint64_t> ParseQuantityBytes(const std::string& text) { return ParseQuantity(text, 1); }
Result<uint64_t> ParseQuantityMillis(const std::string& text) { return ParseQuantity(text, 1000); }

std::string ExpandVars(const std::string& in, const std::map<std::string, std::string>& vars) {
  std::string out;
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] != '$' || i + 1 >= in.size()) {
      out.push_back(in[i]);
      continue;
    }
    if (in[i + 1] == '$') {
      out.push_back('$');
      ++i;
      continue;
    }
    if (in[i + 1] == '(') {
      size_t close = in.find(')', i + 2);
      if (close != std::string::npos) {
        std::string name = in.substr(i + 2, close - i - 2);
        auto it = vars.find(name);
        if (it != vars.end()) {
          out += it->second;
        } else {
          out += in.substr(i, close - i + 1);
        }
        i = close;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

Result<std::string> FieldRefValue(const Json& pod, const std::string& path, const std::string& host_ip) {
  // value() copies, but never reads a missing key (operator[] on a const object would).
  const Json meta = pod.is_object() ? pod.value("metadata", Json::object()) : Json::object();
  const Json spec = pod.is_object() ? pod.value("spec", Json::object()) : Json::object();
  auto subscript = [&](const std::string& prefix) -> std::string {
    // metadata.labels['key'] -> key
    std::string_view rest(path);
    rest.remove_prefix(prefix.size());
    if (rest.size() >= 2 && rest.front() == '[' && rest.back() == ']') {
      rest.remove_prefix(1);
      rest.remove_suffix(1);
      if (rest.size() >= 2 && (rest.front() == '\'' || rest.front() == '"')) {
        rest.remove_prefix(1);
        rest.remove_suffix(1);
      }
    }
    return std::string(rest);
  };
  if (path == "metadata.name") return meta.value("name", "");
  if (path == "metadata.namespace") return meta.value("namespace", "");
  if (path == "metadata.uid") return meta.value("uid", "");
  if (path == "spec.nodeName") return spec.value("nodeName", "");
  if (path == "spec.serviceAccountName") return spec.value("serviceAccountName", "");
  if (path == "status.hostIP" || path == "status.podIP" || path == "status.hostIPs" || path == "status.podIPs") {
    return host_ip;
  }
  if (path == "metadata.labels") return FormatDownwardMap(meta.value("labels", Json::object()));
  if (path == "metadata.annotations") return FormatDownwardMap(meta.value("annotations", Json::object()));
  if (path.rfind("metadata.labels[", 0) == 0) {
    return MapLookup(meta.value("labels", Json::object()), subscript("metadata.labels"));
  }
  if (path.rfind("metadata.annotations[", 0) == 0) {
    return MapLookup(meta.value("annotations", Json::object()), subscript("metadata.annotations"));
  }
  return MakeError(Phase::kConfig, "unsupported fieldRef '" + path + "'");
}

Result<std::string> ResourceFieldValue(const Json& container, const std::string& resource,
                                       const std::string& divisor) {
  auto dot = resource.find('.');
  if (dot == std::string::npos) return MakeError(Phase::kConfig, "bad resourceFieldRef '" + resource + "'");
  std::string kind = resource.substr(0, dot), name = resource.substr(dot + 1);
  const Json& res = container.value("resources", Json::object());
  const std::string found = MapLookup(res.value(kind, Json::object()), name);
  const std::string q = found.empty() ? std::string(1, '0') : found;
  bool cpu = name == "cpu";
  auto value = cpu ? ParseQuantityMillis(q) : ParseQuantityBytes(q);
  if (!value.ok()) return value.take_error();
  const std::string div = divisor.empty() ? std::string(1, '1') : divisor;
  auto d = cpu ? ParseQuantityMillis(div) : ParseQuantityBytes(div);
  if (!d.ok() || *d == 0) return MakeError(Phase::kConfig, "bad divisor '" + divisor + "'");
  return std::to_string((*value + *d - 1) / *d);
}

std::string FormatDownwardMap(const Json& map) {
  std::string out;
  if (!map.is_object()) return out;
  for (const auto& [k, v] : map.items()) {  // nlohmann::json objects iterate sorted
    std::string value = v.is_string() ? v.get<std::string>() : v.dump();
    std::string escaped;
    for (char c : value) {
      if (c == '"' || c == '\\') escaped.push_back('\\');
      if (c == '\n') {
        escaped += "\\n";
        continue;
      }
      escaped.push_back(c);
    }
    out += k + "=\"" + escaped + "\"\n";
  }
  if (!out.empty()) out.pop_back();  // the kubelet writes no trailing newline
  return out;
}

std::string ComputePodPhase(const Json& spec, const Json& init_statuses, const Json& statuses) {
  std::string policy = spec.value("restartPolicy", "Always");
  // Init containers: any not yet terminated with 0 keeps the pod Pending (or Failed for Never).
  size_t init_count = spec.value("initContainers", Json::array()).size();
  size_t init_done = 0;
  for (const auto& s : init_statuses) {
    const Json& state = s.value("state", Json::object());
    if (state.contains("terminated")) {
      if (state["terminated"].value("exitCode", 0) == 0) {
        ++init_done;
      } else if (policy == "Never") {
        return "Failed";
      }
    }
  }
  if (init_done < init_count) return "Pending";
  int running = 0, waiting = 0, stopped = 0, succeeded = 0;
  size_t count = spec.value("containers", Json::array()).size();
  for (const auto& s : statuses) {
    const Json& state = s.value("state", Json::object());
    const Json& last = s.value("lastState", Json::object());
    if (state.contains("running")) {
      ++running;
    } else if (state.contains("terminated")) {
      ++stopped;
      if (state["terminated"].value("exitCode", 0) == 0) ++succeeded;
    } else if (state.contains("waiting")) {
      if (last.contains("terminated")) {
        ++stopped;
      } else {
        ++waiting;
      }
    }
  }
  if (statuses.size() < count) waiting += static_cast<int>(count - statuses.size());
  if (waiting > 0) return "Pending";
  if (running > 0) return "Running";
  if (stopped > 0) {
    if (policy == "Always") return "Running";
    if (stopped == succeeded) return "Succeeded";
    if (policy == "Never") return "Failed";
    return "Running";
  }
  return "Pending";
}

}  // namespace wasmlet::node
