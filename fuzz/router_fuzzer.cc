// Hostile route tables and request paths: config route patterns, a module's _routes output
// joined below the first route (as the gateway does) and request paths go through the router,
// whose answer must equal a plain reference matcher (exact first, then the longest wildcard
// base that is the whole path or followed by '/').
// Input: three sections separated by a line "--": route patterns, _routes output, paths.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/gateway.h"
#include "gateway/router.h"

namespace {

using namespace wasmlet::gateway;

std::vector<std::string_view> Lines(std::string_view text) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

// The linear matcher the router replaced: the specification the fast one must meet.
std::optional<size_t> Reference(const std::vector<Route>& routes, std::string_view path,
                                std::string* script_name, std::string* rest) {
  std::optional<size_t> exact, wild;
  size_t wild_len = 0;
  for (size_t i = 0; i < routes.size(); ++i) {
    const std::string& pattern = routes[i].pattern;
    if (!Router::IsWildcard(pattern)) {
      if (pattern == path) exact = i;  // later duplicates win
      continue;
    }
    std::string base = Router::Base(pattern);
    if (path.size() < base.size() || path.compare(0, base.size(), base) != 0) continue;
    if (path.size() > base.size() && path[base.size()] != '/' && !base.empty()) continue;
    if (!wild || base.size() >= wild_len) {  // longest base; equal base: the later one
      wild = i;
      wild_len = base.size();
    }
  }
  if (exact) {
    *script_name = routes[*exact].pattern;
    rest->clear();
    return exact;
  }
  if (wild) {
    *script_name = wild_len == 0 ? "/" : std::string(path.substr(0, wild_len));
    *rest = std::string(path.substr(wild_len));
  }
  return wild;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 8192) return 0;  // the router's cost is per path segment; keep runs fast
  std::string_view text(reinterpret_cast<const char*>(data), size);
  std::string_view sections[3];
  for (int s = 0; s < 3; ++s) {
    size_t sep = text.find("\n--\n");
    if (s == 2 || sep == std::string_view::npos) {
      sections[s] = text;
      text = {};
      break;
    }
    sections[s] = text.substr(0, sep);
    text.remove_prefix(sep + 4);
  }

  std::vector<Route> routes;
  for (std::string_view line : Lines(sections[0])) {
    routes.push_back(Route{std::string(line), routes.size(), "_start", "fuzz"});
  }
  auto sub = ParseRoutesOutput(sections[1], "fuzz");
  if (sub.ok() && !routes.empty()) {
    for (const auto& [pattern, name] : *sub) {
      std::string joined = JoinRoute(routes[0].pattern, pattern);
      // The joined route lies below the parent's base.
      std::string base = SubRouteBase(routes[0].pattern);
      if (joined.compare(0, base.size(), base) != 0) __builtin_trap();
      routes.push_back(Route{joined, 0, name, "fuzz _routes"});
    }
  }

  std::vector<std::string> warnings;
  Router router = Router::Build(routes, &warnings);
  for (std::string_view path : Lines(sections[2])) {
    std::string script_name, rest;
    auto want = Reference(routes, path, &script_name, &rest);
    auto got = router.Match(path);
    if (want.has_value() != got.has_value()) __builtin_trap();
    if (!got) continue;
    if (got->route != &router.routes()[*want]) __builtin_trap();
    if (got->script_name != script_name || got->raw_path_info != rest) __builtin_trap();
  }
  return 0;
}
