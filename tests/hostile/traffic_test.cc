// Hostile traffic against the real `wasmlet serve` binary over raw sockets (docs/gateway.md,
// "Limits and hostile input"). Every test checks the attack is answered or cut off as
// documented, that a normal request on another connection still succeeds meanwhile, and that
// the server's RSS stays within kRssBudgetKiB of its level before the attack.
#include <sys/resource.h>

#include <future>

#include "hostile_util.h"

namespace hostile {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class HostileTraffic : public ::testing::Test {
 protected:
  void SetUp() override {
    curl_global_init(CURL_GLOBAL_ALL);
    dir_ = MakeTempDir("wasmlet-hostile-traffic-");
    WriteText(dir_ / "modules.toml",
              "[[module]]\nroute = \"/hello\"\nmodule = \"" + Guest("hostile.wasm") + "\"\n");
  }
  void TearDown() override {
    if (server_.pid() > 0) {
      EXPECT_EQ(server_.Stop(), 0) << "the server did not exit cleanly\n" << server_.Stderr();
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // Starts the server with short limits (so attacks end quickly) plus `extra`, warms it up and
  // records its RSS.
  void Start(std::vector<std::string> extra = {}, const std::string& idle_timeout = "3s") {
    std::vector<std::string> args = {"-c", (dir_ / "modules.toml").string(), "--no-cache", "--workers", "2",
                                     "--header-timeout", "1s", "--body-timeout", "3s", "--idle-timeout", idle_timeout,
                                     "--write-timeout", "3s", "--max-body", "1MiB"};
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_TRUE(server_.Start(args, dir_)) << server_.Stderr();
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(ServesNormally(server_));
    rss_before_ = RssKiB(server_.pid());
    ASSERT_GT(rss_before_, 0);
  }
  void ExpectRssBounded() {
    long now = RssKiB(server_.pid());
    if (!kRssIsMeaningful) return;
    EXPECT_LT(now - rss_before_, kRssBudgetKiB) << "RSS grew from " << rss_before_ << " KiB to " << now << " KiB";
  }
  // Sends `request` on a fresh connection and returns what came back before the close.
  std::string OneShot(const std::string& request) {
    Sock s(server_.port());
    EXPECT_TRUE(s.ok());
    s.Send(request);
    EXPECT_TRUE(s.ReadToEof(10000)) << "no close after: " << request.substr(0, 80);
    return s.received();
  }

  fs::path dir_;
  ServerProcess server_;
  long rss_before_ = 0;
};

TEST_F(HostileTraffic, SlowlorisIsClosedAtTheHeaderTimeoutWhileOthersAreServed) {
  Start();
  constexpr int kClients = 20;
  std::vector<std::future<std::pair<bool, double>>> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(std::async(std::launch::async, [this] {
      Sock s(server_.port());
      // An endless head, one byte every 50 ms: only the header timeout (1 s) ends it.
      std::string head = "GET /hello HTTP/1.1\r\nHost: x\r\nX-Slow: " + std::string(400, 'a');
      auto start = Clock::now();
      for (char c : head) {
        if (!s.Send(std::string_view(&c, 1)) || !s.Pump(50)) {
          return std::make_pair(true, std::chrono::duration<double>(Clock::now() - start).count());
        }
      }
      return std::make_pair(false, 0.0);
    }));
  }
  // Meanwhile normal requests keep working.
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(ServesNormally(server_));
  for (auto& c : clients) {
    auto [closed, seconds] = c.get();
    EXPECT_TRUE(closed) << "a slowloris connection outlived 20 s of dripping";
    EXPECT_GE(seconds, 0.9);
  }
  EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
}

TEST_F(HostileTraffic, VeryLargeHeadIs431) {
  Start();
  std::string reply = OneShot("GET /hello HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(200000, 'a') + "\r\n\r\n");
  EXPECT_EQ(StatusOf(reply), 431) << reply.substr(0, 200);
  EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
}

TEST_F(HostileTraffic, TooManyHeaderFieldsIs431AndTheLimitItselfIsAccepted) {
  Start();
  auto head = [](int fields) {
    std::string r = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n";
    for (int i = 2; i < fields; ++i) r += "X-H" + std::to_string(i) + ": v\r\n";
    return r + "\r\n";
  };
  std::string at_limit = OneShot(head(100));
  EXPECT_EQ(StatusOf(at_limit), 200) << at_limit.substr(0, 200);
  std::string over = OneShot(head(101));
  EXPECT_EQ(StatusOf(over), 431) << over.substr(0, 200);
  EXPECT_NE(over.find("more than 100 header fields"), std::string::npos) << over;
  std::string many = OneShot(head(5000));  // small fields, well under the 64 KiB head limit
  EXPECT_EQ(StatusOf(many), 431) << many.substr(0, 200);
  EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
}

TEST_F(HostileTraffic, HugeBodiesAre413) {
  Start();
  // Announced: refused before reading a byte of it.
  std::string announced = OneShot("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\n\r\n");
  EXPECT_EQ(StatusOf(announced), 413) << announced.substr(0, 200);
  // Sent: 2 MiB against a 1 MiB limit.
  Sock s(server_.port());
  s.Send("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n");
  s.Send(std::string(2 << 20, 'b'));  // the server answers, then drains for a moment
  s.ReadToEof(10000);
  EXPECT_EQ(StatusOf(s.received()), 413) << s.received().substr(0, 200);
  EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
}

TEST_F(HostileTraffic, NeverEndingChunkedBodyIs413AtTheLimit) {
  Start();
  Sock s(server_.port());
  ASSERT_TRUE(s.Send("POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"));
  std::string chunk = "10000\r\n" + std::string(0x10000, 'c') + "\r\n";
  size_t sent = 0;
  while (s.received().find("\r\n\r\n") == std::string::npos && !s.closed() && sent < (64u << 20)) {
    if (!s.Send(chunk)) break;
    sent += chunk.size();
    s.Pump(0);
  }
  s.ReadUntil("\r\n\r\n", 10000);
  EXPECT_EQ(StatusOf(s.received()), 413) << "after " << sent << " bytes: " << s.received().substr(0, 200);
  EXPECT_LT(sent, 16u << 20) << "the server kept reading far past --max-body";
  EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
}

TEST_F(HostileTraffic, StalledBodyIsClosedAtTheBodyTimeout) {
  Start();
  Sock s(server_.port());
  s.Send("POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nonly a few bytes");
  auto start = Clock::now();
  EXPECT_TRUE(s.ReadToEof(20000));
  EXPECT_GE(Clock::now() - start, 2500ms);  // --body-timeout 3s
  EXPECT_TRUE(ServesNormally(server_));
}

TEST_F(HostileTraffic, MalformedRequestLinesAre400) {
  Start();
  for (const char* line : {"GARBAGE\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/9.9\r\nHost: x\r\n\r\n",
                           "GET /hello HTTP/1.1 extra\r\nHost: x\r\n\r\n", "G\x01T /hello HTTP/1.1\r\nHost: x\r\n\r\n",
                           "GET /he llo HTTP/1.1\r\nHost: x\r\n\r\n", "GET /hello HTTP/1.1\r\nBad Header\r\n\r\n",
                           "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                           "GET /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"}) {
    std::string reply = OneShot(line);
    EXPECT_EQ(StatusOf(reply), 400) << "request " << ::testing::PrintToString(std::string(line)) << " got "
                                    << reply.substr(0, 120);
  }
  EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
}

TEST_F(HostileTraffic, InvalidChunkedEncodingIs400) {
  Start();
  const std::string head = "POST /hello HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (const char* body : {"zz\r\nhello\r\n0\r\n\r\n", "5\r\nhelloXX0\r\n\r\n", "-1\r\nx\r\n0\r\n\r\n",
                           "ffffffffffffffffff\r\nx\r\n"}) {
    std::string reply = OneShot(head + body);
    EXPECT_EQ(StatusOf(reply), 400) << "body " << ::testing::PrintToString(std::string(body)) << " got "
                                    << reply.substr(0, 120);
  }
  EXPECT_TRUE(ServesNormally(server_));
}

TEST_F(HostileTraffic, PipelinedFloodWithoutReadingIsBoundedAndCutOff) {
  Start();
  Sock flood(server_.port());
  ASSERT_TRUE(flood.ok());
  // A million pipelined requests (37 MB) whose responses are never read: the server must stop
  // reading when its writes back up (memory stays flat) and close at the write timeout (3 s).
  std::string one = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
  std::string batch;
  for (int i = 0; i < 1000; ++i) batch += one;
  constexpr int kBatches = 1000;
  auto sender = std::async(std::launch::async, [&] {
    for (int i = 0; i < kBatches; ++i) {
      if (!flood.Send(batch)) return i;
    }
    return kBatches;
  });
  for (int i = 0; i < 10; ++i) EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
  ASSERT_EQ(sender.wait_for(60s), std::future_status::ready) << "the flood's sender is still blocked after 60 s";
  int batches = sender.get();
  // The server closed the connection: what arrived before the close is far short of one
  // response per request.
  EXPECT_TRUE(flood.ReadToEof(30000)) << "the flooding connection was never closed";
  size_t answered = 0;
  for (size_t pos = 0; (pos = flood.received().find("HTTP/1.1 200", pos)) != std::string::npos; ++pos) ++answered;
  EXPECT_LT(answered, static_cast<size_t>(batches) * 1000) << "sent " << batches << " batches";
  EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
}

TEST_F(HostileTraffic, ConnectionsBeyondMaxConnectionsWaitAndAreServedLater) {
  Start({"--max-connections", "16"}, "60s");  // the idle connections must not time out here
  std::vector<std::unique_ptr<Sock>> idle;
  for (int i = 0; i < 16; ++i) {
    idle.push_back(std::make_unique<Sock>(server_.port()));
    ASSERT_TRUE(idle.back()->ok());
  }
  // The 17th connects (the kernel's backlog) but waits to be accepted.
  Sock waiting(server_.port());
  ASSERT_TRUE(waiting.ok());
  ASSERT_TRUE(waiting.Send("GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  EXPECT_TRUE(Eventually([&] { return server_.Stderr().find("16 connections open (--max-connections)") != std::string::npos; }))
      << server_.Stderr();
  waiting.Pump(300);
  EXPECT_TRUE(waiting.received().empty()) << "served beyond --max-connections: " << waiting.received();
  idle.front()->Close();  // one slot frees up
  EXPECT_TRUE(waiting.ReadToEof(10000));
  EXPECT_EQ(StatusOf(waiting.received()), 200) << waiting.received();
  idle.clear();
}

TEST_F(HostileTraffic, ConnectionFloodIsServedWithinTheLimit) {
  Start({"--max-connections", "32"});
  size_t base_fds = OpenFds(server_.pid());
  // 64 silent connections hold slots until the idle timeout; 300 more each send one request.
  std::vector<std::unique_ptr<Sock>> silent;
  for (int i = 0; i < 64; ++i) silent.push_back(std::make_unique<Sock>(server_.port()));
  std::vector<std::unique_ptr<Sock>> flood;
  for (int i = 0; i < 300; ++i) {
    flood.push_back(std::make_unique<Sock>(server_.port()));
    ASSERT_TRUE(flood.back()->ok()) << i;
    flood.back()->Send("GET /healthz HTTP/1.0\r\n\r\n");
  }
  int ok = 0;
  size_t most_fds = 0;
  for (auto& s : flood) {
    s->ReadToEof(30000);
    ok += StatusOf(s->received()) == 200;
    s->Close();
    most_fds = std::max(most_fds, OpenFds(server_.pid()));
  }
  EXPECT_EQ(ok, 300);
  EXPECT_LE(most_fds, base_fds + 32 + 4) << "more descriptors open than --max-connections allows";
  EXPECT_TRUE(ServesNormally(server_));
  ExpectRssBounded();
}

TEST_F(HostileTraffic, AcceptLoopSurvivesRunningOutOfDescriptors) {
  Start();
  // Leave the server a handful of spare descriptors, then connect more clients than that.
  size_t in_use = OpenFds(server_.pid());
  rlimit tight{in_use + 4, in_use + 4};
  ASSERT_EQ(prlimit(server_.pid(), RLIMIT_NOFILE, &tight, nullptr), 0) << strerror(errno);
  std::vector<std::unique_ptr<Sock>> clients;
  for (int i = 0; i < 40; ++i) {
    clients.push_back(std::make_unique<Sock>(server_.port()));
    ASSERT_TRUE(clients.back()->ok());
    clients.back()->Send("GET /healthz HTTP/1.0\r\n\r\n");
  }
  int ok = 0;
  for (auto& s : clients) {
    s->ReadToEof(30000);
    ok += StatusOf(s->received()) == 200;
    s->Close();
  }
  EXPECT_EQ(ok, 40);
  std::string log = server_.Stderr();
  EXPECT_NE(log.find("accept failed: Too many open files"), std::string::npos) << log;
  EXPECT_EQ(Fetch(server_.Url("/healthz")).status, 200);
}

}  // namespace
}  // namespace hostile
