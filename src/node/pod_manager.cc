#include "node/pod_manager.h"

#include <sys/stat.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>

#include "node/container_log.h"
#include "node/pod_util.h"
#include "util/base64.h"
#include "util/files.h"
#include "util/log.h"

namespace wasmlet::node {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string RandomHex(size_t n) {
  std::random_device rd;
  std::string out;
  const char* hex = "0123456789abcdef";
  for (size_t i = 0; i < n; ++i) out.push_back(hex[rd() % 16]);
  return out;
}

Result<std::string> Base64Decode(const std::string& in) {
  auto decoded = ::wasmlet::Base64Decode(in);
  if (!decoded) return MakeError(Phase::kConfig, "invalid base64");
  return std::move(*decoded);
}

bool ValidEnvName(const std::string& name) {
  if (name.empty()) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  }
  return !std::isdigit(static_cast<unsigned char>(name[0]));
}

// Writes `content` to dir/relative, creating parents; rejects paths escaping dir.
Status WriteVolumeFile(const std::string& dir, const std::string& relative, const std::string& content) {
  if (relative.empty() || relative[0] == '/' || relative.find("..") != std::string::npos) {
    return MakeError(Phase::kConfig, "invalid volume file path '" + relative + "'");
  }
  fs::path p = fs::path(dir) / relative;
  std::error_code ec;
  fs::create_directories(p.parent_path(), ec);
  return WriteFileAtomic(p.string(), content);
}

}  // namespace

// One container's status as the kubelet reports it.
struct ContainerRecord {
  std::string name;
  std::string image;
  bool init = false;
  int restart_count = 0;
  enum class Kind { kWaiting, kRunning, kTerminated } kind = Kind::kWaiting;
  std::string reason = "ContainerCreating";
  std::string message;
  int exit_code = 0;
  std::string started_at, finished_at, container_id, image_id;
  Json last_state = Json::object();
  bool restarting_adopted = false;  // adopted in back-off: the next run is a restart

  Json ToJson() const {
    Json j = {{"name", name}, {"image", image}, {"imageID", image_id}, {"restartCount", restart_count},
              {"ready", kind == Kind::kRunning && !init}, {"started", kind == Kind::kRunning},
              {"lastState", last_state}};
    if (!container_id.empty()) j["containerID"] = container_id;
    if (kind == Kind::kWaiting) {
      Json w = {{"reason", reason}};
      if (!message.empty()) w["message"] = message;
      j["state"] = {{"waiting", w}};
    } else if (kind == Kind::kRunning) {
      j["state"] = {{"running", {{"startedAt", started_at}}}};
    } else {
      j["state"] = {{"terminated", TerminatedJson()}};
    }
    return j;
  }
  Json TerminatedJson() const {
    Json t = {{"exitCode", exit_code}, {"reason", reason}, {"startedAt", started_at}, {"finishedAt", finished_at}};
    if (!message.empty()) t["message"] = message;
    if (!container_id.empty()) t["containerID"] = container_id;
    return t;
  }
  void FromJson(const Json& s) {
    restart_count = s.value("restartCount", 0);
    container_id = s.value("containerID", "");
    image_id = s.value("imageID", "");
    last_state = s.value("lastState", Json::object());
    const Json& state = s.value("state", Json::object());
    if (state.contains("running")) {
      kind = Kind::kRunning;
      started_at = state["running"].value("startedAt", "");
    } else if (state.contains("terminated")) {
      const Json& t = state["terminated"];
      kind = Kind::kTerminated;
      exit_code = t.value("exitCode", 0);
      reason = t.value("reason", "");
      message = t.value("message", "");
      started_at = t.value("startedAt", "");
      finished_at = t.value("finishedAt", "");
    } else if (state.contains("waiting")) {
      kind = Kind::kWaiting;
      reason = state["waiting"].value("reason", "");
      message = state["waiting"].value("message", "");
      restarting_adopted = last_state.contains("terminated");
    }
  }
};

class PodWorker : public std::enable_shared_from_this<PodWorker> {
 public:
  PodWorker(PodManager& manager, Json pod) : manager_(manager), pod_(std::move(pod)) {
    // Only const access to pod_ below (operator[] on a const Json never inserts).
    const Json& meta = pod_["metadata"];
    uid_ = meta.value("uid", "");
    ns_ = meta.value("namespace", "default");
    name_ = meta.value("name", "");
    dir_ = manager_.options().data_dir + "/pods/" + uid_;
    const Json& spec = pod_["spec"];
    policy_ = spec.value("restartPolicy", "Always");
    const Json& status = pod_.value("status", Json::object());
    start_time_ = status.value("startTime", "");
    for (const auto& c : status.value("conditions", Json::array())) {
      conditions_[c.value("type", "")] = {c.value("status", ""), c.value("lastTransitionTime", "")};
    }
    auto adopt = [&](const char* key, const char* status_key, bool init) {
      for (const auto& c : spec.value(key, Json::array())) {
        ContainerRecord r;
        r.name = c.value("name", "");
        r.image = c.value("image", "");
        r.init = init;
        for (const auto& s : status.value(status_key, Json::array())) {
          if (s.value("name", "") == r.name) r.FromJson(s);
        }
        (init ? init_ : containers_).push_back(r);
      }
    };
    adopt("initContainers", "initContainerStatuses", true);
    adopt("containers", "containerStatuses", false);
    std::string phase = status.value("phase", "");
    terminal_at_adoption_ = phase == "Succeeded" || phase == "Failed";
    adopted_ = !status.value("containerStatuses", Json::array()).empty();
  }

  const std::string& uid() const { return uid_; }
  const std::string& ns() const { return ns_; }
  const std::string& name() const { return name_; }

  void Start() {
    auto self = shared_from_this();
    std::thread([self] { self->Main(); }).detach();
  }

