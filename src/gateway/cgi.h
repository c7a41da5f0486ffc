// The request -> module half of the WAGI contract: CGI environment, argv and the helpers they
// need. Pure functions over plain data so every rule is unit-testable.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gateway/router.h"

namespace wasmlet::gateway {

using EnvList = std::vector<std::pair<std::string, std::string>>;

// What the server knows about one request, independent of the HTTP library.
struct RequestInfo {
  std::string method;
  std::string target;             // raw request-target: path?query
  std::string protocol = "HTTP/1.1";
  std::vector<std::pair<std::string, std::string>> headers;  // in arrival order
  size_t body_size = 0;
  std::string remote_addr;
  unsigned short local_port = 0;  // the port the request arrived on
  bool tls = false;
  bool keep_alive = true;
};

struct CgiSettings {
  std::string default_host = "localhost:3000";  // --hostname
  const EnvList* global_env = nullptr;           // -e / --env-file
};

std::string_view PathOf(std::string_view target);
std::string_view QueryOf(std::string_view target);  // without '?'; empty if none
// %XX decoding; invalid escapes are kept as written. '+' is not a space in paths.
std::string PercentDecode(std::string_view in);
// "HTTP_" + uppercase, '-' and other non-alphanumerics -> '_'.
std::string HeaderVariableName(std::string_view header);

// Lowest to highest precedence: global, the module's environment, the CGI variables.
EnvList BuildCgiEnv(const RequestInfo& request, const RouteMatch& match, const EnvList& module_env,
                    const CgiSettings& settings);

// Without a template: [path, query items split on '&']. With one: ${SCRIPT_NAME} -> the full
// request path, ${ARGS} -> the query with '&' -> ' ', then split on whitespace.
std::vector<std::string> BuildArgv(const RequestInfo& request,
                                   const std::optional<std::string>& argv_template);

}  // namespace wasmlet::gateway
