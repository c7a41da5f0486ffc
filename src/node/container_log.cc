#include "node/container_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <deque>
#include <fstream>
#include <sstream>
#include <vector>

#include "node/kube_client.h"

namespace wasmlet::node {
namespace {

std::string NowNano() {
  auto now = std::chrono::system_clock::now();
  std::time_t tt = std::chrono::system_clock::to_time_t(now);
  auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count() % 1000000000;
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof out, "%s.%09lldZ", buf, static_cast<long long>(nanos));
  return out;
}

std::string ReadAll(const std::string& path, uint64_t from, uint64_t* size_out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (size_out) *size_out = 0;
    return "";
  }
  in.seekg(0, std::ios::end);
  uint64_t size = static_cast<uint64_t>(in.tellg());
  if (size_out) *size_out = size;
  if (from >= size) return "";
  in.seekg(static_cast<std::streamoff>(from));
  std::string data(size - from, '\0');
  in.read(data.data(), static_cast<std::streamsize>(data.size()));
  data.resize(static_cast<size_t>(in.gcount()));
  return data;
}

// "<ts> <stream> <msg>" -> formatted client line (with '\n').
bool FormatLine(std::string_view line, bool timestamps,
                const std::optional<std::chrono::system_clock::time_point>& since, std::string& out) {
  size_t sp1 = line.find(' ');
  if (sp1 == std::string_view::npos) return false;
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  std::string_view ts = line.substr(0, sp1);
  if (since) {
    auto t = ParseRfc3339(std::string(ts));
    if (t.ok() && *t < *since) return false;
  }
  if (timestamps) {
    out.append(ts);
    out.push_back(' ');
  }
  out.append(line.substr(sp2 + 1));
  out.push_back('\n');
  return true;
}

}  // namespace

ContainerLog::ContainerLog(std::string path, uint64_t max_bytes) : path_(std::move(path)), max_bytes_(max_bytes) {
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  struct stat st;
  if (fd_ >= 0 && ::fstat(fd_, &st) == 0) size_ = static_cast<uint64_t>(st.st_size);
}

ContainerLog::~ContainerLog() {
  Flush();
  if (fd_ >= 0) ::close(fd_);
}

void ContainerLog::WriteLine(std::string_view stream, std::string_view line) {
  if (fd_ < 0) return;
  std::string record = NowNano();
  record.push_back(' ');
  record.append(stream);
  record.push_back(' ');
  record.append(line);
  record.push_back('\n');
  if (max_bytes_ > 0 && size_ + record.size() > max_bytes_ && size_ > 0) {
    ::close(fd_);
    std::rename(path_.c_str(), (path_ + ".1").c_str());
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    size_ = 0;
    if (fd_ < 0) return;
  }
  ssize_t n = ::write(fd_, record.data(), record.size());
  if (n > 0) size_ += static_cast<uint64_t>(n);
}

void ContainerLog::Write(std::string_view stream, std::string_view data) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string& partial = stream == "stderr" ? partial_err_ : partial_out_;
  size_t start = 0;
  while (start < data.size()) {
    size_t nl = data.find('\n', start);
    if (nl == std::string_view::npos) {
      partial.append(data.substr(start));
      // Never hold more than 16 KiB of an unterminated line.
      if (partial.size() > 16384) {
        WriteLine(stream, partial);
        partial.clear();
      }
      return;
    }
    if (partial.empty()) {
      WriteLine(stream, data.substr(start, nl - start));
    } else {
      partial.append(data.substr(start, nl - start));
      WriteLine(stream, partial);
      partial.clear();
    }
    start = nl + 1;
  }
}

void ContainerLog::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!partial_out_.empty()) WriteLine("stdout", partial_out_);
  if (!partial_err_.empty()) WriteLine("stderr", partial_err_);
  partial_out_.clear();
  partial_err_.clear();
}

std::string ReadLog(const std::string& path, const LogReadOptions& options, uint64_t* end_offset) {
  std::string raw = ReadAll(path + ".1", 0, nullptr);
  raw += ReadAll(path, 0, end_offset);
  std::deque<std::string> lines;
  size_t start = 0;
  while (start < raw.size()) {
    size_t nl = raw.find('\n', start);
    if (nl == std::string::npos) break;
    std::string formatted;
    if (FormatLine(std::string_view(raw).substr(start, nl - start), options.timestamps, options.since, formatted)) {
      lines.push_back(std::move(formatted));
      if (options.tail_lines >= 0 && static_cast<int64_t>(lines.size()) > options.tail_lines) lines.pop_front();
    }
    start = nl + 1;
  }
  std::string out;
  for (auto& l : lines) out += l;
  if (options.limit_bytes >= 0 && static_cast<int64_t>(out.size()) > options.limit_bytes) {
    out.resize(static_cast<size_t>(options.limit_bytes));
  }
  return out;
}

std::string ReadLogFrom(const std::string& path, uint64_t& offset, bool timestamps) {
  uint64_t size = 0;
  std::string raw = ReadAll(path, offset, &size);
  if (size < offset) {
    offset = 0;
    raw = ReadAll(path, 0, &size);
  }
  std::string out;
  size_t start = 0;
  while (start < raw.size()) {
    size_t nl = raw.find('\n', start);
    if (nl == std::string::npos) break;
    FormatLine(std::string_view(raw).substr(start, nl - start), timestamps, std::nullopt, out);
    start = nl + 1;
  }
  offset += start;
  return out;
}

}  // namespace wasmlet::node
