;; Unbounded recursion on the wasm call stack (no linear-memory stack involved): the host must
;; stop it with a stack-overflow trap, not crash.
(module
  (func $deeper (param $n i64) (result i64)
    (i64.add (call $deeper (i64.add (local.get $n) (i64.const 1))) (local.get $n)))
  (func (export "_start") (drop (call $deeper (i64.const 0))))
  (memory (export "memory") 1))
