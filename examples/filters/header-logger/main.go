// Command header-logger is a proxy-wasm HTTP filter that logs the
// User-Agent of each request at info level, as "user-agent: <value>"
// ("user-agent: -" when the request has none). It takes no configuration.
package main

import (
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func main() {}

// The filter keeps no state, so it registers its HTTP context alone; the
// SDK supplies the VM and plugin contexts.
func init() { proxywasm.SetHttpContext(newStream) }

func newStream(uint32) types.HttpContext { return &stream{} }

type stream struct{ types.DefaultHttpContext }

func (*stream) OnHttpRequestHeaders(int, bool) types.Action {
	proxywasm.LogInfo(logLine(proxywasm.GetHttpRequestHeader("user-agent")))
	return types.ActionContinue
}

// logLine formats the message for a User-Agent lookup result.
func logLine(ua string, err error) string {
	if err != nil || ua == "" {
		ua = "-"
	}
	return "user-agent: " + ua
}
