// Content-addressed blob store and tag cache for modules pulled from registries.
//
// Layout under the data directory (default ${XDG_DATA_HOME:-~/.local/share}/wasmlet):
//   blobs/sha256/<hex>     verified content (wasm layers, manifests, configs); read-only
//   tmp/<hex>.<pid>.<n>    downloads in progress; renamed into blobs/ only after the digest
//                          matched, so a kill -9 never leaves a partial blob in place
//   locks/<hex>.lock       flock(2) held while one process downloads <hex>
//   tags/<sha256(ref)>.json one record per reference: resolved manifest digest, module digest, time
//
// Threading: a BlobStore may be shared by any number of threads. Concurrent Ensure() calls for
// one digest share a single download: inside a process through an in-flight table (mutex), across
// processes through the per-digest file lock (the later process finds the blob present).
// Precompiled artifacts (runtime cache dir, "<hex>-<fingerprint>.cwasm") follow their blob's
// lifetime: removing a blob removes them.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "util/result.h"
#include "util/sha256.h"

namespace wasmlet::store {

// ${XDG_DATA_HOME:-$HOME/.local/share}/wasmlet
std::string DefaultDataDir();
// ${XDG_CACHE_HOME:-$HOME/.cache}/wasmlet/modules: where `wasmlet run` keeps precompiled artifacts.
std::string DefaultArtifactDir();

// "sha256:<hex>" -> "<hex>"; an error naming the digest if it is not a sha256 digest.
Result<std::string> DigestHex(std::string_view digest);

// Streams one blob into a temp file while hashing it. Commit() checks the digest and size, then
// renames the file into place; destroying an uncommitted writer deletes the temp file.
class BlobWriter {
 public:
  ~BlobWriter();
  BlobWriter(const BlobWriter&) = delete;
  BlobWriter& operator=(const BlobWriter&) = delete;

  Status Append(std::string_view data);
  uint64_t bytes_written() const { return written_; }
  // Returns the final path. Fails (and removes the temp file) if the content does not match.
  Result<std::string> Commit();
  // Drops everything written so far (a retried download starts again).
  Status Reset();

 private:
  friend class BlobStore;
  BlobWriter(std::string expected_hex, std::string tmp_path, std::string final_path, int fd,
             std::optional<uint64_t> expected_size);
  std::string expected_hex_;
  std::string tmp_path_;
  std::string final_path_;
  int fd_ = -1;
  std::optional<uint64_t> expected_size_;
  uint64_t written_ = 0;
  std::unique_ptr<Sha256> hasher_;
  bool committed_ = false;
};

// What a reference resolved to when it was last pulled.
struct TagRecord {
  std::string reference;        // canonical "registry/repo:tag" or "registry/repo@sha256:..."
  std::string manifest_digest;  // "sha256:..."
  std::string module_digest;    // the wasm layer, "sha256:..."
  std::string config_media_type;
  // Other blobs this reference keeps alive: the config, the platform manifest of an index.
  std::vector<std::string> other_digests;
  uint64_t module_size = 0;
  int64_t resolved_at = 0;      // unix seconds
};

struct PruneReport {
  std::vector<std::string> removed_digests;  // "sha256:..."
  uint64_t bytes_freed = 0;
  size_t temp_files_removed = 0;
};

class BlobStore {
 public:
  // `artifact_dirs`: directories of precompiled artifacts to clean with their blobs.
  explicit BlobStore(std::string root, std::vector<std::string> artifact_dirs = {});

  const std::string& root() const { return root_; }
  std::string BlobPath(std::string_view hex) const;
  bool Has(std::string_view hex) const;
  Result<std::string> ReadBlob(std::string_view hex) const;

  // Starts writing a blob whose content must hash to `hex` (and have `size` bytes if given).
  Result<std::unique_ptr<BlobWriter>> BeginWrite(std::string_view hex,
                                                 std::optional<uint64_t> size = std::nullopt);
  // Stores bytes already in memory; returns the hex digest.
  Result<std::string> Put(std::string_view bytes);

  // Makes sure blob `hex` is present, calling `download` at most once across all concurrent
  // callers (threads and processes) for that digest; returns the blob path. `download` must
  // Append the content to the writer; Ensure commits it. Returns at once if present.
  using Downloader = std::function<Status(BlobWriter&)>;
  Result<std::string> Ensure(std::string_view hex, std::optional<uint64_t> size,
                             const Downloader& download);

  // Tag cache.
  Status PutTag(const TagRecord& record);
  std::optional<TagRecord> GetTag(const std::string& reference) const;
  std::vector<TagRecord> ListTags() const;
  // Removes the tag record; false if there was none.
  Result<bool> RemoveTag(const std::string& reference);

  // Removes one blob and its precompiled artifacts; false if absent.
  Result<bool> RemoveBlob(std::string_view hex);
  // Removes blobs that no tag record references (manifests, configs and modules of tags are
  // kept), plus stale temp files. With `all`, removes every tag record first.
  Result<PruneReport> Prune(bool all = false);
  // Digests referenced by tags (manifest + config + module), as hex.
  std::vector<std::string> ReferencedBlobs() const;
  // Every blob present, as hex.
  std::vector<std::string> ListBlobs() const;

 private:
  Result<std::string> EnsureLocked(const std::string& hex, std::optional<uint64_t> size,
                                   const Downloader& download);
  std::string TagPath(const std::string& reference) const;
  void RemoveArtifacts(std::string_view hex) const;

  std::string root_;
  std::vector<std::string> artifact_dirs_;
  std::mutex mu_;
  // Downloads in flight in this process, by hex digest. GUARDED_BY(mu_)
  std::map<std::string, std::shared_future<Result<std::string>>> in_flight_;
};

}  // namespace wasmlet::store
