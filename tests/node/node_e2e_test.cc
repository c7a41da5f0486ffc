// End-to-end tests of `wasmlet node` against a real control plane: etcd, kube-apiserver,
// kube-controller-manager and kube-scheduler from tools/testcluster (built from the Go module
// proxy, cached), started on loopback in a temp dir; kubectl drives every scenario.
// Images resolve through `--local-images` to the guests built in this tree (no registry).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct CmdResult {
  int code = -1;
  std::string out;
  std::string err;
};

// Runs argv with a time limit; stdout and stderr captured.
CmdResult RunCmd(const std::vector<std::string>& argv, const std::string& input = "", int timeout_s = 60,
              const std::vector<std::string>& env = {}) {
  int in[2], out[2], err[2];
  if (pipe(in) != 0 || pipe(out) != 0 || pipe(err) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
    for (const auto& e : env) putenv(const_cast<char*>(e.c_str()));
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (!input.empty()) {
    ssize_t ignored = write(in[1], input.data(), input.size());
    (void)ignored;
  }
  close(in[1]);
  CmdResult r;
  auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (left <= 0) {
      kill(pid, SIGKILL);
      r.err += "\n[timed out after " + std::to_string(timeout_s) + " s]";
      break;
    }
    if (poll(fds, 2, left) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[8192];
      ssize_t n = read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  for (auto& f : fds) {
    if (f.fd >= 0) close(f.fd);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

const char* kNodeName = "wasm-node-1";

class Cluster {
 public:
  std::string error;  // why the cluster is unusable (each test fails with it)
  std::string dir, bin, kubectl, kubeconfig, cluster_sh;
  int kubelet_port = 0;
  pid_t node_pid = -1;

  void Start() {
    std::string source = WASMLET_SOURCE_DIR;
    cluster_sh = source + "/tools/testcluster/cluster.sh";
    auto cache = RunCmd({"/bin/bash", source + "/tools/testcluster/cachedir.sh"});
    bin = Trim(cache.out) + "/bin";
    for (const char* c : {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"}) {
      if (access((bin + "/" + c).c_str(), X_OK) != 0) {
        error = "the test control plane is not built (" + bin + "/" + c +
                " is missing): run tools/testcluster/build.sh first";
        return;
      }
    }
    char tmpl[] = "/tmp/wasmlet-node-e2e-XXXXXX";
    dir = mkdtemp(tmpl);
    auto t0 = Clock::now();
    auto started = RunCmd({"/bin/bash", cluster_sh, "start", dir}, "", 180,
                       {"TESTCLUSTER_BIN=" + bin, "NODE_NAMES=" + std::string(kNodeName),
                        "WATCH_PID=" + std::to_string(getpid())});
    if (started.code != 0) {
      error = "cluster start failed: " + started.err;
      return;
    }
    std::fprintf(stderr, "[cluster] started in %lld ms (%s)\n",
                 static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()),
                 dir.c_str());
    kubectl = bin + "/kubectl";
    kubeconfig = dir + "/admin.kubeconfig";
    std::ifstream env(dir + "/cluster.env");
    std::string line;
    while (std::getline(env, line)) {
      if (line.rfind("KUBELET_PORT=", 0) == 0) kubelet_port = std::stoi(line.substr(13));
    }
    StartNode();
  }

  void StartNode() {
    std::string log = dir + "/node.log";
    node_pid = fork();
    if (node_pid == 0) {
      int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      dup2(fd, 1);
      dup2(fd, 2);
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a killed test run
      std::string port = std::to_string(kubelet_port);
      std::vector<std::string> argv = {
          WASMLET_BINARY, "node", "--kubeconfig", dir + "/node-" + kNodeName + ".kubeconfig",
          "--node-name", kNodeName, "--node-ip", "127.0.0.1", "--kubelet-address", "127.0.0.1",
          "--kubelet-port", port, "--tls-cert-file", dir + "/kubelet-serving.crt",
          "--tls-private-key-file", dir + "/kubelet-serving.key", "--client-ca-file", dir + "/pki/ca.crt",
          "--data-dir", dir + "/node-data", "--module-cache", dir + "/module-cache",
          "--image-data-dir", dir + "/images",
          "--local-images", WASMLET_GUEST_DIR, "--restart-backoff", "2", "--node-labels", "wasmlet.dev/test=e2e"};
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(a.data());
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
  }

  void StopNode(int sig) {
    if (node_pid <= 0) return;
    kill(node_pid, sig);
    for (int i = 0; i < 100; ++i) {
      if (waitpid(node_pid, nullptr, WNOHANG) == node_pid) {
        node_pid = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    kill(node_pid, SIGKILL);
    waitpid(node_pid, nullptr, 0);
    node_pid = -1;
  }

  void Stop() {
    StopNode(SIGTERM);
    if (!dir.empty() && error.empty()) {
      RunCmd({"/bin/bash", cluster_sh, "stop", dir}, "", 60);
    } else if (!dir.empty()) {
      RunCmd({"/bin/bash", cluster_sh, "stop", dir}, "", 60);
    }
    if (!dir.empty() && std::getenv("WASMLET_KEEP_E2E_DIR") == nullptr) {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  }

  CmdResult Kubectl(const std::vector<std::string>& args, const std::string& input = "", int timeout_s = 60) {
    std::vector<std::string> argv = {kubectl, "--kubeconfig", kubeconfig};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCmd(argv, input, timeout_s);
  }

  Json GetJson(const std::string& kind, const std::string& name) {
    auto r = Kubectl({"get", kind, name, "-o", "json"});
    if (r.code != 0) return Json();
    return Json::parse(r.out, nullptr, false);
  }

  CmdResult Apply(const Json& object) { return Kubectl({"apply", "-f", "-"}, object.dump()); }
};

Cluster* g_cluster = nullptr;

class NodeE2E : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    g_cluster = new Cluster();
    g_cluster->Start();
    if (g_cluster->error.empty()) {
      // The node registers and turns Ready.
      bool ready = WaitUntil([&] {
        Json node = g_cluster->GetJson("node", kNodeName);
        if (!node.is_object()) return false;
        for (const auto& c : node["status"].value("conditions", Json::array())) {
          if (c["type"] == "Ready") return c["status"] == "True";
        }
        return false;
      }, 60);
      if (!ready) g_cluster->error = "the wasmlet node did not become Ready; see " + g_cluster->dir + "/node.log";
    }
  }
  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->failed_test_count() > 0 && g_cluster && !g_cluster->dir.empty()) {
      auto log = RunCmd({"/usr/bin/tail", "-n", "60", g_cluster->dir + "/node.log"});
      std::fprintf(stderr, "---- node.log (tail) ----\n%s\n", log.out.c_str());
    }
    g_cluster->Stop();
    delete g_cluster;
    g_cluster = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(g_cluster->error.empty()) << g_cluster->error;
  }

  static bool WaitUntil(const std::function<bool()>& done, int timeout_s) {
    auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    while (Clock::now() < deadline) {
      if (done()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return done();
  }

  Cluster& c() { return *g_cluster; }

  // A pod for the wasm node: node selector + tolerations, image = the podtool guest.
  static Json WasmPod(const std::string& name, const std::vector<std::string>& args,
                      const std::string& policy = "Never") {
    return {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", name}, {"namespace", "default"}}},
            {"spec", WasmPodSpec(args, policy)}};
  }
  static Json WasmPodSpec(const std::vector<std::string>& args, const std::string& policy) {
    return {{"restartPolicy", policy},
            {"nodeSelector", {{"kubernetes.io/arch", "wasm32-wasi"}}},
            {"tolerations", Json::array({
                 {{"key", "kubernetes.io/arch"}, {"operator", "Equal"}, {"value", "wasm32-wasi"}, {"effect", "NoSchedule"}},
                 {{"key", "kubernetes.io/arch"}, {"operator", "Equal"}, {"value", "wasm32-wasi"}, {"effect", "NoExecute"}}})},
            {"terminationGracePeriodSeconds", 30},
            {"containers", Json::array({{{"name", "main"}, {"image", "wasmlet.test/podtool:v1"}, {"args", args}}})}};
  }

  Json Pod(const std::string& name) { return c().GetJson("pod", name); }
  static std::string Phase(const Json& pod) {
    return pod.is_object() ? pod["status"].value("phase", "") : "";
  }
  static Json MainStatus(const Json& pod, size_t i = 0) {
    if (!pod.is_object()) return Json::object();
    const Json s = pod["status"].value("containerStatuses", Json::array());
    return s.size() > i ? s[i] : Json::object();
  }
  bool WaitPhase(const std::string& name, const std::string& phase, int timeout_s = 60) {
    return WaitUntil([&] { return Phase(Pod(name)) == phase; }, timeout_s);
  }
  std::string Logs(const std::string& name, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"logs", name};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = c().Kubectl(args);
    return r.out + (r.code == 0 ? "" : "[kubectl logs failed: " + r.err + "]");
  }
  std::string Describe(const std::string& name) {
    return Pod(name).dump(1).substr(0, 6000);
  }
};

TEST_F(NodeE2E, NodeIsRegisteredWithWasmLabelsTaintsAndLease) {
  Json node = c().GetJson("node", kNodeName);
  ASSERT_TRUE(node.is_object());
  EXPECT_EQ(node["metadata"]["labels"]["kubernetes.io/arch"], "wasm32-wasi");
  EXPECT_EQ(node["metadata"]["labels"]["kubernetes.io/os"], "wasi");
  EXPECT_EQ(node["metadata"]["labels"]["wasmlet.dev/test"], "e2e");
  // Our two taints; the node-lifecycle controller may add node.kubernetes.io/not-ready for a
  // moment after registration, which is Kubernetes' own and not counted here.
  int wasm_taints = 0;
  for (const auto& taint : node["spec"]["taints"]) {
    if (taint.value("key", "") == "kubernetes.io/arch" && taint.value("value", "") == "wasm32-wasi") {
      std::string effect = taint.value("effect", "");
      EXPECT_TRUE(effect == "NoSchedule" || effect == "NoExecute") << effect;
      ++wasm_taints;
    } else {
      EXPECT_EQ(taint.value("key", "").rfind("node.kubernetes.io/", 0), 0u) << taint.dump();
    }
  }
  EXPECT_EQ(wasm_taints, 2);
  EXPECT_EQ(node["status"]["capacity"]["pods"], "110");
  EXPECT_EQ(node["status"]["nodeInfo"]["architecture"], "wasm32-wasi");
  auto lease = c().Kubectl({"get", "lease", "-n", "kube-node-lease", kNodeName, "-o", "jsonpath={.spec.renewTime}"});
  EXPECT_EQ(lease.code, 0) << lease.err;
  EXPECT_FALSE(lease.out.empty());
  auto readyz = c().Kubectl({"get", "--raw", "/readyz"});
  EXPECT_EQ(Trim(readyz.out), "ok");
}

TEST_F(NodeE2E, JobPrintsAndCompletesAndLogsShowOutput) {
  Json job = {{"apiVersion", "batch/v1"}, {"kind", "Job"}, {"metadata", {{"name", "hello-job"}, {"namespace", "default"}}},
              {"spec", {{"backoffLimit", 0},
                        {"template", {{"spec", WasmPodSpec({"print:hello from a wasm job", "print:second line"}, "Never")}}}}}};
  auto t0 = Clock::now();
  ASSERT_EQ(c().Apply(job).code, 0);
  auto wait = c().Kubectl({"wait", "--for=condition=complete", "job/hello-job", "--timeout=60s"}, "", 70);
  EXPECT_EQ(wait.code, 0) << wait.out << wait.err;
  std::fprintf(stderr, "[timing] job create -> complete: %lld ms\n",
               static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()));
  EXPECT_EQ(Logs("job/hello-job"), "hello from a wasm job\nsecond line\n");
  EXPECT_EQ(Logs("job/hello-job", {"--tail=1"}), "second line\n");
  std::string stamped = Logs("job/hello-job", {"--timestamps"});
  EXPECT_NE(stamped.find("Z hello from a wasm job\n"), std::string::npos) << stamped;
  EXPECT_EQ(Logs("job/hello-job", {"--limit-bytes=5"}), "hello");
  auto pods = c().Kubectl({"get", "pods", "-l", "job-name=hello-job", "-o", "json"});
  Json list = Json::parse(pods.out, nullptr, false);
  ASSERT_TRUE(list.is_object());
  ASSERT_EQ(list["items"].size(), 1u);
  const Json& pod = list["items"][0];
  EXPECT_EQ(pod["spec"]["nodeName"], kNodeName);
  EXPECT_EQ(pod["status"]["phase"], "Succeeded");
  EXPECT_EQ(pod["status"]["podIP"], "127.0.0.1");
  const Json& term = pod["status"]["containerStatuses"][0]["state"]["terminated"];
  EXPECT_EQ(term["exitCode"], 0);
  EXPECT_EQ(term["reason"], "Completed");
  EXPECT_TRUE(term.contains("startedAt") && term.contains("finishedAt"));
}

TEST_F(NodeE2E, LogsFollowUntilTheContainerEnds) {
  ASSERT_EQ(c().Apply(WasmPod("follower", {"print:start", "sleep:3", "print:end"})).code, 0);
  ASSERT_TRUE(WaitPhase("follower", "Running")) << Describe("follower");
  auto r = c().Kubectl({"logs", "-f", "follower"}, "", 30);
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_EQ(r.out, "start\ntick\ntick\ntick\nend\n");
}

TEST_F(NodeE2E, ExitCodeThreeIsReported) {
  ASSERT_EQ(c().Apply(WasmPod("exit3", {"print:bye", "exit:3"})).code, 0);
  ASSERT_TRUE(WaitPhase("exit3", "Failed")) << Describe("exit3");
  Json term = MainStatus(Pod("exit3"))["state"]["terminated"];
  EXPECT_EQ(term["exitCode"], 3);
  EXPECT_EQ(term["reason"], "Error");
  EXPECT_EQ(Logs("exit3"), "bye\n");
}

TEST_F(NodeE2E, OnFailureRestartsWithBackOff) {
  ASSERT_EQ(c().Apply(WasmPod("onfailure", {"print:try", "exit:1"}, "OnFailure")).code, 0);
  bool backoff_seen = false;
  bool restarted = WaitUntil([&] {
    Json s = MainStatus(Pod("onfailure"));
    if (s.contains("state") && s["state"].contains("waiting") && s["state"]["waiting"]["reason"] == "CrashLoopBackOff") {
      backoff_seen = true;
    }
    return s.value("restartCount", 0) >= 2;
  }, 60);
  ASSERT_TRUE(restarted) << Describe("onfailure");
  EXPECT_TRUE(backoff_seen);
  Json pod = Pod("onfailure");
  EXPECT_EQ(MainStatus(pod)["lastState"]["terminated"]["exitCode"], 1);
  EXPECT_NE(Phase(pod), "Succeeded");
  EXPECT_NE(Phase(pod), "Failed");  // OnFailure keeps restarting
  c().Kubectl({"delete", "pod", "onfailure", "--wait=false"});
}

TEST_F(NodeE2E, DeploymentLandsOnTheWasmNodeAndPlainPodsDoNot) {
  Json deploy = {{"apiVersion", "apps/v1"}, {"kind", "Deployment"},
                 {"metadata", {{"name", "ticker"}, {"namespace", "default"}}},
                 {"spec", {{"replicas", 2}, {"selector", {{"matchLabels", {{"app", "ticker"}}}}},
                           {"template", {{"metadata", {{"labels", {{"app", "ticker"}}}}},
                                         {"spec", WasmPodSpec({"forever"}, "Always")}}}}}};
  ASSERT_EQ(c().Apply(deploy).code, 0);
  Json plain = {{"apiVersion", "v1"}, {"kind", "Pod"}, {"metadata", {{"name", "plain"}, {"namespace", "default"}}},
                {"spec", {{"containers", Json::array({{{"name", "c"}, {"image", "registry.k8s.io/pause:3.10"}}})}}}};
  ASSERT_EQ(c().Apply(plain).code, 0);
  auto wait = c().Kubectl({"rollout", "status", "deployment/ticker", "--timeout=60s"}, "", 70);
  EXPECT_EQ(wait.code, 0) << wait.out << wait.err;
  auto pods = c().Kubectl({"get", "pods", "-l", "app=ticker", "-o", "json"});
  Json list = Json::parse(pods.out, nullptr, false);
  ASSERT_TRUE(list.is_object());
  ASSERT_EQ(list["items"].size(), 2u);
  for (const auto& pod : list["items"]) {
    EXPECT_EQ(pod["spec"]["nodeName"], kNodeName);
    EXPECT_EQ(pod["status"]["phase"], "Running");
    EXPECT_TRUE(pod["status"]["containerStatuses"][0]["ready"].get<bool>());
  }
  Json p = Pod("plain");
  EXPECT_EQ(Phase(p), "Pending");
  EXPECT_FALSE(p["spec"].contains("nodeName"));
  bool unschedulable = false;
  for (const auto& cond : p["status"].value("conditions", Json::array())) {
    if (cond["type"] == "PodScheduled" && cond["status"] == "False") unschedulable = true;
  }
  EXPECT_TRUE(unschedulable) << p.dump(1);
  c().Kubectl({"delete", "pod", "plain", "--wait=false"});
}

TEST_F(NodeE2E, ConfigMapAndSecretReachTheModuleAsEnvAndFiles) {
  ASSERT_EQ(c().Kubectl({"create", "configmap", "app-config", "--from-literal=greeting=hello",
                         "--from-literal=colour=blue"}).code, 0);
  ASSERT_EQ(c().Kubectl({"create", "secret", "generic", "app-secret", "--from-literal=password=s3cr3t"}).code, 0);
  Json pod = WasmPod("config", {"env:GREETING", "env:PASSWORD", "env:colour", "env:POD_NAME", "env:NODE",
                                "env:MISSING_OPT", "env:EXPANDED", "cat:/etc/config/greeting",
                                "cat:/etc/secret/password", "cat:/etc/podinfo/labels"});
  pod["metadata"]["labels"] = {{"team", "wasm"}};
  Json& ctr = pod["spec"]["containers"][0];
  ctr["env"] = Json::array({
      {{"name", "GREETING"}, {"valueFrom", {{"configMapKeyRef", {{"name", "app-config"}, {"key", "greeting"}}}}}},
      {{"name", "PASSWORD"}, {"valueFrom", {{"secretKeyRef", {{"name", "app-secret"}, {"key", "password"}}}}}},
      {{"name", "POD_NAME"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "metadata.name"}}}}}},
      {{"name", "NODE"}, {"valueFrom", {{"fieldRef", {{"fieldPath", "spec.nodeName"}}}}}},
      {{"name", "MISSING_OPT"}, {"valueFrom", {{"configMapKeyRef", {{"name", "nope"}, {"key", "x"}, {"optional", true}}}}}},
      {{"name", "EXPANDED"}, {"value", "$(GREETING)-$(POD_NAME)"}}});
  ctr["envFrom"] = Json::array({{{"configMapRef", {{"name", "app-config"}}}}});
  ctr["volumeMounts"] = Json::array({{{"name", "cfg"}, {"mountPath", "/etc/config"}},
                                     {{"name", "sec"}, {"mountPath", "/etc/secret"}},
                                     {{"name", "info"}, {"mountPath", "/etc/podinfo"}}});
  pod["spec"]["volumes"] = Json::array({
      {{"name", "cfg"}, {"configMap", {{"name", "app-config"}}}},
      {{"name", "sec"}, {"secret", {{"secretName", "app-secret"}}}},
      {{"name", "info"}, {"downwardAPI", {{"items", Json::array({{{"path", "labels"},
                                                                  {"fieldRef", {{"fieldPath", "metadata.labels"}}}}})}}}}});
  ASSERT_EQ(c().Apply(pod).code, 0);
  ASSERT_TRUE(WaitPhase("config", "Succeeded")) << Describe("config") << Logs("config");
  EXPECT_EQ(Logs("config"),
            "GREETING=hello\nPASSWORD=s3cr3t\ncolour=blue\nPOD_NAME=config\nNODE=wasm-node-1\n"
            "MISSING_OPT=<unset>\nEXPANDED=hello-config\nhello\ns3cr3t\nteam=\"wasm\"\n");
}

