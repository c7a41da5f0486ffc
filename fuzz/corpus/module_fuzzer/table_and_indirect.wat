(module
  (type $t (func (result i32)))
  (table 4 funcref)
  (func $a (result i32) (i32.const 1))
  (elem (i32.const 1) $a)
  (func (export "_start")
    (drop (call_indirect (type $t) (i32.const 1)))
    (drop (call_indirect (type $t) (i32.const 0)))))
