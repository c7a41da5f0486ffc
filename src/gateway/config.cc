#include "gateway/config.h"
#include "util/units.h"

#include <toml++/toml.h>

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <unordered_map>
#include <set>
#include <cstdlib>
#include <sstream>

#include "util/files.h"

namespace wasmlet::gateway {
namespace {

namespace fs = std::filesystem;

std::string Describe(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    default: return "a date/time";
  }
}

std::string Line(const toml::node& node) {
  const auto& src = node.source();
  return src.begin.line > 0 ? ":" + std::to_string(src.begin.line) : "";
}

struct Ctx {
  std::string path;       // config file
  fs::path config_dir;    // folder of the config file
  fs::path working_dir;   // fallback
  const LoadOptions* options;
  std::vector<std::string>* warnings;
};

Error ConfigError(const Ctx& ctx, const toml::node& node, const std::string& message) {
  return MakeError(Phase::kConfig, message, ctx.path + Line(node));
}

// Relative paths: the config file's folder first, then the working directory (WAGI's rule)
// with a warning. Returns the first candidate that exists, or an error naming both.
Result<std::string> ResolveLocalPath(const Ctx& ctx, const std::string& raw, const std::string& what,
                                     bool directory) {
  fs::path p(raw);
  std::error_code ec;
  auto exists = [&](const fs::path& candidate) {
    return directory ? fs::is_directory(candidate, ec) : fs::is_regular_file(candidate, ec);
  };
  if (p.is_absolute()) {
    if (!exists(p)) return MakeError(Phase::kConfig, what + " not found: " + p.string(), ctx.path);
    return p.lexically_normal().string();
  }
  fs::path first = (ctx.config_dir / p).lexically_normal();
  if (exists(first)) return first.string();
  fs::path second = (ctx.working_dir / p).lexically_normal();
  if (exists(second)) {
    ctx.warnings->push_back(ctx.path + ": " + what + " '" + raw +
                            "' is not in the config file's folder; using " + second.string() +
                            " from the working directory (WAGI's rule)");
    return second.string();
  }
  return MakeError(Phase::kConfig,
                   what + " '" + raw + "' not found (tried " + first.string() + " and " +
                       second.string() + ")",
                   ctx.path);
}

Result<std::string> ResolveModule(const Ctx& ctx, const std::string& ref, const toml::node& node) {
  if (ref.rfind("oci:", 0) == 0) {
    std::string oci_ref = ref.substr(4);
    while (oci_ref.rfind("//", 0) == 0) oci_ref.erase(0, 1);
    if (oci_ref.empty()) return ConfigError(ctx, node, "empty oci: reference");
    if (!ctx.options->oci_resolver) {
      return ConfigError(ctx, node,
                         "oci: references need a registry client, which this build of the gateway "
                         "was not given: '" + ref + "' (pull it and use the file path instead)");
    }
    auto local = ctx.options->oci_resolver(oci_ref);
    if (!local.ok()) {
      Error e = local.take_error();
      if (e.where.empty()) e.where = ctx.path + Line(node);
      return e;
    }
    return *local;
  }
  std::string path = ref;
  if (path.rfind("file://", 0) == 0) path = path.substr(7);
  if (path.empty()) return ConfigError(ctx, node, "empty module reference");
  auto resolved = ResolveLocalPath(ctx, path, "module", false);
  if (!resolved.ok()) {
    Error e = resolved.take_error();
    e.where = ctx.path + Line(node);
    return e;
  }
  // Modules are loaded lazily (on first request): what can be checked cheaply is checked here,
  // so a module that cannot even be opened is still a config error at startup.
  if (::access(resolved->c_str(), R_OK) != 0) {
    return ConfigError(ctx, node, "module '" + ref + "' is not readable: " + std::strerror(errno) + " (" +
                                      *resolved + ")");
  }
  return resolved;
}

Status CheckRoute(const Ctx& ctx, const std::string& route, const toml::node& node) {
  if (route.empty() || route[0] != '/') {
    return ConfigError(ctx, node, "route must start with '/': '" + route + "'");
  }
  for (char c : route) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f || c == '?' || c == '#') {
      return ConfigError(ctx, node, "route contains a space, control character, '?' or '#': '" +
                                        route + "'");
    }
  }
  auto dots = route.find("...");
  if (dots != std::string::npos && dots != route.size() - 3) {
    return ConfigError(ctx, node, "'...' may only end a route (\"/x/...\"): '" + route + "'");
  }
  if (dots != std::string::npos && route.size() >= 4 && route[route.size() - 4] != '/') {
    return ConfigError(ctx, node, "a wildcard route must end in \"/...\": '" + route + "'");
  }
  return OkStatus();
}

