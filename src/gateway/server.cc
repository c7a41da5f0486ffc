#include "gateway/server.h"
#include "gateway/http_request.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <sys/resource.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <vector>

#include "util/blocking.h"
#include "util/log.h"

namespace wasmlet::gateway {

RequestInfo RequestInfoOf(const boost::beast::http::request<boost::beast::http::string_body>& req) {
  RequestInfo info;
  info.method = std::string(req.method_string());
  info.target = std::string(req.target());
  info.protocol = req.version() == 10 ? "HTTP/1.0" : "HTTP/1.1";
  for (const auto& field : req) {
    info.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  info.body_size = req.body().size();
  info.keep_alive = req.keep_alive();
  return info;
}

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;

// What the response side (SessionSink) may ask of a session; everything is posted to the
// session's strand.
class SessionSink;

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  // Moves what `sink` has queued to the socket, on the session's strand.
  virtual void PostFlush(std::shared_ptr<SessionSink> sink) = 0;
  virtual void PostDrain() = 0;
};

struct Shared {
  Shared(Gateway& g, ServerOptions o) : gateway(g), options(std::move(o)) {}
  Gateway& gateway;
  const ServerOptions options;
  std::atomic<bool> draining{false};
  std::atomic<int> sessions{0};
  // Set while the accept loop waits for a connection to close (max_connections reached); the
  // last session to close below the limit calls resume_accept.
  std::atomic<bool> accept_paused{false};
  std::function<void()> resume_accept;
  std::mutex mu;
  std::unordered_map<SessionBase*, std::weak_ptr<SessionBase>> live;  // guarded by mu
};

// The ResponseSink of one request. Bytes and the completion are collected here and handed to
// the session in as few strand posts as possible (a small response and its completion travel
// in one); queued bytes are counted for back-pressure on the guest.
class SessionSink : public ResponseSink, public std::enable_shared_from_this<SessionSink> {
 public:
  explicit SessionSink(std::shared_ptr<SessionBase> session) : session_(std::move(session)) {}

  void Send(std::string bytes) override {
    bool post;
    {
      std::lock_guard lock(mu_);
      if (gone_) return;
      pending_ += bytes.size();
      outbox_.push_back(std::move(bytes));
      post = !scheduled_;
      scheduled_ = true;
    }
    if (post) session_->PostFlush(shared_from_this());
  }
  bool WaitWritable() override {
    std::unique_lock lock(mu_);
    if (gone_ || pending_ < kMaxPending) return !gone_;
    // A guest run inline on an I/O thread: its other clients go to a spare thread, and its
    // flush, held for the end of the job, is posted now (InlineRunner::AfterJob).
    lock.unlock();
    MarkBlocking();
    lock.lock();
    cv_.wait(lock, [this] { return gone_ || pending_ < kMaxPending; });
    return !gone_;
  }
  void Complete(bool close_connection) override {
    bool post;
    {
      std::lock_guard lock(mu_);
      complete_ = true;
      close_ = close_ || close_connection;
      post = !scheduled_;
      scheduled_ = true;
    }
    if (post) session_->PostFlush(shared_from_this());
  }
  void Abort() override { Complete(true); }

  // From the session's strand.
  void Take(std::vector<std::string>& out, bool& complete, bool& close) {
    std::lock_guard lock(mu_);
    for (auto& b : outbox_) out.push_back(std::move(b));
    outbox_.clear();
    complete = complete_;
    close = close_;
    scheduled_ = false;
  }
  void Written(size_t n) {
    {
      std::lock_guard lock(mu_);
      pending_ -= std::min(n, pending_);
    }
    cv_.notify_all();
  }
  void Gone() {
    {
      std::lock_guard lock(mu_);
      gone_ = true;
      outbox_.clear();
    }
    cv_.notify_all();
  }

 private:
  static constexpr size_t kMaxPending = 256 * 1024;
  const std::shared_ptr<SessionBase> session_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> outbox_;  // guarded by mu_
  size_t pending_ = 0;               // guarded by mu_
  bool scheduled_ = false;           // guarded by mu_
  bool complete_ = false;            // guarded by mu_
  bool close_ = false;               // guarded by mu_
  bool gone_ = false;                // guarded by mu_
};

bool IEquals(beast::string_view a, beast::string_view b) { return beast::iequals(a, b); }

const std::string kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

template <class Stream>
class Session : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

