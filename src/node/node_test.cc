// Unit tests of the node layer that need no cluster: kubeconfig, quantities, $(VAR) expansion,
// fieldRefs, pod phase, container logs, and list/watch against a scripted fake transport
// (410 Gone relist, bookmarks, transport failures).
#include <gtest/gtest.h>

#include <unistd.h>

#include <deque>
#include <filesystem>
#include <fstream>
#include <thread>

#include "node/container_log.h"
#include "node/kube_client.h"
#include "node/node_agent.h"
#include "node/pod_util.h"

namespace wasmlet::node {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/wasmlet-node-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(KubeConfig, ReadsInlineDataAndFiles) {
  TempDir dir;
  std::ofstream(dir.path() + "/ca.crt") << "CA PEM";
  std::ofstream(dir.path() + "/kc") << R"(apiVersion: v1
kind: Config
clusters:
- name: other
  cluster: {server: https://10.0.0.1:6443}
- name: c
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority: ca.crt
users:
- name: u
  user:
    client-certificate-data: Q0VSVA==
    client-key-data: S0VZ
    token: abc
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
)";
  auto config = LoadKubeConfig(dir.path() + "/kc");
  ASSERT_TRUE(config.ok()) << config.error().ToString();
  EXPECT_EQ(config->server, "https://127.0.0.1:6443");
  EXPECT_EQ(config->ca_pem, "CA PEM");
  EXPECT_EQ(config->client_cert_pem, "CERT");
  EXPECT_EQ(config->client_key_pem, "KEY");
  EXPECT_EQ(config->token, "abc");
}

TEST(KubeConfig, MissingContextIsAConfigError) {
  TempDir dir;
  std::ofstream(dir.path() + "/kc") << "apiVersion: v1\ncontexts: []\n";
  auto config = LoadKubeConfig(dir.path() + "/kc");
  ASSERT_FALSE(config.ok());
  EXPECT_EQ(config.error().phase, Phase::kConfig);
}

TEST(PodUtil, Quantities) {
  EXPECT_EQ(*ParseQuantityBytes("64Mi"), 64ull << 20);
  EXPECT_EQ(*ParseQuantityBytes("1G"), 1000000000ull);
  EXPECT_EQ(*ParseQuantityBytes("128974848"), 128974848ull);
  EXPECT_EQ(*ParseQuantityBytes("129e6"), 129000000ull);
  EXPECT_EQ(*ParseQuantityMillis("500m"), 500ull);
  EXPECT_EQ(*ParseQuantityMillis("2"), 2000ull);
  EXPECT_FALSE(ParseQuantityBytes("12 parsecs").ok());
  EXPECT_FALSE(ParseQuantityBytes("").ok());
}

TEST(PodUtil, ExpandVarsLikeTheKubelet) {
  std::map<std::string, std::string> vars = {{"A", "x"}, {"B", "y"}};
  EXPECT_EQ(ExpandVars("$(A)-$(B)", vars), "x-y");
  EXPECT_EQ(ExpandVars("$$(A)", vars), "$(A)");
  EXPECT_EQ(ExpandVars("$(C)", vars), "$(C)");
  EXPECT_EQ(ExpandVars("$(A", vars), "$(A");
  EXPECT_EQ(ExpandVars("cost $5", vars), "cost $5");
}

TEST(PodUtil, FieldRefs) {
  Json pod = {{"metadata", {{"name", "p"}, {"namespace", "ns"}, {"uid", "u1"},
                            {"labels", {{"app", "web"}, {"tier", "a\"b"}}}}},
              {"spec", {{"nodeName", "n1"}, {"serviceAccountName", "sa"}}}};
  EXPECT_EQ(*FieldRefValue(pod, "metadata.name", "10.0.0.9"), "p");
  EXPECT_EQ(*FieldRefValue(pod, "metadata.uid", ""), "u1");
  EXPECT_EQ(*FieldRefValue(pod, "spec.nodeName", ""), "n1");
  EXPECT_EQ(*FieldRefValue(pod, "status.podIP", "10.0.0.9"), "10.0.0.9");
  EXPECT_EQ(*FieldRefValue(pod, "metadata.labels['app']", ""), "web");
  EXPECT_EQ(*FieldRefValue(pod, "metadata.labels", ""), "app=\"web\"\ntier=\"a\\\"b\"");
  EXPECT_FALSE(FieldRefValue(pod, "spec.bogus", "").ok());
  Json c = {{"resources", {{"limits", {{"memory", "64Mi"}, {"cpu", "500m"}}}}}};
  EXPECT_EQ(*ResourceFieldValue(c, "limits.memory", "1Mi"), "64");
  EXPECT_EQ(*ResourceFieldValue(c, "limits.cpu", ""), "1");  // rounded up to whole cores
}

Json Status(const char* state, int exit_code = 0, bool last_terminated = false) {
  Json s = {{"state", {{state, Json::object()}}}};
  if (std::string(state) == "terminated") s["state"]["terminated"]["exitCode"] = exit_code;
  if (last_terminated) s["lastState"] = {{"terminated", {{"exitCode", 1}}}};
  return s;
}

TEST(PodUtil, PhaseAsTheKubelet) {
  Json one = {{"containers", Json::array({Json::object()})}};
  auto spec = [&](const char* policy) {
    Json s = one;
    s["restartPolicy"] = policy;
    return s;
  };
  EXPECT_EQ(ComputePodPhase(spec("Never"), Json::array(), Json::array({Status("waiting")})), "Pending");
  EXPECT_EQ(ComputePodPhase(spec("Never"), Json::array(), Json::array({Status("running")})), "Running");
  EXPECT_EQ(ComputePodPhase(spec("Never"), Json::array(), Json::array({Status("terminated", 0)})), "Succeeded");
  EXPECT_EQ(ComputePodPhase(spec("Never"), Json::array(), Json::array({Status("terminated", 3)})), "Failed");
  EXPECT_EQ(ComputePodPhase(spec("OnFailure"), Json::array(), Json::array({Status("waiting", 0, true)})), "Running");
  EXPECT_EQ(ComputePodPhase(spec("Always"), Json::array(), Json::array({Status("terminated", 0)})), "Running");
  Json with_init = spec("Never");
  with_init["initContainers"] = Json::array({Json::object()});
  EXPECT_EQ(ComputePodPhase(with_init, Json::array({Status("running")}), Json::array({Status("waiting")})), "Pending");
  EXPECT_EQ(ComputePodPhase(with_init, Json::array({Status("terminated", 2)}), Json::array({Status("waiting")})),
            "Failed");
}

TEST(ContainerLog, WritesLinesAndReadsTailAndLimits) {
  TempDir dir;
  std::string path = dir.path() + "/0.log";
  {
    ContainerLog log(path, 0);
    log.Write("stdout", "one\ntw");
    log.Write("stdout", "o\nthree");
    log.Write("stderr", "err\n");
  }  // flushes "three"
  uint64_t offset = 0;
  EXPECT_EQ(ReadLog(path, {}, &offset), "one\ntwo\nerr\nthree\n");
  LogReadOptions tail;
  tail.tail_lines = 2;
  EXPECT_EQ(ReadLog(path, tail, nullptr), "err\nthree\n");
  LogReadOptions limit;
  limit.limit_bytes = 5;
  EXPECT_EQ(ReadLog(path, limit, nullptr), "one\nt");
  LogReadOptions ts;
  ts.timestamps = true;
  std::string stamped = ReadLog(path, ts, nullptr);
  EXPECT_EQ(stamped.substr(0, 2), "20");
  EXPECT_NE(stamped.find("Z one\n"), std::string::npos);
  LogReadOptions future;
  future.since = std::chrono::system_clock::now() + std::chrono::hours(1);
  EXPECT_EQ(ReadLog(path, future, nullptr), "");
  // Follow: only what was appended after offset.
  {
    ContainerLog log(path, 0);
    log.Write("stdout", "four\n");
  }
  EXPECT_EQ(ReadLogFrom(path, offset, false), "four\n");
  EXPECT_EQ(ReadLogFrom(path, offset, false), "");
}

TEST(ContainerLog, RotatesAtTheCapAndKeepsOneGeneration) {
  TempDir dir;
  std::string path = dir.path() + "/0.log";
  ContainerLog log(path, 200);
  for (int i = 0; i < 20; ++i) log.Write("stdout", "line " + std::to_string(i) + "\n");
  EXPECT_TRUE(fs::exists(path + ".1"));
  EXPECT_LE(fs::file_size(path), 200u);
  std::string all = ReadLog(path, {}, nullptr);
  EXPECT_NE(all.find("line 19\n"), std::string::npos);
  EXPECT_EQ(all.find("line 0\n"), std::string::npos);  // the oldest generation is gone
}

// A transport that answers from a script, recording requests.
class ScriptedTransport : public Transport {
 public:
  struct Step {
    std::string path_prefix;
    Result<HttpResponse> response;
  };
  std::deque<Step> steps;
  std::vector<std::string> seen;
  std::atomic<bool>* stop_when_empty = nullptr;

