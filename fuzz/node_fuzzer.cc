// Hostile node-agent input: byte 0 picks the parser.
//  0: a kubeconfig (YAML or JSON) through LoadKubeConfig (from a scratch file).
//  1: an API server's pod list and watch stream through KubeClient::ListWatch on a fake
//     transport (list body, a line "--", then the watch bytes delivered in pieces of byte 1's
//     size), and every object it hands out through the pod decoding helpers (node/pod_util.h).
// Parsers must never crash; objects of the wrong shape are errors, never crashes.
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <string_view>

#include "node/kube_client.h"
#include "node/pod_util.h"

namespace {

using namespace wasmlet::node;

const std::string& ScratchDir() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/wasmlet-node-fuzz-XXXXXX";
    const char* made = mkdtemp(tmpl);
    if (made == nullptr) __builtin_trap();
    return std::string(made);
  }();
  return dir;
}

class FakeApiServer : public Transport {
 public:
  FakeApiServer(std::string list, std::string watch, size_t piece, std::atomic<bool>& stop)
      : list_(std::move(list)), watch_(std::move(watch)), piece_(piece), stop_(stop) {}
  wasmlet::Result<HttpResponse> Do(const HttpRequest&) override {
    // One list per input; a body that is no JSON object ends the run (the client would retry
    // after a back-off).
    if (lists_++ > 0 || !Json::parse(list_, nullptr, false).is_object()) stop_.store(true);
    return HttpResponse{200, list_};
  }
  wasmlet::Result<long> Stream(const HttpRequest&, const std::function<bool(std::string_view)>& on_data,
                               const std::atomic<bool>&) override {
    std::string_view rest(watch_);
    while (!rest.empty()) {
      size_t n = std::min(piece_, rest.size());
      if (!on_data(rest.substr(0, n))) break;
      rest.remove_prefix(n);
    }
    stop_.store(true);
    return 200L;
  }

 private:
  std::string list_, watch_;
  size_t piece_;
  std::atomic<bool>& stop_;
  int lists_ = 0;
};

void DecodePodFields(const Json& pod) {
  (void)FieldRefValue(pod, "metadata.name", "10.0.0.1");
  (void)FieldRefValue(pod, "metadata.labels['app']", "10.0.0.1");
  (void)FieldRefValue(pod, "metadata.annotations", "10.0.0.1");
  (void)FieldRefValue(pod, "spec.nodeName", "10.0.0.1");
  const Json spec = pod.is_object() ? pod.value("spec", Json::object()) : Json::object();
  const Json status = pod.is_object() ? pod.value("status", Json::object()) : Json::object();
  (void)ComputePodPhase(spec, status.is_object() ? status.value("initContainerStatuses", Json::array()) : Json(),
                        status.is_object() ? status.value("containerStatuses", Json::array()) : Json());
  if (!spec.is_object()) return;
  const Json containers = spec.value("containers", Json::array());
  for (const auto& c : containers) {
    (void)ResourceFieldValue(c, "limits.memory", "1Mi");
    (void)ResourceFieldValue(c, "requests.cpu", "1m");
    std::map<std::string, std::string> vars = {{"A", "1"}, {"B", "$(A)"}};
    if (c.is_object() && c.contains("args") && c["args"].is_array()) {
      for (const auto& a : c["args"]) {
        if (a.is_string()) (void)ExpandVars(a.get<std::string>(), vars);
      }
    }
  }
}

// What the pod manager reads from a pod, through the pure helpers. ListWatch hands out only
// JSON objects with metadata; the types of the fields below are checked by the API server's
// schema validation, so a mistyped field may throw json::type_error (never memory errors or UB).
void DecodePod(const Json& pod) {
  try {
    DecodePodFields(pod);
  } catch (const nlohmann::json::type_error&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2 || size > 65536) return 0;
  std::string_view input(reinterpret_cast<const char*>(data) + 2, size - 2);
  if (data[0] % 2 == 0) {
    std::string path = ScratchDir() + "/kubeconfig";
    {
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      out.write(input.data(), static_cast<std::streamsize>(input.size()));
    }
    (void)LoadKubeConfig(path);
    return 0;
  }
  size_t sep = input.find("\n--\n");
  std::string list(input.substr(0, sep));
  std::string watch(sep == std::string_view::npos ? std::string_view() : input.substr(sep + 4));
  std::atomic<bool> stop{false};
  KubeClient client(std::make_unique<FakeApiServer>(list, watch, 1 + data[1], stop));
  client.ListWatch(
      "/api/v1/pods?fieldSelector=spec.nodeName%3Dfuzz",
      [](const Json& items) {
        for (const auto& pod : items) DecodePod(pod);
      },
      [](const std::string&, const Json& pod) { DecodePod(pod); }, stop);
  return 0;
}