 public:
  Session(Shared& shared, Stream stream, std::string remote, unsigned short local_port)
      : shared_(shared),
        stream_(std::move(stream)),
        remote_(std::move(remote)),
        local_port_(local_port) {
    shared_.sessions.fetch_add(1);
  }
  ~Session() override {
    {
      std::lock_guard lock(shared_.mu);
      shared_.live.erase(this);
    }
    shared_.sessions.fetch_sub(1);
    if (shared_.accept_paused.load() && !shared_.draining.load()) shared_.resume_accept();
  }

  void Start() {
    {
      std::lock_guard lock(shared_.mu);
      shared_.live[this] = this->weak_from_this();
    }
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] { self->Begin(); });
  }

  void PostFlush(std::shared_ptr<SessionSink> sink) override {
    auto flush = [self = this->shared_from_this(), sink = std::move(sink)] { self->Flush(sink); };
    // From a guest run inline: the flush enters the strand on this thread once the job ends
    // (no other thread woken), or is posted at once if the job blocks first.
    if (InlineRunner* runner = InlineRunner::Current()) {
      std::function<void()> later = [ex = stream_.get_executor(), flush]() mutable {
        net::dispatch(ex, std::move(flush));
      };
      if (runner->AfterJob(std::move(later))) return;
    }
    net::post(stream_.get_executor(), std::move(flush));
  }
  void PostDrain() override {
    net::post(stream_.get_executor(), [self = this->shared_from_this()] {
      if (!self->in_request_) self->DoClose();
    });
  }

 private:
  auto& Lowest() { return beast::get_lowest_layer(stream_); }

  void Begin() {
    if constexpr (kTls) {
      Lowest().expires_after(shared_.options.header_timeout);
      reading_ = true;
      stream_.async_handshake(ssl::stream_base::server, buffer_.data(),
                              [self = this->shared_from_this()](beast::error_code ec, size_t used) {
                                self->reading_ = false;
                                if (self->closed_) return;
                                if (ec) {
                                  WLOG_DEBUG("{}: TLS handshake failed: {}", self->remote_, ec.message());
                                  self->closed_ = true;
                                  return;
                                }
                                self->buffer_.consume(used);
                                self->DoRead();
                              });
    } else {
      DoRead();
    }
  }

  void DoRead() {
    if (closed_) return;
    if (shared_.draining.load()) {
      DoClose();
      return;
    }
    parser_.emplace();
    parser_->header_limit(shared_.options.max_header_bytes);
    parser_->body_limit(shared_.options.max_body_bytes);
    if (buffer_.size() == 0) {
      // Idle keep-alive connection: wait for the first byte with the idle timeout.
      Lowest().expires_after(shared_.options.idle_timeout);
      reading_ = true;
      stream_.async_read_some(buffer_.prepare(16 * 1024),
                              [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                                self->reading_ = false;
                                if (ec || self->closed_) {
                                  self->DoClose();
                                  return;
                                }
                                self->buffer_.commit(n);
                                self->ReadHeader();
                              });
    } else {
      ReadHeader();
    }
  }

  void ReadHeader() {
    Lowest().expires_after(shared_.options.header_timeout);
    reading_ = true;
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              self->reading_ = false;
                              if (self->closed_) return;
                              self->OnHeader(ec);
                            });
  }

  void OnHeader(beast::error_code ec) {
    if (ec == http::error::header_limit) {
      ErrorAndClose(431, "request header too large");
      return;
    }
    if (ec == http::error::body_limit) {  // a Content-Length over the limit
      ErrorAndClose(413, "request body larger than " + std::to_string(shared_.options.max_body_bytes) + " bytes");
      return;
    }
    if (ec == beast::error::timeout) {
      // A client too slow to send its head (slowloris) loses the connection.
      WLOG_DEBUG("{}: no complete request head within {} ms; closing", remote_,
                 shared_.options.header_timeout.count());
      DoClose();
      return;
    }
    if (ec == http::error::end_of_stream || ec == net::error::eof ||
        ec == net::error::operation_aborted || ec == net::error::connection_reset) {
      DoClose();
      return;
    }
    if (ec) {
      ErrorAndClose(400, "bad request: " + ec.message());
      return;
    }
    size_t fields = 0;
    for (auto it = parser_->get().begin(); it != parser_->get().end(); ++it) ++fields;
    if (fields > shared_.options.max_header_count) {
      ErrorAndClose(431, "more than " + std::to_string(shared_.options.max_header_count) + " header fields");
      return;
    }
    auto length = parser_->content_length();
    if (length && *length > shared_.options.max_body_bytes) {
      ErrorAndClose(413, "request body larger than " + std::to_string(shared_.options.max_body_bytes) + " bytes");
      return;
    }
    in_request_ = true;
    const auto& req = parser_->get();
    if (req.version() >= 11 && IEquals(req[http::field::expect], "100-continue") && !parser_->is_done()) {
      Lowest().expires_after(shared_.options.write_timeout);
      net::async_write(stream_, net::buffer(kContinue),
                       [self = this->shared_from_this()](beast::error_code wec, size_t) {
                         if (wec) {
                           self->DoClose();
                           return;
                         }
                         self->ReadBody();
                       });
      return;
    }
    ReadBody();
  }

  void ReadBody() {
    if (parser_->is_done()) {
      OnRequest();
      return;
    }
    Lowest().expires_after(shared_.options.body_timeout);
    reading_ = true;
    http::async_read(stream_, buffer_, *parser_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      self->reading_ = false;
      if (self->closed_) return;
      if (ec == http::error::body_limit) {
        self->ErrorAndClose(413, "request body larger than " +
                                     std::to_string(self->shared_.options.max_body_bytes) + " bytes");
        return;
      }
      if (ec == beast::error::timeout || ec == http::error::partial_message || ec == net::error::eof ||
          ec == net::error::connection_reset || ec == net::error::operation_aborted) {
        self->DoClose();
        return;
      }
      if (ec) {
        self->ErrorAndClose(400, "bad request body: " + ec.message());
        return;
      }
      self->OnRequest();
    });
  }

  void OnRequest() {
    Lowest().expires_never();
    auto req = parser_->release();
    parser_.reset();
    RequestInfo info = RequestInfoOf(req);
    info.remote_addr = remote_;
    info.local_port = local_port_;
    info.tls = kTls;
    info.keep_alive = info.keep_alive && !shared_.draining.load();
    close_after_ = !info.keep_alive;
    complete_pending_ = false;
    sink_ = std::make_shared<SessionSink>(this->shared_from_this());
    shared_.gateway.Handle(std::move(info), std::move(req.body()), sink_);
  }

  void ErrorAndClose(int status, const std::string& message) {
    WLOG_INFO("{} \"- - -\" {} {} ({})", remote_, status, 0, message);
    in_request_ = true;
    close_after_ = true;
    complete_pending_ = true;
    QueueWrite(SimpleResponse(status, "text/plain; charset=utf-8",
                              std::to_string(status) + " " + ReasonPhrase(status) + ": " + message + "\n",
                              false));
  }

  void Flush(const std::shared_ptr<SessionSink>& sink) {
    if (sink != sink_) return;  // a response that already ended
    bool complete = false, close = false;
    sink->Take(queue_, complete, close);
    if (closed_) {
      sink->Gone();
      return;
    }
    if (complete) {
      complete_pending_ = true;
      close_after_ = close_after_ || close;
    }
    if (!writing_) WriteNext();
  }

  void QueueWrite(std::string bytes) {
    if (closed_) {
      if (sink_) sink_->Gone();
      return;
    }
    queue_.push_back(std::move(bytes));
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (queue_.empty()) {
      writing_ = false;
      if (complete_pending_) FinishResponse();
      return;
    }
    writing_ = true;
    inflight_.clear();
    std::swap(inflight_, queue_);
    buffers_.clear();
    size_t total = 0;
    for (const auto& s : inflight_) {
      buffers_.emplace_back(net::buffer(s));
      total += s.size();
    }
    Lowest().expires_after(shared_.options.write_timeout);
    net::async_write(stream_, buffers_, [self = this->shared_from_this(), total](beast::error_code ec, size_t) {
      self->OnWrite(ec, total);
    });
  }

  void OnWrite(beast::error_code ec, size_t total) {
    if (ec) {
      WLOG_DEBUG("{}: write failed: {}", remote_, ec.message());
      writing_ = false;
      queue_.clear();
      inflight_.clear();
      DoClose();
      return;
    }
    inflight_.clear();
    if (sink_) sink_->Written(total);
    WriteNext();
  }

  void FinishResponse() {
    complete_pending_ = false;
    sink_.reset();
    in_request_ = false;
    if (closed_) return;
    if (close_after_ || shared_.draining.load()) {
      DoClose();
    } else {
      Lowest().expires_never();
      DoRead();
    }
  }

  void DoClose() {
    if (closed_) return;
    closed_ = true;
    if (sink_) {
      sink_->Gone();
      sink_.reset();
    }
    if (reading_) {
      // Closed while a read is pending (a drain at shutdown, between requests): no response is
      // in flight, so close at once; the read ends with operation_aborted. (A second read, as
      // the linger below would start, must not run beside it.)
      beast::error_code ignored;
      Lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
      Lowest().socket().close(ignored);
      return;
    }
    if constexpr (kTls) {
      Lowest().expires_after(std::chrono::seconds(2));
      stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
        beast::error_code ignored;
        self->Lowest().socket().close(ignored);
      });
    } else {
      // Half-close, then drain what the client still sends (an unread body) for a moment so
      // the close does not turn into a reset that destroys the response in flight.
      beast::error_code ignored;
      Lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
      Linger(std::chrono::steady_clock::now() + std::chrono::seconds(2));
    }
  }

  void Linger(std::chrono::steady_clock::time_point until) {
    Lowest().expires_at(until);
    Lowest().async_read_some(net::buffer(discard_), [self = this->shared_from_this(), until](beast::error_code ec, size_t) {
      if (ec) {
        beast::error_code ignored;
        self->Lowest().socket().close(ignored);
        return;
      }
      self->Linger(until);
    });
  }

  Shared& shared_;
  Stream stream_;
  const std::string remote_;
  const unsigned short local_port_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<SessionSink> sink_;
  std::vector<std::string> queue_;
  std::vector<std::string> inflight_;
  std::vector<net::const_buffer> buffers_;
  char discard_[4096];
  bool writing_ = false;
  bool complete_pending_ = false;
  bool close_after_ = false;
  bool in_request_ = false;
  bool closed_ = false;
  bool reading_ = false;  // a read of the request is pending
};