Result<std::string> GetString(const Ctx& ctx, const toml::node& node, const std::string& key) {
  if (auto s = node.value<std::string>(); s && node.is_string()) return *s;
  return ConfigError(ctx, node, "'" + key + "' must be a string, not " + Describe(node));
}

Result<std::vector<std::pair<std::string, std::string>>> GetStringTable(const Ctx& ctx,
                                                                         const toml::node& node,
                                                                         const std::string& key) {
  const toml::table* t = node.as_table();
  if (t == nullptr) return ConfigError(ctx, node, "'" + key + "' must be a table of strings");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, v] : *t) {
    if (!v.is_string()) {
      return ConfigError(ctx, v, "'" + key + "." + std::string(k.str()) +
                                     "' must be a string, not " + Describe(v));
    }
    out.emplace_back(std::string(k.str()), *v.value<std::string>());
  }
  return out;
}

Result<std::vector<std::string>> GetStringArray(const Ctx& ctx, const toml::node& node,
                                                const std::string& key) {
  const toml::array* a = node.as_array();
  if (a == nullptr) return ConfigError(ctx, node, "'" + key + "' must be an array of strings");
  std::vector<std::string> out;
  for (const auto& v : *a) {
    if (!v.is_string()) return ConfigError(ctx, v, "'" + key + "' must contain only strings");
    out.push_back(*v.value<std::string>());
  }
  return out;
}

Result<uint64_t> GetSize(const Ctx& ctx, const toml::node& node, const std::string& key) {
  if (node.is_integer()) {
    int64_t v = *node.value<int64_t>();
    if (v <= 0) return ConfigError(ctx, node, "'" + key + "' must be positive");
    return static_cast<uint64_t>(v);
  }
  if (node.is_string()) {
    auto r = ParseSize(*node.value<std::string>());
    if (!r.ok()) return ConfigError(ctx, node, "'" + key + "': " + r.error().message);
    if (*r == 0) return ConfigError(ctx, node, "'" + key + "' must be positive");
    return r;
  }
  return ConfigError(ctx, node, "'" + key + "' must be a size like \"64MiB\" or a number of bytes");
}

Result<std::chrono::milliseconds> GetDuration(const Ctx& ctx, const toml::node& node,
                                              const std::string& key) {
  if (node.is_integer()) {
    int64_t v = *node.value<int64_t>();
    if (v <= 0) return ConfigError(ctx, node, "'" + key + "' must be positive");
    return std::chrono::milliseconds(v);
  }
  if (node.is_string()) {
    auto r = ParseDuration(*node.value<std::string>());
    if (!r.ok()) return ConfigError(ctx, node, "'" + key + "': " + r.error().message);
    if (r->count() <= 0) return ConfigError(ctx, node, "'" + key + "' must be positive");
    return r;
  }
  return ConfigError(ctx, node, "'" + key + "' must be a duration like \"2s\" or milliseconds");
}

