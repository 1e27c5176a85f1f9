// Command config-echo is a proxy-wasm HTTP filter that returns its plugin
// configuration, byte for byte as the proxy delivered it, in the response
// header x-plugin-config. It shows what configuration a filter received.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// headerName is the response header that carries the configuration.
const headerName = "x-plugin-config"

func main() {}

func init() { proxywasm.SetPluginContext(newPlugin) }

func newPlugin(uint32) types.PluginContext { return &plugin{} }

type plugin struct {
	types.DefaultPluginContext
	config string
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if size == 0 {
		return types.OnPluginStartStatusOK
	}
	data, err := proxywasm.GetPluginConfiguration()
	if err != nil {
		proxywasm.LogError("config-echo: reading the configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.config = string(data)
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{plugin: p} }

type stream struct {
	types.DefaultHttpContext
	plugin *plugin
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	if err := proxywasm.ReplaceHttpResponseHeader(headerName, s.plugin.config); err != nil {
		proxywasm.LogError("config-echo: " + err.Error())
	}
	return types.ActionContinue
}