// The I/O threads run the accept loop and the sessions, and also run guests inline for apps the
// gateway knows to be quick (InlineRunner, util/blocking.h). A guest that blocks or runs long
// marks its thread blocked; a parked or new spare thread then takes its place, so that
// io_threads threads keep serving. When the guest ends, a surplus thread parks again.
class ServerImpl : public Server, public InlineRunner {
 public:

  ServerImpl(Gateway& gateway, ServerOptions options)
      : shared_(gateway, std::move(options)),
        accept_strand_(net::make_strand(io_)),
        acceptor_(accept_strand_),
        signals_(accept_strand_) {
    shared_.resume_accept = [this] { net::post(accept_strand_, [this] { MaybeAccept(); }); };
  }

  ~ServerImpl() override {
    // Sessions destroyed with io_ below must not try to resume the accept loop.
    shared_.draining = true;
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    for (auto& t : reload_threads_) {
      if (t.joinable()) t.join();
    }
  }

  Status Init() {
    const auto& o = shared_.options;
    // Connections, guests' files and module files all need descriptors: use what the hard
    // limit allows (as Go and nginx do), up to 2^20.
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
      rlim_t want = std::min<rlim_t>(rl.rlim_max, rlim_t{1} << 20);
      if (rl.rlim_cur < want) {
        rl.rlim_cur = want;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
      }
    }
    if (o.tls_cert.empty() != o.tls_key.empty()) {
      return MakeError(Phase::kUsage, "--tls-cert and --tls-key must be given together");
    }
    if (!o.tls_cert.empty()) {
      ssl_.emplace(ssl::context::tls_server);
      ssl_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                        ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
      beast::error_code ec;
      ssl_->use_certificate_chain_file(o.tls_cert, ec);
      if (ec) return MakeError(Phase::kConfig, "cannot load TLS certificate: " + ec.message(), o.tls_cert);
      ssl_->use_private_key_file(o.tls_key, ssl::context::pem, ec);
      if (ec) return MakeError(Phase::kConfig, "cannot load TLS key: " + ec.message(), o.tls_key);
    }
    std::string host = o.listen, port = "3000";
    auto colon = o.listen.rfind(':');
    if (colon != std::string::npos && o.listen.find(']', colon) == std::string::npos) {
      host = o.listen.substr(0, colon);
      port = o.listen.substr(colon + 1);
    }
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
    if (host.empty()) host = "0.0.0.0";
    beast::error_code ec;
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(host, port, tcp::resolver::passive, ec);
    if (ec || results.empty()) {
      return MakeError(Phase::kUsage, "cannot resolve listen address: " + ec.message(), o.listen);
    }
    tcp::endpoint endpoint = results.begin()->endpoint();
    acceptor_.open(endpoint.protocol(), ec);
    if (!ec) acceptor_.set_option(net::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(endpoint, ec);
    if (!ec) acceptor_.listen(net::socket_base::max_listen_connections, ec);
    if (ec) return MakeError(Phase::kNetwork, "cannot listen: " + ec.message(), o.listen);
    port_ = acceptor_.local_endpoint().port();
    max_connections_ = o.max_connections != 0 ? o.max_connections : DefaultMaxConnections();
    WLOG_DEBUG("at most {} connections at once", max_connections_);
    return OkStatus();
  }

