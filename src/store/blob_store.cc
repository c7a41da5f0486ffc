#include "store/blob_store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "util/files.h"
#include "util/log.h"

namespace wasmlet::store {
namespace {

namespace fs = std::filesystem;

std::string HomeBased(const char* xdg_var, const char* fallback) {
  const char* xdg = std::getenv(xdg_var);
  if (xdg != nullptr && *xdg != '\0') return xdg;
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && *home != '\0' ? home : "/tmp") + fallback;
}

Error IoError(const std::string& what, const std::string& path) {
  return MakeError(Phase::kIo, what + ": " + std::strerror(errno), path);
}

// Holds flock(LOCK_EX) on a file for its lifetime.
class FileLock {
 public:
  static Result<FileLock> Acquire(const std::string& path, bool wait) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return IoError("cannot open lock file", path);
    for (;;) {
      if (::flock(fd, wait ? LOCK_EX : LOCK_EX | LOCK_NB) == 0) break;
      if (errno == EINTR) continue;
      Error e = IoError("cannot lock", path);
      ::close(fd);
      return e;
    }
    return FileLock(fd);
  }
  FileLock(FileLock&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileLock& operator=(FileLock&&) = delete;
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // releases the lock
  }

 private:
  explicit FileLock(int fd) : fd_(fd) {}
  int fd_;
};

}  // namespace

std::string DefaultDataDir() { return HomeBased("XDG_DATA_HOME", "/.local/share") + "/wasmlet"; }

std::string DefaultArtifactDir() {
  return HomeBased("XDG_CACHE_HOME", "/.cache") + "/wasmlet/modules";
}

Result<std::string> DigestHex(std::string_view digest) {
  constexpr std::string_view kPrefix = "sha256:";
  if (digest.substr(0, kPrefix.size()) != kPrefix) {
    return MakeError(Phase::kPull, "unsupported digest algorithm in '" + std::string(digest) +
                                       "' (only sha256 is supported)");
  }
  std::string_view hex = digest.substr(kPrefix.size());
  if (!IsSha256Hex(hex)) {
    return MakeError(Phase::kPull, "malformed digest '" + std::string(digest) +
                                       "' (want sha256: and 64 lowercase hex digits)");
  }
  return std::string(hex);
}

// ---- BlobWriter ----

BlobWriter::BlobWriter(std::string expected_hex, std::string tmp_path, std::string final_path,
                       int fd, std::optional<uint64_t> expected_size)
    : expected_hex_(std::move(expected_hex)),
      tmp_path_(std::move(tmp_path)),
      final_path_(std::move(final_path)),
      fd_(fd),
      expected_size_(expected_size),
      hasher_(std::make_unique<Sha256>()) {}

BlobWriter::~BlobWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

Status BlobWriter::Append(std::string_view data) {
  if (fd_ < 0) return MakeError(Phase::kInternal, "write after commit", tmp_path_);
  if (expected_size_ && written_ + data.size() > *expected_size_) {
    return MakeError(Phase::kPull,
                     "blob sha256:" + expected_hex_ + " is larger than the " +
                         std::to_string(*expected_size_) + " bytes its descriptor declares");
  }
  hasher_->Update(data);
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return IoError("write failed", tmp_path_);
    }
    done += static_cast<size_t>(n);
  }
  written_ += data.size();
  return OkStatus();
}

Status BlobWriter::Reset() {
  if (fd_ < 0) return MakeError(Phase::kInternal, "reset after commit", tmp_path_);
  if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
    return IoError("cannot truncate", tmp_path_);
  }
  written_ = 0;
  hasher_ = std::make_unique<Sha256>();
  return OkStatus();
}

Result<std::string> BlobWriter::Commit() {
  if (fd_ < 0) return MakeError(Phase::kInternal, "commit twice", tmp_path_);
  std::string got = hasher_->FinishHex();
  bool sync_ok = ::fsync(fd_) == 0;
  ::close(fd_);
  fd_ = -1;
  if (got != expected_hex_) {
    return MakeError(Phase::kPull, "content does not match its digest: expected sha256:" +
                                       expected_hex_ + ", got sha256:" + got +
                                       " (" + std::to_string(written_) + " bytes)");
  }
  if (expected_size_ && written_ != *expected_size_) {
    return MakeError(Phase::kPull, "blob sha256:" + expected_hex_ + " has " +
                                       std::to_string(written_) + " bytes, descriptor says " +
                                       std::to_string(*expected_size_));
  }
  if (!sync_ok) return IoError("fsync failed", tmp_path_);
  ::chmod(tmp_path_.c_str(), 0444);
  if (::rename(tmp_path_.c_str(), final_path_.c_str()) != 0) {
    return IoError("cannot rename into place", final_path_);
  }
  committed_ = true;
  return final_path_;
}

