#include "gateway/response.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "util/strings.h"

namespace wasmlet::gateway {
namespace {


std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool IsHopByHop(std::string_view name) {
  for (const char* h : {"connection", "keep-alive", "transfer-encoding", "upgrade", "trailer", "te",
                        "proxy-connection"}) {
    if (EqualsIgnoreCase(name, h)) return true;
  }
  return false;
}

std::string Hex(size_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%zx", n);
  return buf;
}

}  // namespace

const char* ReasonPhrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 418: return "I'm a teapot";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return status < 300 ? "OK" : status < 400 ? "Redirect" : status < 500 ? "Client Error" : "Server Error";
  }
}

bool IsValidHeaderName(std::string_view name) {
  if (name.empty()) return false;
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (std::isalnum(u)) continue;
    switch (c) {
      case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+': case '-':
      case '.': case '^': case '_': case '`': case '|': case '~':
        continue;
      default:
        return false;
    }
  }
  return true;
}

bool IsValidHeaderValue(std::string_view value) {
  for (char c : value) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u == '\t') continue;
    if (u < 0x20 || u == 0x7f) return false;
  }
  return true;
}

size_t CgiHeadParser::Feed(std::string_view data) {
  size_t used = 0;
  while (state_ == State::kHead && used < data.size()) {
    size_t nl = data.find('\n', used);
    if (nl == std::string_view::npos) {
      head_bytes_ += data.size() - used;
      partial_.append(data.substr(used));
      used = data.size();
      if (head_bytes_ > kMaxHeadBytes) {
        Fail(502, "module response header block is larger than 64 KiB or never ends (no blank line)");
      }
      break;
    }
    head_bytes_ += nl + 1 - used;
    if (head_bytes_ > kMaxHeadBytes) {
      Fail(502, "module response header block is larger than 64 KiB or never ends (no blank line)");
      used = nl + 1;
      break;
    }
    if (partial_.empty()) {
      Line(data.substr(used, nl - used));
    } else {
      partial_.append(data.substr(used, nl - used));
      std::string line = std::move(partial_);
      partial_.clear();
      Line(line);
    }
    used = nl + 1;
  }
  return used;
}

void CgiHeadParser::EndOfOutput() {
  if (state_ != State::kHead) return;
  if (!partial_.empty()) {
    std::string line = std::move(partial_);
    partial_.clear();
    Line(line);
  }
  if (state_ == State::kHead) Complete();
}

void CgiHeadParser::Line(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  if (line.empty()) {
    Complete();
    return;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) {
    warnings_.push_back("response header line without ':' skipped: '" +
                        std::string(line.substr(0, 80)) + "'");
    return;
  }
  std::string_view name = line.substr(0, colon);
  std::string_view value = Trim(line.substr(colon + 1));
  if (EqualsIgnoreCase(name, "status")) {
    has_status_ = true;
    auto space = value.find(' ');
    std::string_view code = value.substr(0, space);
    bool digits = code.size() == 3;
    for (char c : code) digits = digits && c >= '0' && c <= '9';
    int status = digits ? std::stoi(std::string(code)) : 0;
    if (status < 200 || status > 599) {
      Fail(502, "module sent an unparsable Status: '" + std::string(value.substr(0, 80)) + "'");
      return;
    }
    head_.status = status;
    std::string_view reason = space == std::string_view::npos ? std::string_view() : Trim(value.substr(space));
    head_.reason = IsValidHeaderValue(reason) ? std::string(reason) : std::string();
    return;
  }
  if (!IsValidHeaderName(name) || !IsValidHeaderValue(value)) {
    warnings_.push_back("invalid response header dropped: '" + std::string(line.substr(0, 80)) + "'");
    return;
  }
  if (EqualsIgnoreCase(name, "content-length")) {
    bool digits = !value.empty() && value.size() < 19;
    for (char c : value) digits = digits && c >= '0' && c <= '9';
    if (!digits) {
      warnings_.push_back("invalid Content-Length dropped: '" + std::string(value.substr(0, 40)) + "'");
      return;
    }
    head_.content_length = std::stoull(std::string(value));
    return;
  }
  if (IsHopByHop(name)) {
    warnings_.push_back("hop-by-hop response header dropped: '" + std::string(name) + "'");
    return;
  }
  if (EqualsIgnoreCase(name, "content-type")) has_content_type_ = true;
  if (EqualsIgnoreCase(name, "location")) has_location_ = true;
  head_.headers.emplace_back(std::string(name), std::string(value));
}