  unsigned short port() const override { return port_; }
  bool tls() const override { return ssl_.has_value(); }

  bool Run() override {
    net::post(accept_strand_, [this] { MaybeAccept(); });
    if (shared_.options.handle_signals) {
      signals_.add(SIGINT);
      signals_.add(SIGTERM);
      signals_.add(SIGHUP);
      WaitSignal();
    }
    if (shared_.options.on_listening) shared_.options.on_listening(port_);
    std::unique_lock lock(mu_);
    for (size_t i = 0; i < target_; ++i) StartThreadLocked();
    active_ = target_;
    // Until the io_context stops, then a last second for threads still in a guest (the
    // shutdown grace period has passed by then).
    cv_.wait(lock, [this] { return io_stopped_; });
    stopping_threads_ = true;
    cv_.notify_all();  // parked spares
    bool clean = cv_.wait_for(lock, std::chrono::seconds(1), [this] { return running_ == 0; });
    if (!clean) {
      WLOG_WARN("{} I/O threads still running guest code after the shutdown grace period", running_);
      for (auto& t : threads_) t.detach();  // the caller exits without destroying the server
      threads_.clear();
      return false;
    }
    lock.unlock();
    for (auto& t : threads_) t.join();
    threads_.clear();
    return true;
  }

  void Stop() override {
    net::post(accept_strand_, [this] { BeginShutdown(); });
  }

