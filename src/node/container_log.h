// Per-container log files in the CRI line format ("<RFC3339Nano> <stream> <line>"), with a size
// cap and one rotated generation (<path>.1), read back for the kubelet API's /containerLogs.
//
// Threading: ContainerLog::Write may be called from the guest's thread while the kubelet API
// reads the files from another; writes are serialized by an internal mutex, readers only read.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

namespace wasmlet::node {

class ContainerLog {
 public:
  ContainerLog(std::string path, uint64_t max_bytes);
  ~ContainerLog();
  ContainerLog(const ContainerLog&) = delete;
  ContainerLog& operator=(const ContainerLog&) = delete;

  // Appends guest output of `stream` ("stdout" or "stderr"); complete lines are written at
  // once, a trailing partial line waits for its newline or Flush.
  void Write(std::string_view stream, std::string_view data);
  void Flush();
  const std::string& path() const { return path_; }

 private:
  void WriteLine(std::string_view stream, std::string_view line);
  std::string path_;
  uint64_t max_bytes_;
  std::mutex mu_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string partial_out_, partial_err_;
};

struct LogReadOptions {
  int64_t tail_lines = -1;   // -1: all
  int64_t limit_bytes = -1;  // -1: no limit
  bool timestamps = false;
  std::optional<std::chrono::system_clock::time_point> since;
};

// Reads a log written by ContainerLog (the rotated generation first) formatted for clients:
// the message part of each line, prefixed with its timestamp when asked. *end_offset receives
// the size of the current file read so far (to continue with ReadLogFrom when following).
std::string ReadLog(const std::string& path, const LogReadOptions& options, uint64_t* end_offset);

// Lines appended to `path` since `offset` (advanced); complete lines only. A file that shrank
// (rotated) is read from its start.
std::string ReadLogFrom(const std::string& path, uint64_t& offset, bool timestamps);

}  // namespace wasmlet::node