  void Update(const Json& pod) {
    std::lock_guard<std::mutex> lock(mu_);
    // pod_ stays as first seen (immutable, read by worker threads without a lock): the only
    // later change that matters to a running pod is its deletion.
    bool deleting = pod["metadata"].contains("deletionTimestamp") && !pod["metadata"]["deletionTimestamp"].is_null();
    if (deleting && !deleting_) {
      deleting_ = true;
      // As the kubelet: the containers are told to stop (for a guest: its output fails with
      // EPIPE, see RunContainer), get the grace period to end, then are killed (cancelled).
      const Json& meta = pod["metadata"];
      long grace = 30;
      if (meta.contains("deletionGracePeriodSeconds") && meta["deletionGracePeriodSeconds"].is_number_integer()) {
        grace = meta["deletionGracePeriodSeconds"].get<long>();
      } else if (pod_["spec"].contains("terminationGracePeriodSeconds") &&
                 pod_["spec"]["terminationGracePeriodSeconds"].is_number_integer()) {
        grace = pod_["spec"]["terminationGracePeriodSeconds"].get<long>();
      }
      grace_ = std::chrono::seconds(std::clamp(grace, 0L, 366L * 24 * 3600));
      auto self = shared_from_this();
      std::thread([self] { self->KillAfterGracePeriod(); }).detach();
      cv_.notify_all();
    }
  }