  void Defer(std::function<void()> job) override {
    net::defer(io_.get_executor(), [this, job = std::move(job)] {
      tls_in_job_ = true;
      job();
      tls_in_job_ = false;
      for (auto& fn : tls_after_job_) fn();
      tls_after_job_.clear();
      if (tls_blocked_here_) {
        tls_blocked_here_ = false;
        AfterBlocked();
      }
    });
  }

  bool AfterJob(std::function<void()>&& fn) override {
    if (!tls_in_job_ || tls_blocked_here_) return false;
    tls_after_job_.push_back(std::move(fn));
    return true;
  }

 protected:
  void OnBlocking() override {
    // What the job held for its end must not wait for it now (posted: not run inside the
    // guest's host call).
    for (auto& fn : tls_after_job_) net::post(io_, std::move(fn));
    tls_after_job_.clear();
    if (tls_blocked_here_) return;
    tls_blocked_here_ = true;
    std::lock_guard lock(mu_);
    --active_;
    if (active_ >= target_ || stopping_threads_) return;
    if (parked_ > wakeups_) {
      ++wakeups_;
      ++active_;
      cv_.notify_all();
    } else if (threads_.size() < max_threads_) {
      StartThreadLocked();
      ++active_;
    } else if (spare_log_.Due()) {
      WLOG_WARN("{} I/O threads, all busy in guests that block or run long; new work waits", threads_.size());
    }
  }