TEST_F(NodeE2E, MissingRequiredConfigMapIsCreateContainerConfigError) {
  Json pod = WasmPod("noconfig", {"env:X"});
  pod["spec"]["containers"][0]["env"] = Json::array(
      {{{"name", "X"}, {"valueFrom", {{"configMapKeyRef", {{"name", "does-not-exist"}, {"key", "x"}}}}}}});
  ASSERT_EQ(c().Apply(pod).code, 0);
  bool seen = WaitUntil([&] {
    Json s = MainStatus(Pod("noconfig"));
    return s.contains("state") && s["state"].contains("waiting") &&
           s["state"]["waiting"]["reason"] == "CreateContainerConfigError";
  }, 30);
  EXPECT_TRUE(seen) << Describe("noconfig");
  c().Kubectl({"delete", "pod", "noconfig", "--wait=false"});
}

TEST_F(NodeE2E, EmptyDirIsSharedBetweenInitAndMainContainer) {
  Json pod = WasmPod("shared", {"cat:/work/msg"});
  pod["spec"]["initContainers"] = Json::array({{{"name", "init"}, {"image", "wasmlet.test/podtool:v1"},
                                                {"args", {"write:/work/msg=written by init", "print:init done"}},
                                                {"volumeMounts", Json::array({{{"name", "work"}, {"mountPath", "/work"}}})}}});
  pod["spec"]["containers"][0]["volumeMounts"] = Json::array({{{"name", "work"}, {"mountPath", "/work"}}});
  pod["spec"]["volumes"] = Json::array({{{"name", "work"}, {"emptyDir", Json::object()}}});
  ASSERT_EQ(c().Apply(pod).code, 0);
  ASSERT_TRUE(WaitPhase("shared", "Succeeded")) << Describe("shared");
  EXPECT_EQ(Logs("shared", {"-c", "main"}), "written by init\n");
  EXPECT_EQ(Logs("shared", {"-c", "init"}), "init done\n");
  Json p = Pod("shared");
  EXPECT_EQ(p["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"], "Completed");
}

