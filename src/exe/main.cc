// main(): parse the command line, hand over to the registered command. Nothing else.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "exe/commands.h"
#include "runtime/runtime.h"
#include "util/log.h"

namespace wasmlet::exe {

namespace {
std::vector<CommandSpec>& Registry() {
  static std::vector<CommandSpec> registry;
  return registry;
}

// Splits `wasmlet [global] CMD [options] POSITIONAL rest...` so that `rest` goes to the guest.
std::vector<std::string> SplitTrailing(std::vector<std::string>& args, const CommandSpec& spec,
                                       size_t command_index) {
  for (size_t i = command_index + 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") {
      // `run [OPTIONS] -- MODULE ARGS...` and `run [OPTIONS] MODULE -- ARGS` both work.
      args.erase(args.begin() + static_cast<long>(i));
      if (i < args.size()) {
        std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1, args.end());
        args.resize(i + 1);
        return rest;
      }
      return {};
    }
    if (a.size() > 1 && a[0] == '-') {
      bool has_inline_value = a.find('=') != std::string::npos;
      if (!has_inline_value &&
          std::find(spec.value_options.begin(), spec.value_options.end(), a) !=
              spec.value_options.end()) {
        ++i;  // skip the option's value
      }
      continue;
    }
    // First positional: the module. Everything after it belongs to the guest, except a
    // leading `--` separator.
    std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1, args.end());
    args.resize(i + 1);
    if (!rest.empty() && rest.front() == "--") rest.erase(rest.begin());
    return rest;
  }
  return {};
}
}  // namespace

CommandRegistration::CommandRegistration(CommandSpec spec) { Registry().push_back(std::move(spec)); }

const std::vector<CommandSpec>& RegisteredCommands() { return Registry(); }

int ReportError(const std::string& message, int code) {
  std::fprintf(stderr, "wasmlet: %s\n", message.c_str());
  return code;
}

int Main(int argc, char** argv) {
  InitLogging("info");
  std::vector<std::string> args(argv, argv + argc);
  std::vector<CommandSpec> specs = Registry();
  std::sort(specs.begin(), specs.end(),
            [](const CommandSpec& a, const CommandSpec& b) { return a.order < b.order; });

  CommandEnv env;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i].empty() || args[i][0] == '-') continue;
    for (const auto& spec : specs) {
      if (spec.name == args[i] && spec.trailing_args_after_positional) {
        env.trailing_args = SplitTrailing(args, spec, i);
      }
    }
    break;  // only the first non-option token can be the command
  }

  CLI::App app{"wasmlet: run WebAssembly the cloud native way (WASI, WAGI, OCI, Kubernetes)",
               "wasmlet"};
  app.require_subcommand(1);
  app.set_version_flag("-V,--version",
                       std::string("wasmlet ") + WASMLET_VERSION + " (wasmtime " +
                           runtime::WasmtimeVersion() + ")");
  std::string log_level;
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error (or WASMLET_LOG)")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.parse_complete_callback([&] {
    if (!log_level.empty()) SetLogLevel(log_level);
  });
  for (const auto& spec : specs) spec.add(app, env);

  std::vector<const char*> cargs;
  for (auto& a : args) cargs.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(cargs.size()), cargs.data());
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::fprintf(stderr, "wasmlet: %s\nRun 'wasmlet --help' (or 'wasmlet COMMAND --help').\n",
                 e.what());
    return kExitUsage;
  }
  return env.exit_code;
}

}  // namespace wasmlet::exe

int main(int argc, char** argv) { return wasmlet::exe::Main(argc, argv); }
