// The module -> response half of the WAGI contract: an incremental parser of the CGI header
// block (CgiHeadParser) and the streaming state machine that turns guest stdout into an HTTP
// response (ResponseWriter): output is held back until the module ends or a bound is crossed
// (bytes or time), then the head goes out and the body streams, chunked when its length is
// unknown. A failure while holding becomes a clean 500/504; after streaming began it aborts
// the response (no final chunk).
//
// Threading: CgiHeadParser is single-threaded. ResponseWriter is thread-safe: OnOutput and
// Finish come from the worker running the guest, the hold timer from an I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wasmlet::gateway {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

struct ResponseHead {
  int status = 200;
  std::string reason;
  HeaderList headers;  // passed through in order (Content-Type, Location, Set-Cookie...)
  std::optional<uint64_t> content_length;  // from the module, if it sent a valid one
};

inline constexpr size_t kMaxHeadBytes = 64 * 1024;

class CgiHeadParser {
 public:
  enum class State { kHead, kBody, kError };

  // Consumes head bytes from `data`; returns how many belong to the head (the rest is body).
  size_t Feed(std::string_view data);
  // End of output before a blank line: whatever was written is the whole head.
  void EndOfOutput();

  State state() const { return state_; }
  const ResponseHead& head() const { return head_; }
  int error_status() const { return error_status_; }
  const std::string& error() const { return error_; }
  // Skipped lines and dropped headers, worded for the log.
  const std::vector<std::string>& warnings() const { return warnings_; }

 private:
  void Line(std::string_view line);
  void Complete();
  void Fail(int status, std::string message);

  State state_ = State::kHead;
  std::string partial_;
  size_t head_bytes_ = 0;
  ResponseHead head_;
  bool has_content_type_ = false;
  bool has_status_ = false;
  bool has_location_ = false;
  int error_status_ = 0;
  std::string error_;
  std::vector<std::string> warnings_;
};

const char* ReasonPhrase(int status);
bool IsValidHeaderName(std::string_view name);
bool IsValidHeaderValue(std::string_view value);

// A complete small response (errors, /healthz, /metrics).
std::string SimpleResponse(int status, std::string_view content_type, std::string_view body,
                           bool keep_alive, const HeaderList& extra = {});

// The connection side of one response, implemented by the HTTP server (and by tests).
class ResponseSink {
 public:
  virtual ~ResponseSink() = default;
  // Queues bytes for the socket, in call order; never blocks. Callable from any thread.
  virtual void Send(std::string bytes) = 0;
  // Blocks until the queued bytes drop below the sink's bound (back-pressure on the guest);
  // false once the client is gone.
  virtual bool WaitWritable() = 0;
  // The response is complete (after the queued bytes); keep the connection unless asked not to.
  virtual void Complete(bool close_connection) = 0;
  // The response failed after bytes went out: close the connection after the queued bytes.
  virtual void Abort() = 0;
};

// Runs callbacks later, on a thread where they must not block.
class Scheduler {
 public:
  virtual ~Scheduler() = default;
  virtual void After(std::chrono::milliseconds delay, std::function<void()> fn) = 0;
};

// One thread for all hold-back timers. Callbacks run up to `slack` late: expirations are
// batched so that thousands of short requests per second cost a heap push each, not a wakeup.
class TimerThread : public Scheduler {
 public:
  explicit TimerThread(std::chrono::milliseconds slack = std::chrono::milliseconds(5));
  ~TimerThread() override;
  void After(std::chrono::milliseconds delay, std::function<void()> fn) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Entry {
    Clock::time_point deadline;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Entry& o) const { return deadline != o.deadline ? deadline > o.deadline : seq > o.seq; }
  };
  void Loop();
  const std::chrono::milliseconds slack_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Entry> heap_;  // guarded by mu_; min-heap on deadline
  uint64_t seq_ = 0;         // guarded by mu_
  bool stop_ = false;        // guarded by mu_
  std::thread thread_;
};

struct StreamSettings {
  size_t hold_bytes = 64 * 1024;
  std::chrono::milliseconds hold_time{50};
};

struct RequestFraming {
  bool keep_alive = true;
  bool head_request = false;  // HEAD: never send body bytes
  bool http10 = false;        // no chunked encoding: close-delimited body instead
};

class ResponseWriter : public std::enable_shared_from_this<ResponseWriter> {
 public:
  ResponseWriter(std::shared_ptr<ResponseSink> sink, StreamSettings settings, RequestFraming framing);

  // Arms the hold timer; call when the module starts.
  void Start(Scheduler& scheduler);
  // Guest stdout. False tells the guest its write failed (client gone or response decided).
  bool OnOutput(std::string_view data);
  // The module ended. `ok` false: `fail_status` (500/504) and a reason for the body.
  void Finish(bool ok, int fail_status, std::string_view fail_reason);
  // Sends a complete error response now if nothing went out yet (e.g. queue full, no module).
  void Fail(int status, std::string_view reason, const HeaderList& extra = {});

  // For the access log; valid after Finish.
  int status() const;
  uint64_t body_bytes() const;
  bool aborted() const;
  bool streamed() const;
  std::vector<std::string> TakeWarnings();

 private:
  enum class State { kHolding, kStreaming, kDone };
  void OnTimer();
  void CommitLocked(bool complete);
  void SendBodyLocked(std::string_view data);
  void FailLocked(int status, std::string_view reason, const HeaderList& extra);
  void CollectParserWarningsLocked();

  const std::shared_ptr<ResponseSink> sink_;
  const StreamSettings settings_;
  const RequestFraming framing_;

  mutable std::mutex mu_;
  State state_ = State::kHolding;  // guarded by mu_
  CgiHeadParser parser_;           // guarded by mu_
  std::string held_body_;          // guarded by mu_
  bool timer_fired_ = false;       // guarded by mu_
  bool chunked_ = false;           // guarded by mu_
  bool close_delimited_ = false;   // guarded by mu_
  bool no_body_ = false;           // guarded by mu_
  std::optional<uint64_t> declared_length_;  // guarded by mu_
  int status_ = 0;                 // guarded by mu_
  uint64_t body_bytes_ = 0;        // guarded by mu_
  bool aborted_ = false;           // guarded by mu_
  bool streamed_ = false;          // guarded by mu_
  bool overflow_warned_ = false;   // guarded by mu_
  std::vector<std::string> warnings_;  // guarded by mu_
};

}  // namespace wasmlet::gateway
