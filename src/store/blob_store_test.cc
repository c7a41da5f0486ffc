#include "store/blob_store.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include "util/files.h"
#include "util/sha256.h"

namespace wasmlet::store {
namespace {

namespace fs = std::filesystem;

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/wasmlet-store-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ + "/artifacts");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

TEST_F(StoreTest, PutAndRead) {
  BlobStore store(dir_ + "/data");
  auto hex = store.Put("hello");
  ASSERT_TRUE(hex.ok()) << hex.error().ToString();
  EXPECT_EQ(*hex, Sha256Hex("hello"));
  EXPECT_TRUE(store.Has(*hex));
  EXPECT_EQ(*store.ReadBlob(*hex), "hello");
  EXPECT_EQ(store.ListBlobs(), std::vector<std::string>{*hex});
}

TEST_F(StoreTest, DigestMismatchLeavesNothing) {
  BlobStore store(dir_ + "/data");
  std::string hex = Sha256Hex("expected");
  auto writer = store.BeginWrite(hex);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("tampered").ok());
  auto committed = (*writer)->Commit();
  ASSERT_FALSE(committed.ok());
  EXPECT_NE(committed.error().message.find("does not match"), std::string::npos);
  writer->reset();
  EXPECT_FALSE(store.Has(hex));
  EXPECT_TRUE(fs::is_empty(dir_ + "/data/tmp"));
}

TEST_F(StoreTest, SizeLimitEnforcedWhileStreaming) {
  BlobStore store(dir_ + "/data");
  auto writer = store.BeginWrite(Sha256Hex("abc"), 3);
  ASSERT_TRUE(writer.ok());
  EXPECT_TRUE((*writer)->Append("ab").ok());
  EXPECT_FALSE((*writer)->Append("cd").ok());
}

TEST_F(StoreTest, EnsureSharesOneDownloadAcrossThreads) {
  BlobStore store(dir_ + "/data");
  std::string content(1 << 20, 'x');
  std::string hex = Sha256Hex(content);
  std::atomic<int> downloads{0};
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      auto path = store.Ensure(hex, content.size(), [&](BlobWriter& w) {
        ++downloads;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return w.Append(content);
      });
      if (path.ok() && *ReadFile(*path) == content) ++ok;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 8);
  EXPECT_EQ(downloads.load(), 1);
}

TEST_F(StoreTest, EnsureSharesOneDownloadAcrossProcesses) {
  std::string content = "shared across processes";
  std::string hex = Sha256Hex(content);
  std::string counter = dir_ + "/count";
  std::vector<pid_t> children;
  for (int i = 0; i < 4; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      BlobStore store(dir_ + "/data");
      auto path = store.Ensure(hex, std::nullopt, [&](BlobWriter& w) {
        std::ofstream(counter, std::ios::app) << "x";
        usleep(200000);
        return w.Append(content);
      });
      _exit(path.ok() ? 0 : 1);
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(*ReadFile(counter), "x");
}

TEST_F(StoreTest, FailedDownloadIsRetriedByTheNextCaller) {
  BlobStore store(dir_ + "/data");
  std::string hex = Sha256Hex("data");
  auto bad = store.Ensure(hex, std::nullopt, [](BlobWriter& w) { return w.Append("wrong"); });
  EXPECT_FALSE(bad.ok());
  EXPECT_FALSE(store.Has(hex));
  auto good = store.Ensure(hex, std::nullopt, [](BlobWriter& w) { return w.Append("data"); });
  ASSERT_TRUE(good.ok()) << good.error().ToString();
  EXPECT_TRUE(store.Has(hex));
}

TEST_F(StoreTest, TagsListRemovePrune) {
  BlobStore store(dir_ + "/data", {dir_ + "/artifacts"});
  std::string module = *store.Put("module-bytes");
  std::string manifest = *store.Put("manifest-bytes");
  std::string config = *store.Put("config-bytes");
  std::string orphan = *store.Put("orphan");
  std::ofstream(dir_ + "/artifacts/" + module + "-abcd.cwasm") << "native";
  std::ofstream(dir_ + "/artifacts/" + orphan + "-abcd.cwasm") << "native";
  std::ofstream(dir_ + "/data/tmp/" + Sha256Hex("partial") + ".123.0") << "part";

  TagRecord tag{"localhost:5000/app:v1", "sha256:" + manifest, "sha256:" + module,
                "application/vnd.wasm.config.v0+json", {"sha256:" + config}, 12, 1700000000};
  ASSERT_TRUE(store.PutTag(tag).ok());
  auto got = store.GetTag("localhost:5000/app:v1");
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->module_digest, "sha256:" + module);
  EXPECT_EQ(got->other_digests, std::vector<std::string>{"sha256:" + config});
  EXPECT_FALSE(store.GetTag("localhost:5000/app:v2").has_value());
  ASSERT_EQ(store.ListTags().size(), 1u);

  auto report = store.Prune();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->removed_digests, std::vector<std::string>{"sha256:" + orphan});
  EXPECT_EQ(report->temp_files_removed, 1u);
  EXPECT_TRUE(store.Has(module) && store.Has(manifest) && store.Has(config));
  EXPECT_FALSE(store.Has(orphan));
  EXPECT_FALSE(fs::exists(dir_ + "/artifacts/" + orphan + "-abcd.cwasm"));
  EXPECT_TRUE(fs::exists(dir_ + "/artifacts/" + module + "-abcd.cwasm"));

  EXPECT_TRUE(*store.RemoveTag("localhost:5000/app:v1"));
  EXPECT_FALSE(*store.RemoveTag("localhost:5000/app:v1"));
  report = store.Prune();
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(report->removed_digests.size(), 3u);
  EXPECT_TRUE(store.ListBlobs().empty());
  EXPECT_FALSE(fs::exists(dir_ + "/artifacts/" + module + "-abcd.cwasm"));
}

TEST_F(StoreTest, DigestHexValidates) {
  EXPECT_TRUE(DigestHex("sha256:" + Sha256Hex("")).ok());
  EXPECT_FALSE(DigestHex("sha512:abcd").ok());
  EXPECT_FALSE(DigestHex("sha256:ABC").ok());
}

}  // namespace
}  // namespace wasmlet::store
