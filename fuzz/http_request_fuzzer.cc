// Hostile HTTP/1.x bytes as the server reads them: a Beast request parser with the server's
// limits (gateway/server.h defaults), fed in arbitrary pieces, several pipelined requests per
// input; each complete request becomes a RequestInfo as in the server, is routed, and goes
// through the CGI environment and argv mapping (gateway/cgi.h). The guest receives them as C
// strings that must be valid UTF-8 (WASI), so every name and value must be valid UTF-8 without
// NUL, and names must not contain '='.
// Input: byte 0 = piece size for feeding the parser, then the connection's bytes.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>

#include "gateway/cgi.h"
#include "gateway/http_request.h"
#include "gateway/router.h"
#include "gateway/server.h"

namespace {

namespace http = boost::beast::http;
using namespace wasmlet::gateway;

bool ValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t k = 1; k < n; ++k) {
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc >> 6) != 0x2) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

const Router& SharedRouter() {
  static const Router router = [] {
    std::vector<Route> routes = {{"/", 0, "_start", "fuzz"},
                                 {"/exact", 0, "_start", "fuzz"},
                                 {"/app/...", 0, "_start", "fuzz"},
                                 {"/app/sub/...", 0, "handler", "fuzz _routes"},
                                 {"/...", 0, "_start", "fuzz"}};
    return Router::Build(std::move(routes), nullptr);
  }();
  return router;
}

void CheckStrings(const EnvList& env, const std::vector<std::string>& argv) {
  for (const auto& [name, value] : env) {
    if (name.empty() || name.find('=') != std::string::npos || !ValidUtf8(name)) __builtin_trap();
    if (!ValidUtf8(value)) __builtin_trap();
  }
  for (const auto& a : argv) {
    if (!ValidUtf8(a)) __builtin_trap();
  }
}

void MapRequest(const http::request<http::string_body>& req) {
  // The server's own mapping (Session::OnRequest), plus the connection's side.
  RequestInfo info = RequestInfoOf(req);
  info.remote_addr = "127.0.0.1";
  info.local_port = 3000;

  auto match = SharedRouter().Match(PathOf(info.target));
  if (!match) return;
  EnvList module_env = {{"FROM_CONFIG", "1"}};
  EnvList global_env = {{"GLOBAL", "x"}};
  CgiSettings settings;
  settings.global_env = &global_env;
  EnvList env = BuildCgiEnv(info, *match, module_env, settings);
  CheckStrings(env, BuildArgv(info, std::nullopt));
  CheckStrings(env, BuildArgv(info, std::string("${SCRIPT_NAME} ${ARGS} --flag")));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t piece = 1 + data[0];
  std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  const ServerOptions limits;
  size_t pos = 0;
  for (int message = 0; message < 8 && pos < bytes.size(); ++message) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(limits.max_header_bytes);
    parser.body_limit(limits.max_body_bytes);
    boost::beast::flat_buffer buffer;
    bool failed = false, header_checked = false;
    while (!parser.is_done()) {
      // Feed one more piece, then let the parser consume what it can (as async_read does).
      if (pos >= bytes.size()) {
        boost::beast::error_code ec;
        parser.put_eof(ec);
        failed = ec || !parser.is_done();
        break;
      }
      size_t n = std::min(piece, bytes.size() - pos);
      auto dst = buffer.prepare(n);
      std::memcpy(dst.data(), bytes.data() + pos, n);
      buffer.commit(n);
      pos += n;
      boost::beast::error_code ec;
      while (buffer.size() > 0 && !parser.is_done()) {
        size_t used = parser.put(buffer.data(), ec);
        buffer.consume(used);
        if (ec == http::error::need_more) {
          ec = {};
          break;
        }
        if (ec) break;
        if (used == 0) break;
      }
      if (ec) {
        failed = true;
        break;
      }
      if (parser.is_header_done() && !header_checked) {
        header_checked = true;
        // The server's header checks (Session::OnHeader): field count and Content-Length.
        size_t fields = 0;
        for (auto it = parser.get().begin(); it != parser.get().end(); ++it) ++fields;
        auto length = parser.content_length();
        if (fields > limits.max_header_count || (length && *length > limits.max_body_bytes)) {
          failed = true;
          break;
        }
      }
    }
    if (failed || !parser.is_done()) break;
    // Bytes the parser did not take belong to the next pipelined request.
    pos -= buffer.size();
    MapRequest(parser.release());
  }
  return 0;
}
