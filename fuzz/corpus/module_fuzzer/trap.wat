;; A WASI command that traps: _start calls a function that executes `unreachable`.
(module
  (func $explode (unreachable))
  (func $inner (call $explode))
  (func (export "_start") (call $inner))
  (memory (export "memory") 1))
