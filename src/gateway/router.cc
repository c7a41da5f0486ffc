#include "gateway/router.h"

#include <algorithm>

namespace wasmlet::gateway {

bool Router::IsWildcard(std::string_view pattern) {
  return pattern.size() >= 4 && pattern.substr(pattern.size() - 4) == "/...";
}

std::string Router::Base(std::string_view pattern) {
  if (IsWildcard(pattern)) return std::string(pattern.substr(0, pattern.size() - 4));
  return std::string(pattern);
}

std::string SubRouteBase(std::string_view parent_pattern) {
  std::string base = Router::Base(parent_pattern);
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base;
}

std::string JoinRoute(std::string_view parent_pattern, std::string_view sub_pattern) {
  std::string base = SubRouteBase(parent_pattern);
  std::string sub(sub_pattern);
  if (sub.empty() || sub[0] != '/') sub.insert(sub.begin(), '/');
  return base + sub;
}

Router Router::Build(std::vector<Route> routes, std::vector<std::string>* warnings) {
  Router r;
  r.routes_ = std::move(routes);
  for (size_t i = 0; i < r.routes_.size(); ++i) {
    const Route& route = r.routes_[i];
    bool wild = IsWildcard(route.pattern);
    auto& table = wild ? r.wildcard_ : r.exact_;
    auto [it, inserted] = table.emplace(wild ? Base(route.pattern) : route.pattern, i);
    if (!inserted) {
      if (warnings) {
        warnings->push_back("duplicate route '" + route.pattern + "': " + r.routes_[it->second].where +
                            " and " + route.where + "; the later entry wins");
      }
      it->second = i;
    }
  }
  if (warnings) {
    // Overlaps are legal (longest prefix wins) but WAGI used file order: say so at load. Each
    // wildcard looks up the bases above it (one lookup per segment, not a pairwise scan).
    std::vector<std::pair<std::string, size_t>> sorted(r.wildcard_.begin(), r.wildcard_.end());
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      if (a.first.size() != b.first.size()) return a.first.size() > b.first.size();
      return a.first < b.first;
    });
    for (const auto& [longer, index] : sorted) {
      std::vector<size_t> shorter;
      const size_t longer_size = longer.size();  // clang 14 cannot capture structured bindings
      ForEachBasePrefix(longer, [&](std::string_view prefix) {
        if (prefix.size() == longer_size) return;
        if (auto it = r.wildcard_.find(std::string(prefix)); it != r.wildcard_.end()) {
          shorter.push_back(it->second);
        }
      });
      for (size_t j : shorter) {
        warnings->push_back("overlapping routes: '" + r.routes_[index].pattern + "' takes precedence over '" +
                            r.routes_[j].pattern + "' below " + (longer.empty() ? "/" : longer) +
                            " (longest prefix first)");
      }
    }
  }
  return r;
}

std::optional<RouteMatch> Router::Match(std::string_view raw_path) const {
  if (auto it = exact_.find(std::string(raw_path)); it != exact_.end()) {
    const Route& route = routes_[it->second];
    return RouteMatch{&route, route.pattern, ""};
  }
  std::optional<RouteMatch> found;
  std::string key;
  ForEachBasePrefix(raw_path, [&](std::string_view prefix) {
    if (found) return;
    key.assign(prefix);
    auto it = wildcard_.find(key);
    if (it == wildcard_.end()) return;
    const Route& route = routes_[it->second];
    found = RouteMatch{&route, prefix.empty() ? "/" : key, std::string(raw_path.substr(prefix.size()))};
  });
  return found;
}

}  // namespace wasmlet::gateway
