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
  # GCC warns (-Wtsan) that TSan does not model std::atomic_thread_fence, which Boost.Asio's
  # fenced blocks use; with -Werror that would stop the build. Should the fences ever cause
  # false reports, suppress those reports (TSAN_OPTIONS=suppressions=...), keep the build.
  set(_wasmlet_san_flags -fsanitize=thread $<$<CXX_COMPILER_ID:GNU>:-Wno-tsan>)
elseif(NOT WASMLET_SANITIZE STREQUAL "")
  message(FATAL_ERROR "WASMLET_SANITIZE must be asan, ubsan, asan+ubsan or tsan, not '${WASMLET_SANITIZE}'")
endif()

function(wasmlet_target_policy target)
  target_compile_features(${target} PUBLIC cxx_std_20)
  set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wpedantic
                         -Wnon-virtual-dtor -Wno-missing-field-initializers)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(${target} PRIVATE -Wshadow=local)
  else()
    # clang: GNU-style designated initializers and statement expressions come from headers.
    target_compile_options(${target} PRIVATE -Wshadow-uncaptured-local -Wno-c99-designator
                           -Wno-gnu-zero-variadic-macro-arguments -Wno-c99-extensions)
  endif()
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

# Fuzz targets (STYLE.md 10). Every build replays the checked-in corpus and the crashes found
# so far (fuzz/corpus/<name>/) through the target as a ctest test, so a fixed crash stays fixed.
# With -DWASMLET_FUZZ=ON and clang, targets are libFuzzer binaries and ctest runs each for
# WASMLET_FUZZ_SECONDS (label "fuzz"); new interesting inputs go to the build tree.
option(WASMLET_FUZZ "Build libFuzzer targets (needs clang)" OFF)
set(WASMLET_FUZZ_SECONDS 30 CACHE STRING "Time budget per fuzz target in ctest")
if(WASMLET_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "WASMLET_FUZZ=ON needs clang: CC=clang CXX=clang++ cmake ...")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined)
  add_link_options(-fsanitize=address,undefined)
endif()

# wasmlet_fuzzer(name SOURCES ... DEPS ...): name_fuzzer.cc defines LLVMFuzzerTestOneInput.
function(wasmlet_fuzzer name)
  cmake_parse_arguments(A "" "" "SOURCES;DEPS" ${ARGN})
  set(corpus ${PROJECT_SOURCE_DIR}/fuzz/corpus/${name})
  if(WASMLET_FUZZ)
    add_executable(${name} ${A_SOURCES})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
    set(scratch ${CMAKE_CURRENT_BINARY_DIR}/corpus-${name})
    file(MAKE_DIRECTORY ${scratch})
    add_test(NAME fuzz_${name}
             COMMAND ${name} -max_total_time=${WASMLET_FUZZ_SECONDS} -timeout=10 -rss_limit_mb=4096
                     -print_final_stats=1 ${scratch} ${corpus})
    # Wasmtime handles SIGSEGV/SIGILL/SIGFPE itself (traps): ASan must leave them to it.
    set_tests_properties(fuzz_${name} PROPERTIES LABELS fuzz ENVIRONMENT
      "ASAN_OPTIONS=allow_user_segv_handler=1:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:handle_sigill=0:detect_leaks=0")
  else()
    add_executable(${name} ${A_SOURCES} ${PROJECT_SOURCE_DIR}/fuzz/replay_main.cc)
    add_test(NAME fuzz_replay_${name} COMMAND ${name} ${corpus})
    set_tests_properties(fuzz_replay_${name} PROPERTIES LABELS unit)
  endif()
  target_link_libraries(${name} PRIVATE ${A_DEPS})
  target_include_directories(${name} PRIVATE ${PROJECT_SOURCE_DIR}/src)
  wasmlet_target_policy(${name})
endfunction()
