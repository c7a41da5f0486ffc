// The bridge from Beast's parsed request to the gateway's RequestInfo, shared by the server and
// the http_request fuzzer (so the fuzzer maps requests exactly as the server does).
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include "gateway/cgi.h"

namespace wasmlet::gateway {

// Method, target, protocol, headers, body size and keep-alive of `req`; the caller adds what
// belongs to the connection (remote address, local port, TLS, draining).
RequestInfo RequestInfoOf(const boost::beast::http::request<boost::beast::http::string_body>& req);

}  // namespace wasmlet::gateway