  // The agent stops: BeginShutdown cancels the running guests, whose threads report them
  // terminated (137); EndShutdown waits for that (until `deadline`), then nothing more is
  // written. A restarted agent adopts those statuses (and restarts as the policy says).
  void BeginShutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (removed_) return;
      agent_stopping_ = true;
      cv_.notify_all();
    }
    cancel_->Cancel();
  }
  void EndShutdown(std::chrono::steady_clock::time_point deadline) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_until(lock, deadline, [&] { return guests_running_ == 0 || removed_; });
    }
    Remove(/*cleanup=*/false);
  }

  // The pod is gone from the API (or the agent stops): stop everything, write nothing more.
  void Remove(bool cleanup) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      removed_ = true;
      cleanup_ = cleanup;
      cv_.notify_all();
    }
    cancel_->Cancel();  // nothing of a removed pod keeps running
  }

  void MarkDirty() {
    std::lock_guard<std::mutex> lock(mu_);
    dirty_ = true;
  }
  bool dirty() {
    std::lock_guard<std::mutex> lock(mu_);
    return dirty_ && !removed_ && !released_;
  }

  Json PodJson() {
    std::lock_guard<std::mutex> lock(mu_);
    Json pod = pod_;
    pod["status"] = BuildStatusLocked();
    return pod;
  }

  std::optional<LogLocation> FindLog(const std::string& container, bool previous) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto* list : {&init_, &containers_}) {
      for (auto& r : *list) {
        if (r.name != container) continue;
        int n = r.restart_count - (previous ? 1 : 0);
        if (n < 0) return std::nullopt;
        // A container waiting to restart shows its last run's log, as the kubelet does.
        if (!previous && r.kind == ContainerRecord::Kind::kWaiting && r.restart_count > 0 &&
            !fs::exists(LogPath(r.name, n))) {
          --n;
        }
        return LogLocation{LogPath(r.name, n), r.kind == ContainerRecord::Kind::kRunning && !previous};
      }
    }
    return std::nullopt;
  }

  bool Running(const std::string& container) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto* list : {&init_, &containers_}) {
      for (auto& r : *list) {
        if (r.name == container) return r.kind == ContainerRecord::Kind::kRunning && !removed_;
      }
    }
    return false;
  }

  void SyncStatus() {
    std::lock_guard<std::mutex> sync_lock(sync_mu_);
    Json status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (removed_ || released_) return;
      status = BuildStatusLocked();
      dirty_ = false;
    }
    auto r = manager_.client().MergePatch(PodPath() + "/status", Json{{"status", status}});
    if (r.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (patch_failing_) WLOG_INFO("pod {}/{}: status reported again", ns_, name_);
      patch_failing_ = false;
    } else {
      long code = KubeClient::StatusOf(r.error());
      std::lock_guard<std::mutex> lock(mu_);
      // One warning per outage, not one per retry.
      if (!patch_failing_) WLOG_WARN("pod {}/{}: status patch failed: {} (retrying every 2 s)", ns_, name_, r.error().message);
      patch_failing_ = true;
      if (code == 404) {
        removed_ = true;
        cv_.notify_all();
      } else {
        dirty_ = true;
      }
    }
  }

 private:
  std::string PodPath() const { return "/api/v1/namespaces/" + ns_ + "/pods/" + name_; }
  std::string LogPath(const std::string& container, int n) const {
    return dir_ + "/logs/" + container + "/" + std::to_string(n) + ".log";
  }
  bool StoppingLocked() const { return deleting_ || removed_ || agent_stopping_; }

  // Runs on its own thread from the deletion on: cancels the guests still running when the
  // grace period is over (init containers included: they run on the pod's main thread).
  void KillAfterGracePeriod() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!cv_.wait_for(lock, grace_, [&] { return guests_running_ == 0 || removed_; })) {
      WLOG_INFO("pod {}/{}: grace period of {} s over, stopping {} running guest(s)", ns_, name_,
                grace_.count(), guests_running_);
    }
    lock.unlock();
    cancel_->Cancel();
  }
  bool Stopping() {
    std::lock_guard<std::mutex> lock(mu_);
    return StoppingLocked();
  }
  // Sleeps up to d; false when the pod is stopping.
  bool WaitFor(std::chrono::milliseconds d) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, d, [&] { return StoppingLocked(); });
    return !StoppingLocked();
  }

  void SetCondition(Json& list, const std::string& type, bool value, const std::string& reason) {
    std::string status = value ? "True" : "False";
    auto& [old_status, time] = conditions_[type];
    if (old_status != status || time.empty()) {
      old_status = status;
      time = NowRfc3339();
    }
    Json c = {{"type", type}, {"status", status}, {"lastTransitionTime", time}, {"lastProbeTime", nullptr}};
    if (!reason.empty()) c["reason"] = reason;
    list.push_back(c);
  }

  Json BuildStatusLocked() {
    Json init = Json::array(), main = Json::array();
    for (const auto& r : init_) init.push_back(r.ToJson());
    for (const auto& r : containers_) main.push_back(r.ToJson());
    std::string phase = ComputePodPhase(pod_["spec"], init, main);
    bool initialized = true;
    for (const auto& r : init_) {
      if (!(r.kind == ContainerRecord::Kind::kTerminated && r.exit_code == 0)) initialized = false;
    }
    bool all_running = !containers_.empty();
    for (const auto& r : containers_) {
      if (r.kind != ContainerRecord::Kind::kRunning) all_running = false;
    }
    bool completed = phase == "Succeeded" || phase == "Failed";
    Json conditions = Json::array();
    SetCondition(conditions, "PodReadyToStartContainers", volumes_ready_, "");
    SetCondition(conditions, "Initialized", initialized, initialized ? "" : "ContainersNotInitialized");
    std::string not_ready = completed ? "PodCompleted" : "ContainersNotReady";
    SetCondition(conditions, "Ready", all_running, all_running ? "" : not_ready);
    SetCondition(conditions, "ContainersReady", all_running, all_running ? "" : not_ready);
    SetCondition(conditions, "PodScheduled", true, "");
    const std::string& ip = manager_.options().node_ip;
    Json status = {{"phase", phase}, {"conditions", conditions}, {"hostIP", ip},
                   {"hostIPs", Json::array({{{"ip", ip}}})}, {"podIP", ip},
                   {"podIPs", Json::array({{{"ip", ip}}})}, {"startTime", start_time_},
                   {"containerStatuses", main}};
    if (!init_.empty()) status["initContainerStatuses"] = init;
    const Json& old = pod_.value("status", Json::object());
    if (old.contains("qosClass")) status["qosClass"] = old["qosClass"];
    return status;
  }

  // ---- the pod's life ----------------------------------------------------------------------
  void Main() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (start_time_.empty()) start_time_ = NowRfc3339();
    }
    if (terminal_at_adoption_) {
      WLOG_INFO("pod {}/{}: adopted in a final phase", ns_, name_);
      {
        std::lock_guard<std::mutex> lock(mu_);
        volumes_ready_ = true;
      }
      WaitUntilStopping();
      Finish();
      return;
    }
    if (adopted_) WLOG_INFO("pod {}/{}: adopted after an agent restart", ns_, name_);
    SyncStatus();
    // Volumes; a missing configMap/secret keeps the pod in ContainerCreating and is retried.
    while (!Stopping()) {
      auto s = PrepareVolumes();
      if (s.ok()) break;
      manager_.Event(pod_, "", "Warning", "FailedMount", s.error().message);
      if (!WaitFor(std::chrono::milliseconds(2000))) break;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      volumes_ready_ = true;
    }
    const Json spec = pod_["spec"];
    const Json init_specs = spec.value("initContainers", Json::array());
    bool init_ok = true;
    for (size_t i = 0; i < init_specs.size() && !Stopping(); ++i) {
      if (!RunContainer(init_specs[i], init_[i])) {
        init_ok = false;
        break;
      }
    }
    if (init_ok && !Stopping()) {
      const Json main_specs = spec.value("containers", Json::array());
      auto self = shared_from_this();
      for (size_t i = 0; i < main_specs.size(); ++i) {
        ++live_containers_;
        Json c = main_specs[i];
        std::thread([self, c, i] {
          self->RunContainer(c, self->containers_[i]);
          std::lock_guard<std::mutex> lock(self->mu_);
          --self->live_containers_;
          self->cv_.notify_all();
        }).detach();
      }
    }
    WaitUntilStopping();
    Finish();
  }

  void WaitUntilStopping() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return StoppingLocked(); });
  }

  // Deletion: stop the workloads, report them, release the object. Removal: just stop.
  void Finish() {
    bool deleting;
    {
      std::unique_lock<std::mutex> lock(mu_);
      // The pod object goes away only when none of its guests runs any more: they end by
      // themselves or are cancelled after the grace period (KillAfterGracePeriod). The bound
      // covers a guest stuck in a host call that cannot be interrupted.
      if (deleting_ && !removed_) {
        cv_.wait_for(lock, grace_ + std::chrono::seconds(10), [&] { return guests_running_ == 0 || removed_; });
      }
      deleting = deleting_ && !removed_;
      if (deleting) {
        std::string now = NowRfc3339();
        for (auto* list : {&init_, &containers_}) {
          for (auto& r : *list) {
            if (r.kind == ContainerRecord::Kind::kRunning) {
              // WASI guests get no signal: output is closed at once (EPIPE) and the container
              // is reported killed, exit code 137, as the kubelet reports a SIGKILL.
              r.kind = ContainerRecord::Kind::kTerminated;
              r.exit_code = 137;
              r.reason = "Error";
              r.message = "stopped: the pod was deleted";
              r.finished_at = now;
            }
          }
        }
        killed_ = true;
      }
    }
    if (deleting) {
      manager_.Event(pod_, "", "Normal", "Killing", "Stopping the pod's containers");
      SyncStatus();
      Json options = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"gracePeriodSeconds", 0},
                      {"preconditions", {{"uid", uid_}}}};
      auto r = manager_.client().Delete(PodPath(), options);
      if (!r.ok() && KubeClient::StatusOf(r.error()) != 404) {
        WLOG_WARN("pod {}/{}: final delete failed: {} (retried on the next event)", ns_, name_, r.error().message);
      }
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    bool cleanup;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cleanup = cleanup_ || deleting;
    }
    if (cleanup) {
      // Container threads still in guest code keep their files until they return.
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(5), [&] { return live_containers_ == 0; });
      lock.unlock();
      std::error_code ec;
      fs::remove_all(dir_ + "/volumes", ec);
    }
  }

  bool ShouldRestart(const ContainerRecord& r) const {
    if (r.init) return policy_ != "Never" && r.exit_code != 0;
    if (policy_ == "Always") return true;
    if (policy_ == "OnFailure") return r.exit_code != 0;
    return false;
  }

  void SetWaiting(ContainerRecord& r, const std::string& reason, const std::string& message) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      r.kind = ContainerRecord::Kind::kWaiting;
      r.reason = reason;
      r.message = message;
    }
    SyncStatus();
  }

  // Runs one container to its end, restarting as the policy says. True when it ended well
  // (exit 0, or still running when the pod stops).
  bool RunContainer(const Json& spec, ContainerRecord& r) {
    auto backoff = manager_.options().backoff_base;
    // Adoption: what the previous agent reported.
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (r.kind == ContainerRecord::Kind::kRunning) {
        // It died with the previous agent process.
        r.kind = ContainerRecord::Kind::kTerminated;
        r.exit_code = 137;
        r.reason = "ContainerStatusUnknown";
        r.message = "the wasmlet agent restarted while the container was running";
        r.finished_at = NowRfc3339();
        dirty_ = true;
      }
      if (r.kind == ContainerRecord::Kind::kTerminated) {
        if (!ShouldRestart(r)) {
          dirty_ = true;
          return r.exit_code == 0;
        }
        r.last_state = {{"terminated", r.TerminatedJson()}};
        ++r.restart_count;
      } else if (r.restarting_adopted) {
        ++r.restart_count;
      }
    }
    while (!Stopping()) {
      auto module = Pull(spec, r);
      if (!module.ok()) return false;  // stopping
      std::string config_error;
      auto request = BuildRequest(spec, r, config_error);
      if (!request.ok()) {
        manager_.Event(pod_, r.name, "Warning", "Failed", "Error: " + request.error().message);
        SetWaiting(r, config_error, request.error().message);
        if (!WaitFor(backoff)) return false;
        backoff = std::min(backoff * 2, manager_.options().backoff_cap);
        continue;
      }
      std::string log_path = LogPath(r.name, r.restart_count);
      std::error_code ec;
      fs::create_directories(fs::path(log_path).parent_path(), ec);
      auto log = std::make_shared<ContainerLog>(log_path, manager_.options().log_max_bytes);
      auto self = shared_from_this();
      auto output = [self, log](const char* stream) {
        return [self, log, stream](std::string_view data) {
          if (self->Stopping()) return false;  // the pod is going away: EPIPE to the guest
          log->Write(stream, data);
          return true;
        };
      };
      request->stdout_mode = runtime::OutputMode::kCallback;
      request->stdout_callback = output("stdout");
      request->stderr_mode = runtime::OutputMode::kCallback;
      request->stderr_callback = output("stderr");
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (StoppingLocked()) return false;
        r.kind = ContainerRecord::Kind::kRunning;
        r.started_at = NowRfc3339();
        r.container_id = "wasmlet://" + manager_.boot_id() + "-" + uid_.substr(0, 8) + "-" + r.name + "-" +
                         std::to_string(r.restart_count);
        r.reason.clear();
        r.message.clear();
      }
      manager_.Event(pod_, r.name, "Normal", "Started", "Started container " + r.name);
      SyncStatus();
      request->cancel = cancel_;
      {
        std::lock_guard<std::mutex> lock(mu_);
        ++guests_running_;
      }
      auto started = Clock::now();
      auto result = (*module)->Invoke(*request);
      log->Flush();
      auto ran = Clock::now() - started;
      bool stopping;
      {
        std::lock_guard<std::mutex> lock(mu_);
        --guests_running_;
        cv_.notify_all();
        if (result.ok() && result->outcome == runtime::Outcome::kCancelled) {
          WLOG_INFO("pod {}/{}: container {} stopped after {} ms ({})", ns_, name_, r.name,
                    std::chrono::duration_cast<std::chrono::milliseconds>(ran).count(), result->Describe());
        }
        if (killed_ || removed_) return false;  // Finish() reported it
        r.kind = ContainerRecord::Kind::kTerminated;
        r.finished_at = NowRfc3339();
        if (!result.ok()) {
          r.exit_code = 128;
          r.reason = "StartError";
          r.message = result.error().ToString();
        } else {
          const auto& res = *result;
          r.message.clear();
          switch (res.outcome) {
            case runtime::Outcome::kExited:
              r.exit_code = res.exit_code;
              r.reason = res.exit_code == 0 ? "Completed" : "Error";
              break;
            case runtime::Outcome::kMemoryLimit:
              r.exit_code = 137;
              r.reason = "OOMKilled";
              r.message = res.message;
              break;
            case runtime::Outcome::kTimedOut:
              r.exit_code = 137;
              r.reason = "DeadlineExceeded";
              r.message = res.message;
              break;
            case runtime::Outcome::kTrapped:
            case runtime::Outcome::kStackOverflow:
              r.exit_code = 134;
              r.reason = "Error";
              r.message = res.Describe();
              break;
            case runtime::Outcome::kCancelled:  // killed, as the kubelet reports a SIGKILL
              r.exit_code = 137;
              r.reason = "Error";
              r.message = agent_stopping_ ? "stopped: the wasmlet agent stopped"
                                          : "stopped: the pod was deleted";
              break;
          }
        }
        stopping = StoppingLocked();
      }
      SyncStatus();
      if (stopping) return false;  // no restart of a pod going away
      bool restart;
      {
        std::lock_guard<std::mutex> lock(mu_);
        restart = ShouldRestart(r);
        if (!restart) return r.exit_code == 0;
        r.last_state = {{"terminated", r.TerminatedJson()}};
      }
      if (ran > std::chrono::minutes(10)) backoff = manager_.options().backoff_base;
      std::string message = "back-off " + std::to_string(backoff.count() / 1000) + "s restarting failed container=" +
                            r.name + " pod=" + name_ + "_" + ns_ + "(" + uid_ + ")";
      manager_.Event(pod_, r.name, "Warning", "BackOff", "Back-off restarting failed container " + r.name);
      SetWaiting(r, "CrashLoopBackOff", message);
      if (!WaitFor(backoff)) return false;
      backoff = std::min(backoff * 2, manager_.options().backoff_cap);
      std::lock_guard<std::mutex> lock(mu_);
      ++r.restart_count;
    }
    return false;
  }

  // Resolves and loads the image, with ErrImagePull / ImagePullBackOff and back-off.
  Result<std::shared_ptr<const runtime::Module>> Pull(const Json& spec, ContainerRecord& r) {
    auto backoff = manager_.options().backoff_base;
    const std::string image = spec.value("image", "");
    while (true) {
      if (Stopping()) return MakeError(Phase::kPull, "pod stopping");
      auto path = manager_.options().resolve_image(image);
      std::string reason = "ErrImagePull";
      Error error;
      if (path.ok()) {
        auto module = manager_.runtime().LoadFile(*path);
        if (module.ok()) {
          std::lock_guard<std::mutex> lock(mu_);
          r.image_id = "sha256:" + (*module)->digest();
          return module;
        }
        error = module.take_error();
        reason = "CreateContainerError";
      } else {
        error = path.take_error();
      }
      std::string message = error.ToString();
      manager_.Event(pod_, r.name, "Warning", "Failed", "Failed to pull image \"" + image + "\": " + message);
      SetWaiting(r, reason, message);
      if (!WaitFor(std::chrono::milliseconds(1000))) return MakeError(Phase::kPull, "pod stopping");
      if (reason == "ErrImagePull") {
        manager_.Event(pod_, r.name, "Normal", "BackOff", "Back-off pulling image \"" + image + "\"");
        SetWaiting(r, "ImagePullBackOff", "Back-off pulling image \"" + image + "\": " + message);
      }
      if (!WaitFor(backoff)) return MakeError(Phase::kPull, "pod stopping");
      backoff = std::min(backoff * 2, manager_.options().backoff_cap);
    }
  }

  // configMap / secret objects (nullopt when missing); errors other than 404 are errors.
  Result<std::optional<Json>> GetObject(const std::string& kind, const std::string& name) {
    auto r = manager_.client().Get("/api/v1/namespaces/" + ns_ + "/" + kind + "/" + name);
    if (r.ok()) return std::optional<Json>(*r);
    if (KubeClient::StatusOf(r.error()) == 404) return std::optional<Json>();
    return r.take_error();
  }
  // The key/value data of a configMap or secret (secret values decoded).
  static std::map<std::string, std::string> DataOf(const std::string& kind, const Json& object) {
    std::map<std::string, std::string> out;
    bool secret = kind == "secrets";
    const Json data = object.value("data", Json::object());
    for (const auto& [k, v] : data.items()) {
      if (!v.is_string()) continue;
      if (secret) {
        auto d = Base64Decode(v.get<std::string>());
        if (d.ok()) out[k] = *d;
      } else {
        out[k] = v.get<std::string>();
      }
    }
    const Json binary = object.value("binaryData", Json::object());
    for (const auto& [k, v] : binary.items()) {
      auto d = Base64Decode(v.get<std::string>());
      if (d.ok()) out[k] = *d;
    }
    return out;
  }

  Result<runtime::InvokeRequest> BuildRequest(const Json& spec, const ContainerRecord& r, std::string& reason) {
    reason = "CreateContainerConfigError";
    runtime::InvokeRequest req;
    std::vector<std::pair<std::string, std::string>> env;
    std::map<std::string, std::string> vars;
    auto set = [&](const std::string& k, const std::string& v) {
      if (vars.count(k) != 0) {
        for (auto& e : env) {
          if (e.first == k) e.second = v;
        }
      } else {
        env.emplace_back(k, v);
      }
      vars[k] = v;
    };
    for (const auto& from : spec.value("envFrom", Json::array())) {
      std::string prefix = from.value("prefix", "");
      for (const char* kind : {"configMapRef", "secretRef"}) {
        if (!from.contains(kind)) continue;
        const Json& ref = from[kind];
        std::string coll = std::string(kind) == "configMapRef" ? "configmaps" : "secrets";
        auto obj = GetObject(coll, ref.value("name", ""));
        if (!obj.ok()) return obj.take_error();
        if (!obj->has_value()) {
          if (ref.value("optional", false)) continue;
          return MakeError(Phase::kConfig, std::string(coll == "configmaps" ? "configmap" : "secret") + " \"" +
                                               ref.value("name", "") + "\" not found");
        }
        for (const auto& [k, v] : DataOf(coll, **obj)) {
          if (ValidEnvName(prefix + k)) set(prefix + k, v);
        }
      }
    }
    for (const auto& e : spec.value("env", Json::array())) {
      std::string name = e.value("name", "");
      if (e.contains("value")) {
        set(name, ExpandVars(e.value("value", ""), vars));
        continue;
      }
      if (!e.contains("valueFrom")) {
        set(name, "");
        continue;
      }
      const Json& from = e["valueFrom"];
      if (from.contains("fieldRef")) {
        auto v = FieldRefValue(pod_, from["fieldRef"].value("fieldPath", ""), manager_.options().node_ip);
        if (!v.ok()) return v.take_error();
        set(name, *v);
      } else if (from.contains("resourceFieldRef")) {
        auto v = ResourceFieldValue(spec, from["resourceFieldRef"].value("resource", ""),
                                    from["resourceFieldRef"].value("divisor", ""));
        if (!v.ok()) return v.take_error();
        set(name, *v);
      } else {
        for (const char* kind : {"configMapKeyRef", "secretKeyRef"}) {
          if (!from.contains(kind)) continue;
          const Json& ref = from[kind];
          std::string coll = std::string(kind) == "configMapKeyRef" ? "configmaps" : "secrets";
          std::string what = coll == "configmaps" ? "configmap" : "secret";
          auto obj = GetObject(coll, ref.value("name", ""));
          if (!obj.ok()) return obj.take_error();
          bool optional = ref.value("optional", false);
          if (!obj->has_value()) {
            if (optional) break;
            return MakeError(Phase::kConfig, what + " \"" + ref.value("name", "") + "\" not found");
          }
          auto data = DataOf(coll, **obj);
          auto it = data.find(ref.value("key", ""));
          if (it == data.end()) {
            if (optional) break;
            return MakeError(Phase::kConfig, "couldn't find key " + ref.value("key", "") + " in " + what + " " +
                                                 ns_ + "/" + ref.value("name", ""));
          }
          set(name, it->second);
        }
      }
    }
    req.env = env;
    std::vector<std::string> command;
    for (const auto& c : spec.value("command", Json::array())) command.push_back(ExpandVars(c.get<std::string>(), vars));
    if (command.empty()) command.push_back(r.name);
    for (const auto& a : spec.value("args", Json::array())) command.push_back(ExpandVars(a.get<std::string>(), vars));
    req.args = command;
    // Volumes as preopens.
    for (const auto& m : spec.value("volumeMounts", Json::array())) {
      std::string vol = m.value("name", "");
      auto it = volume_dirs_.find(vol);
      if (it == volume_dirs_.end()) {
        return MakeError(Phase::kConfig, "volume \"" + vol + "\" is not prepared or not supported");
      }
      runtime::Preopen p;
      p.host_path = it->second.path;
      std::string sub = m.value("subPath", "");
      if (!sub.empty()) {
        if (sub[0] == '/' || sub.find("..") != std::string::npos) {
          return MakeError(Phase::kConfig, "invalid subPath \"" + sub + "\"");
        }
        p.host_path += "/" + sub;
        std::error_code ec;
        if (fs::exists(p.host_path, ec) && !fs::is_directory(p.host_path, ec)) {
          return MakeError(Phase::kConfig, "subPath \"" + sub + "\" of volume \"" + vol +
                                               "\" is a file: WASI preopens are directories");
        }
        fs::create_directories(p.host_path, ec);
      }
      p.guest_path = m.value("mountPath", "");
      p.read_only = m.value("readOnly", false) || it->second.read_only;
      req.preopens.push_back(p);
    }
    // Memory limit: the instance's linear memory, stopped exactly at the limit (OOMKilled).
    const Json& limits = spec.value("resources", Json::object()).value("limits", Json::object());
    if (limits.contains("memory") && limits["memory"].is_string()) {
      auto bytes = ParseQuantityBytes(limits["memory"].get<std::string>());
      if (!bytes.ok()) return bytes.take_error();
      req.limits.memory_bytes = *bytes;
      req.limits.trap_on_memory_limit = true;
    }
    reason.clear();
    return req;
  }

  struct VolumeDir {
    std::string path;
    bool read_only = false;
  };

  // Writes the items of a configMap/secret/downwardAPI source into dir.
  Status WriteKeyed(const std::string& dir, const std::map<std::string, std::string>& data, const Json& items,
                    const std::string& what) {
    if (items.is_array() && !items.empty()) {
      for (const auto& item : items) {
        auto it = data.find(item.value("key", ""));
        if (it == data.end()) {
          return MakeError(Phase::kConfig, what + ": key \"" + item.value("key", "") + "\" not found");
        }
        if (auto s = WriteVolumeFile(dir, item.value("path", it->first), it->second); !s.ok()) return s;
      }
      return OkStatus();
    }
    for (const auto& [k, v] : data) {
      if (auto s = WriteVolumeFile(dir, k, v); !s.ok()) return s;
    }
    return OkStatus();
  }

  Status WriteDownward(const std::string& dir, const Json& items) {
    for (const auto& item : items) {
      std::string value;
      if (item.contains("fieldRef")) {
        auto v = FieldRefValue(pod_, item["fieldRef"].value("fieldPath", ""), manager_.options().node_ip);
        if (!v.ok()) return v.take_error();
        value = *v;
      } else if (item.contains("resourceFieldRef")) {
        const Json& ref = item["resourceFieldRef"];
        Json container = Json::object();
        for (const auto& c : pod_["spec"].value("containers", Json::array())) {
          if (c.value("name", "") == ref.value("containerName", "")) container = c;
        }
        auto v = ResourceFieldValue(container, ref.value("resource", ""), ref.value("divisor", ""));
        if (!v.ok()) return v.take_error();
        value = *v;
      }
      if (auto s = WriteVolumeFile(dir, item.value("path", ""), value); !s.ok()) return s;
    }
    return OkStatus();
  }

  Status WriteSource(const std::string& dir, const std::string& kind, const Json& src) {
    std::string coll = kind == "configMap" ? "configmaps" : "secrets";
    std::string name = src.value(kind == "configMap" ? "name" : (src.contains("secretName") ? "secretName" : "name"), "");
    auto obj = GetObject(coll, name);
    if (!obj.ok()) return obj.take_error();
    if (!obj->has_value()) {
      if (src.value("optional", false)) return OkStatus();
      return MakeError(Phase::kConfig, std::string(kind == "configMap" ? "configmap" : "secret") + " \"" + name +
                                           "\" not found");
    }
    return WriteKeyed(dir, DataOf(coll, **obj), src.value("items", Json::array()), kind + " " + name);
  }

  Status PrepareVolumes() {
    std::map<std::string, VolumeDir> dirs;
    for (const auto& v : pod_["spec"].value("volumes", Json::array())) {
      std::string name = v.value("name", "");
      std::string dir = dir_ + "/volumes/" + name;
      std::error_code ec;
      if (v.contains("hostPath")) {
        std::string path = v["hostPath"].value("path", "");
        std::string type = v["hostPath"].value("type", "");
        if (type == "DirectoryOrCreate") fs::create_directories(path, ec);
        if (!fs::is_directory(path, ec)) {
          return MakeError(Phase::kConfig, "hostPath \"" + path + "\" of volume \"" + name + "\" is not a directory");
        }
        dirs[name] = {path, false};
        continue;
      }
      fs::create_directories(dir, ec);
      if (ec) return MakeError(Phase::kIo, "cannot create volume directory: " + ec.message(), dir);
      if (v.contains("emptyDir")) {
        dirs[name] = {dir, false};
      } else if (v.contains("configMap")) {
        if (auto s = WriteSource(dir, "configMap", v["configMap"]); !s.ok()) return s;
        dirs[name] = {dir, true};
      } else if (v.contains("secret")) {
        if (auto s = WriteSource(dir, "secret", v["secret"]); !s.ok()) return s;
        dirs[name] = {dir, true};
      } else if (v.contains("downwardAPI")) {
        if (auto s = WriteDownward(dir, v["downwardAPI"].value("items", Json::array())); !s.ok()) return s;
        dirs[name] = {dir, true};
      } else if (v.contains("projected")) {
        for (const auto& src : v["projected"].value("sources", Json::array())) {
          if (src.contains("configMap")) {
            if (auto s = WriteSource(dir, "configMap", src["configMap"]); !s.ok()) return s;
          } else if (src.contains("secret")) {
            if (auto s = WriteSource(dir, "secret", src["secret"]); !s.ok()) return s;
          } else if (src.contains("downwardAPI")) {
            if (auto s = WriteDownward(dir, src["downwardAPI"].value("items", Json::array())); !s.ok()) return s;
          } else if (src.contains("serviceAccountToken")) {
            if (auto s = WriteToken(dir, src["serviceAccountToken"]); !s.ok()) return s;
          }
        }
        dirs[name] = {dir, true};
      } else {
        WLOG_WARN("pod {}/{}: volume \"{}\" has an unsupported type; containers mounting it fail", ns_, name_, name);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    volume_dirs_ = dirs;
    return OkStatus();
  }

  // The projected service-account token, from the TokenRequest API, bound to this pod.
  Status WriteToken(const std::string& dir, const Json& src) {
    std::string sa = pod_["spec"].value("serviceAccountName", "default");
    Json spec = {{"expirationSeconds", src.value("expirationSeconds", 3607)},
                 {"boundObjectRef", {{"apiVersion", "v1"}, {"kind", "Pod"}, {"name", name_}, {"uid", uid_}}}};
    if (src.contains("audience") && !src["audience"].get<std::string>().empty()) {
      spec["audiences"] = Json::array({src["audience"]});
    }
    Json body = {{"apiVersion", "authentication.k8s.io/v1"}, {"kind", "TokenRequest"}, {"spec", spec}};
    auto r = manager_.client().Create("/api/v1/namespaces/" + ns_ + "/serviceaccounts/" + sa + "/token", body);
    if (!r.ok()) return MakeError(Phase::kConfig, "service account token: " + r.error().message);
    return WriteVolumeFile(dir, src.value("path", "token"), (*r)["status"].value("token", ""));
  }

  PodManager& manager_;
  std::string uid_, ns_, name_, dir_, policy_;
  bool terminal_at_adoption_ = false;
  bool adopted_ = false;

  std::mutex sync_mu_;  // serializes status patches of this pod
  std::mutex mu_;
  std::condition_variable cv_;
  const Json pod_;  // the pod as first seen; immutable
  std::vector<ContainerRecord> init_, containers_;  // guarded by mu_
  std::map<std::string, std::pair<std::string, std::string>> conditions_;  // guarded by mu_
  std::map<std::string, VolumeDir> volume_dirs_;  // guarded by mu_ (written before containers run)
  std::string start_time_;
  bool volumes_ready_ = false;
  bool deleting_ = false, removed_ = false, cleanup_ = false, released_ = false, killed_ = false;
  bool dirty_ = false;
  bool patch_failing_ = false;
  int live_containers_ = 0;
  int guests_running_ = 0;  // Invoke calls in progress (init and main containers)
  bool agent_stopping_ = false;
  std::chrono::seconds grace_{30};  // set with deleting_
  // Passed to every Invoke of the pod: cancelled when the pod is removed, after the grace period
  // of a deletion, or when the agent stops.
  const std::shared_ptr<runtime::CancelToken> cancel_ = std::make_shared<runtime::CancelToken>();
};

PodManager::PodManager(KubeClient& client, runtime::Runtime& runtime, PodManagerOptions options)
    : client_(client), runtime_(runtime), options_(std::move(options)), boot_id_(RandomHex(8)) {
  event_thread_ = std::thread([this] { EventLoop(); });
}

PodManager::~PodManager() {
  Shutdown();
  {
    std::lock_guard<std::mutex> lock(event_mu_);
    event_stop_ = true;
    event_cv_.notify_all();
  }
  if (event_thread_.joinable()) event_thread_.join();
}

void PodManager::Shutdown() {
  std::vector<std::shared_ptr<PodWorker>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [uid, w] : workers_) all.push_back(w);
    workers_.clear();
  }
  // Cancel every pod's guests at once, then give them together a bounded time to report.
  for (auto& w : all) w->BeginShutdown();
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (auto& w : all) w->EndShutdown(deadline);
}