// ---- BlobStore ----

BlobStore::BlobStore(std::string root, std::vector<std::string> artifact_dirs)
    : root_(std::move(root)), artifact_dirs_(std::move(artifact_dirs)) {}

std::string BlobStore::BlobPath(std::string_view hex) const {
  return root_ + "/blobs/sha256/" + std::string(hex);
}

bool BlobStore::Has(std::string_view hex) const {
  return IsSha256Hex(hex) && ::access(BlobPath(hex).c_str(), F_OK) == 0;
}

Result<std::string> BlobStore::ReadBlob(std::string_view hex) const {
  if (!IsSha256Hex(hex)) return MakeError(Phase::kIo, "not a sha256 digest: " + std::string(hex));
  return ReadFile(BlobPath(hex));
}

Result<std::unique_ptr<BlobWriter>> BlobStore::BeginWrite(std::string_view hex,
                                                          std::optional<uint64_t> size) {
  if (!IsSha256Hex(hex)) return MakeError(Phase::kPull, "not a sha256 digest: " + std::string(hex));
  for (const char* sub : {"/blobs/sha256", "/tmp"}) {
    if (auto s = MakeDirs(root_ + sub); !s.ok()) return s.take_error();
  }
  static std::atomic<unsigned> counter{0};
  std::string tmp = root_ + "/tmp/" + std::string(hex) + "." + std::to_string(::getpid()) + "." +
                    std::to_string(counter.fetch_add(1));
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot create temp file", tmp);
  return std::unique_ptr<BlobWriter>(
      new BlobWriter(std::string(hex), tmp, BlobPath(hex), fd, size));
}

Result<std::string> BlobStore::Put(std::string_view bytes) {
  std::string hex = Sha256Hex(bytes);
  if (Has(hex)) return hex;
  auto writer = BeginWrite(hex, bytes.size());
  if (!writer.ok()) return writer.take_error();
  if (auto s = (*writer)->Append(bytes); !s.ok()) return s.take_error();
  if (auto p = (*writer)->Commit(); !p.ok()) return p.take_error();
  return hex;
}

Result<std::string> BlobStore::Ensure(std::string_view hex_view, std::optional<uint64_t> size,
                                      const Downloader& download) {
  std::string hex(hex_view);
  if (!IsSha256Hex(hex)) return MakeError(Phase::kPull, "not a sha256 digest: " + hex);
  if (Has(hex)) return BlobPath(hex);
  std::promise<Result<std::string>> promise;
  {
    std::unique_lock lock(mu_);
    auto it = in_flight_.find(hex);
    if (it != in_flight_.end()) {
      auto shared = it->second;
      lock.unlock();
      WLOG_DEBUG("waiting for the download of sha256:{} in progress", hex);
      return shared.get();
    }
    in_flight_.emplace(hex, promise.get_future().share());
  }
  Result<std::string> result = EnsureLocked(hex, size, download);
  promise.set_value(result);
  {
    std::lock_guard lock(mu_);
    in_flight_.erase(hex);
  }
  return result;
}

Result<std::string> BlobStore::EnsureLocked(const std::string& hex, std::optional<uint64_t> size,
                                            const Downloader& download) {
  if (auto s = MakeDirs(root_ + "/locks"); !s.ok()) return s.take_error();
  auto lock = FileLock::Acquire(root_ + "/locks/" + hex + ".lock", /*wait=*/true);
  if (!lock.ok()) return lock.take_error();
  // Another process may have finished the download while we waited for the lock.
  if (Has(hex)) return BlobPath(hex);
  // We hold the digest's lock: temp files for it are leftovers of a killed download.
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ + "/tmp", ec)) {
    if (entry.path().filename().string().rfind(hex + ".", 0) == 0) fs::remove(entry.path(), ec);
  }
  auto writer = BeginWrite(hex, size);
  if (!writer.ok()) return writer.take_error();
  if (auto s = download(**writer); !s.ok()) return s.take_error();
  return (*writer)->Commit();
}

std::string BlobStore::TagPath(const std::string& reference) const {
  return root_ + "/tags/" + Sha256Hex(reference) + ".json";
}

Status BlobStore::PutTag(const TagRecord& r) {
  if (auto s = MakeDirs(root_ + "/tags"); !s.ok()) return s;
  nlohmann::json j = {{"reference", r.reference},
                      {"manifest_digest", r.manifest_digest},
                      {"module_digest", r.module_digest},
                      {"config_media_type", r.config_media_type},
                      {"other_digests", r.other_digests},
                      {"module_size", r.module_size},
                      {"resolved_at", r.resolved_at}};
  return WriteFileAtomic(TagPath(r.reference), j.dump(2) + "\n");
}

