// Command add-header is a proxy-wasm HTTP filter that adds headers from its
// plugin configuration (JSON):
//
//	{
//	  "header": "x-wasm", "value": "hello",      // one response header
//	  "headers": {"x-a": "1", "x-b": "2"},       // more response headers
//	  "requestHeader": "x-chain",                // a request header to which
//	  "requestValue": "a"                        // requestValue is appended
//	}
//
// Every field is optional. Response headers are added in the order given
// ("header" first). The request header is appended to with a comma
// ("a" then "a,b"), so an upstream that echoes it shows the order in which
// several add-header instances ran.
package main

import (
	"errors"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/wasmxds/wasmxds/examples/filters/pluginconfig"
)

func main() {}

// init registers the plugin context factory: the host creates contexts
// only after the module's initializers ran, so this is the one place to do
// it.
func init() { proxywasm.SetPluginContext(newPlugin) }

func newPlugin(uint32) types.PluginContext { return &plugin{} }

// config is the parsed plugin configuration.
type config struct {
	response     [][2]string
	requestName  string
	requestValue string
}

var errNotString = errors.New("every header value must be a string")

func parseConfig(data []byte) (config, error) {
	var c config
	obj, err := pluginconfig.Parse(data)
	if err != nil {
		return c, err
	}
	name, hasName := obj.String("header")
	value, _ := obj.String("value")
	if hasName && name != "" {
		c.response = append(c.response, [2]string{name, value})
	}
	more, _, err := obj.Object("headers")
	if err != nil {
		return c, err
	}
	for _, m := range more.Members {
		if m.Value.Kind != pluginconfig.KindString {
			return c, errNotString
		}
		c.response = append(c.response, [2]string{m.Name, m.Value.Str()})
	}
	c.requestName, _ = obj.String("requestHeader")
	c.requestValue, _ = obj.String("requestValue")
	return c, nil
}

type plugin struct {
	types.DefaultPluginContext
	config config
}

// OnPluginStart reads the plugin configuration; a bad one is refused, so
// the proxy rejects the plugin instead of running it half configured.
func (p *plugin) OnPluginStart(size int) types.OnPluginStartStatus {
	var data []byte
	if size > 0 {
		var err error
		if data, err = proxywasm.GetPluginConfiguration(); err != nil {
			proxywasm.LogError("add-header: reading the configuration: " + err.Error())
			return types.OnPluginStartStatusFailed
		}
	}
	c, err := parseConfig(data)
	if err != nil {
		proxywasm.LogError("add-header: bad configuration: " + err.Error())
		return types.OnPluginStartStatusFailed
	}
	p.config = c
	return types.OnPluginStartStatusOK
}

func (p *plugin) NewHttpContext(uint32) types.HttpContext { return &stream{config: &p.config} }

type stream struct {
	types.DefaultHttpContext
	config *config
}

func (s *stream) OnHttpRequestHeaders(int, bool) types.Action {
	name := s.config.requestName
	if name == "" {
		return types.ActionContinue
	}
	value := s.config.requestValue
	if prev, err := proxywasm.GetHttpRequestHeader(name); err == nil && prev != "" {
		value = prev + "," + value
	}
	if err := proxywasm.ReplaceHttpRequestHeader(name, value); err != nil {
		proxywasm.LogError("add-header: setting request header: " + err.Error())
	}
	return types.ActionContinue
}

func (s *stream) OnHttpResponseHeaders(int, bool) types.Action {
	for _, h := range s.config.response {
		if err := proxywasm.AddHttpResponseHeader(h[0], h[1]); err != nil {
			proxywasm.LogError("add-header: adding response header: " + err.Error())
		}
	}
	return types.ActionContinue
}