void PodManager::OnPod(const Json& pod) {
  std::string uid = pod["metadata"].value("uid", "");
  std::shared_ptr<PodWorker> worker;
  bool created = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workers_.find(uid);
    if (it == workers_.end()) {
      worker = std::make_shared<PodWorker>(*this, pod);
      workers_[uid] = worker;
      created = true;
    } else {
      worker = it->second;
    }
  }
  if (created) worker->Start();
  worker->Update(pod);
}

void PodManager::OnPodGone(const std::string& uid) {
  std::shared_ptr<PodWorker> worker;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = workers_.find(uid);
    if (it == workers_.end()) return;
    worker = it->second;
    workers_.erase(it);
  }
  worker->Remove(/*cleanup=*/true);
}

void PodManager::Run(const std::atomic<bool>& stop) {
  std::thread resync([this, &stop] { ResyncLoop(stop); });
  std::string path = "/api/v1/pods?fieldSelector=" + UrlEncode("spec.nodeName=" + options_.node_name);
  client_.ListWatch(
      path,
      [this](const Json& items) {
        std::set<std::string> seen;
        for (const auto& pod : items) {
          seen.insert(pod["metadata"].value("uid", ""));
          OnPod(pod);
        }
        std::vector<std::string> gone;
        std::vector<std::shared_ptr<PodWorker>> all;
        {
          std::lock_guard<std::mutex> lock(mu_);
          for (auto& [uid, w] : workers_) {
            if (seen.count(uid) == 0) gone.push_back(uid);
            all.push_back(w);
          }
        }
        for (const auto& uid : gone) OnPodGone(uid);
        // After a relist (e.g. the API server came back), report every status again.
        for (auto& w : all) w->MarkDirty();
      },
      [this](const std::string& type, const Json& pod) {
        if (type == "DELETED") {
          OnPodGone(pod["metadata"].value("uid", ""));
        } else {
          OnPod(pod);
        }
      },
      stop);
  resync.join();
}

