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

std::string JoinRoute(std::string_view parent_pattern, std::string_view sub_pattern) {
  std::string base = Router::Base(parent_pattern);
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string sub(sub_pattern);
  if (sub.empty() || sub[0] != '/') sub.insert(sub.begin(), '/');
  return base + sub;
}

Router Router::Build(std::vector<Route> routes, std::vector<std::string>* warnings) {
  Router r;
  r.routes_ = std::move(routes);
  std::unordered_map<std::string, size_t> wild_index;
  for (size_t i = 0; i < r.routes_.size(); ++i) {
    const Route& route = r.routes_[i];
    if (IsWildcard(route.pattern)) {
      std::string base = Base(route.pattern);
      auto [it, inserted] = wild_index.emplace(base, i);
      if (!inserted) {
        if (warnings) {
          warnings->push_back("duplicate route '" + route.pattern + "': " +
                              r.routes_[it->second].where + " and " + route.where +
                              "; the later entry wins");
        }
        it->second = i;
      }
    } else {
      auto [it, inserted] = r.exact_.emplace(route.pattern, i);
      if (!inserted) {
        if (warnings) {
          warnings->push_back("duplicate route '" + route.pattern + "': " +
                              r.routes_[it->second].where + " and " + route.where +
                              "; the later entry wins");
        }
        it->second = i;
      }
    }
  }
  for (auto& [base, index] : wild_index) r.wildcard_.emplace_back(base, index);
  std::sort(r.wildcard_.begin(), r.wildcard_.end(), [](const auto& a, const auto& b) {
    if (a.first.size() != b.first.size()) return a.first.size() > b.first.size();
    return a.first < b.first;
  });
  if (warnings) {
    // Overlaps are legal (longest prefix wins) but WAGI used file order: say so at load.
    for (size_t i = 0; i < r.wildcard_.size(); ++i) {
      for (size_t j = i + 1; j < r.wildcard_.size(); ++j) {
        const std::string& longer = r.wildcard_[i].first;
        const std::string& shorter = r.wildcard_[j].first;
        if (shorter.empty() || longer.rfind(shorter + "/", 0) == 0) {
          warnings->push_back("overlapping routes: '" + r.routes_[r.wildcard_[i].second].pattern +
                              "' takes precedence over '" +
                              r.routes_[r.wildcard_[j].second].pattern + "' below " +
                              (longer.empty() ? "/" : longer) + " (longest prefix first)");
        }
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
  for (const auto& [base, index] : wildcard_) {
    if (raw_path.size() < base.size() || raw_path.compare(0, base.size(), base) != 0) continue;
    if (raw_path.size() > base.size() && raw_path[base.size()] != '/' && !base.empty()) continue;
    const Route& route = routes_[index];
    return RouteMatch{&route, base.empty() ? "/" : base, std::string(raw_path.substr(base.size()))};
  }
  return std::nullopt;
}

}  // namespace wasmlet::gateway
