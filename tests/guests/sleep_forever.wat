;; Calls poll_oneoff directly with one relative clock subscription of 2^64-1 ns, again and
;; again: without an interruptible poll_oneoff it would hold its thread for centuries.
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; subscription at 0 (48 bytes): userdata 0, tag 0 (clock), clock id 1 (monotonic) @16,
  ;; timeout @24 = all ones, flags @40 = 0 (relative); event at 64; nevents at 96.
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const -1))
    (loop $again
      (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 96)))
      (br $again))))