TEST_F(NodeE2E, MemoryHogIsOOMKilled) {
  Json pod = WasmPod("hog", {"hog"});
  pod["spec"]["containers"][0]["resources"] = {{"limits", {{"memory", "32Mi"}}}};
  ASSERT_EQ(c().Apply(pod).code, 0);
  ASSERT_TRUE(WaitPhase("hog", "Failed")) << Describe("hog");
  Json term = MainStatus(Pod("hog"))["state"]["terminated"];
  EXPECT_EQ(term["reason"], "OOMKilled");
  EXPECT_EQ(term["exitCode"], 137);
}

TEST_F(NodeE2E, NonexistentImageGivesImagePullBackOff) {
  Json pod = WasmPod("noimage", {"print:x"});
  // Not a local image, so the node asks the registry; nothing listens on port 1.
  pod["spec"]["containers"][0]["image"] = "127.0.0.1:1/does-not-exist:v1";
  ASSERT_EQ(c().Apply(pod).code, 0);
  bool seen = WaitUntil([&] {
    Json s = MainStatus(Pod("noimage"));
    return s.contains("state") && s["state"].contains("waiting") &&
           s["state"]["waiting"]["reason"] == "ImagePullBackOff";
  }, 30);
  EXPECT_TRUE(seen) << Describe("noimage");
  EXPECT_EQ(Phase(Pod("noimage")), "Pending");
  c().Kubectl({"delete", "pod", "noimage", "--wait=false"});
}

