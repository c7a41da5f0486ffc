;; Increments a byte in linear memory (initialised to '0' by a data segment) and a mutable
;; global, then prints both. A fresh instance must always print "1 1": nothing may leak from a
;; previous request through reused memory slots.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $g (mut i32) (i32.const 48))
  (data (i32.const 100) "0 0\n")
  (func (export "_start")
    (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
    (global.set $g (i32.add (global.get $g) (i32.const 1)))
    (i32.store8 (i32.const 102) (global.get $g))
    ;; also dirty a page far away, which a reused slot must not keep
    (i32.store (i32.const 60000) (i32.add (i32.load (i32.const 60000)) (i32.const 7)))
    (if (i32.ne (i32.load (i32.const 60000)) (i32.const 7)) (then unreachable))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