Result<uint32_t> GetCount(const Ctx& ctx, const toml::node& node, const std::string& key) {
  if (!node.is_integer()) return ConfigError(ctx, node, "'" + key + "' must be an integer");
  int64_t v = *node.value<int64_t>();
  if (v <= 0 || v > 1000000) return ConfigError(ctx, node, "'" + key + "' must be 1..1000000");
  return static_cast<uint32_t>(v);
}

// Limits shared by modules.toml entries and Spin components (our extension keys).
// Returns true if `key` was a limit key.
Result<bool> ApplyLimitKey(const Ctx& ctx, const std::string& key, const toml::node& v,
                           AppLimits& limits) {
  if (key == "memory_limit") {
    auto r = GetSize(ctx, v, key);
    if (!r.ok()) return r.take_error();
    limits.memory_bytes = *r;
    return true;
  }
  if (key == "timeout") {
    auto r = GetDuration(ctx, v, key);
    if (!r.ok()) return r.take_error();
    limits.timeout = *r;
    return true;
  }
  if (key == "max_concurrency") {
    auto r = GetCount(ctx, v, key);
    if (!r.ok()) return r.take_error();
    limits.max_concurrency = *r;
    return true;
  }
  return false;
}

Result<std::vector<runtime::Preopen>> GetVolumes(const Ctx& ctx, const toml::node& node) {
  auto table = GetStringTable(ctx, node, "volumes");
  if (!table.ok()) return table.take_error();
  std::vector<runtime::Preopen> out;
  for (const auto& [guest, host] : *table) {
    auto resolved = ResolveLocalPath(ctx, host, "volume '" + guest + "'", true);
    if (!resolved.ok()) return resolved.take_error();
    out.push_back(runtime::Preopen{*resolved, guest, false});
  }
  return out;
}

Result<toml::table> ParseToml(std::string_view text, const std::string& path) {
  try {
    return toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    return MakeError(Phase::kConfig, "invalid TOML: " + std::string(e.description()),
                     path + ":" + std::to_string(src.begin.line) + ":" +
                         std::to_string(src.begin.column));
  }
}

Ctx MakeCtx(const std::string& path, const LoadOptions& options, GatewayConfig& config) {
  Ctx ctx;
  ctx.path = path;
  std::error_code ec;
  fs::path abs = fs::absolute(path, ec);
  ctx.config_dir = abs.parent_path();
  ctx.working_dir = options.working_dir.empty() ? fs::current_path(ec) : fs::path(options.working_dir);
  ctx.options = &options;
  ctx.warnings = &config.warnings;
  config.source_path = path;
  return ctx;
}

void WarnDuplicateRoutes(GatewayConfig& config) {
  // Every pair of entries with the same route, in file order (a map, not a pairwise scan: a
  // config may have 10,000 entries).
  std::unordered_map<std::string_view, std::vector<size_t>> by_route;
  for (size_t i = 0; i < config.apps.size(); ++i) by_route[config.apps[i].route].push_back(i);
  for (size_t i = 0; i < config.apps.size(); ++i) {
    const auto& same = by_route[config.apps[i].route];
    if (same.size() < 2) continue;
    for (size_t j : same) {
      if (j <= i) continue;
      config.warnings.push_back("duplicate route '" + config.apps[i].route + "': " + config.apps[i].where +
                                " and " + config.apps[j].where + "; the later entry wins");
    }
  }
}

}  // namespace

