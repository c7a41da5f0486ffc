#include "util/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <string>

namespace wasmlet {

bool SetLogLevel(std::string_view level) {
  auto parsed = spdlog::level::from_str(std::string(level));
  // from_str maps unknown names to "off"; only accept "off" when asked for.
  if (parsed == spdlog::level::off && level != "off") return false;
  spdlog::set_level(parsed);
  return true;
}

void InitLogging(std::string_view default_level) {
  static bool done = false;
  if (!done) {
    done = true;
    auto logger = spdlog::stderr_color_mt("wasmlet");
    spdlog::set_default_logger(logger);
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%eZ %^%l%$ %v", spdlog::pattern_time_type::utc);
  }
  const char* env = std::getenv("WASMLET_LOG");
  if (env == nullptr || !SetLogLevel(env)) SetLogLevel(default_level);
}

}  // namespace wasmlet
