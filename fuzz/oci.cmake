# OCI parsers of untrusted input: references, WWW-Authenticate challenges, Location headers,
# manifests and indexes from registries.
wasmlet_fuzzer(oci_fuzzer SOURCES oci_fuzzer.cc DEPS wasmlet_oci)