Result<GatewayConfig> ParseModulesToml(std::string_view text, const std::string& path,
                                       const LoadOptions& options) {
  auto parsed = ParseToml(text, path);
  if (!parsed.ok()) return parsed.take_error();
  GatewayConfig config;
  Ctx ctx = MakeCtx(path, options, config);
  const toml::table& root = *parsed;
  for (const auto& [k, v] : root) {
    if (k.str() != "module") {
      config.warnings.push_back(path + Line(v) + ": unknown top-level key '" + std::string(k.str()) +
                                "' ignored (expected [[module]] tables)");
    }
  }
  const toml::node* modules = root.get("module");
  if (modules == nullptr) {
    return MakeError(Phase::kConfig, "no [[module]] entries", path);
  }
  const toml::array* list = modules->as_array();
  if (list == nullptr) {
    return ConfigError(ctx, *modules, "'module' must be an array of tables ([[module]])");
  }
  size_t index = 0;
  for (const auto& entry : *list) {
    ++index;
    const toml::table* t = entry.as_table();
    if (t == nullptr) return ConfigError(ctx, entry, "each [[module]] must be a table");
    AppConfig app;
    app.where = path + Line(entry) + " (module #" + std::to_string(index) + ")";
    const toml::node* route = t->get("route");
    const toml::node* module = t->get("module");
    if (route == nullptr) return ConfigError(ctx, entry, "module #" + std::to_string(index) + " has no 'route'");
    if (module == nullptr) return ConfigError(ctx, entry, "module #" + std::to_string(index) + " has no 'module'");
    for (const auto& [key_view, v] : *t) {
      std::string key(key_view.str());
      if (key == "route") {
        auto s = GetString(ctx, v, key);
        if (!s.ok()) return s.take_error();
        if (auto st = CheckRoute(ctx, *s, v); !st.ok()) return st.take_error();
        app.route = *s;
      } else if (key == "module") {
        auto s = GetString(ctx, v, key);
        if (!s.ok()) return s.take_error();
        app.module_ref = *s;
      } else if (key == "entrypoint") {
        auto s = GetString(ctx, v, key);
        if (!s.ok()) return s.take_error();
        app.entrypoint = *s;
      } else if (key == "volumes") {
        auto vols = GetVolumes(ctx, v);
        if (!vols.ok()) return vols.take_error();
        app.volumes = std::move(*vols);
      } else if (key == "environment") {
        auto env = GetStringTable(ctx, v, key);
        if (!env.ok()) return env.take_error();
        app.environment = std::move(*env);
      } else if (key == "allowed_hosts") {
        auto hosts = GetStringArray(ctx, v, key);
        if (!hosts.ok()) return hosts.take_error();
        app.allowed_hosts = std::move(*hosts);
      } else if (key == "http_max_concurrency") {
        auto n = GetCount(ctx, v, key);
        if (!n.ok()) return n.take_error();
        app.http_max_concurrency = *n;
      } else if (key == "argv") {
        auto s = GetString(ctx, v, key);
        if (!s.ok()) return s.take_error();
        app.argv = *s;
      } else if (key == "bindle" || key == "parcel") {
        return ConfigError(ctx, v, "'" + key + "' (Bindle) is not supported; use a file or oci: reference");
      } else {
        auto limit = ApplyLimitKey(ctx, key, v, app.limits);
        if (!limit.ok()) return limit.take_error();
        if (!*limit) {
          config.warnings.push_back(path + Line(v) + ": unknown key '" + key + "' in module #" +
                                    std::to_string(index) + " ignored");
        }
      }
    }
    app.where = path + Line(entry) + " (module #" + std::to_string(index) + ", route " + app.route + ")";
    auto resolved = ResolveModule(ctx, app.module_ref, *module);
    if (!resolved.ok()) return resolved.take_error();
    app.module_path = *resolved;
    config.apps.push_back(std::move(app));
  }
  if (config.apps.empty()) return MakeError(Phase::kConfig, "no [[module]] entries", path);
  WarnDuplicateRoutes(config);
  return config;
}

