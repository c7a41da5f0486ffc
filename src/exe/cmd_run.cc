// `wasmlet run` and `wasmlet compile`.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "exe/commands.h"
#include "oci/reference.h"
#include "oci/resolve.h"
#include "runtime/runtime.h"
#include "util/files.h"
#include "util/log.h"
#include "util/units.h"

namespace wasmlet::exe {
namespace {

namespace fs = std::filesystem;

// Exit codes of `run` for failures of the guest itself (peers: timeout(1) uses 124, a SIGABRT
// death 134, a SIGKILL (OOM) 137).
constexpr int kExitTrap = 134;
constexpr int kExitTimeout = 124;
constexpr int kExitMemory = 137;

std::string DefaultCacheDir() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  std::string base = xdg != nullptr && *xdg ? xdg : std::string(home != nullptr ? home : "/tmp") + "/.cache";
  return base + "/wasmlet/modules";
}

Result<std::pair<std::string, std::string>> ParseEnv(const std::string& kv, const std::string& where) {
  auto eq = kv.find('=');
  if (eq == std::string::npos || eq == 0) {
    return MakeError(Phase::kUsage, "expected NAME=VALUE, got '" + kv + "'", where);
  }
  return std::make_pair(kv.substr(0, eq), kv.substr(eq + 1));
}

// --env-file: NAME=VALUE lines; blank lines and # comments ignored.
Status ReadEnvFile(const std::string& path, std::vector<std::pair<std::string, std::string>>& env) {
  auto content = ReadFile(path);
  if (!content.ok()) return MakeError(Phase::kUsage, content.error().message, path);
  size_t line_no = 0, start = 0;
  while (start <= content->size()) {
    size_t end = content->find('\n', start);
    if (end == std::string::npos) end = content->size();
    std::string line = content->substr(start, end - start);
    ++line_no;
    start = end + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string::npos || line[first] == '#') continue;
    auto kv = ParseEnv(line.substr(first), path + ":" + std::to_string(line_no));
    if (!kv.ok()) return kv.take_error();
    env.push_back(*kv);
  }
  return OkStatus();
}

// --dir HOST[::GUEST][:ro]  (wasmtime's spelling is HOST::GUEST; ":ro" marks read-only).
Result<runtime::Preopen> ParseDir(std::string spec) {
  runtime::Preopen p;
  if (spec.size() > 3 && spec.compare(spec.size() - 3, 3, ":ro") == 0) {
    p.read_only = true;
    spec.resize(spec.size() - 3);
  }
  auto sep = spec.find("::");
  p.host_path = sep == std::string::npos ? spec : spec.substr(0, sep);
  p.guest_path = sep == std::string::npos ? spec : spec.substr(sep + 2);
  if (p.host_path.empty() || p.guest_path.empty()) {
    return MakeError(Phase::kUsage, "expected HOST[::GUEST][:ro], got '" + spec + "'", "--dir");
  }
  std::error_code ec;
  if (!fs::is_directory(p.host_path, ec)) {
    return MakeError(Phase::kUsage, "not a directory: " + p.host_path, "--dir");
  }
  return p;
}

struct RunOptions {
  std::string module;
  std::vector<std::string> dirs;
  std::vector<std::string> envs;
  std::vector<std::string> env_files;
  std::string invoke = "_start";
  std::string memory_limit;
  std::string timeout;
  std::string cache_dir;
  bool no_cache = false;
  std::string argv0;
};

