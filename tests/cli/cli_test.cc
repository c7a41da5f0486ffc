// End-to-end tests of the `wasmlet` binary: run, compile, flags, exit codes and error messages.
#include <fcntl.h>
#include <poll.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

namespace {

namespace fs = std::filesystem;

struct Output {
  int code = -1;
  std::string out, err;
};

// Runs the wasmlet binary with `args`, feeding `input` on stdin; captures both streams.
Output Wasmlet(const std::vector<std::string>& args, const std::string& input = "",
               const std::vector<std::string>& extra_env = {}) {
  int in[2], out[2], err[2];
  EXPECT_EQ(pipe(in), 0);
  EXPECT_EQ(pipe(out), 0);
  EXPECT_EQ(pipe(err), 0);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
    std::vector<char*> argv;
    std::string binary = WASMLET_BINARY;
    argv.push_back(binary.data());
    std::vector<std::string> copy = args;
    for (auto& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (const auto& e : extra_env) putenv(strdup(e.c_str()));
    execv(binary.c_str(), argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (!input.empty()) {
    ssize_t n = write(in[1], input.data(), input.size());
    (void)n;
  }
  close(in[1]);
  Output result;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buffer[65536];
  while (open_fds > 0) {
    if (poll(fds, 2, 30000) <= 0) break;
    for (auto& f : fds) {
      if (f.fd >= 0 && (f.revents & (POLLIN | POLLHUP))) {
        ssize_t n = read(f.fd, buffer, sizeof buffer);
        if (n <= 0) {
          close(f.fd);
          f.fd = -1;
          --open_fds;
        } else {
          (f.fd == out[0] ? result.out : result.err).append(buffer, static_cast<size_t>(n));
        }
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string Guest(const std::string& name) { return std::string(WASMLET_GUEST_DIR) + "/" + name; }

class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("wasmlet-cli-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    cache_ = "--module-cache=" + (dir_ / "cache").string();
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
  std::string cache_;
};

TEST_F(CliTest, VersionNamesWasmletAndWasmtime) {
  auto r = Wasmlet({"--version"});
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("wasmlet "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wasmtime 48."), std::string::npos) << r.out;
}

TEST_F(CliTest, HelpOnEveryCommand) {
  auto top = Wasmlet({"--help"});
  EXPECT_EQ(top.code, 0);
  EXPECT_NE(top.out.find("run"), std::string::npos);
  EXPECT_NE(top.out.find("compile"), std::string::npos);
  for (const char* cmd : {"run", "compile"}) {
    auto r = Wasmlet({cmd, "--help"});
    EXPECT_EQ(r.code, 0) << cmd;
    EXPECT_NE(r.out.find("Usage"), std::string::npos) << cmd << r.out;
  }
  // Every subcommand listed in the top-level help answers --help too.
  std::istringstream lines(top.out);
  std::string line;
  bool in_subcommands = false;
  int checked = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("Subcommands:", 0) == 0) { in_subcommands = true; continue; }
    if (!in_subcommands || line.size() < 3 || line[0] != ' ') continue;
    std::string name = line.substr(line.find_first_not_of(' '));
    name = name.substr(0, name.find(' '));
    auto r = Wasmlet({name, "--help"});
    EXPECT_EQ(r.code, 0) << name;
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

TEST_F(CliTest, RunHelloWithColdAndWarmCache) {
  for (int i = 0; i < 2; ++i) {
    auto r = Wasmlet({"run", cache_, Guest("hello.wasm")});
    EXPECT_EQ(r.code, 0) << r.err;
    EXPECT_EQ(r.out, "Hello from WebAssembly!\n");
    EXPECT_EQ(r.err, "");
  }
  EXPECT_FALSE(fs::is_empty(dir_ / "cache"));
}

TEST_F(CliTest, GuestArgumentsFollowTheModule) {
  auto r = Wasmlet({"run", cache_, "-e", "A=1", Guest("echo.wasm"), "x", "--env", "B=2"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "arg[0]=echo.wasm\narg[1]=x\narg[2]=--env\narg[3]=B=2\nenv A=1\n");
  auto sep = Wasmlet({"run", cache_, Guest("echo.wasm"), "--", "-y"});
  EXPECT_EQ(sep.out, "arg[0]=echo.wasm\narg[1]=-y\n");
}

TEST_F(CliTest, NoHostEnvironmentByDefault) {
  auto r = Wasmlet({"run", cache_, Guest("echo.wasm")}, "", {"LEAK=host-secret"});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out.find("LEAK"), std::string::npos) << r.out;
  auto passed = Wasmlet({"run", cache_, "--env", "LEAK", Guest("echo.wasm")}, "", {"LEAK=host-secret"});
  EXPECT_NE(passed.out.find("env LEAK=host-secret"), std::string::npos) << passed.out;
}

TEST_F(CliTest, EnvFile) {
  std::ofstream(dir_ / "vars.env") << "# comment\nA=1\n\nB=two words\n";
  auto r = Wasmlet({"run", cache_, "--env-file", (dir_ / "vars.env").string(), Guest("echo.wasm")});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("env A=1\nenv B=two words\n"), std::string::npos) << r.out;
  std::ofstream(dir_ / "bad.env") << "A=1\nnot a pair\n";
  auto bad = Wasmlet({"run", cache_, "--env-file", (dir_ / "bad.env").string(), Guest("echo.wasm")});
  EXPECT_EQ(bad.code, 2);
  EXPECT_NE(bad.err.find("bad.env:2"), std::string::npos) << bad.err;
}

TEST_F(CliTest, DirectoriesReadWriteAndReadOnly) {
  fs::create_directories(dir_ / "data");
  std::ofstream(dir_ / "data/in.txt") << "hello file\n";
  std::string data = (dir_ / "data").string();
  auto read = Wasmlet({"run", cache_, "--dir", data + "::/d", Guest("files.wasm"), "read", "/d/in.txt"});
  EXPECT_EQ(read.code, 0) << read.out << read.err;
  EXPECT_EQ(read.out, "hello file\n");
  auto write = Wasmlet({"run", cache_, "--dir", data + "::/d", Guest("files.wasm"), "write", "/d/out.txt", "hi"});
  EXPECT_EQ(write.code, 0) << write.out;
  EXPECT_TRUE(fs::exists(dir_ / "data/out.txt"));
  auto ro = Wasmlet({"run", cache_, "--dir", data + "::/d:ro", Guest("files.wasm"), "write", "/d/ro.txt", "hi"});
  EXPECT_EQ(ro.code, 1);
  EXPECT_FALSE(fs::exists(dir_ / "data/ro.txt"));
  auto none = Wasmlet({"run", cache_, Guest("files.wasm"), "read", "/d/in.txt"});
  EXPECT_EQ(none.code, 1);
  auto missing = Wasmlet({"run", cache_, "--dir", (dir_ / "nope").string(), Guest("hello.wasm")});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("not a directory"), std::string::npos) << missing.err;
}

TEST_F(CliTest, StdinIsInherited) {
  auto r = Wasmlet({"run", cache_, Guest("cat.wasm")}, "piped input");
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "piped input");
  EXPECT_EQ(r.err, "copied 11 bytes\n");
}

TEST_F(CliTest, ExitCodeBecomesTheProcessExitCode) {
  auto r = Wasmlet({"run", cache_, Guest("exit_code.wasm"), "7"});
  EXPECT_EQ(r.code, 7);
  EXPECT_EQ(r.out, "exiting with 7\n");
}

TEST_F(CliTest, TrapPrintsReasonAndBacktrace) {
  auto r = Wasmlet({"run", cache_, Guest("trap.wasm")});
  EXPECT_EQ(r.code, 134);
  EXPECT_NE(r.err.find("trapped: wasm `unreachable` instruction executed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("wasm backtrace:"), std::string::npos);
  EXPECT_NE(r.err.find("explode"), std::string::npos) << r.err;
  auto so = Wasmlet({"run", cache_, Guest("recursion.wasm")});
  EXPECT_EQ(so.code, 134);
  EXPECT_NE(so.err.find("stack overflow"), std::string::npos) << so.err;
}

TEST_F(CliTest, TimeoutAndMemoryLimitSayWhichLimit) {
  auto t = Wasmlet({"run", cache_, "--timeout", "200ms", Guest("loop.wasm")});
  EXPECT_EQ(t.code, 124);
  EXPECT_NE(t.err.find("time limit of 200 ms exceeded"), std::string::npos) << t.err;
  EXPECT_NE(t.err.find("--timeout"), std::string::npos);
  auto m = Wasmlet({"run", cache_, "--memory-limit", "16MiB", Guest("memory_hog.wasm")});
  EXPECT_EQ(m.code, 137);
  EXPECT_NE(m.err.find("memory limit of 16777216 bytes"), std::string::npos) << m.err;
}

TEST_F(CliTest, BadInputGivesOneClearLine) {
  auto missing = Wasmlet({"run", cache_, (dir_ / "missing.wasm").string()});
  EXPECT_EQ(missing.code, 2);
  EXPECT_NE(missing.err.find("missing.wasm: no such file"), std::string::npos) << missing.err;
  EXPECT_EQ(std::count(missing.err.begin(), missing.err.end(), '\n'), 1);

  std::ofstream(dir_ / "text.wasm") << "\x01\x02 this is not wasm";
  auto notwasm = Wasmlet({"run", cache_, (dir_ / "text.wasm").string()});
  EXPECT_EQ(notwasm.code, 1);
  EXPECT_NE(notwasm.err.find("text.wasm: not a WebAssembly module"), std::string::npos) << notwasm.err;

  std::ofstream(dir_ / "broken.wasm") << std::string("\0asm\x01\0\0\0\x03\x02\x01", 11);
  auto broken = Wasmlet({"run", cache_, (dir_ / "broken.wasm").string()});
  EXPECT_EQ(broken.code, 1);
  EXPECT_NE(broken.err.find("compile error: broken.wasm: invalid module"), std::string::npos) << broken.err;

  auto noexport = Wasmlet({"run", cache_, "--invoke", "nope", Guest("hello.wasm")});
  EXPECT_EQ(noexport.code, 2);
  EXPECT_NE(noexport.err.find("no exported function 'nope'"), std::string::npos) << noexport.err;

  auto badflag = Wasmlet({"run", "--bogus", Guest("hello.wasm")});
  EXPECT_EQ(badflag.code, 2);
  auto badsize = Wasmlet({"run", "--memory-limit", "lots", Guest("hello.wasm")});
  EXPECT_EQ(badsize.code, 2);
  EXPECT_NE(badsize.err.find("not a size"), std::string::npos) << badsize.err;
  auto nocmd = Wasmlet({});
  EXPECT_EQ(nocmd.code, 2);
  for (const auto* r : {&missing, &notwasm, &broken, &noexport, &badflag, &badsize}) {
    EXPECT_EQ(r->err.find("Aborted"), std::string::npos);
    EXPECT_EQ(r->err.find("terminate called"), std::string::npos);
  }
}

TEST_F(CliTest, InvokeAnotherExportAndRunWatText) {
  auto r = Wasmlet({"run", cache_, "--invoke", "greet", Guest("hello_wat.wasm")});
  EXPECT_EQ(r.code, 0);
  EXPECT_EQ(r.out, "greetings\n");
  auto wat = Wasmlet({"run", cache_, Guest("hello_wat.wat")});
  EXPECT_EQ(wat.out, "Hello from WAT!\n");
}

TEST_F(CliTest, CompileThenRunArtifact) {
  std::string out = (dir_ / "go.cwasm").string();
  auto c = Wasmlet({"compile", Guest("go_hello.wasm"), "-o", out});
  EXPECT_EQ(c.code, 0) << c.err;
  ASSERT_TRUE(fs::exists(out));
  auto r = Wasmlet({"run", "--no-cache", out, "a"});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "Hello from Go!\nargs: a\n");
  auto missing = Wasmlet({"compile", (dir_ / "none.wasm").string()});
  EXPECT_EQ(missing.code, 2);
}

}  // namespace
