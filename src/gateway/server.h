// The HTTP/1.1 front end of the gateway on Boost.Beast: accepts connections (plain or TLS),
// reads requests with size limits and timeouts (keep-alive, pipelining handled one request at
// a time, chunked bodies, Expect: 100-continue), hands complete requests to Gateway::Handle and
// writes the responses it produces. At most max_connections are open at once (the rest wait in
// the listen backlog); accept failures such as EMFILE back off instead of spinning. Signals: SIGINT/SIGTERM stop gracefully, SIGHUP calls the
// reload hook.
//
// Threading: Run() starts io_threads I/O threads and returns after a graceful stop. Stop() and
// port() may be called from any thread. Sessions live on their own strands. The I/O threads
// are InlineRunners (util/blocking.h): the gateway runs quick guests on them, and a guest that
// blocks or runs long has a spare thread take its thread's place.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "gateway/gateway.h"
#include "util/result.h"

namespace wasmlet::gateway {

struct ServerOptions {
  std::string listen = "127.0.0.1:3000";  // HOST:PORT; port 0 = any free port
  size_t io_threads = 1;
  // Threads that stand in for I/O threads whose inline guest blocks or runs long; when all are
  // in use, new work waits for a guest to end.
  size_t max_spare_threads = 8;
  uint64_t max_body_bytes = 32ull << 20;  // 413 above
  uint32_t max_header_bytes = 64 * 1024;  // 431 above
  uint32_t max_header_count = 100;        // header fields per request; 431 above
  // Open connections at once; at the limit the server stops accepting (new connections wait
  // in the listen backlog) until one closes. 0 = derived from the file descriptor limit.
  size_t max_connections = 0;
  std::chrono::milliseconds header_timeout{10000};  // from the first byte to the end of the head
  std::chrono::milliseconds body_timeout{60000};    // reading the body
  std::chrono::milliseconds idle_timeout{60000};    // keep-alive connection with no request
  std::chrono::milliseconds write_timeout{60000};   // a client not reading its response
  std::chrono::milliseconds shutdown_grace{10000};  // in-flight requests at SIGTERM
  std::string tls_cert;  // PEM files; both or neither
  std::string tls_key;
  bool handle_signals = true;
  std::function<void()> on_reload;  // SIGHUP; runs on a thread of its own
  std::function<void(unsigned short port)> on_listening;
  // Runs first on every I/O thread (the gateway's warm-up of that thread).
  std::function<void()> on_io_thread_start;
};

// The max_connections used when the option is 0: three quarters of the (raised) soft limit
// on open files, at most 10000; the rest is left to guests, module files and logs.
size_t DefaultMaxConnections();

class Server {
 public:
  static Result<std::unique_ptr<Server>> Create(Gateway& gateway, ServerOptions options);
  virtual ~Server() = default;
  virtual unsigned short port() const = 0;
  virtual bool tls() const = 0;
  // Serves until Stop() or a signal; in-flight requests finish within shutdown_grace. False
  // when I/O threads were still running guest code a second after that: the caller should then
  // end the process without destroying the server.
  virtual bool Run() = 0;
  virtual void Stop() = 0;
};

}  // namespace wasmlet::gateway
