// Parsing of human-friendly sizes ("64MiB", "512M", "1G", "4096") and durations ("500ms",
// "2s", "1m", "1500" = ms), shared by the command line and the configuration loaders.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "util/result.h"

namespace wasmlet {

// Units: B, K/k/KB/KiB, M/MB/MiB, G/GB/GiB (all binary). Errors carry `phase`.
Result<uint64_t> ParseSize(const std::string& text, Phase phase = Phase::kConfig);
// Units: ms (default), s, m. Negative durations are errors.
Result<std::chrono::milliseconds> ParseDuration(const std::string& text, Phase phase = Phase::kConfig);

}  // namespace wasmlet