int DoRun(const RunOptions& o, const std::vector<std::string>& guest_args) {
  runtime::InvokeRequest request;
  request.entrypoint = o.invoke;
  request.args.push_back(o.argv0.empty() ? fs::path(o.module).filename().string() : o.argv0);
  request.args.insert(request.args.end(), guest_args.begin(), guest_args.end());
  for (const auto& f : o.env_files) {
    if (auto s = ReadEnvFile(f, request.env); !s.ok()) return ReportError(s.error().ToString(), kExitUsage);
  }
  for (const auto& e : o.envs) {
    if (e.find('=') == std::string::npos) {
      // `--env NAME` passes the host's value through, like wasmtime and docker.
      const char* v = std::getenv(e.c_str());
      if (v == nullptr) return ReportError("usage error: --env: host variable '" + e + "' is not set", kExitUsage);
      request.env.emplace_back(e, v);
      continue;
    }
    auto kv = ParseEnv(e, "--env");
    if (!kv.ok()) return ReportError(kv.error().ToString(), kExitUsage);
    request.env.push_back(*kv);
  }
  for (const auto& d : o.dirs) {
    auto p = ParseDir(d);
    if (!p.ok()) return ReportError(p.error().ToString(), kExitUsage);
    request.preopens.push_back(*p);
  }
  if (!o.memory_limit.empty()) {
    auto bytes = ParseSize(o.memory_limit, Phase::kUsage);
    if (!bytes.ok()) return ReportError(bytes.error().ToString() + " (--memory-limit)", kExitUsage);
    request.limits.memory_bytes = *bytes;
  }
  if (!o.timeout.empty()) {
    auto ms = ParseDuration(o.timeout, Phase::kUsage);
    if (!ms.ok()) return ReportError(ms.error().ToString() + " (--timeout)", kExitUsage);
    request.limits.timeout = *ms;
  }
  request.stdin_mode = runtime::StdinMode::kInherit;
  request.stdout_mode = runtime::OutputMode::kInherit;
  request.stderr_mode = runtime::OutputMode::kInherit;

  runtime::RuntimeOptions options;
  options.cache_dir = o.no_cache ? "" : (o.cache_dir.empty() ? DefaultCacheDir() : o.cache_dir);
  options.max_instances = 2;
  if (request.limits.memory_bytes > options.max_memory_bytes) {
    options.max_memory_bytes = request.limits.memory_bytes;
  }
  auto rt = runtime::CreateWasmtimeRuntime(options);
  if (!rt.ok()) return ReportError(rt.error().ToString(), kExitFailure);

  std::string module_path = o.module;
  if (oci::HasOciPrefix(o.module)) {
    // `wasmlet run oci:REGISTRY/REPO:TAG`: pulled into the content store if missing.
    auto path = oci::ResolveToLocalPath(o.module, oci::PullOptions{});
    if (!path.ok()) {
      const Error& e = path.error();
      return ReportError(e.ToString(), e.phase == Phase::kUsage ? kExitUsage : kExitFailure);
    }
    module_path = *path;
  }
  std::error_code ec;
  if (!fs::exists(module_path, ec)) {
    return ReportError("usage error: " + o.module + ": no such file", kExitUsage);
  }
  auto module = (*rt)->LoadFile(module_path);
  if (!module.ok()) {
    const Error& e = module.error();
    return ReportError(e.ToString(), e.phase == Phase::kIo ? kExitUsage : kExitFailure);
  }
  if (!(*module)->HasFunctionExport(o.invoke)) {
    std::string known;
    for (const auto& name : (*module)->FunctionExports()) known += (known.empty() ? "" : ", ") + name;
    return ReportError("usage error: " + o.module + ": no exported function '" + o.invoke +
                           "' (exports: " + (known.empty() ? "none" : known) + ")",
                       kExitUsage);
  }
  std::fflush(stdout);
  auto result = (*module)->Invoke(request);
  if (!result.ok()) return ReportError(result.error().ToString(), kExitFailure);
  const auto& r = *result;
  switch (r.outcome) {
    case runtime::Outcome::kExited:
      return r.exit_code;
    case runtime::Outcome::kTimedOut:
      return ReportError(o.module + ": " + r.Describe() + " (--timeout)", kExitTimeout);
    case runtime::Outcome::kMemoryLimit:
      return ReportError(o.module + ": " + r.Describe() + " (--memory-limit)", kExitMemory);
    case runtime::Outcome::kCancelled:  // `run` passes no CancelToken; reported as a kill
      return ReportError(o.module + ": " + r.Describe(), kExitMemory);
    case runtime::Outcome::kTrapped:
    case runtime::Outcome::kStackOverflow:
    {
      // Long backtraces (deep recursion) are cut to the innermost frames.
      std::string trace;
      size_t lines = 0, pos = 0;
      while (pos < r.backtrace.size() && lines < 20) {
        size_t end = r.backtrace.find('\n', pos);
        if (end == std::string::npos) end = r.backtrace.size() - 1;
        trace.append(r.backtrace, pos, end - pos + 1);
        pos = end + 1;
        ++lines;
      }
      size_t total = static_cast<size_t>(std::count(r.backtrace.begin(), r.backtrace.end(), '\n'));
      if (total > lines) trace += "  ... " + std::to_string(total - lines) + " more frames\n";
      std::fprintf(stderr, "wasmlet: %s: %s\nwasm backtrace:\n%s", o.module.c_str(),
                   r.Describe().c_str(), trace.c_str());
      return kExitTrap;
    }
  }
  return kExitFailure;
}

