// Pull benchmark: hello.wasm padded with a custom section to 2 MB and 20 MB (still runnable),
// pushed to a local docker-registry, then pulled
//   cold            empty store: manifest + config + layer download, verified, fsynced
//   cached tag      --pull missing: tag record + blob present, no network
//   cached digest   REF@sha256: no network whatever the policy
//   always (same)   --pull always: manifest re-fetched, blob not downloaded again
// in-process (oci::PullModule) and as a whole `wasmlet pull` process (cold and cached tag).
#include <chrono>
#include <cstdio>
#include <algorithm>
#include <cstring>
#include <random>

#include "harness.h"
#include "oci/push.h"
#include "oci/resolve.h"
#include "util/log.h"

using namespace wasmlet;
using namespace wasmlet::testing;

namespace {

std::string Leb128(uint64_t v) {
  std::string out;
  do {
    uint8_t byte = v & 0x7f;
    v >>= 7;
    if (v != 0) byte |= 0x80;
    out.push_back(static_cast<char>(byte));
  } while (v != 0);
  return out;
}

// hello.wasm + a custom section so the module has `size` bytes.
std::string PaddedModule(size_t size) {
  std::string wasm = Slurp(Guest("hello.wasm"));
  std::string name = "bench-padding";
  size_t payload = size - wasm.size() - 1 - 5 - 1 - name.size();
  std::string body = Leb128(name.size()) + name;
  std::string data(payload, '\0');
  std::mt19937_64 rng(42);
  for (size_t i = 0; i + 8 <= data.size(); i += 8) {
    uint64_t r = rng();
    std::memcpy(&data[i], &r, 8);
  }
  body += data;
  return wasm + '\0' + Leb128(body.size()) + body;
}

double Ms(std::chrono::steady_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

template <class F>
double Median(int n, F&& f) {
  std::vector<double> v;
  for (int i = 0; i < n; ++i) v.push_back(f());
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = argc > 1 ? std::atoi(argv[1]) : 5;
  spdlog::set_level(spdlog::level::warn);
  std::string dir = MakeTempDir("oci-bench");
  Registry registry;
  if (!registry.Start(dir + "/registry")) {
    std::fprintf(stderr, "docker-registry did not start\n");
    return 1;
  }
  auto transport = oci::MakeCurlTransport();
  oci::RegistryClient client(*transport, nullptr, {});
  std::printf("wasmlet pull benchmark: local docker-registry %s, median of %d\n",
              registry.host().c_str(), iterations);
  std::printf("%-8s %-38s %10s %10s\n", "module", "case", "ms", "MB/s");
  for (size_t mb : {2, 20}) {
    std::string module = PaddedModule(mb << 20);
    std::string ref = registry.host() + "/bench/m" + std::to_string(mb) + ":v1";
    auto pushed = oci::PushModule(client, *oci::ParseReference(ref), module, {});
    if (!pushed.ok()) {
      std::fprintf(stderr, "push: %s\n", pushed.error().ToString().c_str());
      return 1;
    }
    std::string digest_ref = registry.host() + "/bench/m" + std::to_string(mb) + "@" + pushed->manifest_digest;
    auto row = [&](const char* name, double ms) {
      std::string rate = "-";
      if (std::strncmp(name, "cold", 4) == 0) {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(module.size()) / (1 << 20) / (ms / 1000));
        rate = buf;
      }
      std::printf("%-8s %-38s %10.3f %10s\n", (std::to_string(mb) + " MB").c_str(), name, ms,
                  rate.c_str());
    };
    int run = 0;
    auto fresh_dir = [&] { return dir + "/store-" + std::to_string(mb) + "-" + std::to_string(run++); };
    oci::PullOptions options;
    row("cold (in-process)", Median(iterations, [&] {
          options.data_dir = fresh_dir();
          options.policy = oci::PullPolicy::kAlways;
          auto start = std::chrono::steady_clock::now();
          auto r = oci::PullModule(ref, options);
          double ms = Ms(std::chrono::steady_clock::now() - start);
          if (!r.ok() || r->cached) std::fprintf(stderr, "unexpected: not a cold pull\n");
          return ms;
        }));
    options.policy = oci::PullPolicy::kMissing;
    row("cached tag, --pull missing", Median(iterations * 20, [&] {
          auto start = std::chrono::steady_clock::now();
          auto r = oci::PullModule(ref, options);
          double ms = Ms(std::chrono::steady_clock::now() - start);
          if (!r.ok() || !r->cached) std::fprintf(stderr, "unexpected: not cached\n");
          return ms;
        }));
    options.policy = oci::PullPolicy::kAlways;
    row("cached digest ref (no network)", Median(iterations * 20, [&] {
          auto start = std::chrono::steady_clock::now();
          auto r = oci::PullModule(digest_ref, options);
          double ms = Ms(std::chrono::steady_clock::now() - start);
          if (!r.ok() || !r->cached) std::fprintf(stderr, "unexpected: not cached\n");
          return ms;
        }));
    row("tag unchanged, --pull always", Median(iterations, [&] {
          auto start = std::chrono::steady_clock::now();
          auto r = oci::PullModule(ref, options);
          return Ms(std::chrono::steady_clock::now() - start);
        }));
    std::vector<std::string> env = {"XDG_CACHE_HOME=" + dir + "/cache"};
    row("cold (wasmlet pull process)", Median(iterations, [&] {
          std::string d = fresh_dir();
          auto start = std::chrono::steady_clock::now();
          Output o = Child::Spawn({WASMLET_BINARY, "pull", "-q", "--data-dir", d, ref}, env).Wait();
          double ms = Ms(std::chrono::steady_clock::now() - start);
          if (o.code != 0) std::fprintf(stderr, "pull failed: %s\n", o.err.c_str());
          return ms;
        }));
    std::string warm = fresh_dir();
    Child::Spawn({WASMLET_BINARY, "pull", "-q", "--data-dir", warm, ref}, env).Wait();
    row("cached (wasmlet pull --pull missing)", Median(iterations, [&] {
          auto start = std::chrono::steady_clock::now();
          Output o = Child::Spawn({WASMLET_BINARY, "pull", "-q", "--pull", "missing", "--data-dir",
                                   warm, ref}, env).Wait();
          double ms = Ms(std::chrono::steady_clock::now() - start);
          if (o.code != 0) std::fprintf(stderr, "pull failed: %s\n", o.err.c_str());
          return ms;
        }));
  }
  registry.Stop();
  fs::remove_all(dir);
  return 0;
}