void PodManager::ResyncLoop(const std::atomic<bool>& stop) {
  while (!stop.load()) {
    for (int i = 0; i < 20 && !stop.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::vector<std::shared_ptr<PodWorker>> dirty;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto& [uid, w] : workers_) {
        if (w->dirty()) dirty.push_back(w);
      }
    }
    for (auto& w : dirty) w->SyncStatus();
  }
}

size_t PodManager::PodCount() {
  std::lock_guard<std::mutex> lock(mu_);
  return workers_.size();
}

Json PodManager::PodsJson() {
  std::vector<std::shared_ptr<PodWorker>> all;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [uid, w] : workers_) all.push_back(w);
  }
  Json items = Json::array();
  for (auto& w : all) items.push_back(w->PodJson());
  return {{"kind", "PodList"}, {"apiVersion", "v1"}, {"metadata", Json::object()}, {"items", items}};
}

std::optional<LogLocation> PodManager::FindLog(const std::string& ns, const std::string& pod,
                                               const std::string& container, bool previous) {
  std::shared_ptr<PodWorker> worker;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [uid, w] : workers_) {
      if (w->ns() == ns && w->name() == pod) worker = w;
    }
  }
  if (!worker) return std::nullopt;
  return worker->FindLog(container, previous);
}

bool PodManager::ContainerRunning(const std::string& ns, const std::string& pod, const std::string& container) {
  std::shared_ptr<PodWorker> worker;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [uid, w] : workers_) {
      if (w->ns() == ns && w->name() == pod) worker = w;
    }
  }
  return worker && worker->Running(container);
}

