;; A small proxy-wasm (ABI 0.2.1) HTTP filter that adds the request header
;; "x-swap: v00" and lets the request continue. The module swap test makes
;; distinct modules from it by rewriting the three bytes "v00" (v01, v02…):
;; each has its own sha256 and shows which one runs.
;; Built by:  wat2wasm swap.wat -o swap.wasm
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-swap")
  (data (i32.const 32) "v00")
  (global $heap (mut i32) (i32.const 1024))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (global.get $heap)
    (global.set $heap (i32.add (global.get $heap) (local.get $size))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 32) (i32.const 3)))
    (i32.const 0)))
