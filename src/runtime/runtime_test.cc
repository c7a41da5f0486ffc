// Runtime tests against the real Wasmtime engine and guests built from tests/guests.
#include <gtest/gtest.h>

#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "runtime/runtime.h"
#include "util/files.h"

namespace wasmlet::runtime {
namespace {

namespace fs = std::filesystem;

std::string Guest(const std::string& name) { return std::string(WASMLET_GUEST_DIR) + "/" + name; }

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("wasmlet-rt-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    RuntimeOptions options;
    options.cache_dir = (dir_ / "cache").string();
    options.max_instances = 32;
    options.max_memory_bytes = 256ull << 20;
    auto rt = CreateWasmtimeRuntime(options);
    ASSERT_TRUE(rt.ok()) << rt.error().ToString();
    runtime_ = std::move(rt).value();
  }
  void TearDown() override {
    runtime_.reset();
    fs::remove_all(dir_);
  }

  std::shared_ptr<const Module> Load(const std::string& guest) {
    auto m = runtime_->LoadFile(Guest(guest));
    EXPECT_TRUE(m.ok()) << m.error().ToString();
    return m.ok() ? *m : nullptr;
  }

  struct Run {
    InvokeResult result;
    std::string out, err;
  };
  Run Invoke(const Module& module, InvokeRequest request) {
    Run run;
    request.stdout_mode = OutputMode::kCallback;
    request.stdout_callback = [&](std::string_view s) { run.out += s; return true; };
    request.stderr_mode = OutputMode::kCallback;
    request.stderr_callback = [&](std::string_view s) { run.err += s; return true; };
    auto r = module.Invoke(request);
    EXPECT_TRUE(r.ok()) << r.error().ToString();
    if (r.ok()) run.result = *r;
    return run;
  }

