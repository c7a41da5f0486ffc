#include "gateway/cgi.h"

#include <cctype>
#include <cstdint>
#include <unordered_map>

#include "util/strings.h"

namespace wasmlet::gateway {
namespace {


int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// "host:port", "[v6]:port", "host" -> (name, port or "").
std::pair<std::string, std::string> SplitHostPort(std::string_view host) {
  if (!host.empty() && host[0] == '[') {
    auto close = host.find(']');
    if (close != std::string_view::npos) {
      std::string name(host.substr(0, close + 1));
      if (close + 1 < host.size() && host[close + 1] == ':') return {name, std::string(host.substr(close + 2))};
      return {name, ""};
    }
  }
  auto colon = host.rfind(':');
  if (colon == std::string_view::npos) return {std::string(host), ""};
  return {std::string(host.substr(0, colon)), std::string(host.substr(colon + 1))};
}

// The guest gets its environment and arguments through WASI as UTF-8 C strings; Wasmtime
// refuses the rest of the list at the first invalid one. Bytes that are no valid UTF-8 (from
// percent-decoding, or obs-text in header values) and NUL (from "%00") become U+FFFD, as
// Rust's from_utf8_lossy does; X_RAW_PATH_INFO keeps the exact bytes percent-encoded.
std::string ValidUtf8(std::string s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c == 0 ? 0 : c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = n > 0 && i + n <= s.size();
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1Fu) : n == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t k = 1; ok && k < n; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + k]);
      ok = (cc >> 6) == 0x2;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && cp >= kMin[n] && cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF);
    if (ok) {
      i += n;
    } else {
      s.replace(i, 1, "\xEF\xBF\xBD");
      i += 3;
    }
  }
  return s;
}

// Keeps the first position of each name; later values replace earlier ones.
class EnvBuilder {
 public:
  void Set(const std::string& name, std::string value) {
    value = ValidUtf8(std::move(value));
    auto [it, inserted] = index_.emplace(name, env_.size());
    if (inserted) env_.emplace_back(name, std::move(value));
    else env_[it->second].second = std::move(value);
  }
  EnvList Take() { return std::move(env_); }

 private:
  EnvList env_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace

std::string_view PathOf(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::string_view QueryOf(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view() : target.substr(q + 1);
}

std::string PercentDecode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      int hi = HexValue(in[i + 1]), lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

std::string HeaderVariableName(std::string_view header) {
  std::string name = "HTTP_";
  for (char c : header) {
    unsigned char u = static_cast<unsigned char>(c);
    name.push_back(std::isalnum(u) ? static_cast<char>(std::toupper(u)) : '_');
  }
  return name;
}

EnvList BuildCgiEnv(const RequestInfo& request, const RouteMatch& match, const EnvList& module_env,
                    const CgiSettings& settings) {
  EnvBuilder env;
  if (settings.global_env != nullptr) {
    for (const auto& [k, v] : *settings.global_env) env.Set(k, v);
  }
  for (const auto& [k, v] : module_env) env.Set(k, v);

  std::string content_type;
  std::string host_header;
  bool has_host = false;
  // Request headers, repeated ones joined with ", ".
  std::vector<std::pair<std::string, std::string>> header_vars;
  std::unordered_map<std::string, size_t> header_index;
  for (const auto& [name, value] : request.headers) {
    if (EqualsIgnoreCase(name, "content-type") && content_type.empty()) content_type = value;
    if (EqualsIgnoreCase(name, "host") && !has_host) {
      host_header = value;
      has_host = true;
    }
    if (EqualsIgnoreCase(name, "authorization") || EqualsIgnoreCase(name, "connection")) continue;
    std::string var = HeaderVariableName(name);
    auto [it, inserted] = header_index.emplace(var, header_vars.size());
    if (inserted) header_vars.emplace_back(var, value);
    else header_vars[it->second].second += ", " + value;
  }
  for (auto& [k, v] : header_vars) env.Set(k, std::move(v));

  std::string_view path = PathOf(request.target);
  std::string_view query = QueryOf(request.target);
  std::string server_name, server_port;
  if (has_host && !host_header.empty()) {
    std::tie(server_name, server_port) = SplitHostPort(host_header);
    if (server_port.empty()) server_port = std::to_string(request.local_port);
  } else {
    std::tie(server_name, server_port) = SplitHostPort(settings.default_host);
    if (server_port.empty()) server_port = std::to_string(request.local_port);
  }
  const std::string& matched = match.route->pattern;

  env.Set("AUTH_TYPE", "");
  env.Set("REMOTE_USER", "");
  env.Set("CONTENT_LENGTH", std::to_string(request.body_size));
  env.Set("CONTENT_TYPE", content_type);
  env.Set("GATEWAY_INTERFACE", "CGI/1.1");
  env.Set("SERVER_SOFTWARE", "WAGI/1");
  env.Set("SERVER_PROTOCOL", request.protocol);
  env.Set("REQUEST_METHOD", request.method);
  env.Set("QUERY_STRING", std::string(query));
  env.Set("REMOTE_ADDR", request.remote_addr);
  env.Set("REMOTE_HOST", request.remote_addr);
  env.Set("SCRIPT_NAME", match.script_name);
  std::string path_info = PercentDecode(match.raw_path_info);
  env.Set("PATH_INFO", path_info);
  env.Set("PATH_TRANSLATED", path_info);
  env.Set("X_RAW_PATH_INFO", match.raw_path_info);
  env.Set("X_MATCHED_ROUTE", matched);
  env.Set("SERVER_NAME", server_name);
  env.Set("SERVER_PORT", server_port);
  env.Set("X_FULL_URL", std::string(request.tls ? "https" : "http") + "://" + server_name + ":" +
                            server_port + std::string(path) +
                            (query.empty() ? "" : "?" + std::string(query)));
  return env.Take();
}

std::vector<std::string> BuildArgv(const RequestInfo& request,
                                   const std::optional<std::string>& argv_template) {
  std::string_view path = PathOf(request.target);
  std::string_view query = QueryOf(request.target);
  std::vector<std::string> args;
  if (!argv_template) {
    args.push_back(ValidUtf8(std::string(path)));
    if (!query.empty()) {
      size_t start = 0;
      while (true) {
        size_t amp = query.find('&', start);
        args.push_back(ValidUtf8(std::string(
            query.substr(start, amp == std::string_view::npos ? std::string_view::npos : amp - start))));
        if (amp == std::string_view::npos) break;
        start = amp + 1;
      }
    }
    return args;
  }
  std::string text = *argv_template;
  std::string args_value(query);
  for (char& c : args_value) {
    if (c == '&') c = ' ';
  }
  // Substitute both in one pass so a path containing "${ARGS}" is not expanded twice.
  std::string out;
  for (size_t i = 0; i < text.size();) {
    if (text.compare(i, 14, "${SCRIPT_NAME}") == 0) {
      out += path;
      i += 14;
    } else if (text.compare(i, 7, "${ARGS}") == 0) {
      out += args_value;
      i += 7;
    } else {
      out.push_back(text[i++]);
    }
  }
  size_t i = 0;
  while (i < out.size()) {
    while (i < out.size() && std::isspace(static_cast<unsigned char>(out[i]))) ++i;
    size_t start = i;
    while (i < out.size() && !std::isspace(static_cast<unsigned char>(out[i]))) ++i;
    if (i > start) args.push_back(ValidUtf8(out.substr(start, i - start)));
  }
  return args;
}

}  // namespace wasmlet::gateway
