// The pod reconciler: watches the pods bound to this node and runs each as WASI commands on
// the runtime (init containers in order, then the containers), reporting statuses as the
// kubelet does (phase, conditions, container states, restart counts, back-off).
//
// Threading: Run() owns the watch (one thread). Each pod has a worker thread; each running
// container a thread that runs guest code (the runtime runs a guest on its calling thread).
// Statuses are guarded per pod; status patches are serialized per pod. A resync thread
// retries patches that failed (API server outage) every 2 s. Public methods are thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "node/kube_client.h"
#include "runtime/runtime.h"
#include "util/result.h"

namespace wasmlet::node {

// Image reference -> local path of the verified wasm module (pulled into the store).
using ImageResolver = std::function<Result<std::string>(const std::string& image)>;

struct PodManagerOptions {
  std::string node_name;
  std::string node_ip;
  std::string data_dir;  // pods/<uid>/{volumes,logs} live here
  ImageResolver resolve_image;
  // Restart and image-pull back-off: the kubelet's 10 s doubling to 5 min, reset after 10 min.
  std::chrono::milliseconds backoff_base{10000};
  std::chrono::milliseconds backoff_cap{300000};
  uint64_t log_max_bytes = 10ull << 20;
};

class PodWorker;

// Where a container's log is, for the kubelet API.
struct LogLocation {
  std::string path;
  bool running = false;  // still written to (follow ends when this turns false)
};

class PodManager {
 public:
  PodManager(KubeClient& client, runtime::Runtime& runtime, PodManagerOptions options);
  ~PodManager();

  // Lists and watches this node's pods until `stop`; blocks.
  void Run(const std::atomic<bool>& stop);
  // Stops workers: running guests are cancelled and reported terminated (exit code 137),
  // waiting at most 5 s for them; then nothing more is written.
  void Shutdown();

  size_t PodCount();
  Json PodsJson();  // a v1 PodList of the pods this node runs (kubelet /pods)
  std::optional<LogLocation> FindLog(const std::string& ns, const std::string& pod,
                                     const std::string& container, bool previous);
  // Is the container still running (log follow)?
  bool ContainerRunning(const std::string& ns, const std::string& pod, const std::string& container);

  // For workers.
  KubeClient& client() { return client_; }
  runtime::Runtime& runtime() { return runtime_; }
  const PodManagerOptions& options() const { return options_; }
  const std::string& boot_id() const { return boot_id_; }
  void Event(const Json& pod, const std::string& container, const std::string& type,
             const std::string& reason, const std::string& message);

 private:
  void OnPod(const Json& pod);
  void OnPodGone(const std::string& uid);
  void ResyncLoop(const std::atomic<bool>& stop);
  void EventLoop();

  KubeClient& client_;
  runtime::Runtime& runtime_;
  PodManagerOptions options_;
  std::string boot_id_;

  std::mutex mu_;
  std::map<std::string, std::shared_ptr<PodWorker>> workers_;  // by uid; guarded by mu_

  std::mutex event_mu_;
  std::condition_variable event_cv_;
  std::deque<Json> events_;  // guarded by event_mu_; bounded
  bool event_stop_ = false;  // guarded by event_mu_
  std::thread event_thread_;
};

}  // namespace wasmlet::node
