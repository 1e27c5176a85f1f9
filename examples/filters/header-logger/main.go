// Command header-logger is a proxy-wasm HTTP filter that logs the
// User-Agent of each request at info level, as "user-agent: <value>"
// ("user-agent: -" when the request has none). It takes no configuration.
package main

import "github.com/wasmxds/wasmxds/examples/filters/proxywasm"

func main() {}

func init() {
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return root{} })
}

type root struct{ proxywasm.DefaultRootContext }

func (root) NewHTTPContext(uint32) proxywasm.HTTPContext { return stream{} }

type stream struct{ proxywasm.DefaultHTTPContext }

func (stream) OnRequestHeaders(int, bool) proxywasm.Action {
	proxywasm.LogInfo(logLine(proxywasm.GetRequestHeader("user-agent")))
	return proxywasm.ActionContinue
}

// logLine formats the message for a User-Agent lookup result.
func logLine(ua string, err error) string {
	if err != nil || ua == "" {
		ua = "-"
	}
	return "user-agent: " + ua
}