void CgiHeadParser::Complete() {
  if (!has_content_type_ && !has_status_ && !has_location_) {
    Fail(500, "module response has no Content-Type, Status or Location header "
              "(a WAGI module must print a header block and a blank line first)");
    return;
  }
  if (has_location_ && !has_status_) head_.status = 302;
  state_ = State::kBody;
}

void CgiHeadParser::Fail(int status, std::string message) {
  state_ = State::kError;
  error_status_ = status;
  error_ = std::move(message);
}

std::string SimpleResponse(int status, std::string_view content_type, std::string_view body,
                           bool keep_alive, const HeaderList& extra) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + ReasonPhrase(status) + "\r\n";
  if (!content_type.empty()) out += "Content-Type: " + std::string(content_type) + "\r\n";
  for (const auto& [k, v] : extra) out += k + ": " + v + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  out += body;
  return out;
}

TimerThread::TimerThread(std::chrono::milliseconds slack) : slack_(slack) {
  thread_ = std::thread([this] { Loop(); });
}

TimerThread::~TimerThread() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void TimerThread::After(std::chrono::milliseconds delay, std::function<void()> fn) {
  bool wake;
  {
    std::lock_guard lock(mu_);
    Entry e{Clock::now() + delay, seq_++, std::move(fn)};
    // Equal delays arrive in deadline order: the thread needs waking only for an earlier one.
    wake = heap_.empty() || e.deadline < heap_.front().deadline;
    heap_.push_back(std::move(e));
    std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
  }
  if (wake) cv_.notify_one();
}

void TimerThread::Loop() {
  std::unique_lock lock(mu_);
  while (!stop_) {
    if (heap_.empty()) {
      cv_.wait(lock);
      continue;
    }
    auto now = Clock::now();
    if (heap_.front().deadline > now) {
      cv_.wait_until(lock, heap_.front().deadline + slack_);
      continue;
    }
    std::vector<std::function<void()>> due;
    while (!heap_.empty() && heap_.front().deadline <= now) {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
      due.push_back(std::move(heap_.back().fn));
      heap_.pop_back();
    }
    lock.unlock();
    for (auto& fn : due) fn();
    lock.lock();
  }
}

ResponseWriter::ResponseWriter(std::shared_ptr<ResponseSink> sink, StreamSettings settings,
                               RequestFraming framing)
    : sink_(std::move(sink)), settings_(settings), framing_(framing) {}

void ResponseWriter::Start(Scheduler& scheduler) {
  std::weak_ptr<ResponseWriter> weak = weak_from_this();
  scheduler.After(settings_.hold_time, [weak] {
    if (auto self = weak.lock()) self->OnTimer();
  });
}

void ResponseWriter::OnTimer() {
  std::lock_guard lock(mu_);
  timer_fired_ = true;
  if (state_ == State::kHolding && parser_.state() == CgiHeadParser::State::kBody) CommitLocked(false);
}

bool ResponseWriter::OnOutput(std::string_view data) {
  {
    std::lock_guard lock(mu_);
    if (state_ == State::kDone) return false;
    if (state_ == State::kHolding) {
      size_t used = 0;
      if (parser_.state() == CgiHeadParser::State::kHead) used = parser_.Feed(data);
      if (parser_.state() == CgiHeadParser::State::kError) {
        CollectParserWarningsLocked();
        FailLocked(parser_.error_status(), parser_.error(), {});
        return false;
      }
      if (parser_.state() == CgiHeadParser::State::kBody) {
        held_body_.append(data.substr(used));
        if (held_body_.size() >= settings_.hold_bytes || timer_fired_) CommitLocked(false);
      }
      if (state_ == State::kHolding) return true;
    } else {
      SendBodyLocked(data);
    }
  }
  return sink_->WaitWritable();
}

void ResponseWriter::CollectParserWarningsLocked() {
  for (const auto& w : parser_.warnings()) warnings_.push_back(w);
}

