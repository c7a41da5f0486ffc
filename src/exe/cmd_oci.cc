// `wasmlet push`, `pull`, `images`, `rmi`, `prune`: modules as OCI artifacts (docs/oci.md).
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <iterator>
#include <set>

#include "exe/commands.h"
#include "oci/push.h"
#include "oci/resolve.h"
#include "store/blob_store.h"
#include "util/files.h"
#include "util/log.h"

namespace wasmlet::exe {
namespace {

namespace fs = std::filesystem;

struct RegistryFlags {
  std::string data_dir;
  std::vector<std::string> insecure;
  std::string username;
  bool password_stdin = false;
  bool quiet = false;
};

void AddRegistryFlags(CLI::App* cmd, RegistryFlags& f) {
  cmd->add_option("--insecure-registry", f.insecure,
                  "Allow plain HTTP to this HOST[:PORT] (repeatable; loopback is always allowed)");
  cmd->add_option("-u,--username", f.username, "Registry user name (password from --password-stdin)");
  cmd->add_flag("--password-stdin", f.password_stdin, "Read the registry password from stdin");
}

void AddDataDir(CLI::App* cmd, RegistryFlags& f) {
  cmd->add_option("--data-dir", f.data_dir,
                  "Store directory (default ${XDG_DATA_HOME:-~/.local/share}/wasmlet)");
}

int Fail(const Error& e) {
  return ReportError(e.ToString(), e.phase == Phase::kUsage ? kExitUsage : kExitFailure);
}

Result<std::optional<oci::Credentials>> ReadCredentials(const RegistryFlags& f) {
  if (f.password_stdin && f.username.empty()) {
    return MakeError(Phase::kUsage, "--password-stdin needs --username");
  }
  if (f.username.empty()) return std::optional<oci::Credentials>();
  if (!f.password_stdin) {
    return MakeError(Phase::kUsage, "--username needs --password-stdin (passwords are never taken "
                                    "from the command line)");
  }
  std::string password((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) password.pop_back();
  return std::optional<oci::Credentials>(oci::Credentials{f.username, password, {}});
}

std::string HumanBytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB"};
  int u = 0;
  while (bytes >= 1024 && u < 3) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, units[u]);
  return buf;
}

// Progress line on a terminal (stderr), nothing otherwise.
oci::ProgressFn MakeProgress(bool quiet) {
  if (quiet || !::isatty(2)) return nullptr;
  struct State {
    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
    std::chrono::steady_clock::time_point last;
    std::string digest;
  };
  auto state = std::make_shared<State>();
  return [state](const std::string& digest, uint64_t done, uint64_t total) {
    auto now = std::chrono::steady_clock::now();
    if (digest != state->digest) {
      state->digest = digest;
      state->start = now;
    }
    bool finished = total != 0 && done >= total;
    if (!finished && now - state->last < std::chrono::milliseconds(100)) return;
    state->last = now;
    double seconds = std::chrono::duration<double>(now - state->start).count();
    double rate = seconds > 0 ? static_cast<double>(done) / seconds : 0;
    std::fprintf(stderr, "\r%s  %s / %s  %s/s   ", digest.substr(0, 19).c_str(),
                 HumanBytes(static_cast<double>(done)).c_str(),
                 total ? HumanBytes(static_cast<double>(total)).c_str() : "?",
                 HumanBytes(rate).c_str());
    if (finished) std::fprintf(stderr, "\n");
    std::fflush(stderr);
  };
}

// ---- push ----

struct PushFlags : RegistryFlags {
  std::string module;
  std::string reference;
  bool legacy = false;
  std::string chunk_size = "16MiB";
};

Result<uint64_t> ParseBytes(const std::string& text) {
  size_t pos = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &pos);
  } catch (...) {
    return MakeError(Phase::kUsage, "not a size: '" + text + "'", "--chunk-size");
  }
  std::string unit = text.substr(pos);
  uint64_t mult = unit.empty() || unit == "B" ? 1
                  : unit == "K" || unit == "KiB" ? 1ull << 10
                  : unit == "M" || unit == "MiB" ? 1ull << 20
                  : unit == "G" || unit == "GiB" ? 1ull << 30 : 0;
  if (mult == 0) return MakeError(Phase::kUsage, "unknown unit in '" + text + "'", "--chunk-size");
  return static_cast<uint64_t>(v) * mult;
}

