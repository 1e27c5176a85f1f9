// Command tcp-prefix is a proxy-wasm network filter (a WasmPlugin with
// type: NETWORK) that marks the bytes of each TCP connection, configured
// by its plugin configuration (JSON):
//
//	{
//	  "downstreamPrefix": "> ",   // put before the first bytes the client sends
//	  "upstreamPrefix": "< "      // put before the first bytes the upstream answers
//	}
//
// Both are optional. Through an echo server, a client that sends "hi"
// gets "< > hi" back: each direction passed the filter once.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/wasmxds/wasmxds/examples/filters/pluginconfig"
)

func main() {}

func init() { proxywasm.SetPluginContext(newPlugin) }

func newPlugin(uint32) types.PluginContext { return &plugin{} }

type config struct {
	downstream, upstream []byte
}

func parseConfig(data []byte) (config, error) {
	obj, err := pluginconfig.Parse(data)
	if err != nil {
		return config{}, err
	}
	down, _ := obj.String("downstreamPrefix")
	up, _ := obj.String("upstreamPrefix")
	return config{downstream: []byte(down), upstream: []byte(up)}, nil
}

type plugin struct {
	types.DefaultPluginContext
	config config
}

// OnPluginStart rejects a configuration that is not a JSON object, so a
// typo shows as a refused config rather than a filter doing nothing.
func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	var data []byte
	if size > 0 {
		var err error
		if data, err = proxywasm.GetPluginConfiguration(); err != nil {
			proxywasm.LogError("tcp-prefix: reading the configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	c, err := parseConfig(data)
	if err != nil {
		proxywasm.LogError("tcp-prefix: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.config = c
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewTcpContext(uint32) types.TcpContext {
	return &conn{down: marker{prefix: p.config.downstream}, up: marker{prefix: p.config.upstream}}
}

// marker decides which chunk of one direction gets the prefix: the first
// that carries bytes.
type marker struct {
	prefix []byte
	done   bool
}

// take returns the prefix to put before a chunk of size bytes, or nil.
func (m *marker) take(size int) []byte {
	if m.done || size == 0 || len(m.prefix) == 0 {
		return nil
	}
	m.done = true
	return m.prefix
}

// conn marks the first chunk of each direction.
type conn struct {
	types.DefaultTcpContext
	down, up marker
}

func (c *conn) OnDownstreamData(size int, _ bool) types.Action {
	if p := c.down.take(size); p != nil {
		if err := proxywasm.PrependDownstreamData(p); err != nil {
			proxywasm.LogError("tcp-prefix: " + err.Error())
		}
	}
	return types.ActionContinue
}

func (c *conn) OnUpstreamData(size int, _ bool) types.Action {
	if p := c.up.take(size); p != nil {
		if err := proxywasm.PrependUpstreamData(p); err != nil {
			proxywasm.LogError("tcp-prefix: " + err.Error())
		}
	}
	return types.ActionContinue
}
