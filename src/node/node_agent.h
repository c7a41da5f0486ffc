// The Node object and its heartbeat: registers (or updates) this node with labels, taints,
// addresses, capacity and nodeInfo; renews the Lease in kube-node-lease every 10 s; reports
// the Ready condition. API-server outages are ridden out with retries, never a crash.
//
// Threading: Run() blocks its thread until `stop`; nothing else is shared.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <string>

#include "node/kube_client.h"
#include "util/result.h"

namespace wasmlet::node {

struct NodeOptions {
  std::string node_name;
  std::string node_ip;
  std::map<std::string, std::string> extra_labels;
  int max_pods = 110;
  int kubelet_port = 10250;
  uint64_t memory_bytes = 0;  // capacity; 0 = the machine's
  int cpus = 0;               // capacity; 0 = the machine's
  std::string engine;         // "wasmtime 48.0.8", reported as the container runtime version
  std::chrono::milliseconds lease_period{10000};
  std::chrono::milliseconds status_period{60000};
};

// The Node object the agent registers (metadata + spec); status comes from NodeStatus.
Json NodeObject(const NodeOptions& options);
Json NodeStatus(const NodeOptions& options, const std::string& ready_since);

class NodeAgent {
 public:
  NodeAgent(KubeClient& client, NodeOptions options) : client_(client), options_(std::move(options)) {}
  // Create or update the Node and report its status once. Errors are returned (the caller
  // retries); Run() does this itself.
  Status Register();
  Status RenewLease();
  Status ReportStatus();
  // Registers (retrying), then renews the lease and reports status until `stop`.
  void Run(const std::atomic<bool>& stop);

 private:
  KubeClient& client_;
  NodeOptions options_;
  std::string ready_since_;
  std::string node_uid_;
};

}  // namespace wasmlet::node
