// `wasmlet node`: join a Kubernetes cluster as a node that runs wasm pods (docs/node.md).
#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <vector>

#include "exe/commands.h"
#include "node/kube_client.h"
#include "node/kubelet_server.h"
#include "node/node_agent.h"
#include "node/pod_manager.h"
#include "runtime/runtime.h"
#include "util/files.h"
#include "util/log.h"
#ifdef WASMLET_NODE_HAS_OCI
#include "oci/resolve.h"
#endif

namespace wasmlet::exe {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop.store(true); }

std::string Hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0) return "wasmlet-node";
  std::string name = buf;
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return name;
}

// The first non-loopback IPv4 address, as the kubelet picks one; 127.0.0.1 if none.
std::string DefaultNodeIp() {
  ifaddrs* list = nullptr;
  std::string ip = "127.0.0.1";
  if (getifaddrs(&list) != 0) return ip;
  for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
    char text[INET_ADDRSTRLEN];
    auto* sin = reinterpret_cast<sockaddr_in*>(a->ifa_addr);
    inet_ntop(AF_INET, &sin->sin_addr, text, sizeof text);
    if (std::string(text).rfind("127.", 0) == 0) continue;
    ip = text;
    break;
  }
  freeifaddrs(list);
  return ip;
}

std::string CacheBase() {
  const char* xdg = std::getenv("XDG_CACHE_HOME");
  const char* home = std::getenv("HOME");
  return xdg != nullptr && *xdg ? xdg : std::string(home != nullptr ? home : "/tmp") + "/.cache";
}

struct NodeCmdOptions {
  std::string kubeconfig;
  std::string node_name;
  std::string node_ip;
  std::string node_labels;
  int max_pods = 110;
  int kubelet_port = 10250;
  std::string kubelet_bind = "0.0.0.0";
  std::string data_dir;
  std::string tls_cert, tls_key, client_ca;
  std::string local_images;
  std::vector<std::string> insecure_registries;
  std::string image_data_dir;
  std::string module_cache;
  double restart_backoff_seconds = 10;
};

// Development and test images: "<anything>/<name>[:tag|@digest]" -> DIR/<name>.wasm.
node::ImageResolver LocalImageResolver(const std::string& dir) {
  return [dir](const std::string& image) -> Result<std::string> {
    std::string name = image;
    if (auto at = name.find('@'); at != std::string::npos) name.resize(at);
    if (auto slash = name.rfind('/'); slash != std::string::npos) name = name.substr(slash + 1);
    if (auto colon = name.find(':'); colon != std::string::npos) name.resize(colon);
    std::string path = dir + "/" + name + ".wasm";
    std::error_code ec;
    if (name.empty() || !fs::is_regular_file(path, ec)) {
      return MakeError(Phase::kPull, "image \"" + image + "\" not found (local images in " + dir + ")");
    }
    return path;
  };
}

