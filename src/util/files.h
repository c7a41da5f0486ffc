// Small file helpers with Result errors that name the path. Thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "util/result.h"

namespace wasmlet {

Result<std::string> ReadFile(const std::string& path);

// Writes to a temporary file beside `path`, fsyncs, then renames over `path`, so readers see
// either the old content or the whole new content, never a partial file (kill -9 safe).
Status WriteFileAtomic(const std::string& path, std::string_view content);

// mkdir -p
Status MakeDirs(const std::string& path);

}  // namespace wasmlet