const CommandRegistration kRun({
    .name = "run",
    .order = 10,
    .trailing_args_after_positional = true,
    .value_options = {"--dir", "--env", "-e", "--env-file", "--invoke", "--memory-limit",
                      "--timeout", "--module-cache", "--argv0", "--log-level"},
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto o = std::make_shared<RunOptions>();
          CLI::App* cmd = root.add_subcommand(
              "run",
              "Run a WASI command module (.wasm, .wat or a precompiled .cwasm).\n"
              "Nothing is granted by default: no directories, no environment.\n"
              "Arguments after MODULE are passed to the guest.");
          cmd->add_option("module", o->module, "Module file: .wasm, .wat, or from `wasmlet compile`")
              ->required();
          cmd->add_option("--dir", o->dirs,
                          "Preopen a host directory: HOST[::GUEST][:ro] (repeatable; :ro = read-only)");
          cmd->add_option("-e,--env", o->envs,
                          "Set a guest variable NAME=VALUE, or NAME to pass the host's value (repeatable)");
          cmd->add_option("--env-file", o->env_files, "Read NAME=VALUE lines from a file (repeatable)");
          cmd->add_option("--invoke", o->invoke, "Export to call (default _start)");
          cmd->add_option("--memory-limit", o->memory_limit, "Maximum linear memory, e.g. 64MiB");
          cmd->add_option("--timeout", o->timeout, "Wall-clock limit for guest code, e.g. 500ms, 2s");
          cmd->add_option("--module-cache", o->cache_dir,
                          "Compiled-module cache directory (default ~/.cache/wasmlet/modules)");
          cmd->add_flag("--no-cache", o->no_cache, "Do not read or write the compiled-module cache");
          cmd->add_option("--argv0", o->argv0, "argv[0] seen by the guest (default: the file name)");
          cmd->callback([o, &env] { env.exit_code = DoRun(*o, env.trailing_args); });
        },
});

struct CompileOptions {
  std::string module;
  std::string output;
};

int DoCompile(const CompileOptions& o) {
  runtime::RuntimeOptions options;
  options.max_instances = 1;
  auto rt = runtime::CreateWasmtimeRuntime(options);
  if (!rt.ok()) return ReportError(rt.error().ToString(), kExitFailure);
  auto bytes = ReadFile(o.module);
  if (!bytes.ok()) return ReportError("usage error: " + bytes.error().where + ": " + bytes.error().message, kExitUsage);
  std::string output = o.output;
  if (output.empty()) output = fs::path(o.module).replace_extension(".cwasm").string();
  auto artifact = (*rt)->Precompile(*bytes, fs::path(o.module).filename().string());
  if (!artifact.ok()) return ReportError(artifact.error().ToString(), kExitFailure);
  if (auto s = WriteFileAtomic(output, *artifact); !s.ok()) return ReportError(s.error().ToString(), kExitFailure);
  std::fprintf(stderr, "wasmlet: compiled %s -> %s (%zu bytes, %s)\n", o.module.c_str(), output.c_str(),
               artifact->size(), (*rt)->EngineDescription().c_str());
  return 0;
}

const CommandRegistration kCompile({
    .name = "compile",
    .order = 11,
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto o = std::make_shared<CompileOptions>();
          CLI::App* cmd = root.add_subcommand(
              "compile",
              "Compile a module ahead of time into a precompiled artifact for this wasmlet build.\n"
              "Artifacts are native code: run only artifacts you built or trust.");
          cmd->add_option("module", o->module, "Module file (.wasm or .wat)")->required();
          cmd->add_option("-o,--output", o->output, "Output file (default: MODULE with .cwasm)");
          cmd->callback([o, &env] { env.exit_code = DoCompile(*o); });
        },
});

}  // namespace
}  // namespace wasmlet::exe