 private:
  // A blocked job ended on this thread. If enough threads serve without it, one thread parks
  // (in a handler of its own, so that what this handler queued is not held by a parked thread).
  void AfterBlocked() {
    std::lock_guard lock(mu_);
    ++active_;
    if (active_ > target_ && !stopping_threads_) net::post(io_, [this] { MaybePark(); });
  }

  void MaybePark() {
    std::unique_lock lock(mu_);
    if (active_ <= target_ || stopping_threads_) return;
    --active_;
    ++parked_;
    // Handlers this thread queued last (work it deferred is queued without waking anyone, for
    // this thread to run next) must not wait for the parked thread: wake another one.
    net::post(io_, [] {});
    cv_.wait(lock, [this] { return wakeups_ > 0 || stopping_threads_; });
    --parked_;
    if (wakeups_ > 0) --wakeups_;  // the waker counted us active again
  }

  void StartThreadLocked() {
    ++running_;
    threads_.emplace_back([this] {
      if (shared_.options.on_io_thread_start) shared_.options.on_io_thread_start();
      InlineRunner::SetCurrent(this);
      io_.run();
      InlineRunner::SetCurrent(nullptr);
      std::lock_guard lock(mu_);
      --running_;
      cv_.notify_all();
    });
  }

  void StopIo() {
    io_.stop();
    std::lock_guard lock(mu_);
    io_stopped_ = true;
    cv_.notify_all();
  }

 private:
  void WaitSignal() {
    signals_.async_wait([this](beast::error_code ec, int signo) {
      if (ec) return;
      if (signo == SIGHUP) {
        if (shared_.options.on_reload) {
          WLOG_INFO("SIGHUP: reloading the configuration");
          reload_threads_.emplace_back(shared_.options.on_reload);
        }
        WaitSignal();
        return;
      }
      if (stopping_) {
        WLOG_WARN("second signal: stopping now");
        StopIo();
        return;
      }
      WLOG_INFO("{}: finishing in-flight requests (up to {} ms), then exiting",
                signo == SIGINT ? "SIGINT" : "SIGTERM", shared_.options.shutdown_grace.count());
      BeginShutdown();
      WaitSignal();
    });
  }

  // On accept_strand_ (like everything that touches the acceptor): starts one accept unless one
  // is pending, the server is stopping, or max_connections are open (then the accept loop
  // pauses and the next session to close resumes it).
  void MaybeAccept() {
    if (stopping_ || accepting_ || retry_pending_) return;
    if (static_cast<size_t>(shared_.sessions.load()) >= max_connections_) {
      shared_.accept_paused = true;
      // A session that closed before the flag was visible did not resume us: check again.
      if (static_cast<size_t>(shared_.sessions.load()) >= max_connections_) {
        if (!paused_) {
          paused_ = true;
          if (limit_log_.Due()) {
            WLOG_WARN("{} connections open (--max-connections): new connections wait until one closes",
                      max_connections_);
          }
        }
        return;
      }
    }
    shared_.accept_paused = false;
    paused_ = false;
    accepting_ = true;
    acceptor_.async_accept(net::make_strand(io_), [this](beast::error_code ec, tcp::socket socket) {
      accepting_ = false;
      if (ec) {
        if (ec == net::error::operation_aborted || !acceptor_.is_open()) return;
        // Out of file descriptors (EMFILE/ENFILE) and the like: the connection stays in the
        // backlog; back off instead of spinning, and say so (at most every few seconds).
        ++accept_failures_;
        if (accept_log_.Due()) {
          WLOG_WARN("accept failed: {}; retrying every 100 ms ({} failures so far)", ec.message(),
                    accept_failures_);
        }
        retry_pending_ = true;
        accept_retry_.emplace(accept_strand_);
        accept_retry_->expires_after(std::chrono::milliseconds(100));
        accept_retry_->async_wait([this](beast::error_code wec) {
          retry_pending_ = false;
          if (!wec) MaybeAccept();
        });
        return;
      }
      beast::error_code ignored;
      socket.set_option(tcp::no_delay(true), ignored);
      auto remote = socket.remote_endpoint(ignored);
      auto local = socket.local_endpoint(ignored);
      std::string addr = remote.address().to_string();
      if (ssl_) {
        std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(
            shared_, beast::ssl_stream<beast::tcp_stream>(std::move(socket), *ssl_), addr, local.port())
            ->Start();
      } else {
        std::make_shared<Session<beast::tcp_stream>>(shared_, beast::tcp_stream(std::move(socket)), addr,
                                                     local.port())
            ->Start();
      }
      MaybeAccept();
    });
  }

