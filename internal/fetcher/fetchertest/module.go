// Package fetchertest builds small WebAssembly modules for tests: valid
// proxy-wasm modules that pass the fetcher's preflight, and variants that
// do not, without needing a Wasm toolchain.
package fetchertest

import "bytes"

// ProxyWasmExports are the exports that make a module pass the preflight.
var ProxyWasmExports = []string{"proxy_abi_version_0_2_1", "proxy_on_memory_allocate", "proxy_on_context_create"}

// Module assembles a Wasm binary whose functions (type () -> ()) are
// exported under the given names. A non-empty nonce goes into a custom
// section, making the bytes (and sha256) unique without changing behaviour.
// The functions do nothing, so Envoy can compile but not run such a module
// as a filter.
func Module(nonce string, exports ...string) []byte {
	var out bytes.Buffer
	out.Write([]byte{0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00})
	n := uint32(len(exports))
	section(&out, 1, []byte{0x01, 0x60, 0x00, 0x00}) // one type: () -> ()
	funcs := uleb(n)
	for range exports {
		funcs = append(funcs, 0x00)
	}
	section(&out, 3, funcs)
	exp := uleb(n)
	for i, name := range exports {
		exp = append(append(append(exp, uleb(uint32(len(name)))...), name...), 0x00)
		exp = append(exp, uleb(uint32(i))...)
	}
	section(&out, 7, exp)
	code := uleb(n)
	for range exports {
		code = append(code, 0x02, 0x00, 0x0b) // body of 2 bytes: no locals, end
	}
	section(&out, 10, code)
	if nonce != "" {
		section(&out, 0, append(append(uleb(5), "nonce"...), nonce...))
	}
	return out.Bytes()
}

// ProxyWasm returns a module exporting ProxyWasmExports, unique per nonce.
func ProxyWasm(nonce string) []byte { return Module(nonce, ProxyWasmExports...) }

func section(w *bytes.Buffer, id byte, payload []byte) {
	w.WriteByte(id)
	w.Write(uleb(uint32(len(payload))))
	w.Write(payload)
}

func uleb(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if v == 0 {
			return b
		}
	}
}
