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
	"github.com/wasmxds/wasmxds/examples/filters/pluginconfig"
	"github.com/wasmxds/wasmxds/examples/filters/proxywasm"
)

func main() {}

func init() {
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return &root{} })
}

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

type root struct {
	proxywasm.DefaultRootContext
	config config
}

// OnPluginStart rejects a configuration that is not a JSON object, so a
// typo shows as a refused config rather than a filter doing nothing.
func (r *root) OnPluginStart(data []byte) bool {
	c, err := parseConfig(data)
	if err != nil {
		proxywasm.LogError("tcp-prefix: " + err.Error())
		return false
	}
	r.config = c
	return true
}

func (r *root) NewTCPContext(uint32) proxywasm.TCPContext { return &conn{config: r.config} }

// conn marks the first chunk of each direction.
type conn struct {
	proxywasm.DefaultTCPContext
	config           config
	sentDown, sentUp bool
}

func (c *conn) OnDownstreamData(size int, _ bool) proxywasm.Action {
	if !c.sentDown && size > 0 && len(c.config.downstream) > 0 {
		c.sentDown = true
		if err := proxywasm.PrependDownstreamData(c.config.downstream); err != nil {
			proxywasm.LogError("tcp-prefix: " + err.Error())
		}
	}
	return proxywasm.ActionContinue
}

func (c *conn) OnUpstreamData(size int, _ bool) proxywasm.Action {
	if !c.sentUp && size > 0 && len(c.config.upstream) > 0 {
		c.sentUp = true
		if err := proxywasm.PrependUpstreamData(c.config.upstream); err != nil {
			proxywasm.LogError("tcp-prefix: " + err.Error())
		}
	}
	return proxywasm.ActionContinue
}
