// Maps a raw (still percent-encoded) request path to a route: exact routes first, then
// wildcard routes ("/x/...") longest prefix first. /healthz and /metrics are handled before
// the router (gateway/gateway.h). Matching costs one hash lookup per path segment, whatever
// the number of routes (10,000 apps are served by one router).
//
// Threading: immutable after Build; Match may be called from any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "util/result.h"

namespace wasmlet::gateway {

struct Route {
  std::string pattern;     // as written; for _routes entries the full joined pattern
  size_t app = 0;          // index of the app (GatewayConfig::apps)
  std::string entrypoint;  // export to call
  std::string where;       // config location for messages
};

struct RouteMatch {
  const Route* route = nullptr;
  std::string script_name;    // route without "/..."; "/" for "/..."
  std::string raw_path_info;  // rest of the path after the base; empty for exact routes
};

class Router {
 public:
  // Later duplicates win; each duplicate and each overlap of wildcard routes is reported in
  // `warnings`.
  static Router Build(std::vector<Route> routes, std::vector<std::string>* warnings);

  std::optional<RouteMatch> Match(std::string_view raw_path) const;
  const std::vector<Route>& routes() const { return routes_; }

  static bool IsWildcard(std::string_view pattern);
  // "/x/..." -> "/x"; "/..." -> ""; exact -> itself.
  static std::string Base(std::string_view pattern);
  // Calls fn(prefix) for each prefix of `raw_path` a wildcard base could equal: the whole path,
  // then each prefix ending before a '/', longest first, ending with "".
  template <typename Fn>
  static void ForEachBasePrefix(std::string_view raw_path, Fn&& fn) {
    fn(raw_path);
    for (size_t i = raw_path.size(); i-- > 1;) {
      if (raw_path[i] == '/') fn(raw_path.substr(0, i));
    }
    if (!raw_path.empty()) fn(raw_path.substr(0, 0));
  }

 private:
  std::vector<Route> routes_;
  std::unordered_map<std::string, size_t> exact_;
  std::unordered_map<std::string, size_t> wildcard_;  // base -> index of the winning route
};

// Joins a _routes sub-pattern to its parent's route: ("/app/...", "/a/...") -> "/app/a/...".
std::string JoinRoute(std::string_view parent_pattern, std::string_view sub_pattern);
// The base every JoinRoute(parent_pattern, ...) result lies under: "/app/..." -> "/app",
// "/a/" -> "/a", "/..." -> "". A _routes entry of that app can only match a path that equals
// this base or continues it with '/'.
std::string SubRouteBase(std::string_view parent_pattern);

}  // namespace wasmlet::gateway