  Result<HttpResponse> Next(const HttpRequest& request) {
    seen.push_back(request.method + " " + request.path);
    if (steps.empty()) {
      if (stop_when_empty) stop_when_empty->store(true);
      return MakeError(Phase::kNetwork, "script ended");
    }
    Step step = std::move(steps.front());
    steps.pop_front();
    EXPECT_EQ(request.path.substr(0, step.path_prefix.size()), step.path_prefix);
    return step.response;
  }
  Result<HttpResponse> Do(const HttpRequest& request) override { return Next(request); }
  Result<long> Stream(const HttpRequest& request, const std::function<bool(std::string_view)>& on_data,
                      const std::atomic<bool>&) override {
    auto r = Next(request);
    if (!r.ok()) return r.take_error();
    // Deliver in two pieces to exercise line reassembly.
    std::string body = r->body;
    size_t half = body.size() / 2;
    if (on_data(std::string_view(body).substr(0, half))) on_data(std::string_view(body).substr(half));
    return r->status;
  }
};

TEST(KubeClient, ListWatchRelistsOn410AndFollowsBookmarks) {
  auto transport = std::make_unique<ScriptedTransport>();
  auto* t = transport.get();
  std::atomic<bool> stop{false};
  t->stop_when_empty = &stop;
  auto list = [](const char* rv, const char* name) {
    return HttpResponse{200, Json{{"metadata", {{"resourceVersion", rv}}},
                                  {"items", Json::array({{{"metadata", {{"name", name}}}}})}}
                                 .dump()};
  };
  t->steps.push_back({"/api/v1/pods", list("10", "a")});
  t->steps.push_back({"/api/v1/pods?watch=1", HttpResponse{200,
      R"({"type":"ADDED","object":{"metadata":{"name":"b","resourceVersion":"11"}}})" "\n"
      R"({"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"15"}}})" "\n"}});
  // The next watch must resume from the bookmark; the server says 410 Gone in an ERROR event.
  t->steps.push_back({"/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=15",
      HttpResponse{200, R"({"type":"ERROR","object":{"kind":"Status","code":410,"message":"too old"}})" "\n"}});
  t->steps.push_back({"/api/v1/pods", Result<HttpResponse>(MakeError(Phase::kNetwork, "connection refused"))});
  t->steps.push_back({"/api/v1/pods", list("20", "c")});
  KubeClient client(std::move(transport));
  std::vector<std::string> lists, events;
  client.ListWatch("/api/v1/pods",
                   [&](const Json& items) { lists.push_back(items[0]["metadata"]["name"]); },
                   [&](const std::string& type, const Json& o) { events.push_back(type + " " + o["metadata"].value("name", "")); },
                   stop);
  EXPECT_EQ(lists, (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(events, (std::vector<std::string>{"ADDED b"}));
}

TEST(KubeClient, HttpErrorsCarryStatusAndMessage) {
  auto transport = std::make_unique<ScriptedTransport>();
  transport->steps.push_back({"/api/v1/nodes", HttpResponse{409, R"({"kind":"Status","message":"already exists"})"}});
  KubeClient client(std::move(transport));
  auto r = client.Create("/api/v1/nodes", Json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(KubeClient::StatusOf(r.error()), 409);
  EXPECT_NE(r.error().message.find("already exists"), std::string::npos);
}

TEST(NodeAgent, RegisterUpdatesAnExistingNodeAndCreatesTheLeaseOn404) {
  auto transport = std::make_unique<ScriptedTransport>();
  auto* t = transport.get();
  t->steps.push_back({"/api/v1/nodes", HttpResponse{409, R"({"kind":"Status","message":"exists"})"}});
  t->steps.push_back({"/api/v1/nodes/n1", HttpResponse{200, R"({"metadata":{"name":"n1","uid":"u-1"}})"}});
  t->steps.push_back({"/api/v1/nodes/n1/status", HttpResponse{200, "{}"}});
  t->steps.push_back({"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                      HttpResponse{404, R"({"kind":"Status","message":"not found"})"}});
  t->steps.push_back({"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases", HttpResponse{201, "{}"}});
  // The API server goes away: errors are returned, nothing throws or crashes.
  t->steps.push_back({"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                      Result<HttpResponse>(MakeError(Phase::kNetwork, "connection refused"))});
  KubeClient client(std::move(transport));
  NodeOptions o;
  o.node_name = "n1";
  o.node_ip = "127.0.0.1";
  NodeAgent agent(client, o);
  ASSERT_TRUE(agent.Register().ok());
  ASSERT_TRUE(agent.RenewLease().ok());
  EXPECT_FALSE(agent.RenewLease().ok());
  ASSERT_EQ(t->seen.size(), 6u);
  EXPECT_EQ(t->seen[0], "POST /api/v1/nodes");
  EXPECT_EQ(t->seen[1], "PATCH /api/v1/nodes/n1");
  EXPECT_EQ(t->seen[2], "PATCH /api/v1/nodes/n1/status");
  EXPECT_EQ(t->seen[3], "PATCH /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1");
  EXPECT_EQ(t->seen[4], "POST /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases");
}

TEST(NodeAgent, NodeObjectHasWasmLabelsAndTaints) {
  NodeOptions o;
  o.node_name = "n1";
  o.node_ip = "127.0.0.1";
  o.extra_labels = {{"team", "a"}};
  Json node = NodeObject(o);
  EXPECT_EQ(node["metadata"]["labels"]["kubernetes.io/arch"], "wasm32-wasi");
  EXPECT_EQ(node["metadata"]["labels"]["kubernetes.io/os"], "wasi");
  EXPECT_EQ(node["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
  EXPECT_EQ(node["metadata"]["labels"]["team"], "a");
  ASSERT_EQ(node["spec"]["taints"].size(), 2u);
  EXPECT_EQ(node["spec"]["taints"][0]["effect"], "NoSchedule");
  EXPECT_EQ(node["spec"]["taints"][1]["effect"], "NoExecute");
  Json status = NodeStatus(o, NowRfc3339());
  EXPECT_EQ(status["capacity"]["pods"], "110");
  EXPECT_EQ(status["addresses"][0]["address"], "127.0.0.1");
}

// A watch whose connection is cut mid-stream resumes from the last resourceVersion it saw
// (no relist, nothing replayed); a watch answered with HTTP 410 Gone relists, and the relist
// is the full truth (objects that vanished meanwhile are absent from it).
class CuttingTransport : public ScriptedTransport {
 public:
  // A step with status 0 delivers its body, then fails like a connection reset.
  Result<long> Stream(const HttpRequest& request, const std::function<bool(std::string_view)>& on_data,
                      const std::atomic<bool>& stop) override {
    if (!steps.empty() && steps.front().response.ok() && steps.front().response->status == 0) {
      auto r = Next(request);
      on_data(r->body);
      return MakeError(Phase::kNetwork, "Recv failure: Connection reset by peer");
    }
    return ScriptedTransport::Stream(request, on_data, stop);
  }
};

TEST(KubeClient, ListWatchResumesAfterACutAndRelistsOnHttp410) {
  auto transport = std::make_unique<CuttingTransport>();
  auto* t = transport.get();
  std::atomic<bool> stop{false};
  t->stop_when_empty = &stop;
  auto list = [](const char* rv, const char* name) {
    return HttpResponse{200, Json{{"metadata", {{"resourceVersion", rv}}},
                                  {"items", Json::array({{{"metadata", {{"name", name}}}}})}}
                                 .dump()};
  };
  const std::string watch = "/api/v1/pods?watch=1&allowWatchBookmarks=true&timeoutSeconds=300&resourceVersion=";
  t->steps.push_back({"/api/v1/pods", list("10", "a")});
  t->steps.push_back({watch + "10", HttpResponse{0,
      R"({"type":"ADDED","object":{"metadata":{"name":"b","resourceVersion":"11"}}})" "\n"
      R"({"type":"MODIFIED","object":{"metadata":{"name":"b","resourceVersion":)"}});  // cut mid-event
  t->steps.push_back({watch + "11", HttpResponse{200,
      R"({"type":"DELETED","object":{"metadata":{"name":"a","resourceVersion":"12"}}})" "\n"}});
  t->steps.push_back({watch + "12", HttpResponse{410, R"({"kind":"Status","code":410,"reason":"Expired"})"}});
  t->steps.push_back({"/api/v1/pods", list("30", "c")});
  KubeClient client(std::move(transport));
  std::vector<std::string> lists, events;
  client.ListWatch("/api/v1/pods",
                   [&](const Json& items) { lists.push_back(items[0]["metadata"]["name"]); },
                   [&](const std::string& type, const Json& o) { events.push_back(type + " " + o["metadata"].value("name", "")); },
                   stop);
  EXPECT_EQ(lists, (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(events, (std::vector<std::string>{"ADDED b", "DELETED a"}));  // the torn event is dropped
  ASSERT_GE(t->seen.size(), 5u);
  EXPECT_EQ(t->seen[2], "GET " + watch + "11");
  EXPECT_EQ(t->seen[4], "GET /api/v1/pods");
}

}  // namespace
}  // namespace wasmlet::node
