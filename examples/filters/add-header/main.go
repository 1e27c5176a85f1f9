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

	"github.com/wasmxds/wasmxds/examples/filters/pluginconfig"
	"github.com/wasmxds/wasmxds/examples/filters/proxywasm"
)

func main() {}

func init() {
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return &root{} })
}

// config is the parsed plugin configuration.
type config struct {
	response     []proxywasm.Header
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
		c.response = append(c.response, proxywasm.Header{Name: name, Value: value})
	}
	more, _, err := obj.Object("headers")
	if err != nil {
		return c, err
	}
	for _, m := range more.Members {
		if m.Value.Kind != pluginconfig.KindString {
			return c, errNotString
		}
		c.response = append(c.response, proxywasm.Header{Name: m.Name, Value: m.Value.Str()})
	}
	c.requestName, _ = obj.String("requestHeader")
	c.requestValue, _ = obj.String("requestValue")
	return c, nil
}

type root struct {
	proxywasm.DefaultRootContext
	config config
}

func (r *root) OnPluginStart(data []byte) bool {
	c, err := parseConfig(data)
	if err != nil {
		proxywasm.LogError("add-header: bad configuration: " + err.Error())
		return false
	}
	r.config = c
	return true
}

func (r *root) NewHTTPContext(uint32) proxywasm.HTTPContext {
	return &stream{config: &r.config}
}

type stream struct {
	proxywasm.DefaultHTTPContext
	config *config
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	name := s.config.requestName
	if name == "" {
		return proxywasm.ActionContinue
	}
	value := s.config.requestValue
	if prev, err := proxywasm.GetRequestHeader(name); err == nil && prev != "" {
		value = prev + "," + value
	}
	if err := proxywasm.ReplaceRequestHeader(name, value); err != nil {
		proxywasm.LogError("add-header: setting request header: " + err.Error())
	}
	return proxywasm.ActionContinue
}

func (s *stream) OnResponseHeaders(int, bool) proxywasm.Action {
	for _, h := range s.config.response {
		if err := proxywasm.AddResponseHeader(h.Name, h.Value); err != nil {
			proxywasm.LogError("add-header: adding response header: " + err.Error())
		}
	}
	return proxywasm.ActionContinue
}