int DoNode(const NodeCmdOptions& o) {
  auto config = node::LoadKubeConfig(o.kubeconfig);
  if (!config.ok()) return ReportError(config.error().ToString(), kExitUsage);
  node::NodeOptions node_options;
  node_options.node_name = o.node_name.empty() ? Hostname() : o.node_name;
  node_options.node_ip = o.node_ip.empty() ? DefaultNodeIp() : o.node_ip;
  node_options.max_pods = o.max_pods;
  node_options.kubelet_port = o.kubelet_port;
  if (!o.node_labels.empty()) {
    size_t start = 0;
    while (start <= o.node_labels.size()) {
      size_t comma = o.node_labels.find(',', start);
      if (comma == std::string::npos) comma = o.node_labels.size();
      std::string kv = o.node_labels.substr(start, comma - start);
      start = comma + 1;
      if (kv.empty()) continue;
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        return ReportError("usage error: --node-labels: expected k=v[,k=v...], got '" + kv + "'", kExitUsage);
      }
      node_options.extra_labels[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
  std::string data_dir = o.data_dir.empty() ? CacheBase() + "/wasmlet/node/" + node_options.node_name : o.data_dir;
  if (auto s = MakeDirs(data_dir); !s.ok()) return ReportError(s.error().ToString(), kExitFailure);

  node::KubeletServerOptions server_options;
  server_options.port = static_cast<uint16_t>(o.kubelet_port);
  server_options.bind_address = o.kubelet_bind;
  if (!o.tls_cert.empty()) {
    auto cert = ReadFile(o.tls_cert);
    auto key = ReadFile(o.tls_key);
    if (!cert.ok()) return ReportError(cert.error().ToString(), kExitUsage);
    if (!key.ok()) return ReportError(key.error().ToString(), kExitUsage);
    server_options.cert_pem = *cert;
    server_options.key_pem = *key;
  }
  if (!o.client_ca.empty()) {
    auto ca = ReadFile(o.client_ca);
    if (!ca.ok()) return ReportError(ca.error().ToString(), kExitUsage);
    server_options.client_ca_pem = *ca;
  }

  runtime::RuntimeOptions runtime_options;
  runtime_options.cache_dir = o.module_cache.empty() ? CacheBase() + "/wasmlet/modules" : o.module_cache;
  runtime_options.max_instances = static_cast<uint32_t>(std::max(16, o.max_pods * 2));
  auto rt = runtime::CreateWasmtimeRuntime(runtime_options);
  if (!rt.ok()) return ReportError(rt.error().ToString(), kExitFailure);
  node_options.engine = (*rt)->EngineDescription();

  node::PodManagerOptions pod_options;
  pod_options.node_name = node_options.node_name;
  pod_options.node_ip = node_options.node_ip;
  pod_options.data_dir = data_dir;
  pod_options.backoff_base = std::chrono::milliseconds(static_cast<long long>(o.restart_backoff_seconds * 1000));
#ifdef WASMLET_NODE_HAS_OCI
  // Images are wasm OCI artifacts pulled into the content store (IfNotPresent semantics: a
  // reference pulled before is not fetched again).
  oci::PullOptions pull;
  pull.policy = oci::PullPolicy::kMissing;
  pull.data_dir = o.image_data_dir;
  pull.insecure_registries = o.insecure_registries;
  node::ImageResolver registry = [pull](const std::string& image) -> Result<std::string> {
    return oci::ResolveToLocalPath(image, pull);
  };
#else
  node::ImageResolver registry = [](const std::string& image) -> Result<std::string> {
    return MakeError(Phase::kPull, "cannot pull \"" + image + "\": this build has no OCI layer; use --local-images DIR");
  };
#endif
  if (!o.local_images.empty()) {
    // Local images first (development, tests); anything else from its registry.
    auto local = LocalImageResolver(o.local_images);
    pod_options.resolve_image = [local, registry](const std::string& image) -> Result<std::string> {
      auto path = local(image);
      if (path.ok()) return path;
      return registry(image);
    };
  } else {
    pod_options.resolve_image = registry;
  }

  // Separate clients: a long watch never waits behind a heartbeat, and the reverse.
  node::KubeClient node_client(node::CreateCurlTransport(*config));
  node::KubeClient pod_client(node::CreateCurlTransport(*config));
  node::NodeAgent agent(node_client, node_options);
  node::PodManager pods(pod_client, **rt, pod_options);
  node::KubeletServer server(pods, server_options);
  if (auto s = server.Start(); !s.ok()) return ReportError(s.error().ToString(), kExitFailure);

  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  signal(SIGPIPE, SIG_IGN);
  WLOG_INFO("wasmlet node {} ({}) joining {} as {}", node_options.node_name, node_options.node_ip, config->server,
            node_options.engine);
  std::thread agent_thread([&] { agent.Run(g_stop); });
  std::thread pod_thread([&] { pods.Run(g_stop); });
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  WLOG_INFO("wasmlet node {}: stopping", node_options.node_name);
  server.Stop();
  agent_thread.join();
  pod_thread.join();
  pods.Shutdown();
  // Shutdown cancelled every guest and waited (at most 5 s) for them to end and report; a guest
  // thread still unwinding then ends with the process (docs/node.md). Skip static destructors
  // under its feet.
  spdlog::shutdown();
  std::fflush(stdout);
  std::fflush(stderr);
  std::_Exit(0);
}

const CommandRegistration kNode({
    .name = "node",
    .order = 30,
    .add =
        [](CLI::App& root, CommandEnv& env) {
          auto o = std::make_shared<NodeCmdOptions>();
          CLI::App* cmd = root.add_subcommand(
              "node",
              "Join a Kubernetes cluster as a node that runs WebAssembly pods.\n"
              "Pods select it with the node selector kubernetes.io/arch=wasm32-wasi and tolerate the\n"
              "taint kubernetes.io/arch=wasm32-wasi (NoSchedule, NoExecute).");
          cmd->add_option("--kubeconfig", o->kubeconfig, "Kubeconfig with the node's credentials")->required();
          cmd->add_option("--node-name", o->node_name, "Node name (default: the host name)");
          cmd->add_option("--node-ip", o->node_ip, "Address reported for the node and its pods");
          cmd->add_option("--node-labels", o->node_labels, "Extra labels: k=v[,k=v...]");
          cmd->add_option("--max-pods", o->max_pods, "Pods this node accepts (default 110)");
          cmd->add_option("--kubelet-port", o->kubelet_port, "Port of the kubelet HTTPS API (default 10250)");
          cmd->add_option("--kubelet-address", o->kubelet_bind, "Bind address of the kubelet API (default 0.0.0.0)");
          cmd->add_option("--data-dir", o->data_dir,
                          "Pod volumes and logs (default ~/.cache/wasmlet/node/<node-name>)");
          cmd->add_option("--tls-cert-file", o->tls_cert, "Kubelet API serving certificate (default: self-signed)");
          cmd->add_option("--tls-private-key-file", o->tls_key, "Key of --tls-cert-file");
          cmd->add_option("--client-ca-file", o->client_ca,
                          "CA that signs the API server's kubelet-client certificate; enables client auth");
          cmd->add_option("--local-images", o->local_images,
                          "Resolve images from DIR first: a ref whose last path element is NAME[:tag] -> DIR/NAME.wasm");
          cmd->add_option("--module-cache", o->module_cache, "Compiled-module cache directory");
          cmd->add_option("--insecure-registry", o->insecure_registries,
                          "Registry host[:port] that may be reached over plain HTTP (repeatable; loopback always may)");
          cmd->add_option("--image-data-dir", o->image_data_dir, "Content store for pulled images (default: wasmlet's)");
          cmd->add_option("--restart-backoff", o->restart_backoff_seconds,
                          "Initial restart / image-pull back-off in seconds (kubelet: 10, doubling to 300)");
          cmd->callback([o, &env] { env.exit_code = DoNode(*o); });
        },
});

}  // namespace
}  // namespace wasmlet::exe
