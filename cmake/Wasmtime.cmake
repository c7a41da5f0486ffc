# Wasmtime's C/C++ API as the imported target wasmtime::capi. The static library is built by
# cargo from third_party/wasmtime-capi (pinned in its Cargo.toml and Cargo.lock) through
# tools/build-wasmtime.sh, which caches it under ${XDG_CACHE_HOME:-~/.cache}/wasmlet keyed by
# version, features, lock file and rustc version. Only src/runtime may link it.
execute_process(
  COMMAND ${PROJECT_SOURCE_DIR}/tools/build-wasmtime.sh
  OUTPUT_VARIABLE WASMTIME_DIR
  OUTPUT_STRIP_TRAILING_WHITESPACE
  RESULT_VARIABLE _wasmtime_rc)
if(NOT _wasmtime_rc EQUAL 0)
  message(FATAL_ERROR "building Wasmtime's C API failed (tools/build-wasmtime.sh exit ${_wasmtime_rc})")
endif()
file(READ "${WASMTIME_DIR}/VERSION" WASMTIME_VERSION)
string(STRIP "${WASMTIME_VERSION}" WASMTIME_VERSION)
message(STATUS "Wasmtime ${WASMTIME_VERSION}: ${WASMTIME_DIR}")
add_library(wasmtime::capi STATIC IMPORTED GLOBAL)
set_target_properties(wasmtime::capi PROPERTIES
  IMPORTED_LOCATION "${WASMTIME_DIR}/lib/libwasmlet_wasmtime.a"
  INTERFACE_INCLUDE_DIRECTORIES "${WASMTIME_DIR}/include"
  INTERFACE_LINK_LIBRARIES "pthread;dl;m")
