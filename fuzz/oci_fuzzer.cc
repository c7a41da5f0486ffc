// Hostile registry input and user references: the first byte picks the parser, the rest is
// the input. Parsers must never crash; a reference that parses must re-parse to itself.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "oci/pull.h"
#include "oci/reference.h"
#include "oci/registry_client.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string input(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 5) {
    case 0: {
      auto ref = wasmlet::oci::ParseReference(input);
      if (ref.ok()) {
        auto again = wasmlet::oci::ParseReference(ref->String());
        if (!again.ok() || again->Canonical() != ref->Canonical()) std::abort();
      }
      break;
    }
    case 1:
      (void)wasmlet::oci::ParseChallenge(input);
      break;
    case 2:
      (void)wasmlet::oci::ResolveUrl("https://registry.example:5000/v2/a/blobs/uploads/", input);
      break;
    case 3:
      (void)wasmlet::oci::ParseWasmManifest(input, "fuzz");
      break;
    case 4:
      (void)wasmlet::oci::SelectWasmEntry(input, "fuzz");
      break;
  }
  return 0;
}