namespace {
std::optional<TagRecord> ParseTag(const std::string& text) {
  auto j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  try {
    TagRecord r;
    r.reference = j.at("reference").get<std::string>();
    r.manifest_digest = j.at("manifest_digest").get<std::string>();
    r.module_digest = j.at("module_digest").get<std::string>();
    r.config_media_type = j.value("config_media_type", "");
    r.other_digests = j.value("other_digests", std::vector<std::string>{});
    r.module_size = j.value("module_size", uint64_t{0});
    r.resolved_at = j.value("resolved_at", int64_t{0});
    return r;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}
}  // namespace

std::optional<TagRecord> BlobStore::GetTag(const std::string& reference) const {
  auto text = ReadFile(TagPath(reference));
  if (!text.ok()) return std::nullopt;
  auto r = ParseTag(*text);
  if (!r || r->reference != reference) return std::nullopt;
  return r;
}

std::vector<TagRecord> BlobStore::ListTags() const {
  std::vector<TagRecord> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ + "/tags", ec)) {
    if (entry.path().extension() != ".json") continue;
    auto text = ReadFile(entry.path().string());
    if (!text.ok()) continue;
    if (auto r = ParseTag(*text)) {
      out.push_back(std::move(*r));
    } else {
      WLOG_WARN("ignoring unreadable tag record {}", entry.path().string());
    }
  }
  std::sort(out.begin(), out.end(),
            [](const TagRecord& a, const TagRecord& b) { return a.reference < b.reference; });
  return out;
}

Result<bool> BlobStore::RemoveTag(const std::string& reference) {
  std::string path = TagPath(reference);
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  return IoError("cannot remove tag record", path);
}

void BlobStore::RemoveArtifacts(std::string_view hex) const {
  std::string prefix = std::string(hex) + "-";
  for (const auto& dir : artifact_dirs_) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::string name = entry.path().filename().string();
      if (name.rfind(prefix, 0) == 0) {
        fs::remove(entry.path(), ec);
        WLOG_DEBUG("removed precompiled artifact {}", entry.path().string());
      }
    }
  }
}

Result<bool> BlobStore::RemoveBlob(std::string_view hex) {
  if (!IsSha256Hex(hex)) return MakeError(Phase::kIo, "not a sha256 digest: " + std::string(hex));
  std::string path = BlobPath(hex);
  RemoveArtifacts(hex);
  if (::unlink(path.c_str()) == 0) return true;
  if (errno == ENOENT) return false;
  return IoError("cannot remove blob", path);
}

std::vector<std::string> BlobStore::ReferencedBlobs() const {
  std::set<std::string> hexes;
  auto add = [&](const std::string& digest) {
    if (auto hex = DigestHex(digest); hex.ok()) hexes.insert(*hex);
  };
  for (const auto& tag : ListTags()) {
    add(tag.manifest_digest);
    add(tag.module_digest);
    for (const auto& d : tag.other_digests) add(d);
  }
  return {hexes.begin(), hexes.end()};
}

std::vector<std::string> BlobStore::ListBlobs() const {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ + "/blobs/sha256", ec)) {
    std::string name = entry.path().filename().string();
    if (IsSha256Hex(name)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

Result<PruneReport> BlobStore::Prune(bool all) {
  PruneReport report;
  if (all) {
    for (const auto& tag : ListTags()) {
      if (auto r = RemoveTag(tag.reference); !r.ok()) return r.take_error();
    }
  }
  auto referenced = ReferencedBlobs();
  std::set<std::string> keep(referenced.begin(), referenced.end());
  for (const auto& hex : ListBlobs()) {
    if (keep.count(hex)) continue;
    std::error_code ec;
    uint64_t size = fs::file_size(BlobPath(hex), ec);
    auto removed = RemoveBlob(hex);
    if (!removed.ok()) return removed.take_error();
    if (*removed) {
      report.removed_digests.push_back("sha256:" + hex);
      if (!ec) report.bytes_freed += size;
    }
  }
  // Temp files whose digest nobody is downloading right now are leftovers of killed pulls.
  if (auto s = MakeDirs(root_ + "/locks"); !s.ok()) return s.take_error();
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(root_ + "/tmp", ec)) {
    std::string name = entry.path().filename().string();
    std::string hex = name.substr(0, name.find('.'));
    if (!IsSha256Hex(hex)) continue;
    auto lock = FileLock::Acquire(root_ + "/locks/" + hex + ".lock", /*wait=*/false);
    if (!lock.ok()) continue;  // a download is in progress
    std::error_code rm_ec;
    if (fs::remove(entry.path(), rm_ec)) ++report.temp_files_removed;
  }
  return report;
}

}  // namespace wasmlet::store
