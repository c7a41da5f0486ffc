#include <gtest/gtest.h>

#include <filesystem>

#include "util/files.h"
#include "util/result.h"
#include "util/sha256.h"
#include "util/units.h"

namespace wasmlet {
namespace {

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 streamed;
  streamed.Update("a");
  streamed.Update("bc");
  EXPECT_EQ(streamed.FinishHex(), Sha256Hex("abc"));
  EXPECT_TRUE(IsSha256Hex(Sha256Hex("x")));
  EXPECT_FALSE(IsSha256Hex("ABC"));
}

TEST(Result, CarriesPhaseAndWhere) {
  Result<int> bad = MakeError(Phase::kCompile, "invalid magic number", "hello.wasm");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().ToString(), "compile error: hello.wasm: invalid magic number");
  Result<int> good = 7;
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 7);
}

TEST(Files, AtomicWriteThenRead) {
  auto dir = std::filesystem::temp_directory_path() / ("wasmlet-util-" + std::to_string(::getpid()));
  ASSERT_TRUE(MakeDirs((dir / "a/b").string()).ok());
  std::string path = (dir / "a/b/file").string();
  ASSERT_TRUE(WriteFileAtomic(path, "first").ok());
  ASSERT_TRUE(WriteFileAtomic(path, "second").ok());
  auto content = ReadFile(path);
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, "second");
  // No temporary files are left behind.
  size_t entries = 0;
  for (auto& e : std::filesystem::directory_iterator(dir / "a/b")) { (void)e; ++entries; }
  EXPECT_EQ(entries, 1u);
  auto missing = ReadFile((dir / "nope").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().ToString().find("nope"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// Found by gateway_config_fuzzer: out-of-range values are errors, not wrapped or UB casts.
TEST(Units, OutOfRangeSizesAndDurationsAreErrors) {
  EXPECT_FALSE(ParseSize("17179869184G").ok());  // 2^64 bytes
  EXPECT_EQ(*ParseSize("17179869183G"), 17179869183ull << 30);
  EXPECT_FALSE(ParseDuration("1e100s").ok());
  EXPECT_FALSE(ParseDuration("nan").ok());
  EXPECT_FALSE(ParseDuration("inf").ok());
  EXPECT_EQ(ParseDuration("1.5s")->count(), 1500);
}

}  // namespace
}  // namespace wasmlet