int DoPush(const PushFlags& f) {
  auto ref = oci::ParseReference(f.reference);
  if (!ref.ok()) return Fail(ref.error());
  if (!ref->digest.empty()) return ReportError("usage error: push needs REF with a tag, not a digest", kExitUsage);
  auto chunk = ParseBytes(f.chunk_size);
  if (!chunk.ok()) return Fail(chunk.error());
  auto wasm = ReadFile(f.module);
  if (!wasm.ok()) return ReportError("usage error: " + f.module + ": " + wasm.error().message, kExitUsage);
  auto creds = ReadCredentials(f);
  if (!creds.ok()) return Fail(creds.error());
  oci::DefaultCredentialOptions cred_options;
  cred_options.explicit_credentials = *creds;
  cred_options.explicit_registry = ref->registry;
  auto source = oci::MakeDefaultCredentialSource(cred_options);
  oci::ClientOptions options;
  options.insecure_registries = f.insecure;
  options.chunk_size = *chunk;
  options.progress = MakeProgress(f.quiet);
  oci::RegistryClient client(oci::DefaultTransport(), source.get(), options);
  oci::PushOptions push_options;
  push_options.legacy = f.legacy;
  push_options.title = fs::path(f.module).filename().string();
  auto pushed = oci::PushModule(client, *ref, *wasm, push_options);
  if (!pushed.ok()) {
    Error e = pushed.take_error();
    if (e.where.empty()) e.where = ref->String();
    return Fail(e);
  }
  if (!f.quiet) {
    std::fprintf(stderr, "wasmlet: pushed %s (module %s, %s, %s, %s layout)\n",
                 ref->Canonical().c_str(), pushed->module_digest.c_str(),
                 HumanBytes(static_cast<double>(pushed->size)).c_str(),
                 pushed->module_uploaded ? "uploaded" : "already in the registry",
                 f.legacy ? "legacy" : "CNCF");
  }
  std::printf("%s\n", pushed->manifest_digest.c_str());
  return 0;
}

const CommandRegistration kPush({
    .name = "push",
    .order = 40,
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto f = std::make_shared<PushFlags>();
          CLI::App* cmd = root.add_subcommand(
              "push",
              "Push a wasm module to an OCI registry as an artifact and print its manifest digest.\n"
              "REF is REGISTRY[:PORT]/REPO[:TAG]. Layout: CNCF wasm artifact "
              "(application/wasm), or --legacy (wasm-to-oci/Krustlet types).");
          cmd->add_option("module", f->module, "The .wasm file")->required();
          cmd->add_option("reference", f->reference, "REGISTRY[:PORT]/REPO[:TAG]")->required();
          cmd->add_flag("--legacy", f->legacy,
                        "Use the legacy media types (application/vnd.wasm.content.layer.v1+wasm)");
          cmd->add_option("--chunk-size", f->chunk_size,
                          "Upload blobs larger than this in chunks of this size (default 16MiB, 0 = never)");
          cmd->add_flag("-q,--quiet", f->quiet, "Print only the digest");
          AddRegistryFlags(cmd, *f);
          cmd->callback([f, &env] { env.exit_code = DoPush(*f); });
        },
});

// ---- pull ----

struct PullFlags : RegistryFlags {
  std::string reference;
  std::string policy = "always";
};

int DoPull(const PullFlags& f) {
  auto ref = oci::ParseReference(f.reference);
  if (!ref.ok()) return Fail(ref.error());
  auto policy = oci::ParsePullPolicy(f.policy);
  if (!policy.ok()) return Fail(policy.error());
  auto creds = ReadCredentials(f);
  if (!creds.ok()) return Fail(creds.error());
  oci::PullOptions options;
  options.policy = *policy;
  options.data_dir = f.data_dir;
  options.insecure_registries = f.insecure;
  options.credentials = *creds;
  options.progress = MakeProgress(f.quiet);
  auto pulled = oci::PullModule(f.reference, options);
  if (!pulled.ok()) return Fail(pulled.error());
  if (f.quiet) {
    std::printf("%s\n", pulled->path.c_str());
    return 0;
  }
  std::printf("Reference: %s\nDigest: %s\nModule: %s\nSize: %llu\nPath: %s\nStatus: %s\n",
              pulled->reference.c_str(), pulled->manifest_digest.c_str(),
              pulled->module_digest.c_str(), static_cast<unsigned long long>(pulled->size),
              pulled->path.c_str(), pulled->cached ? "up to date" : "downloaded");
  return 0;
}

const CommandRegistration kPull({
    .name = "pull",
    .order = 41,
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto f = std::make_shared<PullFlags>();
          CLI::App* cmd = root.add_subcommand(
              "pull",
              "Pull a wasm module from an OCI registry into the local store, verifying every digest.\n"
              "Prints the digests and the path of the module in the store.");
          cmd->add_option("reference", f->reference, "[oci:]REGISTRY[:PORT]/REPO[:TAG|@sha256:DIGEST]")
              ->required();
          cmd->add_option("--pull", f->policy,
                          "always (re-resolve the tag; default), missing (use the store if present), "
                          "never (store only)");
          cmd->add_flag("-q,--quiet", f->quiet, "Print only the path of the module; no progress");
          AddRegistryFlags(cmd, *f);
          AddDataDir(cmd, *f);
          cmd->callback([f, &env] { env.exit_code = DoPull(*f); });
        },
});

// ---- images ----

struct ImagesFlags {
  std::string data_dir;
  bool quiet = false;
  bool digests = false;
};

