;; A proxy-wasm (ABI 0.2.1) HTTP filter whose VM refuses to start: it passes
;; every check wasmxds makes before serving a module (well-formed, the
;; exports a proxy-wasm host needs, compiles), but proxy_on_vm_start returns
;; 0, so Envoy fails the VM and never runs the filter.
;; Built by:  wat2wasm vm-start-fails.wat -o vm-start-fails.wasm
;;
;; Were it to start, it would add "x-wasm-feature: vm-start-fails" to every
;; request, so a test can tell that it never ran.
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-wasm-feature")
  (data (i32.const 32) "vm-start-fails")
  (global $heap (mut i32) (i32.const 1024))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (global.get $heap)
    (global.set $heap (i32.add (global.get $heap) (local.get $size))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 14) (i32.const 32) (i32.const 14)))
    (i32.const 0)))