Result<GatewayConfig> ParseSpinToml(std::string_view text, const std::string& path,
                                    const LoadOptions& options) {
  auto parsed = ParseToml(text, path);
  if (!parsed.ok()) return parsed.take_error();
  GatewayConfig config;
  Ctx ctx = MakeCtx(path, options, config);
  const toml::table& root = *parsed;
  auto version = root["spin_manifest_version"];
  if (!version.is_integer() || *version.value<int64_t>() != 2) {
    return MakeError(Phase::kConfig,
                     "only Spin manifest version 2 is supported (spin_manifest_version = 2)", path);
  }
  for (const auto& [k, v] : root) {
    std::string key(k.str());
    if (key != "spin_manifest_version" && key != "application" && key != "trigger" &&
        key != "component" && key != "variables") {
      config.warnings.push_back(path + Line(v) + ": unknown top-level key '" + key + "' ignored");
    }
  }
  const toml::array* triggers = root["trigger"]["http"].as_array();
  if (triggers == nullptr || triggers->empty()) {
    return MakeError(Phase::kConfig, "no [[trigger.http]] entries", path);
  }
  const toml::table* components = root["component"].as_table();
  size_t index = 0;
  for (const auto& trig_node : *triggers) {
    ++index;
    const toml::table* trig = trig_node.as_table();
    if (trig == nullptr) return ConfigError(ctx, trig_node, "each [[trigger.http]] must be a table");
    AppConfig app;
    std::string name = "trigger #" + std::to_string(index);
    const toml::node* route = trig->get("route");
    if (route == nullptr) return ConfigError(ctx, trig_node, name + " has no 'route'");
    auto route_s = GetString(ctx, *route, "route");
    if (!route_s.ok()) return route_s.take_error();
    if (auto st = CheckRoute(ctx, *route_s, *route); !st.ok()) return st.take_error();
    app.route = *route_s;
    const toml::node* executor = trig->get("executor");
    const toml::table* exec = executor != nullptr ? executor->as_table() : nullptr;
    std::string exec_type = exec != nullptr ? (*exec)["type"].value_or(std::string()) : "";
    if (exec_type != "wagi") {
      return ConfigError(ctx, trig_node,
                         name + " (route " + app.route + ") uses the " +
                             (exec_type.empty() ? std::string("default (component model)")
                                                : "'" + exec_type + "'") +
                             " executor; wasmlet serve runs only executor = { type = \"wagi\" } "
                             "(Spin HTTP components need the component model)");
    }
    for (const auto& [k, v] : *exec) {
      std::string key(k.str());
      if (key == "type") continue;
      if (key == "argv") {
        auto s = GetString(ctx, v, key);
        if (!s.ok()) return s.take_error();
        app.argv = *s;
      } else if (key == "entrypoint") {
        auto s = GetString(ctx, v, key);
        if (!s.ok()) return s.take_error();
        app.entrypoint = *s;
      } else {
        config.warnings.push_back(path + Line(v) + ": unknown executor key '" + key + "' ignored");
      }
    }
    for (const auto& [k, v] : *trig) {
      std::string key(k.str());
      if (key != "route" && key != "component" && key != "executor") {
        config.warnings.push_back(path + Line(v) + ": unknown key '" + key + "' in " + name + " ignored");
      }
    }
    const toml::node* comp_ref = trig->get("component");
    if (comp_ref == nullptr || !comp_ref->is_string()) {
      return ConfigError(ctx, trig_node,
                         name + ": 'component' must name a [component.NAME] table (inline "
                                "components are not supported)");
    }
    std::string comp_name = *comp_ref->value<std::string>();
    const toml::table* comp = components != nullptr ? (*components)[comp_name].as_table() : nullptr;
    if (comp == nullptr) {
      return ConfigError(ctx, *comp_ref, name + ": no [component." + comp_name + "] table");
    }
    app.where = path + Line(trig_node) + " (" + name + ", component " + comp_name + ", route " +
                app.route + ")";
    const toml::node* source = comp->get("source");
    if (source == nullptr) return ConfigError(ctx, *comp, "component " + comp_name + " has no 'source'");
    if (!source->is_string()) {
      return ConfigError(ctx, *source, "component " + comp_name +
                                           ": only a file path 'source' is supported (not a URL "
                                           "or registry table)");
    }
    for (const auto& [k, v] : *comp) {
      std::string key(k.str());
      if (key == "source") {
        app.module_ref = *v.value<std::string>();
      } else if (key == "environment") {
        auto env = GetStringTable(ctx, v, key);
        if (!env.ok()) return env.take_error();
        app.environment = std::move(*env);
      } else if (key == "allowed_outbound_hosts" || key == "allowed_http_hosts") {
        auto hosts = GetStringArray(ctx, v, key);
        if (!hosts.ok()) return hosts.take_error();
        app.allowed_hosts = std::move(*hosts);
      } else if (key == "files") {
        const toml::array* files = v.as_array();
        if (files == nullptr) return ConfigError(ctx, v, "'files' must be an array");
        for (const auto& f : *files) {
          std::string src, dst;
          if (f.is_string()) {
            src = *f.value<std::string>();
            // A glob is mounted as its literal directory prefix (no per-file filtering).
            auto glob = src.find_first_of("*?[");
            if (glob != std::string::npos) {
              auto slash = src.rfind('/', glob);
              src = slash == std::string::npos ? "." : src.substr(0, slash);
              config.warnings.push_back(path + Line(f) + ": component " + comp_name +
                                        ": glob in 'files' mounts the whole directory '" + src + "'");
            }
            dst = src == "." ? "/" : "/" + src;
          } else if (const toml::table* ft = f.as_table()) {
            src = (*ft)["source"].value_or(std::string());
            dst = (*ft)["destination"].value_or(std::string());
            if (src.empty() || dst.empty()) {
              return ConfigError(ctx, f, "'files' entries need 'source' and 'destination'");
            }
          } else {
            return ConfigError(ctx, f, "'files' entries must be strings or tables");
          }
          auto resolved = ResolveLocalPath(ctx, src, "files directory", true);
          if (!resolved.ok()) return resolved.take_error();
          // Spin mounts files read-only.
          app.volumes.push_back(runtime::Preopen{*resolved, dst, true});
        }
      } else if (key == "build" || key == "description" || key == "exclude_files") {
        continue;
      } else {
        auto limit = ApplyLimitKey(ctx, key, v, app.limits);
        if (!limit.ok()) return limit.take_error();
        if (!*limit) {
          config.warnings.push_back(path + Line(v) + ": unsupported key '" + key +
                                    "' in component " + comp_name + " ignored");
        }
      }
    }
    auto resolved = ResolveModule(ctx, app.module_ref, *source);
    if (!resolved.ok()) return resolved.take_error();
    app.module_path = *resolved;
    config.apps.push_back(std::move(app));
  }
  WarnDuplicateRoutes(config);
  return config;
}