void ResponseWriter::CommitLocked(bool complete) {
  CollectParserWarningsLocked();
  const ResponseHead& head = parser_.head();
  status_ = head.status;
  bool bodiless_status = head.status == 204 || head.status == 304;
  no_body_ = framing_.head_request || bodiless_status;
  std::string out = "HTTP/1.1 " + std::to_string(head.status) + " " +
                    (head.reason.empty() ? ReasonPhrase(head.status) : head.reason) + "\r\n";
  for (const auto& [k, v] : head.headers) out += k + ": " + v + "\r\n";
  bool close = !framing_.keep_alive;
  if (bodiless_status) {
    // No body and no length headers.
  } else if (complete) {
    if (head.content_length && *head.content_length != held_body_.size()) {
      warnings_.push_back("module's Content-Length " + std::to_string(*head.content_length) +
                          " replaced by the actual body length " + std::to_string(held_body_.size()));
    }
    out += "Content-Length: " + std::to_string(held_body_.size()) + "\r\n";
  } else if (head.content_length) {
    declared_length_ = head.content_length;
    out += "Content-Length: " + std::to_string(*head.content_length) + "\r\n";
  } else if (framing_.http10) {
    close_delimited_ = true;
    close = true;
  } else {
    chunked_ = true;
    out += "Transfer-Encoding: chunked\r\n";
  }
  if (close) out += "Connection: close\r\n";
  else if (framing_.http10) out += "Connection: keep-alive\r\n";  // HTTP/1.0 needs it said
  out += "\r\n";
  close_delimited_ = close;
  sink_->Send(std::move(out));
  state_ = State::kStreaming;
  streamed_ = !complete;
  std::string body = std::move(held_body_);
  held_body_.clear();
  SendBodyLocked(body);
}

void ResponseWriter::SendBodyLocked(std::string_view data) {
  if (data.empty()) return;
  if (declared_length_) {
    uint64_t remaining = *declared_length_ - std::min(*declared_length_, body_bytes_);
    if (data.size() > remaining) {
      if (!overflow_warned_) {
        overflow_warned_ = true;
        warnings_.push_back("module wrote more than its Content-Length; extra bytes dropped");
      }
      data = data.substr(0, remaining);
      if (data.empty()) return;
    }
  }
  body_bytes_ += data.size();
  if (no_body_) return;
  if (chunked_) {
    std::string chunk = Hex(data.size());
    chunk += "\r\n";
    chunk.append(data);
    chunk += "\r\n";
    sink_->Send(std::move(chunk));
  } else {
    sink_->Send(std::string(data));
  }
}

void ResponseWriter::FailLocked(int status, std::string_view reason, const HeaderList& extra) {
  status_ = status;
  std::string body = std::to_string(status) + " " + ReasonPhrase(status) + ": " + std::string(reason) + "\n";
  if (framing_.head_request) body.clear();
  HeaderList headers = extra;
  if (framing_.http10 && framing_.keep_alive) headers.emplace_back("Connection", "keep-alive");
  sink_->Send(SimpleResponse(status, "text/plain; charset=utf-8", body, framing_.keep_alive, headers));
  body_bytes_ = body.size();
  sink_->Complete(!framing_.keep_alive);
  state_ = State::kDone;
}

void ResponseWriter::Fail(int status, std::string_view reason, const HeaderList& extra) {
  std::lock_guard lock(mu_);
  if (state_ != State::kHolding) return;
  FailLocked(status, reason, extra);
}

void ResponseWriter::Finish(bool ok, int fail_status, std::string_view fail_reason) {
  std::lock_guard lock(mu_);
  if (state_ == State::kDone) return;
  if (state_ == State::kHolding) {
    if (!ok) {
      CollectParserWarningsLocked();
      FailLocked(fail_status, fail_reason, {});
      return;
    }
    parser_.EndOfOutput();
    if (parser_.state() == CgiHeadParser::State::kError) {
      CollectParserWarningsLocked();
      FailLocked(parser_.error_status(), parser_.error(), {});
      return;
    }
    CommitLocked(true);
    sink_->Complete(close_delimited_);
    state_ = State::kDone;
    return;
  }
  // Streaming: the head is gone already.
  state_ = State::kDone;
  if (!ok) {
    aborted_ = true;
    warnings_.push_back("module failed after the response began streaming; connection aborted");
    sink_->Abort();
    return;
  }
  if (declared_length_ && body_bytes_ < *declared_length_) {
    aborted_ = true;
    warnings_.push_back("module wrote less than its Content-Length; connection aborted");
    sink_->Abort();
    return;
  }
  if (chunked_ && !no_body_) sink_->Send("0\r\n\r\n");
  sink_->Complete(close_delimited_);
}

int ResponseWriter::status() const {
  std::lock_guard lock(mu_);
  return status_;
}
uint64_t ResponseWriter::body_bytes() const {
  std::lock_guard lock(mu_);
  return body_bytes_;
}
bool ResponseWriter::aborted() const {
  std::lock_guard lock(mu_);
  return aborted_;
}
bool ResponseWriter::streamed() const {
  std::lock_guard lock(mu_);
  return streamed_;
}
std::vector<std::string> ResponseWriter::TakeWarnings() {
  std::lock_guard lock(mu_);
  return std::move(warnings_);
}

}  // namespace wasmlet::gateway
