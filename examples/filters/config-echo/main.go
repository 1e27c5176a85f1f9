// Command config-echo is a proxy-wasm HTTP filter that returns its plugin
// configuration, byte for byte as the proxy delivered it, in the response
// header x-plugin-config. It shows what configuration a filter received.
package main

import "github.com/wasmxds/wasmxds/examples/filters/proxywasm"

// headerName is the response header that carries the configuration.
const headerName = "x-plugin-config"

func main() {}

func init() {
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return &root{} })
}

type root struct {
	proxywasm.DefaultRootContext
	config string
}

func (r *root) OnPluginStart(data []byte) bool {
	r.config = string(data)
	return true
}

func (r *root) NewHTTPContext(uint32) proxywasm.HTTPContext { return &stream{root: r} }

type stream struct {
	proxywasm.DefaultHTTPContext
	root *root
}

func (s *stream) OnResponseHeaders(int, bool) proxywasm.Action {
	if err := proxywasm.ReplaceResponseHeader(headerName, s.root.config); err != nil {
		proxywasm.LogError("config-echo: " + err.Error())
	}
	return proxywasm.ActionContinue
}
