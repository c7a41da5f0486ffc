(module
  (memory (export "memory") 1 65536)
  (func (export "_start")
    (drop (memory.grow (i32.const 1000)))
    (i32.store (i32.const 70000000) (i32.const 1))
    (unreachable)))
