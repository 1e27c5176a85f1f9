// Command fail-on-header is a proxy-wasm HTTP filter that fails at run time
// on demand, to show what a plugin's failure policy does. Plugin
// configuration (JSON), each optional:
//
//	{"header": "x-fail", "value": "1"}   // the defaults
//	{"status500Every": 2}                // answer 500 to every 2nd request
//
// A request carrying that header with that value makes the filter panic:
// the Go runtime prints the panic and the VM stops for good. With
// status500Every n (n ≥ 1), the filter itself answers every nth request of
// the VM with a 500, without panicking: a module that loads and runs but
// fails part of its traffic. Every other response gets two headers:
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
	every500      int64 // answer 500 to every nth request; 0: never
	seen          int64 // requests the VM saw, for every500
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
	if _, set := obj.Get("status500Every"); set {
		n, ok := obj.Int("status500Every")
		if !ok || n < 1 {
			proxywasm.LogError("fail-on-header: status500Every: want a whole number, at least 1")
			return types.OnPluginStartStatusFailed
		}
		p.every500 = n
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
	if p.seen++; p.every500 > 0 && p.seen%p.every500 == 0 {
		body := []byte("fail-on-header: request " + strconv.FormatInt(p.seen, 10) + " answered 500 (status500Every)\n")
		if err := proxywasm.SendHttpResponse(500, [][2]string{{idHeader, p.id}}, body, -1); err != nil {
			proxywasm.LogError("fail-on-header: " + err.Error())
		}
		return types.ActionPause
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
