// Hostile module output: arbitrary bytes as a WAGI module's stdout, split into writes at
// arbitrary points, with the hold timer firing at an arbitrary moment and the module ending
// well or badly. The response writer must never crash and must always produce one well-formed
// status line first.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "gateway/gateway.h"
#include "gateway/response.h"

namespace {

using namespace wasmlet::gateway;

class Sink : public ResponseSink, public Scheduler {
 public:
  void Send(std::string bytes) override { out += bytes; }
  bool WaitWritable() override { return true; }
  void Complete(bool) override { ++ends; }
  void Abort() override { ++ends; }
  void After(std::chrono::milliseconds, std::function<void()> fn) override { timer = std::move(fn); }
  std::string out;
  int ends = 0;
  std::function<void()> timer;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const uint8_t mode = data[0], hold = data[1], split = data[2] | 1, timer_at = data[3];
  std::string_view output(reinterpret_cast<const char*>(data) + 4, size - 4);

  auto sink = std::make_shared<Sink>();
  StreamSettings settings;
  settings.hold_bytes = 1 + hold * 64;
  RequestFraming framing{(mode & 1) != 0, (mode & 2) != 0, (mode & 4) != 0};
  auto writer = std::make_shared<ResponseWriter>(sink, settings, framing);
  writer->Start(*sink);
  size_t chunk = 0;
  for (size_t pos = 0; pos < output.size(); pos += split, ++chunk) {
    if (chunk == timer_at && sink->timer) sink->timer();
    if (!writer->OnOutput(output.substr(pos, split))) break;
  }
  writer->Finish((mode & 8) == 0, (mode & 16) ? 504 : 500, "fuzz");
  writer->Finish(true, 0, "");  // a second end is ignored
  if (sink->ends != 1) __builtin_trap();
  if (sink->out.compare(0, 9, "HTTP/1.1 ") != 0) __builtin_trap();
  int status = writer->status();
  if (status < 200 || status > 599) __builtin_trap();
  if (sink->out.find("\r\n\r\n") == std::string::npos) __builtin_trap();

  // The other parsers of module output.
  (void)ParseRoutesOutput(output, "fuzz");
  return 0;
}