void PodManager::Event(const Json& pod, const std::string& container, const std::string& type,
                       const std::string& reason, const std::string& message) {
  const Json& meta = pod["metadata"];
  std::string now = NowRfc3339();
  Json involved = {{"kind", "Pod"}, {"apiVersion", "v1"}, {"namespace", meta.value("namespace", "")},
                   {"name", meta.value("name", "")}, {"uid", meta.value("uid", "")}};
  if (!container.empty()) involved["fieldPath"] = "spec.containers{" + container + "}";
  Json event = {{"apiVersion", "v1"}, {"kind", "Event"},
                {"metadata", {{"generateName", meta.value("name", "") + "."}, {"namespace", meta.value("namespace", "")}}},
                {"involvedObject", involved}, {"reason", reason}, {"message", message}, {"type", type},
                {"source", {{"component", "kubelet"}, {"host", options_.node_name}}},
                {"firstTimestamp", now}, {"lastTimestamp", now}, {"count", 1},
                {"reportingComponent", "kubelet"}, {"reportingInstance", options_.node_name}};
  std::lock_guard<std::mutex> lock(event_mu_);
  if (events_.size() >= 1000) return;  // bounded: events are best effort
  events_.push_back(std::move(event));
  event_cv_.notify_one();
}

void PodManager::EventLoop() {
  while (true) {
    Json event;
    {
      std::unique_lock<std::mutex> lock(event_mu_);
      event_cv_.wait(lock, [&] { return event_stop_ || !events_.empty(); });
      if (event_stop_) return;
      event = std::move(events_.front());
      events_.pop_front();
    }
    std::string ns = event["metadata"].value("namespace", "default");
    auto r = client_.Create("/api/v1/namespaces/" + ns + "/events", event);
    if (!r.ok()) WLOG_DEBUG("event {}: {}", event.value("reason", ""), r.error().message);
  }
}

}  // namespace wasmlet::node
