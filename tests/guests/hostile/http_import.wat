;; Imports outbound HTTP (wasi_experimental_http), which wasmlet does not implement: loading it
;; must fail with an error that names the missing import.
(module
  (import "wasi_experimental_http" "req"
    (func $req (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $req (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)
                     (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 0)))))
