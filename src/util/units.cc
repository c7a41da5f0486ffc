#include "util/units.h"

#include <cstdint>

namespace wasmlet {

Result<uint64_t> ParseSize(const std::string& text, Phase phase) {
  size_t pos = 0;
  unsigned long long value = 0;
  try {
    value = std::stoull(text, &pos);
  } catch (...) {
    return MakeError(phase, "not a size: '" + text + "' (try 64MiB, 512M, 1G)");
  }
  std::string unit = text.substr(pos);
  while (!unit.empty() && unit.front() == ' ') unit.erase(0, 1);
  uint64_t mult = 1;
  if (unit.empty() || unit == "B") mult = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k" || unit == "KB") mult = 1ull << 10;
  else if (unit == "M" || unit == "MiB" || unit == "MB") mult = 1ull << 20;
  else if (unit == "G" || unit == "GiB" || unit == "GB") mult = 1ull << 30;
  else return MakeError(phase, "unknown size unit '" + unit + "' in '" + text + "'");
  if (value > UINT64_MAX / mult) return MakeError(phase, "size too large: '" + text + "'");
  return static_cast<uint64_t>(value) * mult;
}

Result<std::chrono::milliseconds> ParseDuration(const std::string& text, Phase phase) {
  size_t pos = 0;
  double value = 0;
  try {
    value = std::stod(text, &pos);
  } catch (...) {
    return MakeError(phase, "not a duration: '" + text + "' (try 500ms, 2s, 1m)");
  }
  std::string unit = text.substr(pos);
  double ms;
  if (unit.empty() || unit == "ms") ms = value;
  else if (unit == "s") ms = value * 1000;
  else if (unit == "m") ms = value * 60000;
  else return MakeError(phase, "unknown duration unit '" + unit + "' in '" + text + "'");
  if (ms < 0) return MakeError(phase, "negative duration '" + text + "'");
  // NaN, infinity and anything past the range of milliseconds do not convert ("1e100s").
  if (!(ms < 9.0e18)) return MakeError(phase, "duration too large: '" + text + "'");
  return std::chrono::milliseconds(static_cast<long long>(ms));
}

}  // namespace wasmlet
