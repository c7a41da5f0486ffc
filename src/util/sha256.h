// SHA-256 digests (OpenSSL), as raw hex and as OCI-style "sha256:<hex>".
// Thread-safe: no shared state.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace wasmlet {

// Incremental hasher for streamed data (pull verifies while downloading).
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  void Update(const void* data, size_t size);
  // Lowercase hex of the digest; the hasher may not be updated afterwards.
  std::string FinishHex();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

std::string Sha256Hex(std::string_view data);

// True for exactly 64 lowercase hex digits.
bool IsSha256Hex(std::string_view hex);

}  // namespace wasmlet
