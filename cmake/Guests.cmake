# Guest modules are built from source in the repo, never committed as binaries:
# C with clang + Debian's wasi-libc, WAT with wabt's wat2wasm, Go with GOOS=wasip1.
find_program(WASM_CLANG NAMES clang clang-14 REQUIRED)
find_program(WAT2WASM wat2wasm REQUIRED)
find_program(GO_EXE go HINTS /usr/local/go/bin REQUIRED)
set(WASMLET_GUEST_DIR ${CMAKE_BINARY_DIR}/guests)
file(MAKE_DIRECTORY ${WASMLET_GUEST_DIR})
add_custom_target(guests ALL)

# wasmlet_c_guest(name source [extra clang flags...]) -> guests/<name>.wasm
function(wasmlet_c_guest name source)
  set(out ${WASMLET_GUEST_DIR}/${name}.wasm)
  add_custom_command(OUTPUT ${out}
    COMMAND ${WASM_CLANG} --target=wasm32-wasi -O2 -Wall -Werror ${ARGN}
            -o ${out} ${CMAKE_CURRENT_SOURCE_DIR}/${source}
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${source}
    COMMENT "guest (C) ${name}.wasm" VERBATIM)
  add_custom_target(guest_${name} DEPENDS ${out})
  add_dependencies(guests guest_${name})
endfunction()

# wasmlet_wat_guest(name source) -> guests/<name>.wasm, and the text copied as guests/<name>.wat
function(wasmlet_wat_guest name source)
  set(out ${WASMLET_GUEST_DIR}/${name}.wasm)
  add_custom_command(OUTPUT ${out} ${WASMLET_GUEST_DIR}/${name}.wat
    COMMAND ${WAT2WASM} --debug-names ${CMAKE_CURRENT_SOURCE_DIR}/${source} -o ${out}
    COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_CURRENT_SOURCE_DIR}/${source} ${WASMLET_GUEST_DIR}/${name}.wat
    DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${source}
    COMMENT "guest (WAT) ${name}.wasm" VERBATIM)
  add_custom_target(guest_${name} DEPENDS ${out})
  add_dependencies(guests guest_${name})
endfunction()

# wasmlet_go_guest(name package_dir) -> guests/<name>.wasm; package_dir holds a main package
# inside the Go module whose go.mod is in module_root (the current source dir).
function(wasmlet_go_guest name package_dir)
  set(out ${WASMLET_GUEST_DIR}/${name}.wasm)
  file(GLOB _srcs ${CMAKE_CURRENT_SOURCE_DIR}/${package_dir}/*.go)
  add_custom_command(OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -E env GOOS=wasip1 GOARCH=wasm GOFLAGS=-mod=mod GOTOOLCHAIN=local
            ${GO_EXE} build -trimpath -o ${out} ./${package_dir}
    WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR}
    DEPENDS ${_srcs} ${CMAKE_CURRENT_SOURCE_DIR}/go.mod
    COMMENT "guest (Go) ${name}.wasm" VERBATIM)
  add_custom_target(guest_${name} DEPENDS ${out})
  add_dependencies(guests guest_${name})
endfunction()
