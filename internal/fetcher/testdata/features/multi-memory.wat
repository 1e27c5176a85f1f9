;; A minimal proxy-wasm (ABI 0.2.1) HTTP filter that uses two memories (multi-
;; memory): a value round-trips through the second.
;; Built by gen.sh:  wat2wasm --enable-multi-memory multi-memory.wat -o multi-memory.wasm
;;
;; On each request it adds the header "x-wasm-feature: multi-memory" and lets the
;; request continue, so a test sees through Envoy that the VM started and the
;; filter ran. proxy_on_vm_start and proxy_on_request_headers take their
;; result from $feature (which returns 1), so the feature's code runs in both.
(module
  (import "env" "proxy_add_header_map_value"
    (func $add_header (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "x-wasm-feature")
  (data (i32.const 32) "multi-memory")
  (global $heap (mut i32) (i32.const 1024))
  (memory $scratch 1)
  (func $feature (result i32)
    (i32.store $scratch (i32.const 8) (i32.const 1))
    (i32.load $scratch (i32.const 8)))

  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (global.get $heap)
    (global.set $heap (i32.add (global.get $heap) (local.get $size))))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (call $feature))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (drop (call $add_header (i32.const 0) (i32.const 16) (i32.const 14) (i32.const 32) (i32.const 12)))
    (i32.sub (call $feature) (i32.const 1))))