std::string FormatTime(int64_t unix_seconds) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int DoImages(const ImagesFlags& f) {
  store::BlobStore& store = oci::SharedStore(f.data_dir);
  auto tags = store.ListTags();
  if (f.quiet) {
    for (const auto& t : tags) std::printf("%s\n", t.reference.c_str());
    return 0;
  }
  auto shorten = [&](const std::string& d) { return f.digests ? d : d.substr(7, 12); };
  std::printf("%-50s  %-14s  %-14s  %10s  %s\n", "REFERENCE", "DIGEST", "MODULE", "SIZE", "PULLED");
  for (const auto& t : tags) {
    std::string hex = t.module_digest.size() > 7 ? t.module_digest.substr(7) : "";
    std::string size = store.Has(hex) ? HumanBytes(static_cast<double>(t.module_size)) : "missing";
    std::printf("%-50s  %-14s  %-14s  %10s  %s\n", t.reference.c_str(),
                shorten(t.manifest_digest).c_str(), shorten(t.module_digest).c_str(), size.c_str(),
                FormatTime(t.resolved_at).c_str());
  }
  return 0;
}

const CommandRegistration kImages({
    .name = "images",
    .order = 42,
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto f = std::make_shared<ImagesFlags>();
          CLI::App* cmd = root.add_subcommand("images", "List the modules pulled into the local store.");
          cmd->add_flag("-q,--quiet", f->quiet, "Print only the references");
          cmd->add_flag("--digests", f->digests, "Print full digests");
          cmd->add_option("--data-dir", f->data_dir,
                          "Store directory (default ${XDG_DATA_HOME:-~/.local/share}/wasmlet)");
          cmd->callback([f, &env] { env.exit_code = DoImages(*f); });
        },
});

// ---- rmi / prune ----

struct RemoveFlags {
  std::string data_dir;
  std::vector<std::string> references;
  bool all = false;
};

int DoRmi(const RemoveFlags& f) {
  store::BlobStore& store = oci::SharedStore(f.data_dir);
  std::set<std::string> candidates;
  int code = 0;
  for (const auto& text : f.references) {
    auto ref = oci::ParseReference(text);
    if (!ref.ok()) {
      code = Fail(ref.error());
      continue;
    }
    auto record = store.GetTag(ref->Canonical());
    if (!record) {
      code = ReportError("no such module in the store: " + ref->Canonical(), kExitFailure);
      continue;
    }
    if (auto r = store.RemoveTag(record->reference); !r.ok()) {
      code = Fail(r.error());
      continue;
    }
    candidates.insert(record->manifest_digest);
    candidates.insert(record->module_digest);
    candidates.insert(record->other_digests.begin(), record->other_digests.end());
    std::printf("Untagged: %s\n", record->reference.c_str());
  }
  // Blobs no remaining reference uses go with their precompiled artifacts.
  auto still = store.ReferencedBlobs();
  std::set<std::string> keep(still.begin(), still.end());
  for (const auto& digest : candidates) {
    auto hex = store::DigestHex(digest);
    if (!hex.ok() || keep.count(*hex)) continue;
    auto removed = store.RemoveBlob(*hex);
    if (!removed.ok()) {
      code = Fail(removed.error());
    } else if (*removed) {
      std::printf("Deleted: %s\n", digest.c_str());
    }
  }
  return code;
}

int DoPrune(const RemoveFlags& f) {
  store::BlobStore& store = oci::SharedStore(f.data_dir);
  auto report = store.Prune(f.all);
  if (!report.ok()) return Fail(report.error());
  for (const auto& d : report->removed_digests) std::printf("Deleted: %s\n", d.c_str());
  std::printf("Removed %zu blobs and %zu partial downloads, freed %s\n",
              report->removed_digests.size(), report->temp_files_removed,
              HumanBytes(static_cast<double>(report->bytes_freed)).c_str());
  return 0;
}

const CommandRegistration kRmi({
    .name = "rmi",
    .order = 43,
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto f = std::make_shared<RemoveFlags>();
          CLI::App* cmd = root.add_subcommand(
              "rmi",
              "Remove modules from the local store: the reference, and blobs (with their "
              "precompiled artifacts) no other reference uses.");
          cmd->add_option("references", f->references, "REGISTRY/REPO[:TAG|@DIGEST] ...")->required();
          cmd->add_option("--data-dir", f->data_dir,
                          "Store directory (default ${XDG_DATA_HOME:-~/.local/share}/wasmlet)");
          cmd->callback([f, &env] { env.exit_code = DoRmi(*f); });
        },
});

const CommandRegistration kPrune({
    .name = "prune",
    .order = 44,
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto f = std::make_shared<RemoveFlags>();
          CLI::App* cmd = root.add_subcommand(
              "prune",
              "Remove blobs no reference uses, their precompiled artifacts, and partial downloads "
              "left by interrupted pulls.");
          cmd->add_flag("-a,--all", f->all, "Remove every module: all references first");
          cmd->add_option("--data-dir", f->data_dir,
                          "Store directory (default ${XDG_DATA_HOME:-~/.local/share}/wasmlet)");
          cmd->callback([f, &env] { env.exit_code = DoPrune(*f); });
        },
});

}  // namespace
}  // namespace wasmlet::exe
