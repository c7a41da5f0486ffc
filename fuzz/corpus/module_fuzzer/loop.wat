;; Spins forever: only a deadline stops it.
(module
  (func (export "_start") (loop $forever (br $forever)))
  (memory (export "memory") 1))
