# Build policy for every wasmlet target, in one place: C++20, warnings as errors, and the
# optional sanitizer preset chosen with -DWASMLET_SANITIZE=asan|ubsan|asan+ubsan|tsan.
set(WASMLET_SANITIZE "" CACHE STRING "Sanitizers for all targets: asan, ubsan, asan+ubsan, tsan")
option(WASMLET_WERROR "Treat warnings as errors" ON)

set(_wasmlet_san_flags "")
if(WASMLET_SANITIZE STREQUAL "asan")
  set(_wasmlet_san_flags -fsanitize=address -fno-omit-frame-pointer)
elseif(WASMLET_SANITIZE STREQUAL "ubsan")
  set(_wasmlet_san_flags -fsanitize=undefined -fno-sanitize-recover=undefined)
elseif(WASMLET_SANITIZE STREQUAL "asan+ubsan")
  set(_wasmlet_san_flags -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
elseif(WASMLET_SANITIZE STREQUAL "tsan")
  set(_wasmlet_san_flags -fsanitize=thread)
elseif(NOT WASMLET_SANITIZE STREQUAL "")
  message(FATAL_ERROR "WASMLET_SANITIZE must be asan, ubsan, asan+ubsan or tsan, not '${WASMLET_SANITIZE}'")
endif()

function(wasmlet_target_policy target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic -Wshadow=local
                         -Wnon-virtual-dtor -Wno-missing-field-initializers)
  if(WASMLET_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(_wasmlet_san_flags)
    target_compile_options(${target} PRIVATE ${_wasmlet_san_flags})
    target_link_options(${target} PRIVATE ${_wasmlet_san_flags})
  endif()
endfunction()

# wasmlet_library(name SOURCES... DEPS...)
function(wasmlet_library name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  target_include_directories(${name} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ${A_DEPS})
  wasmlet_target_policy(${name})
endfunction()

# wasmlet_test(name SOURCES... DEPS...): a GoogleTest binary registered with ctest.
function(wasmlet_test name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  target_link_libraries(${name} PRIVATE ${A_DEPS} GTest::gtest GTest::gmock GTest::gtest_main)
  wasmlet_target_policy(${name})
  target_compile_definitions(${name} PRIVATE
    WASMLET_GUEST_DIR="${WASMLET_GUEST_DIR}"
    WASMLET_BINARY="$<TARGET_FILE:wasmlet>"
    WASMLET_SOURCE_DIR="${PROJECT_SOURCE_DIR}")
  gtest_discover_tests(${name} DISCOVERY_TIMEOUT 60 PROPERTIES LABELS "${A_LABELS}")
endfunction()
