#include "node/node_agent.h"

#include <sys/sysinfo.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "util/log.h"

namespace wasmlet::node {
namespace {

uint64_t MachineMemory() {
  struct sysinfo info {};
  if (sysinfo(&info) != 0) return 0;
  return static_cast<uint64_t>(info.totalram) * info.mem_unit;
}

std::string ReadFirstLine(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

Json NodeObject(const NodeOptions& o) {
  Json labels = {{"kubernetes.io/arch", "wasm32-wasi"}, {"kubernetes.io/os", "wasi"},
                 {"kubernetes.io/hostname", o.node_name}, {"beta.kubernetes.io/arch", "wasm32-wasi"},
                 {"beta.kubernetes.io/os", "wasi"}, {"type", "wasmlet"}};
  for (const auto& [k, v] : o.extra_labels) labels[k] = v;
  Json taints = Json::array({
      {{"key", "kubernetes.io/arch"}, {"value", "wasm32-wasi"}, {"effect", "NoSchedule"}},
      {{"key", "kubernetes.io/arch"}, {"value", "wasm32-wasi"}, {"effect", "NoExecute"}},
  });
  return {{"apiVersion", "v1"}, {"kind", "Node"},
          {"metadata", {{"name", o.node_name}, {"labels", labels},
                        {"annotations", {{"node.alpha.kubernetes.io/ttl", "0"}}}}},
          {"spec", {{"taints", taints}}}};
}

Json NodeStatus(const NodeOptions& o, const std::string& ready_since) {
  uint64_t memory = o.memory_bytes != 0 ? o.memory_bytes : MachineMemory();
  int cpus = o.cpus != 0 ? o.cpus : static_cast<int>(std::thread::hardware_concurrency());
  if (cpus <= 0) cpus = 1;
  // Allocatable keeps 100 MiB for the agent itself.
  uint64_t reserved = 100ull << 20;
  uint64_t allocatable_memory = memory > reserved ? memory - reserved : memory;
  Json capacity = {{"cpu", std::to_string(cpus)}, {"memory", std::to_string(memory / 1024) + "Ki"},
                   {"pods", std::to_string(o.max_pods)}, {"ephemeral-storage", "10Gi"}};
  Json allocatable = capacity;
  allocatable["memory"] = std::to_string(allocatable_memory / 1024) + "Ki";
  struct utsname uts {};
  uname(&uts);
  std::string machine_id = ReadFirstLine("/etc/machine-id");
  std::string now = NowRfc3339();
  auto condition = [&](const char* type, const char* status, const char* reason, const char* message,
                       const std::string& since) {
    return Json{{"type", type}, {"status", status}, {"reason", reason}, {"message", message},
                {"lastHeartbeatTime", now}, {"lastTransitionTime", since}};
  };
  Json conditions = Json::array({
      condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "wasmlet has sufficient memory available", ready_since),
      condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "wasmlet has no disk pressure", ready_since),
      condition("PIDPressure", "False", "KubeletHasSufficientPID", "wasmlet has sufficient PID available", ready_since),
      condition("Ready", "True", "KubeletReady", "wasmlet is posting ready status", ready_since),
  });
  return {{"capacity", capacity}, {"allocatable", allocatable}, {"conditions", conditions},
          {"addresses", Json::array({{{"type", "InternalIP"}, {"address", o.node_ip}},
                                     {{"type", "Hostname"}, {"address", o.node_name}}})},
          {"daemonEndpoints", {{"kubeletEndpoint", {{"Port", o.kubelet_port}}}}},
          {"nodeInfo", {{"machineID", machine_id}, {"systemUUID", machine_id}, {"bootID", ""},
                        {"kernelVersion", uts.release}, {"osImage", "wasmlet (WASI preview 1)"},
                        {"containerRuntimeVersion", "wasmlet://" + o.engine},
                        {"kubeletVersion", "v1.35.0-wasmlet"}, {"kubeProxyVersion", ""},
                        {"operatingSystem", "wasi"}, {"architecture", "wasm32-wasi"}}}};
}

Status NodeAgent::Register() {
  if (ready_since_.empty()) ready_since_ = NowRfc3339();
  Json node = NodeObject(options_);
  auto created = client_.Create("/api/v1/nodes", node);
  if (!created.ok()) {
    if (KubeClient::StatusOf(created.error()) != 409) return created.take_error();
    // Exists: refresh labels, annotations and taints (our own; other labels stay).
    Json patch = {{"metadata", {{"labels", node["metadata"]["labels"]}, {"annotations", node["metadata"]["annotations"]}}},
                  {"spec", {{"taints", node["spec"]["taints"]}}}};
    auto patched = client_.MergePatch("/api/v1/nodes/" + options_.node_name, patch);
    if (!patched.ok()) return patched.take_error();
    node_uid_ = (*patched)["metadata"].value("uid", "");
    WLOG_INFO("node {}: updated the existing Node", options_.node_name);
  } else {
    node_uid_ = (*created)["metadata"].value("uid", "");
    WLOG_INFO("node {}: registered", options_.node_name);
  }
  return ReportStatus();
}

Status NodeAgent::ReportStatus() {
  auto r = client_.StrategicPatch("/api/v1/nodes/" + options_.node_name + "/status",
                                  Json{{"status", NodeStatus(options_, ready_since_)}});
  if (!r.ok()) return r.take_error();
  return OkStatus();
}

Status NodeAgent::RenewLease() {
  std::string path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/" + options_.node_name;
  Json spec = {{"holderIdentity", options_.node_name},
               {"leaseDurationSeconds", 40},
               {"renewTime", NowMicroTime()}};
  auto r = client_.MergePatch(path, Json{{"spec", spec}});
  if (r.ok()) return OkStatus();
  if (KubeClient::StatusOf(r.error()) != 404) return r.take_error();
  Json lease = {{"apiVersion", "coordination.k8s.io/v1"}, {"kind", "Lease"},
                {"metadata", {{"name", options_.node_name}, {"namespace", "kube-node-lease"}}},
                {"spec", spec}};
  if (!node_uid_.empty()) {
    lease["metadata"]["ownerReferences"] = Json::array(
        {{{"apiVersion", "v1"}, {"kind", "Node"}, {"name", options_.node_name}, {"uid", node_uid_}}});
  }
  auto c = client_.Create("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", lease);
  if (!c.ok()) return c.take_error();
  return OkStatus();
}

void NodeAgent::Run(const std::atomic<bool>& stop) {
  auto sleep = [&](std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!stop.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  auto backoff = std::chrono::milliseconds(500);
  bool registered = false;
  auto last_status = std::chrono::steady_clock::now();
  while (!stop.load()) {
    if (!registered) {
      auto s = Register();
      if (!s.ok()) {
        WLOG_WARN("node {}: registration failed: {}; retrying", options_.node_name, s.error().message);
        sleep(backoff);
        backoff = std::min(backoff * 2, std::chrono::milliseconds(8000));
        continue;
      }
      registered = true;
      last_status = std::chrono::steady_clock::now();
    }
    auto s = RenewLease();
    if (!s.ok()) {
      WLOG_WARN("node {}: lease renewal failed: {}", options_.node_name, s.error().message);
      // Retry sooner than the period while the API server is away; after an outage the Node
      // may be gone or NotReady: register again, which reports status.
      sleep(std::min(options_.lease_period, std::chrono::milliseconds(2000)));
      registered = false;
      continue;
    }
    if (std::chrono::steady_clock::now() - last_status >= options_.status_period) {
      if (auto st = ReportStatus(); !st.ok()) {
        WLOG_WARN("node {}: status report failed: {}", options_.node_name, st.error().message);
      } else {
        last_status = std::chrono::steady_clock::now();
      }
    }
    sleep(options_.lease_period);
  }
}

}  // namespace wasmlet::node