TEST_F(NodeE2E, ImageFromARegistryIsPulledAndRuns) {
  // A real registry (Debian's docker-registry) on loopback; the image pushed with wasmlet push.
  if (access("/usr/bin/docker-registry", X_OK) != 0) GTEST_SKIP() << "docker-registry is not installed";
  int port = 0;
  {
    auto r = RunCmd({"/usr/bin/python3", "-c",
                     "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])"});
    port = std::stoi(Trim(r.out));
  }
  std::string rdir = c().dir + "/registry";
  fs::create_directories(rdir);
  std::ofstream(rdir + "/config.yml") << "version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: " << rdir
                                      << "/data}}\nhttp: {addr: 127.0.0.1:" << port << "}\n";
  pid_t registry = fork();
  if (registry == 0) {
    int fd = open((rdir + "/registry.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(fd, 1);
    dup2(fd, 2);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    execl("/usr/bin/docker-registry", "docker-registry", "serve", (rdir + "/config.yml").c_str(), nullptr);
    _exit(127);
  }
  std::string ref = "127.0.0.1:" + std::to_string(port) + "/wasm/podtool-oci:v1";
  CmdResult pushed;
  WaitUntil([&] {
    pushed = RunCmd({WASMLET_BINARY, "push", std::string(WASMLET_GUEST_DIR) + "/podtool.wasm", ref}, "", 30);
    return pushed.code == 0;
  }, 20);
  EXPECT_EQ(pushed.code, 0) << pushed.out << pushed.err;
  Json pod = WasmPod("fromregistry", {"print:pulled from a registry"});
  pod["spec"]["containers"][0]["image"] = ref;
  EXPECT_EQ(c().Apply(pod).code, 0);
  EXPECT_TRUE(WaitPhase("fromregistry", "Succeeded")) << Describe("fromregistry");
  EXPECT_EQ(Logs("fromregistry"), "pulled from a registry\n");
  EXPECT_EQ(MainStatus(Pod("fromregistry"))["imageID"].get<std::string>().substr(0, 7), "sha256:");
  kill(registry, SIGTERM);
  waitpid(registry, nullptr, 0);
}

TEST_F(NodeE2E, DeletingARunningPodStopsItWithinTheGracePeriod) {
  ASSERT_EQ(c().Apply(WasmPod("victim", {"forever"}, "Always")).code, 0);
  ASSERT_TRUE(WaitPhase("victim", "Running")) << Describe("victim");
  auto t0 = Clock::now();
  auto del = c().Kubectl({"delete", "pod", "victim", "--timeout=40s"}, "", 45);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(del.code, 0) << del.err;
  std::fprintf(stderr, "[timing] delete running pod: %lld ms\n", static_cast<long long>(took));
  EXPECT_LT(took, 30000);  // terminationGracePeriodSeconds
  EXPECT_FALSE(Pod("victim").is_object());
}

TEST_F(NodeE2E, AgentRestartKeepsTruthfulStatuses) {
  ASSERT_EQ(c().Apply(WasmPod("survivor", {"forever"}, "Always")).code, 0);
  ASSERT_TRUE(WaitPhase("survivor", "Running"));
  ASSERT_TRUE(WaitPhase("exit3", "Failed"));
  c().StopNode(SIGKILL);
  c().StartNode();
  // The running container died with the agent: reported, then restarted.
  bool restarted = WaitUntil([&] {
    Json s = MainStatus(Pod("survivor"));
    return s.value("restartCount", 0) >= 1 && s["state"].contains("running");
  }, 60);
  Json s = MainStatus(Pod("survivor"));
  EXPECT_TRUE(restarted) << s.dump(1);
  EXPECT_EQ(s["lastState"]["terminated"]["reason"], "ContainerStatusUnknown");
  EXPECT_EQ(s["lastState"]["terminated"]["exitCode"], 137);
  // Finished pods keep their truth: not rerun, same exit code.
  Json done = Pod("exit3");
  EXPECT_EQ(Phase(done), "Failed");
  EXPECT_EQ(MainStatus(done)["state"]["terminated"]["exitCode"], 3);
  EXPECT_EQ(MainStatus(done).value("restartCount", -1), 0);
  EXPECT_EQ(Logs("exit3"), "bye\n");  // logs survive the agent restart
  c().Kubectl({"delete", "pod", "survivor", "--wait=false"});
}

TEST_F(NodeE2E, ApiServerOutageLeavesPodsRunningAndStatusesCatchUp) {
  ASSERT_EQ(c().Apply(WasmPod("steady", {"forever"}, "Always")).code, 0);
  ASSERT_EQ(c().Apply(WasmPod("finisher", {"sleep:6", "exit:0"})).code, 0);
  ASSERT_TRUE(WaitPhase("steady", "Running"));
  ASSERT_TRUE(WaitPhase("finisher", "Running"));
  auto stop = RunCmd({"/bin/bash", c().cluster_sh, "stop-apiserver", c().dir}, "", 60);
  ASSERT_EQ(stop.code, 0) << stop.err;
  std::this_thread::sleep_for(std::chrono::seconds(12));  // "finisher" completes meanwhile
  auto start = RunCmd({"/bin/bash", c().cluster_sh, "start-apiserver", c().dir}, "", 120,
                   {"TESTCLUSTER_BIN=" + c().bin});
  ASSERT_EQ(start.code, 0) << start.err;
  EXPECT_TRUE(WaitPhase("finisher", "Succeeded", 60)) << Describe("finisher");
  Json s = MainStatus(Pod("steady"));
  EXPECT_EQ(Phase(Pod("steady")), "Running");
  EXPECT_EQ(s.value("restartCount", -1), 0);
  bool node_ready = WaitUntil([&] {
    Json node = c().GetJson("node", kNodeName);
    if (!node.is_object()) return false;
    for (const auto& cond : node["status"].value("conditions", Json::array())) {
      if (cond["type"] == "Ready") return cond["status"] == "True";
    }
    return false;
  }, 60);
  EXPECT_TRUE(node_ready);
  // The node keeps serving logs after the outage.
  EXPECT_NE(Logs("steady").find("tick\n"), std::string::npos);
  c().Kubectl({"delete", "pod", "steady", "--wait=false"});
}

// ---- API server failures seen from the node: a TCP proxy (tests/node/tcp_proxy.py) between
// the agent and kube-apiserver cuts every connection, or refuses them for a while. ----

// tcp_proxy.py in front of kube-apiserver; killed with the test.
class ApiServerProxy {
 public:
  bool Start(int upstream_port) {
    int out[2];
    if (pipe(out) != 0) return false;
    pid_ = fork();
    if (pid_ == 0) {
      dup2(out[1], 1);
      close(out[0]);
      close(out[1]);
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      execl("/usr/bin/python3", "python3", (std::string(WASMLET_SOURCE_DIR) + "/tests/node/tcp_proxy.py").c_str(),
            std::to_string(upstream_port).c_str(), nullptr);
      _exit(127);
    }
    close(out[1]);
    std::string line;
    char ch;
    pollfd p{out[0], POLLIN, 0};
    while (poll(&p, 1, 10000) > 0 && read(out[0], &ch, 1) == 1 && ch != '\n') line.push_back(ch);
    close(out[0]);
    if (std::sscanf(line.c_str(), "%d %d", &port_, &control_port_) != 2) return false;
    return true;
  }
  ~ApiServerProxy() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  // "cut", "down", "up": answers "ok <open connections>".
  std::string Command(const std::string& command) {
    auto r = RunCmd({"/bin/bash", "-c",
                     "exec 3<>/dev/tcp/127.0.0.1/" + std::to_string(control_port_) + "; echo " + command +
                         " >&3; head -n1 <&3"}, "", 10);
    return Trim(r.out);
  }
  int port() const { return port_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  int control_port_ = 0;
};

TEST_F(NodeE2E, ApiServerConnectionsCutOrUnreachableConverge) {
  std::string kubeconfig_path = c().dir + "/node-" + kNodeName + ".kubeconfig";
  std::string original;
  {
    std::ifstream in(kubeconfig_path);
    original.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  int apiserver_port = 0;
  {
    std::ifstream env(c().dir + "/cluster.env");
    std::string line;
    while (std::getline(env, line)) {
      if (line.rfind("APISERVER_PORT=", 0) == 0) apiserver_port = std::stoi(line.substr(15));
    }
  }
  ASSERT_GT(apiserver_port, 0);
  ApiServerProxy proxy;
  ASSERT_TRUE(proxy.Start(apiserver_port));
  std::string direct = "https://127.0.0.1:" + std::to_string(apiserver_port);
  size_t at = original.find(direct);
  ASSERT_NE(at, std::string::npos) << original;
  std::string proxied = original;
  proxied.replace(at, direct.size(), "https://127.0.0.1:" + std::to_string(proxy.port()));
  auto node_ready = [&] {
    Json node = c().GetJson("node", kNodeName);
    if (!node.is_object()) return false;
    for (const auto& cond : node["status"].value("conditions", Json::array())) {
      if (cond["type"] == "Ready") return cond["status"] == "True";
    }
    return false;
  };
  auto restart_node_with = [&](const std::string& kubeconfig) {
    std::ofstream(kubeconfig_path) << kubeconfig;
    c().StopNode(SIGTERM);
    c().StartNode();
  };
  // The agent now talks to the API server only through the proxy.
  restart_node_with(proxied);
  auto ticks = [&](const std::string& pod) {
    std::string logs = Logs(pod);
    size_t n = 0;
    for (size_t i = logs.find("tick\n"); i != std::string::npos; i = logs.find("tick\n", i + 1)) ++n;
    return n;
  };
  auto lease_time = [&] {
    return Trim(c().Kubectl({"get", "lease", "-n", "kube-node-lease", kNodeName, "-o",
                             "jsonpath={.spec.renewTime}"}).out);
  };

  ASSERT_EQ(c().Apply(WasmPod("keeper", {"forever"}, "Always")).code, 0);
  ASSERT_EQ(c().Apply(WasmPod("doomed", {"forever"}, "Always")).code, 0);
  ASSERT_TRUE(WaitPhase("keeper", "Running")) << Describe("keeper");
  ASSERT_TRUE(WaitPhase("doomed", "Running")) << Describe("doomed");
  EXPECT_NE(proxy.Command("count"), "ok 0");  // the watch goes through the proxy

  // 1. Every connection cut mid-watch, three times: the watch resumes and new pods still run.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(proxy.Command("cut").substr(0, 2), "ok");
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  ASSERT_EQ(c().Apply(WasmPod("after-cut", {"print:after the cut"})).code, 0);
  EXPECT_TRUE(WaitPhase("after-cut", "Succeeded", 60)) << Describe("after-cut");
  EXPECT_EQ(Logs("after-cut"), "after the cut\n");

  // 2. The API server unreachable for 15 s (under the 40 s lease): a pod is created and one is
  // deleted meanwhile; running pods keep running.
  std::string lease_before = lease_time();
  size_t ticks_before = ticks("keeper");
  EXPECT_EQ(proxy.Command("down").substr(0, 2), "ok");
  ASSERT_EQ(c().Apply(WasmPod("born-in-outage", {"print:born in the outage"})).code, 0);
  EXPECT_EQ(c().Kubectl({"delete", "pod", "doomed", "--wait=false"}).code, 0);
  std::this_thread::sleep_for(std::chrono::seconds(15));  // the outage itself, not a wait for an event
  size_t ticks_during = ticks("keeper");  // logs come from the node directly, not through the proxy
  EXPECT_GT(ticks_during, ticks_before + 5);
  EXPECT_TRUE(Pod("doomed").is_object());  // nobody could finalize it
  EXPECT_EQ(Phase(Pod("born-in-outage")), "Pending");
  EXPECT_EQ(proxy.Command("up").substr(0, 2), "ok");

  // 3. After reconnecting everything converges.
  EXPECT_TRUE(WaitPhase("born-in-outage", "Succeeded", 90)) << Describe("born-in-outage");
  EXPECT_EQ(Logs("born-in-outage"), "born in the outage\n");
  EXPECT_TRUE(WaitUntil([&] { return !Pod("doomed").is_object(); }, 90)) << Describe("doomed");
  EXPECT_TRUE(WaitUntil([&] { std::string t = lease_time(); return !t.empty() && t > lease_before; }, 60))
      << lease_time() << " vs " << lease_before;
  EXPECT_TRUE(WaitUntil(node_ready, 60));
  Json keeper = Pod("keeper");
  EXPECT_EQ(Phase(keeper), "Running");
  EXPECT_EQ(MainStatus(keeper).value("restartCount", -1), 0);
  EXPECT_GT(ticks("keeper"), ticks_during);

  // Back to a direct connection for the tests after this one.
  c().Kubectl({"delete", "pod", "keeper", "--wait=false"});
  restart_node_with(original);
  EXPECT_TRUE(WaitUntil(node_ready, 60));
}


// ---- Force stop: guests that ignore the stop signal (their output failing with EPIPE) are
// cancelled when the grace period is over, whether sleeping in poll_oneoff or spinning. ----
TEST_F(NodeE2E, GuestsThatNeverYieldAreCancelledAfterTheGracePeriod) {
  Json pod = WasmPod("stuck", {});
  pod["spec"]["terminationGracePeriodSeconds"] = 3;
  pod["spec"]["containers"] = Json::array({
      {{"name", "sleeper"}, {"image", "wasmlet.test/poll:v1"}, {"args", Json::array({"forever"})}},
      {{"name", "spinner"}, {"image", "wasmlet.test/loop:v1"}}});
  ASSERT_EQ(c().Apply(pod).code, 0);
  ASSERT_TRUE(WaitPhase("stuck", "Running")) << Describe("stuck");
  ASSERT_TRUE(WaitUntil([&] { return Logs("stuck", {"-c", "sleeper"}) == "sleeping forever\n"; }, 30))
      << Logs("stuck", {"-c", "sleeper"});
  auto t0 = Clock::now();
  auto del = c().Kubectl({"delete", "pod", "stuck", "--timeout=60s"}, "", 70);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(del.code, 0) << del.err;
  std::fprintf(stderr, "[timing] delete a pod whose guests never yield (grace 3 s): %lld ms\n",
               static_cast<long long>(took));
  EXPECT_FALSE(Pod("stuck").is_object());
  EXPECT_GE(took, 2500);           // the guests got their grace period first
  EXPECT_LT(took, 3000 + 15000);   // then were stopped, not abandoned
  // The agent saw both guests end (before, they ran on forever on their threads).
  std::ifstream in(c().dir + "/node.log");
  std::string log((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const char* container : {"sleeper", "spinner"}) {
    std::string line = "pod default/stuck: container " + std::string(container) + " stopped after ";
    auto at = log.find(line);
    ASSERT_NE(at, std::string::npos) << container << "\n" << log.substr(log.size() > 4000 ? log.size() - 4000 : 0);
    EXPECT_NE(log.find("(cancelled: ", at), std::string::npos) << log.substr(at, 200);
  }
}
}  // namespace
