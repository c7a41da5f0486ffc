#include "util/result.h"

namespace wasmlet {

const char* PhaseName(Phase phase) {
  switch (phase) {
    case Phase::kUsage: return "usage";
    case Phase::kConfig: return "config";
    case Phase::kIo: return "io";
    case Phase::kPull: return "pull";
    case Phase::kCompile: return "compile";
    case Phase::kLink: return "link";
    case Phase::kInstantiate: return "instantiate";
    case Phase::kExecute: return "execute";
    case Phase::kHostCall: return "host call";
    case Phase::kNetwork: return "network";
    case Phase::kInternal: return "internal";
  }
  return "unknown";
}

std::string Error::ToString() const {
  std::string out = PhaseName(phase);
  out += " error: ";
  if (!where.empty()) {
    out += where;
    out += ": ";
  }
  out += message;
  return out;
}

}  // namespace wasmlet
