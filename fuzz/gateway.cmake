# Gateway parsers of untrusted input: module output (response head, streaming, _routes) and
# configuration files.
wasmlet_fuzzer(gateway_response_fuzzer SOURCES gateway_response_fuzzer.cc DEPS wasmlet_gateway)
wasmlet_fuzzer(gateway_config_fuzzer SOURCES gateway_config_fuzzer.cc DEPS wasmlet_gateway)
