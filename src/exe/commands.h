// Subcommands of the `wasmlet` binary. Each cmd_*.cc file registers its commands with a static
// CommandRegistration, so adding a command never touches main.cc. main() builds the CLI11 app,
// lets each registration add its subcommand, parses, and returns the exit code the command set.
//
// Exit codes (documented in README): 0 success; the guest's own code for `run`; 1 runtime
// failure (compile error, trap reported as 134, timeout 124, memory limit 137 for `run`);
// 2 usage errors (bad flag, missing file, invalid reference).
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace wasmlet::exe {

inline constexpr int kExitUsage = 2;
inline constexpr int kExitFailure = 1;

struct CommandEnv {
  // Arguments after the module of a command with trailing guest arguments (`run`).
  std::vector<std::string> trailing_args;
  int exit_code = 0;
};

struct CommandSpec {
  std::string name;
  int order = 0;  // position in --help
  // For commands like `run MODULE [ARGS...]`: every token after the first positional belongs to
  // the guest. Lists the options that take a value so the split can skip their values.
  bool trailing_args_after_positional = false;
  std::vector<std::string> value_options;
  std::function<void(CLI::App& root, CommandEnv& env)> add;
};

struct CommandRegistration {
  explicit CommandRegistration(CommandSpec spec);
};

const std::vector<CommandSpec>& RegisteredCommands();

// Prints "wasmlet: <message>" to stderr and returns kExitUsage or kExitFailure.
int ReportError(const std::string& message, int code);

}  // namespace wasmlet::exe
