// Result<T>: a value or an Error saying what failed, in which phase and where.
// Used by every layer; no exceptions cross layer boundaries for expected failures.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace wasmlet {

// The phase in which something failed; it is printed first in every message so operators can
// tell a bad config from a broken module from a failing registry at a glance.
enum class Phase {
  kUsage,        // command line
  kConfig,       // configuration files
  kIo,           // local files and directories
  kPull,         // registries
  kCompile,      // validating / compiling a module
  kLink,         // resolving imports
  kInstantiate,  // creating an instance (WASI context, preopens, start)
  kExecute,      // running guest code
  kHostCall,     // a host function called by the guest
  kNetwork,      // sockets and HTTP
  kInternal,
};

const char* PhaseName(Phase phase);

struct Error {
  Phase phase = Phase::kInternal;
  std::string message;  // what was wrong
  std::string where;    // file, module, route, URL... may be empty

  // "compile error: hello.wasm: invalid magic number"
  std::string ToString() const;
};

inline Error MakeError(Phase phase, std::string message, std::string where = {}) {
  return Error{phase, std::move(message), std::move(where)};
}

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : state_(std::in_place_index<0>, std::move(value)) {}  // NOLINT: implicit
  Result(Error error) : state_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return state_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { assert(ok()); return std::get<0>(state_); }
  const T& value() const& { assert(ok()); return std::get<0>(state_); }
  T&& value() && { assert(ok()); return std::get<0>(std::move(state_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const { assert(!ok()); return std::get<1>(state_); }
  Error&& take_error() { assert(!ok()); return std::get<1>(std::move(state_)); }

 private:
  std::variant<T, Error> state_;
};

struct Ok {};
using Status = Result<Ok>;
inline Status OkStatus() { return Ok{}; }

}  // namespace wasmlet
