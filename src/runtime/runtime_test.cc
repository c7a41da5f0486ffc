// Runtime tests against the real Wasmtime engine and guests built from tests/guests.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace wasmlet::runtime
