// Process-wide logging on spdlog: one line per event, to stderr. Thread-safe.
// Levels: trace, debug, info, warn, error. Set with SetLogLevel or WASMLET_LOG.
#pragma once

#include <spdlog/spdlog.h>

#include <string_view>

namespace wasmlet {

// Sets up the default logger ("[time] [level] message" on stderr) and applies WASMLET_LOG.
void InitLogging(std::string_view default_level = "info");
bool SetLogLevel(std::string_view level);

namespace detail {
// spdlog creates its registry on first use, in a function-local static inside the shared
// libspdlog. Touching it during static initialisation (single-threaded, before main) means no
// two threads ever race to create it, and TSan, which cannot see the uninstrumented library's
// guard, has nothing to report.
inline const bool kLogRegistryReady = (::spdlog::default_logger_raw(), true);
}  // namespace detail

}  // namespace wasmlet

#define WLOG_TRACE(...) SPDLOG_TRACE(__VA_ARGS__)
#define WLOG_DEBUG(...) ::spdlog::debug(__VA_ARGS__)
#define WLOG_INFO(...) ::spdlog::info(__VA_ARGS__)
#define WLOG_WARN(...) ::spdlog::warn(__VA_ARGS__)
#define WLOG_ERROR(...) ::spdlog::error(__VA_ARGS__)