Result<GatewayConfig> LoadConfigFile(const std::string& path, const LoadOptions& options) {
  auto text = ReadFile(path);
  if (!text.ok()) {
    Error e = text.take_error();
    e.phase = Phase::kConfig;
    return e;
  }
  // Cheap detection; the parser checks properly.
  if (text->find("spin_manifest_version") != std::string::npos) {
    return ParseSpinToml(*text, path, options);
  }
  return ParseModulesToml(*text, path, options);
}

}  // namespace wasmlet::gateway

namespace wasmlet::gateway {

std::string FindBundledExamples() {
  namespace fs = std::filesystem;
  std::vector<fs::path> candidates;
  if (const char* env = std::getenv("WASMLET_EXAMPLES_DIR"); env != nullptr && *env) candidates.emplace_back(env);
#ifdef WASMLET_EXAMPLES_BUILD_DIR
  candidates.emplace_back(WASMLET_EXAMPLES_BUILD_DIR);
#endif
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    candidates.push_back(exe.parent_path() / ".." / "share" / "wasmlet" / "examples");
    candidates.push_back(exe.parent_path() / "examples");
  }
  for (const auto& dir : candidates) {
    fs::path file = dir / "modules.toml";
    if (fs::is_regular_file(file, ec)) return file.lexically_normal().string();
  }
  return "";
}

}  // namespace wasmlet::gateway
