# Gateway parsers of untrusted input: module output (response head, streaming, _routes) and
# configuration files.
wasmlet_fuzzer(gateway_response_fuzzer SOURCES gateway_response_fuzzer.cc DEPS wasmlet_gateway)
wasmlet_fuzzer(gateway_config_fuzzer SOURCES gateway_config_fuzzer.cc DEPS wasmlet_gateway)
# Route tables (config and _routes) against a reference matcher; HTTP/1.x bytes through a Beast
# parser with the server's limits, then the request -> CGI environment and argv mapping.
wasmlet_fuzzer(router_fuzzer SOURCES router_fuzzer.cc DEPS wasmlet_gateway)
wasmlet_fuzzer(http_request_fuzzer SOURCES http_request_fuzzer.cc DEPS wasmlet_gateway)