  fs::path dir_;
  std::unique_ptr<Runtime> runtime_;
};

TEST_F(RuntimeTest, HelloPrintsAndExitsZero) {
  auto m = Load("hello.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.args = {"hello"};
  auto run = Invoke(*m, req);
  EXPECT_TRUE(run.result.success()) << run.result.Describe();
  EXPECT_EQ(run.out, "Hello from WebAssembly!\n");
}

TEST_F(RuntimeTest, ArgsAndEnvAreExactlyWhatWasGranted) {
  auto m = Load("echo.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.args = {"echo", "one", "two words"};
  req.env = {{"A", "1"}, {"B", "x=y"}};
  auto run = Invoke(*m, req);
  EXPECT_EQ(run.out, "arg[0]=echo\narg[1]=one\narg[2]=two words\nenv A=1\nenv B=x=y\n");
  // Nothing by default: no host environment leaks in.
  auto bare = Invoke(*m, InvokeRequest{});
  EXPECT_EQ(bare.out.find("env "), std::string::npos) << bare.out;
}

TEST_F(RuntimeTest, StdinBytesReachTheGuest) {
  auto m = Load("cat.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.stdin_mode = StdinMode::kBytes;
  req.stdin_data = std::string(200000, 'z') + "end";
  auto run = Invoke(*m, req);
  EXPECT_EQ(run.out, req.stdin_data);
  EXPECT_EQ(run.err, "copied 200003 bytes\n");
}

TEST_F(RuntimeTest, PreopenReadWriteAndReadOnly) {
  auto m = Load("files.wasm");
  ASSERT_TRUE(m);
  fs::create_directories(dir_ / "data");
  std::ofstream(dir_ / "data/in.txt") << "file content\n";

  InvokeRequest read;
  read.args = {"files", "read", "/data/in.txt"};
  read.preopens = {{(dir_ / "data").string(), "/data", true}};
  auto r = Invoke(*m, read);
  EXPECT_TRUE(r.result.success()) << r.out;
  EXPECT_EQ(r.out, "file content\n");

  InvokeRequest write_ro = read;
  write_ro.args = {"files", "write", "/data/out.txt", "x"};
  auto denied = Invoke(*m, write_ro);
  EXPECT_EQ(denied.result.exit_code, 1);
  EXPECT_NE(denied.out.find("error: write /data/out.txt"), std::string::npos) << denied.out;
  EXPECT_FALSE(fs::exists(dir_ / "data/out.txt"));

  InvokeRequest write_rw = write_ro;
  write_rw.preopens[0].read_only = false;
  auto ok = Invoke(*m, write_rw);
  EXPECT_TRUE(ok.result.success()) << ok.out;
  auto content = ReadFile((dir_ / "data/out.txt").string());
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "x");

  // Without a preopen nothing is visible.
  InvokeRequest none;
  none.args = {"files", "read", "/data/in.txt"};
  auto nothing = Invoke(*m, none);
  EXPECT_EQ(nothing.result.exit_code, 1);
}

TEST_F(RuntimeTest, EscapeAttemptsAreDenied) {
  auto m = Load("escape.wasm");
  ASSERT_TRUE(m);
  fs::create_directories(dir_ / "sandbox/sub");
  fs::create_symlink("/etc", dir_ / "sandbox/link-to-etc");
  InvokeRequest req;
  req.preopens = {{(dir_ / "sandbox").string(), "/sandbox", false}};
  setenv("SECRET", "host-secret", 1);
  auto run = Invoke(*m, req);
  unsetenv("SECRET");
  EXPECT_EQ(run.out.find("ESCAPED"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("env SECRET: absent"), std::string::npos) << run.out;
  EXPECT_TRUE(run.result.success()) << run.out;
}

TEST_F(RuntimeTest, ExitCodeIsReported) {
  auto m = Load("exit_code.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.args = {"exit_code", "42"};
  auto run = Invoke(*m, req);
  EXPECT_EQ(run.result.outcome, Outcome::kExited);
  EXPECT_EQ(run.result.exit_code, 42);
  EXPECT_EQ(run.out, "exiting with 42\n");
}

TEST_F(RuntimeTest, TrapHasMessageAndBacktrace) {
  auto m = Load("trap.wasm");
  ASSERT_TRUE(m);
  auto run = Invoke(*m, InvokeRequest{});
  EXPECT_EQ(run.result.outcome, Outcome::kTrapped);
  EXPECT_NE(run.result.message.find("unreachable"), std::string::npos) << run.result.message;
  EXPECT_GE(std::count(run.result.backtrace.begin(), run.result.backtrace.end(), '\n'), 3)
      << run.result.backtrace;
}

TEST_F(RuntimeTest, DeadlineStopsInfiniteLoopAndOthersStillRun) {
  auto loop = Load("loop.wasm");
  auto hello = Load("hello.wasm");
  ASSERT_TRUE(loop && hello);
  InvokeRequest req;
  req.limits.timeout = std::chrono::milliseconds(100);
  Run spun;
  std::thread t([&] { spun = Invoke(*loop, req); });
  // A different Store on another thread is unaffected by the loop's deadline.
  auto greeted = Invoke(*hello, InvokeRequest{});
  t.join();
  EXPECT_EQ(spun.result.outcome, Outcome::kTimedOut) << spun.result.Describe();
  EXPECT_GE(spun.result.duration, std::chrono::milliseconds(100));
  EXPECT_LT(spun.result.duration, std::chrono::seconds(5));
  EXPECT_TRUE(greeted.result.success());
}

TEST_F(RuntimeTest, LongRunningGuestMovesToTheBackgroundAndBack) {
  auto loop = Load("loop.wasm");
  auto hello = Load("hello.wasm");
  ASSERT_TRUE(loop && hello);
  InvokeRequest req;
  req.limits.timeout = std::chrono::milliseconds(400);
  req.background_after = std::chrono::milliseconds(20);
  std::atomic<pid_t> tid{0};
  std::atomic<bool> ended{false};
  Run spun;
  int nice_before = 0, nice_after = -1;
  std::thread t([&] {
    nice_before = getpriority(PRIO_PROCESS, 0);
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    spun = Invoke(*loop, req);
    nice_after = getpriority(PRIO_PROCESS, static_cast<id_t>(tid.load()));
    ended = true;
  });
  // Seen from outside while it spins: the guest's thread is in the background.
  bool seen_idle = false;  // at nice 19
  while (!ended && !seen_idle) {
    if (tid != 0) seen_idle = getpriority(PRIO_PROCESS, static_cast<id_t>(tid.load())) == 19;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  t.join();
  EXPECT_TRUE(seen_idle);
  EXPECT_EQ(spun.result.outcome, Outcome::kTimedOut) << spun.result.Describe();
  EXPECT_TRUE(spun.result.backgrounded);
  // Back in the foreground afterwards, where the process may raise its priority again.
  rlimit nice{};
  getrlimit(RLIMIT_NICE, &nice);
  if (geteuid() == 0 || nice.rlim_cur >= 20) {
    EXPECT_TRUE(spun.result.priority_restored);
    EXPECT_EQ(nice_after, nice_before);
  } else {
    EXPECT_EQ(spun.result.priority_restored, nice_after == nice_before);
  }
  // A short guest never leaves the foreground.
  auto greeted = Invoke(*hello, req);
  EXPECT_TRUE(greeted.result.success());
  EXPECT_FALSE(greeted.result.backgrounded);
}

TEST_F(RuntimeTest, MemoryLimitIsReported) {
  auto m = Load("memory_hog.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.limits.memory_bytes = 32ull << 20;
  auto run = Invoke(*m, req);
  EXPECT_EQ(run.result.outcome, Outcome::kMemoryLimit) << run.result.Describe();
  EXPECT_LE(run.result.memory_bytes, 32ull << 20);
  EXPECT_NE(run.err.find("allocation failed"), std::string::npos);
}

TEST_F(RuntimeTest, TrapOnMemoryLimitStopsTheGuestAtTheLimit) {
  auto m = Load("memory_hog.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.limits.memory_bytes = 32ull << 20;
  req.limits.trap_on_memory_limit = true;
  auto run = Invoke(*m, req);
  EXPECT_EQ(run.result.outcome, Outcome::kMemoryLimit) << run.result.Describe();
  EXPECT_NE(run.result.message.find("tried to grow past it"), std::string::npos);
  // Stopped at the grow itself: the guest never saw a failed allocation.
  EXPECT_EQ(run.err.find("allocation failed"), std::string::npos) << run.err;
  EXPECT_NE(run.out.find("16 MiB"), std::string::npos);
}

TEST_F(RuntimeTest, StackOverflowIsATrapNotACrash) {
  auto m = Load("recursion.wasm");
  ASSERT_TRUE(m);
  auto run = Invoke(*m, InvokeRequest{});
  EXPECT_EQ(run.result.outcome, Outcome::kStackOverflow) << run.result.Describe();
}

TEST_F(RuntimeTest, InvokeOtherExportAndMissingExport) {
  auto m = Load("hello_wat.wasm");
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->HasFunctionExport("greet"));
  InvokeRequest req;
  req.entrypoint = "greet";
  EXPECT_EQ(Invoke(*m, req).out, "greetings\n");
  req.entrypoint = "nope";
  auto missing = m->Invoke(req);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find("no export named 'nope'"), std::string::npos);
}

TEST_F(RuntimeTest, WatTextIsAccepted) {
  auto m = Load("hello_wat.wat");
  ASSERT_TRUE(m);
  EXPECT_EQ(Invoke(*m, InvokeRequest{}).out, "Hello from WAT!\n");
}

TEST_F(RuntimeTest, BadInputIsAnErrorNotACrash) {
  auto missing = runtime_->LoadFile((dir_ / "missing.wasm").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find("missing.wasm"), std::string::npos);
  auto garbage = runtime_->Load(std::string("\x01\x02\x03\x04garbage", 11), "garbage.bin");
  ASSERT_FALSE(garbage.ok());
  EXPECT_NE(garbage.error().ToString().find("not a WebAssembly module"), std::string::npos);
  auto truncated = runtime_->Load(std::string("\0asm\x01\0\0\0\x01", 9), "truncated.wasm");
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.error().phase, Phase::kCompile);
  auto bad_wat = runtime_->Load("(module (func (export \"_start\") (i32.add)))", "bad.wat");
  ASSERT_FALSE(bad_wat.ok());
  auto unknown_import = runtime_->Load(
      "(module (import \"env\" \"nope\" (func)) (func (export \"_start\")))", "import.wat");
  ASSERT_FALSE(unknown_import.ok());
  EXPECT_EQ(unknown_import.error().phase, Phase::kLink);
}

TEST_F(RuntimeTest, MissingPreopenIsAnInstantiateError) {
  auto m = Load("hello.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.preopens = {{(dir_ / "does-not-exist").string(), "/x", false}};
  auto r = m->Invoke(req);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().phase, Phase::kInstantiate);
}

TEST_F(RuntimeTest, CompileOnceThenDiskCacheThenCorruptArtifactRecompiles) {
  auto bytes = ReadFile(Guest("hello.wasm"));
  ASSERT_TRUE(bytes.ok());
  {
    auto m = runtime_->Load(*bytes, "hello.wasm");
    ASSERT_TRUE(m.ok());
    auto again = runtime_->Load(*bytes, "hello.wasm");
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(m->get(), again->get());  // one compiled module per digest
    EXPECT_EQ(runtime_->Stats().modules_compiled, 1u);
    EXPECT_EQ(runtime_->Stats().memory_cache_hits, 1u);
  }
  // A second runtime (a restarted process) loads the artifact from disk.
  RuntimeOptions options;
  options.cache_dir = (dir_ / "cache").string();
  options.max_instances = 4;
  auto second = CreateWasmtimeRuntime(options);
  ASSERT_TRUE(second.ok());
  auto m2 = (*second)->Load(*bytes, "hello.wasm");
  ASSERT_TRUE(m2.ok());
  EXPECT_EQ((*second)->Stats().disk_cache_hits, 1u);
  EXPECT_EQ((*second)->Stats().modules_compiled, 0u);
  m2 = MakeError(Phase::kInternal, "release");

  // Corrupt every artifact: the next runtime notices, recompiles and still runs the module.
  for (auto& e : fs::directory_iterator(dir_ / "cache")) {
    std::ofstream(e.path(), std::ios::trunc) << "\x7f" "ELF not really";
  }
  auto third = CreateWasmtimeRuntime(options);
  ASSERT_TRUE(third.ok());
  auto m3 = (*third)->Load(*bytes, "hello.wasm");
  ASSERT_TRUE(m3.ok()) << m3.error().ToString();
  EXPECT_EQ((*third)->Stats().modules_compiled, 1u);
  EXPECT_EQ(Invoke(**m3, InvokeRequest{}).out, "Hello from WebAssembly!\n");
}

TEST_F(RuntimeTest, PrecompiledArtifactRuns) {
  auto bytes = ReadFile(Guest("hello.wasm"));
  ASSERT_TRUE(bytes.ok());
  auto artifact = runtime_->Precompile(*bytes, "hello.wasm");
  ASSERT_TRUE(artifact.ok()) << artifact.error().ToString();
  auto m = runtime_->Load(*artifact, "hello.cwasm");
  ASSERT_TRUE(m.ok()) << m.error().ToString();
  EXPECT_EQ(Invoke(**m, InvokeRequest{}).out, "Hello from WebAssembly!\n");
}

TEST_F(RuntimeTest, GoGuestRuns) {
  auto m = Load("go_hello.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.args = {"go_hello", "a", "b"};
  req.env = {{"GREETING", "hi"}};
  auto run = Invoke(*m, req);
  EXPECT_TRUE(run.result.success()) << run.result.Describe() << run.err;
  EXPECT_EQ(run.out, "Hello from Go!\nargs: a b\nGREETING: hi\n");
}

TEST_F(RuntimeTest, NothingLeaksBetweenInstances) {
  auto m = Load("counter.wasm");
  ASSERT_TRUE(m);
  for (int i = 0; i < 50; ++i) {
    auto run = Invoke(*m, InvokeRequest{});
    ASSERT_TRUE(run.result.success()) << run.result.Describe();
    ASSERT_EQ(run.out, "1 1\n") << "invocation " << i;
  }
}

TEST_F(RuntimeTest, ManyConcurrentInvocations) {
  auto m = Load("echo.wasm");
  ASSERT_TRUE(m);
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 25; ++i) {
        InvokeRequest req;
        req.args = {"echo", std::to_string(t * 100 + i)};
        std::string out;
        req.stdout_mode = OutputMode::kCallback;
        req.stdout_callback = [&](std::string_view s) { out += s; return true; };
        auto r = m->Invoke(req);
        if (r.ok() && r->success() && out.find("arg[1]=" + std::to_string(t * 100 + i) + "\n") != std::string::npos) {
          ++good;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(good.load(), 200);
  EXPECT_EQ(runtime_->Stats().instances_running, 0u);
}


// ---- exhaustion: sleeping, spinning, cancelled, many files, a writer whose reader is gone ----

TEST_F(RuntimeTest, PollOneoffFollowsWasiSemantics) {
  auto m = Load("poll.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  req.args = {"poll", "sleep:30", "abs-mono:30", "abs-real:30", "multi", "fd", "errors"};
  auto run = Invoke(*m, req);
  EXPECT_TRUE(run.result.success()) << run.result.Describe() << run.err;
  EXPECT_EQ(run.out,
            "slept 30\n"
            "abs-mono ok\n"
            "abs-real ok\n"
            // Both 20 ms clocks are ready when the earliest one fires, the 60 ms one is not.
            "multi err=0 waited>=20ms:yes n=2 [ud=2 type=0 err=0 nbytes=0] [ud=3 type=0 err=0 nbytes=0]\n"
            // stdin is always ready: no 10 s wait.
            "fd err=0 n=1 [ud=7 type=1 err=0 nbytes=1]\n"
            // EINVAL for no subscriptions, a CPU-time clock, a bad tag or flags; EFAULT for
            // pointers past the end of memory.
            "none=28 far-in=21 far-out=21 far-n=21 cputime=28 tag=28 flags=28\n");
  EXPECT_GE(run.result.duration, std::chrono::milliseconds(110));
}

TEST_F(RuntimeTest, DeadlineStopsAGuestSleepingInPollOneoff) {
  for (const char* guest : {"poll.wasm", "sleep_forever.wasm"}) {
    auto m = Load(guest);
    ASSERT_TRUE(m);
    InvokeRequest req;
    req.args = {"poll", "forever"};
    req.limits.timeout = std::chrono::milliseconds(200);
    auto run = Invoke(*m, req);
    EXPECT_EQ(run.result.outcome, Outcome::kTimedOut) << guest << ": " << run.result.Describe();
    EXPECT_NE(run.result.message.find("200 ms"), std::string::npos) << run.result.message;
    EXPECT_GE(run.result.duration, std::chrono::milliseconds(200));
    EXPECT_LT(run.result.duration, std::chrono::seconds(10)) << guest;
  }
}

// Runs `module` on a thread with `token`; Wait() returns its result.
class Background {
 public:
  Background(const Module& module, InvokeRequest request) {
    thread_ = std::thread([this, &module, request] {
      auto r = module.Invoke(request);
      if (r.ok()) result_ = *r;
      ended_ = std::chrono::steady_clock::now();
    });
  }
  InvokeResult Wait() {
    thread_.join();
    return result_;
  }
  std::chrono::steady_clock::time_point ended() const { return ended_; }

 private:
  std::thread thread_;
  InvokeResult result_;
  std::chrono::steady_clock::time_point ended_;
};

TEST_F(RuntimeTest, CancelStopsSpinningAndSleepingGuests) {
  auto loop = Load("loop.wasm");
  auto poll = Load("poll.wasm");
  auto forever = Load("sleep_forever.wasm");
  ASSERT_TRUE(loop && poll && forever);
  auto token = std::make_shared<CancelToken>();
  InvokeRequest req;
  req.args = {"poll", "forever"};
  req.cancel = token;  // no timeout: only the token stops them
  Background spinning(*loop, req), sleeping(*poll, req), sleeping_wat(*forever, req);
  // An unrelated guest still runs meanwhile.
  auto hello = Load("hello.wasm");
  EXPECT_TRUE(Invoke(*hello, InvokeRequest{}).result.success());
  // Once their Stores exist they are past the "cancelled before start" check: wherever each
  // is when Cancel() comes (instantiating, in wasm code, asleep), it stops the same way.
  while (runtime_->Stats().instances_running < 3) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  auto cancelled_at = std::chrono::steady_clock::now();
  token->Cancel();
  for (auto* b : {&spinning, &sleeping, &sleeping_wat}) {
    InvokeResult r = b->Wait();
    EXPECT_EQ(r.outcome, Outcome::kCancelled) << r.Describe();
    EXPECT_EQ(r.Describe(), "cancelled: stopped by its CancelToken");
    // Generous: the mechanism takes a few ms, the bound only catches "never".
    EXPECT_LT(b->ended() - cancelled_at, std::chrono::seconds(5));
  }
  EXPECT_EQ(runtime_->Stats().instances_running, 0u);
  // A cancelled token stops later requests before they start.
  auto total = runtime_->Stats().instances_total;
  auto late = hello->Invoke([&] { InvokeRequest r; r.cancel = token; return r; }());
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(late->outcome, Outcome::kCancelled);
  EXPECT_EQ(runtime_->Stats().instances_total, total);
  EXPECT_STREQ(OutcomeName(Outcome::kCancelled), "cancelled");
}

TEST_F(RuntimeTest, TokenThatIsNeverCancelledKeepsDeadlinesAndResults) {
  auto loop = Load("loop.wasm");
  auto poll = Load("poll.wasm");
  auto hello = Load("hello.wasm");
  ASSERT_TRUE(loop && poll && hello);
  InvokeRequest req;
  req.cancel = std::make_shared<CancelToken>();
  req.args = {"poll", "forever"};
  req.limits.timeout = std::chrono::milliseconds(150);
  for (auto* m : {loop.get(), poll.get()}) {
    auto run = Invoke(*m, req);
    EXPECT_EQ(run.result.outcome, Outcome::kTimedOut) << run.result.Describe();
    EXPECT_GE(run.result.duration, std::chrono::milliseconds(150));
  }
  req.args = {"hello"};
  auto run = Invoke(*hello, req);
  EXPECT_TRUE(run.result.success()) << run.result.Describe();
  EXPECT_EQ(run.out, "Hello from WebAssembly!\n");
}

// Every WASI descriptor is a host descriptor, and Wasmtime has no per-instance cap (its C API
// has no hook, and path_open cannot be wrapped from C: a host function called from the host
// sees no guest memory). So a guest may open files until the process limit; this shows the
// error it gets and that every descriptor comes back when the instance ends.
TEST_F(RuntimeTest, ManyOpenFilesFailCleanlyAndAreReleasedWhenTheInstanceEnds) {
  auto m = Load("fds.wasm");
  ASSERT_TRUE(m);
  fs::create_directories(dir_ / "data");
  std::ofstream(dir_ / "data/f.txt") << "x";
  auto open_fds = [] {
    size_t n = 0;
    for (auto it = fs::directory_iterator("/proc/self/fd"); it != fs::directory_iterator(); ++it) ++n;
    return n;
  };
  InvokeRequest req;
  req.preopens = {{(dir_ / "data").string(), "/data", true}};
  req.args = {"fds", "/data/f.txt", "50"};
  // Below the limit the guest opens what it asks for (and the runtime's own lazily opened
  // descriptors exist before counting).
  EXPECT_EQ(Invoke(*m, req).out, "opened 50\nreopen ok\n");
  size_t before = open_fds();
  struct rlimit saved;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  struct rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_cur, before + 300);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  req.args = {"fds", "/data/f.txt", "100000"};
  std::vector<std::string> outs;
  for (int i = 0; i < 2; ++i) {
    auto run = Invoke(*m, req);
    EXPECT_TRUE(run.result.success()) << run.result.Describe() << run.err;
    outs.push_back(run.out);
    EXPECT_EQ(open_fds(), before) << "instance " << i << " left descriptors open";
  }
  setrlimit(RLIMIT_NOFILE, &saved);
  // Wasmtime maps the host's EMFILE to EIO.
  EXPECT_NE(outs[0].find(": I/O error\nreopen ok\n"), std::string::npos) << outs[0];
  EXPECT_EQ(outs[0], outs[1]);  // the second instance got just as many
}

TEST_F(RuntimeTest, WriterWhoseReaderIsGoneGetsEpipeAndStops) {
  auto m = Load("spew.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  size_t taken = 0;
  req.stdout_mode = OutputMode::kCallback;
  req.stdout_callback = [&](std::string_view s) {
    if (taken >= (1u << 20)) return false;  // the reader went away
    taken += s.size();
    return true;
  };
  std::string err;
  req.stderr_mode = OutputMode::kCallback;
  req.stderr_callback = [&](std::string_view s) { err += s; return true; };
  req.limits.timeout = std::chrono::seconds(20);  // a spinning guest would end as kTimedOut
  auto r = m->Invoke(req);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->outcome, Outcome::kExited) << r->Describe();
  EXPECT_EQ(r->exit_code, 3);
  EXPECT_NE(err.find("write failed after 1048576 bytes: Broken pipe"), std::string::npos) << err;
}

TEST_F(RuntimeTest, PhaseTimingsOnlyWhenAsked) {
  auto m = Load("hello.wasm");
  ASSERT_TRUE(m);
  InvokeRequest req;
  auto plain = Invoke(*m, req);
  EXPECT_EQ(plain.result.phases.store.count() + plain.result.phases.run.count() +
                plain.result.phases.teardown.count(), 0);
  req.measure_phases = true;
  auto measured = Invoke(*m, req);
  ASSERT_TRUE(measured.result.success());
  EXPECT_EQ(measured.out, "Hello from WebAssembly!\n");
  const InvokePhases& p = measured.result.phases;
  for (auto d : {p.store, p.wasi, p.instantiate, p.run, p.teardown}) EXPECT_GT(d.count(), 0);
  EXPECT_LE(p.store + p.wasi + p.instantiate + p.run + p.teardown, measured.result.duration);
  EXPECT_EQ(runtime_->Stats().instances_running, 0u);
}

}  // namespace
}  // namespace wasmlet::runtime
