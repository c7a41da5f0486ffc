# Node agent parsers of untrusted input: kubeconfig files, the API server's lists and watch
# streams, and the pod decoding helpers.
wasmlet_fuzzer(node_fuzzer SOURCES node_fuzzer.cc DEPS wasmlet_node)
