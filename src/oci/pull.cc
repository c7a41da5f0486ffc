#include "oci/pull.h"

#include <chrono>

#include <nlohmann/json.hpp>

#include "oci/json_util.h"
#include "oci/media_types.h"
#include "util/log.h"

namespace wasmlet::oci {
namespace {

Error PullError(const std::string& message, const std::string& where) {
  return MakeError(Phase::kPull, message, where);
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Descriptor {
  std::string media_type;
  std::string digest;
  uint64_t size = 0;
};

Result<Descriptor> ParseDescriptor(const nlohmann::json& j, const std::string& what,
                                   const std::string& where) {
  if (!j.is_object()) return PullError(what + " is not an object", where);
  Descriptor d;
  if (!j.contains("digest") || !j["digest"].is_string()) return PullError(what + " has no digest", where);
  d.digest = j["digest"];
  if (auto hex = store::DigestHex(d.digest); !hex.ok()) {
    return PullError(what + ": " + hex.error().message, where);
  }
  if (j.contains("mediaType") && j["mediaType"].is_string()) d.media_type = j["mediaType"];
  if (j.contains("size") && j["size"].is_number_unsigned()) d.size = j["size"];
  return d;
}

}  // namespace

namespace {
// A digest reference whose manifest (and layer) are already in the store, e.g. pulled by tag
// before: resolved without the network.
std::optional<store::TagRecord> ResolveLocally(const Reference& ref, store::BlobStore& store) {
  auto hex = store::DigestHex(ref.digest);
  if (!hex.ok()) return std::nullopt;
  auto bytes = store.ReadBlob(*hex);
  if (!bytes.ok()) return std::nullopt;
  auto json = nlohmann::json::parse(*bytes, nullptr, false);
  if (!json.is_object()) return std::nullopt;
  std::vector<std::string> other;
  std::string manifest_bytes = *bytes;
  if (IsIndex(StringField(json, "mediaType"))) {
    auto entry = SelectWasmEntry(*bytes, ref.Canonical());
    if (!entry.ok()) return std::nullopt;
    auto child_hex = store::DigestHex(*entry);
    if (!child_hex.ok()) return std::nullopt;
    auto child = store.ReadBlob(*child_hex);
    if (!child.ok()) return std::nullopt;
    other.push_back(*entry);
    manifest_bytes = *child;
  }
  auto wasm = ParseWasmManifest(manifest_bytes, ref.Canonical());
  if (!wasm.ok()) return std::nullopt;
  auto layer_hex = store::DigestHex(wasm->layer_digest);
  auto config_hex = store::DigestHex(wasm->config_digest);
  if (!layer_hex.ok() || !store.Has(*layer_hex) || !config_hex.ok() || !store.Has(*config_hex)) {
    return std::nullopt;
  }
  other.push_back(wasm->config_digest);
  return store::TagRecord{ref.Canonical(), ref.digest, wasm->layer_digest, wasm->config_media_type,
                          other, wasm->layer_size, Now()};
}
}  // namespace

Result<PullPolicy> ParsePullPolicy(const std::string& text) {
  if (text == "always") return PullPolicy::kAlways;
  if (text == "missing" || text == "if-not-present" || text == "IfNotPresent") return PullPolicy::kMissing;
  if (text == "never" || text == "Never") return PullPolicy::kNever;
  if (text == "Always") return PullPolicy::kAlways;
  return MakeError(Phase::kUsage, "unknown pull policy \"" + text + "\" (want always, missing or never)");
}

const char* PullPolicyName(PullPolicy policy) {
  switch (policy) {
    case PullPolicy::kAlways: return "always";
    case PullPolicy::kMissing: return "missing";
    case PullPolicy::kNever: return "never";
  }
  return "?";
}

Result<WasmManifest> ParseWasmManifest(const std::string& bytes, const std::string& where) {
  auto json = nlohmann::json::parse(bytes, nullptr, false);
  if (!json.is_object()) return PullError("manifest is not a JSON object", where);
  if (IntField(json, "schemaVersion", 0) != 2) {
    return PullError("unsupported manifest schemaVersion (want 2)", where);
  }
  if (!json.contains("config")) return PullError("manifest has no config", where);
  auto config = ParseDescriptor(json["config"], "manifest config", where);
  if (!config.ok()) return config.take_error();
  if (!IsWasmConfig(config->media_type)) {
    return PullError("not a wasm module: config media type is \"" + config->media_type +
                         "\" (want " + std::string(kWasmConfig) + " or " +
                         std::string(kWasmConfigLegacy) + ")",
                     where);
  }
  if (!json.contains("layers") || !json["layers"].is_array() || json["layers"].empty()) {
    return PullError("manifest has no layers", where);
  }
  if (json["layers"].size() != 1) {
    return PullError("wasm artifact has " + std::to_string(json["layers"].size()) +
                         " layers; exactly one wasm layer is supported",
                     where);
  }
  auto layer = ParseDescriptor(json["layers"][0], "manifest layer", where);
  if (!layer.ok()) return layer.take_error();
  if (!IsWasmLayer(layer->media_type)) {
    return PullError("not a wasm module: layer media type is \"" + layer->media_type + "\" (want " +
                         std::string(kWasmLayer) + " or " + std::string(kWasmLayerLegacy) + ")",
                     where);
  }
  WasmManifest m;
  m.config_digest = config->digest;
  m.config_media_type = config->media_type;
  m.config_size = config->size;
  m.layer_digest = layer->digest;
  m.layer_media_type = layer->media_type;
  m.layer_size = layer->size;
  return m;
}

Result<std::string> SelectWasmEntry(const std::string& bytes, const std::string& where) {
  auto json = nlohmann::json::parse(bytes, nullptr, false);
  if (!json.is_object() || !json.contains("manifests") || !json["manifests"].is_array()) {
    return PullError("index has no manifests list", where);
  }
  const auto& entries = json["manifests"];
  std::vector<std::string> seen;
  for (const auto& e : entries) {
    if (!e.is_object()) continue;
    std::string os, arch;
    if (e.contains("platform") && e["platform"].is_object()) {
      os = StringField(e["platform"], "os");
      arch = StringField(e["platform"], "architecture");
    }
    std::string artifact = StringField(e, "artifactType");
    bool wasm = arch == "wasm" || os == "wasi" || os == "wasip1" || os == "wasip2" ||
                IsWasmConfig(artifact) || IsWasmLayer(artifact);
    if (wasm) {
      auto d = ParseDescriptor(e, "index entry", where);
      if (!d.ok()) return d.take_error();
      return d->digest;
    }
    seen.push_back(os.empty() && arch.empty() ? std::string("(no platform)") : os + "/" + arch);
  }
  if (entries.size() == 1) {
    auto d = ParseDescriptor(entries[0], "index entry", where);
    if (!d.ok()) return d.take_error();
    return d->digest;
  }
  std::string list;
  for (const auto& s : seen) list += (list.empty() ? "" : ", ") + s;
  return PullError("index has no wasm entry (platforms: " + (list.empty() ? "none" : list) + ")", where);
}

Result<PullResult> Pull(const Reference& ref, PullPolicy policy, RegistryClient* client,
                        store::BlobStore& store) {
  const std::string canonical = ref.Canonical();
  auto from_record = [&](const store::TagRecord& record) -> std::optional<PullResult> {
    auto hex = store::DigestHex(record.module_digest);
    if (!hex.ok() || !store.Has(*hex)) return std::nullopt;
    return PullResult{canonical, record.manifest_digest, record.module_digest, store.BlobPath(*hex),
                      record.module_size, record.config_media_type, true};
  };
  auto record = store.GetTag(canonical);
  bool immutable = !ref.digest.empty();
  if (record && (immutable || policy != PullPolicy::kAlways)) {
    if (auto cached = from_record(*record)) return *cached;
  }
  if (immutable) {
    if (auto local = ResolveLocally(ref, store)) {
      if (auto s = store.PutTag(*local); !s.ok()) return s.take_error();
      if (auto cached = from_record(*local)) return *cached;
    }
  }
  if (policy == PullPolicy::kNever || client == nullptr) {
    return PullError("not in the local store and the pull policy is never", canonical);
  }

  // A tag that still points at what we have: one HEAD, no manifest or blob download.
  if (record && !immutable) {
    if (auto cached = from_record(*record)) {
      auto head = client->HeadManifest(ref, ref.Target());
      if (!head.ok()) return head.take_error();
      if (*head == record->manifest_digest) {
        record->resolved_at = Now();
        if (auto s = store.PutTag(*record); !s.ok()) return s.take_error();
        return *cached;
      }
    }
  }

  auto manifest = client->GetManifest(ref, ref.Target());
  if (!manifest.ok()) return manifest.take_error();
  const std::string top_digest = manifest->digest;
  std::vector<std::string> other_digests;
  std::vector<std::string> manifests_to_store = {manifest->bytes};
  if (IsIndex(manifest->media_type)) {
    auto entry = SelectWasmEntry(manifest->bytes, canonical);
    if (!entry.ok()) return entry.take_error();
    WLOG_DEBUG("index {} selects wasm manifest {}", top_digest, *entry);
    auto child = client->GetManifest(ref, *entry);
    if (!child.ok()) return child.take_error();
    if (IsIndex(child->media_type)) return PullError("nested image indexes are not supported", canonical);
    other_digests.push_back(child->digest);
    manifests_to_store.push_back(child->bytes);
    manifest = std::move(child);
  } else if (!IsImageManifest(manifest->media_type)) {
    return PullError("unsupported manifest media type \"" + manifest->media_type + "\"", canonical);
  }
  auto wasm = ParseWasmManifest(manifest->bytes, canonical);
  if (!wasm.ok()) return wasm.take_error();
  other_digests.push_back(wasm->config_digest);

  // A tag that still points at what we have needs no download.
  if (record && record->manifest_digest == top_digest) {
    if (auto cached = from_record(*record)) {
      record->resolved_at = Now();
      if (auto s = store.PutTag(*record); !s.ok()) return s.take_error();
      return *cached;
    }
  }

  for (const auto& bytes : manifests_to_store) {
    if (auto put = store.Put(bytes); !put.ok()) return put.take_error();
  }
  auto fetch = [&](const std::string& digest, uint64_t size) -> Result<std::string> {
    auto hex = store::DigestHex(digest);
    if (!hex.ok()) return hex.take_error();
    std::optional<uint64_t> expected;
    if (size > 0) expected = size;
    return store.Ensure(*hex, expected, [&](store::BlobWriter& writer) -> Status {
      return client->FetchBlob(ref, digest, size,
                               [&](std::string_view chunk) { return writer.Append(chunk); },
                               [&] { return writer.Reset(); });
    });
  };
  auto config_path = fetch(wasm->config_digest, wasm->config_size);
  if (!config_path.ok()) {
    Error e = config_path.take_error();
    e.message = "config " + wasm->config_digest + ": " + e.message;
    if (e.where.empty()) e.where = canonical;
    return e;
  }
  bool downloaded = !store.Has(store::DigestHex(wasm->layer_digest).value());
  auto layer_path = fetch(wasm->layer_digest, wasm->layer_size);
  if (!layer_path.ok()) {
    Error e = layer_path.take_error();
    e.message = "wasm layer " + wasm->layer_digest + ": " + e.message;
    if (e.where.empty()) e.where = canonical;
    return e;
  }
  store::TagRecord updated{canonical,           top_digest, wasm->layer_digest,
                           wasm->config_media_type, other_digests, wasm->layer_size, Now()};
  if (auto s = store.PutTag(updated); !s.ok()) return s.take_error();
  return PullResult{canonical, top_digest, wasm->layer_digest, *layer_path, wasm->layer_size,
                    wasm->config_media_type, !downloaded};
}

}  // namespace wasmlet::oci
