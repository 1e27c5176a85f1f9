// Command fail-on-header is a proxy-wasm HTTP filter that fails at run time
// on demand, to show what a plugin's failure policy does. Plugin
// configuration (JSON), both optional:
//
//	{"header": "x-fail", "value": "1"}   // the defaults
//
// A request carrying that header with that value makes the filter panic:
// the Go runtime prints the panic and the VM stops for good. Every other
// response gets two headers:
//
//	x-vm-id: <16 hex digits>   // chosen at random when the VM started
//	x-vm-requests: <n>         // requests this VM has passed, this one included
//
// so a client sees when a new VM (after a reload) serves it.
//
// A VM whose environment has FAIL_START set to a non-empty value refuses
// to start (OnPluginStart fails), so Envoy refuses the module. Passing the
// variable from Envoy's own environment makes the module fail on some
// Envoys only:
//
//	vmConfig: {env: [{name: FAIL_START, valueFrom: HOST}]}
package main

import (
	"math/rand/v2"
	"os"
	"strconv"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/wasmxds/wasmxds/examples/filters/pluginconfig"
)

// failStartEnv is the VM environment variable that makes the plugin
// refuse to start.
const failStartEnv = "FAIL_START"

// The response headers the filter adds.
const (
	idHeader       = "x-vm-id"
	requestsHeader = "x-vm-requests"
)

func main() {}

func init() { proxywasm.SetPluginContext(newPlugin) }

func newPlugin(uint32) types.PluginContext {
	// The runtime seeds math/rand from the host's WASI random_get.
	return &plugin{id: strconv.FormatUint(rand.Uint64()|1<<63, 16)}
}

type plugin struct {
	types.DefaultPluginContext
	id            string
	header, value string
	requests      int
}

func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	if v := os.Getenv(failStartEnv); v != "" {
		proxywasm.LogError("fail-on-header: refusing to start: " + failStartEnv + "=" + v + " in the VM environment")
		return types.OnPluginStartStatusFailed
	}
	var data []byte
	if size > 0 {
		var err error
		if data, err = proxywasm.GetPluginConfiguration(); err != nil {
			proxywasm.LogError("fail-on-header: reading the configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	obj, err := pluginconfig.Parse(data)
	if err != nil {
		proxywasm.LogError("fail-on-header: bad configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.header, p.value = "x-fail", "1"
	if v, ok := obj.String("header"); ok && v != "" {
		p.header = v
	}
	if v, ok := obj.String("value"); ok {
		p.value = v
	}
	proxywasm.LogInfo("fail-on-header: vm " + p.id + " started")
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{plugin: p} }

type stream struct {
	types.DefaultHttpContext
	plugin *plugin
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	p := s.plugin
	if v, err := proxywasm.GetHttpRequestHeader(p.header); err == nil && v == p.value {
		panic("fail-on-header: request header " + p.header + ": " + v + " (vm " + p.id + ")")
	}
	p.requests++
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	p := s.plugin
	for _, h := range [][2]string{{idHeader, p.id}, {requestsHeader, strconv.Itoa(p.requests)}} {
		if err := proxywasm.ReplaceHttpResponseHeader(h[0], h[1]); err != nil {
			proxywasm.LogError("fail-on-header: " + err.Error())
		}
	}
	return types.ActionContinue
}