  void BeginShutdown() {
    if (stopping_) return;
    stopping_ = true;
    shared_.draining = true;
    beast::error_code ignored;
    acceptor_.close(ignored);
    if (accept_retry_) accept_retry_->cancel();
    std::vector<std::shared_ptr<SessionBase>> sessions;
    {
      std::lock_guard lock(shared_.mu);
      for (auto& [ptr, weak] : shared_.live) {
        if (auto s = weak.lock()) sessions.push_back(std::move(s));
      }
    }
    for (auto& s : sessions) s->PostDrain();
    deadline_ = std::chrono::steady_clock::now() + shared_.options.shutdown_grace;
    drain_timer_.emplace(accept_strand_);
    PollDrained();
  }

  void PollDrained() {
    if (shared_.sessions.load() == 0 || std::chrono::steady_clock::now() >= deadline_) {
      if (shared_.sessions.load() != 0) {
        WLOG_WARN("shutdown: {} connections still open after the grace period; closing",
                  shared_.sessions.load());
      }
      signals_.cancel();
      StopIo();
      return;
    }
    drain_timer_->expires_after(std::chrono::milliseconds(20));
    drain_timer_->async_wait([this](beast::error_code ec) {
      if (!ec) PollDrained();
    });
  }

  // A warning that repeats at most every 10 s.
  struct LogLimiter {
    std::chrono::steady_clock::time_point next{};
    bool Due() {
      auto now = std::chrono::steady_clock::now();
      if (now < next) return false;
      next = now + std::chrono::seconds(10);
      return true;
    }
  };

  Shared shared_;
  net::io_context io_;
  net::strand<net::io_context::executor_type> accept_strand_;
  tcp::acceptor acceptor_;
  net::signal_set signals_;
  std::optional<ssl::context> ssl_;
  std::optional<net::steady_timer> drain_timer_;
  std::optional<net::steady_timer> accept_retry_;
  std::chrono::steady_clock::time_point deadline_;
  std::vector<std::thread> reload_threads_;
  // The I/O threads. All guarded by mu_; cv_ signals changes.
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::thread> threads_;
  const size_t target_ = std::max<size_t>(1, shared_.options.io_threads);  // threads serving
  const size_t max_threads_ = target_ + shared_.options.max_spare_threads;
  size_t active_ = 0;     // threads serving: not in a blocked job, not parked
  size_t running_ = 0;    // threads started and not ended
  size_t parked_ = 0;     // spares waiting in MaybePark
  size_t wakeups_ = 0;    // parked spares told to serve again
  bool io_stopped_ = false;
  bool stopping_threads_ = false;
  LogLimiter spare_log_;
  // Per I/O thread: a Defer() job is running; it marked itself blocked (OnBlocking was called
  // for it); what it handed to AfterJob.
  static inline thread_local bool tls_in_job_ = false;
  static inline thread_local bool tls_blocked_here_ = false;
  static inline thread_local std::vector<std::function<void()>> tls_after_job_;
  unsigned short port_ = 0;
  size_t max_connections_ = 0;
  // The rest is touched only on accept_strand_.
  bool stopping_ = false;
  bool accepting_ = false;
  bool retry_pending_ = false;
  bool paused_ = false;
  uint64_t accept_failures_ = 0;
  LogLimiter limit_log_;
  LogLimiter accept_log_;
};

}  // namespace

size_t DefaultMaxConnections() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 10000;
  size_t limit = static_cast<size_t>(rl.rlim_cur);
  return std::clamp<size_t>(limit / 4 * 3, 16, 10000);
}

Result<std::unique_ptr<Server>> Server::Create(Gateway& gateway, ServerOptions options) {
  auto server = std::make_unique<ServerImpl>(gateway, std::move(options));
  if (auto s = server->Init(); !s.ok()) return s.take_error();
  return std::unique_ptr<Server>(std::move(server));
}

}  // namespace wasmlet::gateway
