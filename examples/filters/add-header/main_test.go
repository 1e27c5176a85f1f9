//go:build !wasip1

package main

import (
	"slices"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// start runs the plugin in the SDK's host emulator with config and fails the
// test unless the plugin accepts it.
func start(t *testing.T, config string) proxytest.HostEmulator {
	t.Helper()
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithPluginContext(newPlugin).WithPluginConfiguration([]byte(config)))
	t.Cleanup(reset)
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("configuration %s refused: %v", config, host.GetErrorLogs())
	}
	return host
}

func TestAddsResponseHeadersInOrder(t *testing.T) {
	host := start(t, `{"header": "x-wasm", "value": "hello", "headers": {"x-b": "2", "x-a": "1"}}`)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{":path", "/"}}, true)
	host.CallOnResponseHeaders(id, [][2]string{{":status", "200"}}, false)
	want := [][2]string{{":status", "200"}, {"x-wasm", "hello"}, {"x-b", "2"}, {"x-a", "1"}}
	if got := host.GetCurrentResponseHeaders(id); !slices.Equal(got, want) {
		t.Errorf("response headers = %v, want %v", got, want)
	}
	if got := host.GetCurrentRequestHeaders(id); len(got) != 1 {
		t.Errorf("request changed without requestHeader: %v", got)
	}
}

func TestAppendsToRequestHeader(t *testing.T) {
	host := start(t, `{"requestHeader": "X-Chain", "requestValue": "b"}`)
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, [][2]string{{"x-chain", "a"}}, true)
	if got := host.GetCurrentRequestHeaders(id); !slices.Equal(got, [][2]string{{"x-chain", "a,b"}}) {
		t.Errorf("request headers = %v, want x-chain: a,b", got)
	}
	fresh := host.InitializeHttpContext()
	host.CallOnRequestHeaders(fresh, nil, true)
	if got := host.GetCurrentRequestHeaders(fresh); !slices.Equal(got, [][2]string{{"x-chain", "b"}}) {
		t.Errorf("request headers = %v, want x-chain: b", got)
	}
}

func TestRejectsBadConfiguration(t *testing.T) {
	for _, config := range []string{`{"headers": {"x-a": 1}}`, `{"header": `, `[]`} {
		host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
			WithPluginContext(newPlugin).WithPluginConfiguration([]byte(config)))
		if host.StartPlugin() != types.OnPluginStartStatusFailed {
			t.Errorf("configuration %s accepted", config)
		}
		if len(host.GetErrorLogs()) == 0 {
			t.Errorf("configuration %s: no error logged", config)
		}
		reset()
	}
}

func TestEmptyConfigurationChangesNothing(t *testing.T) {
	host := start(t, "")
	id := host.InitializeHttpContext()
	host.CallOnRequestHeaders(id, nil, true)
	host.CallOnResponseHeaders(id, nil, true)
	if req, resp := host.GetCurrentRequestHeaders(id), host.GetCurrentResponseHeaders(id); len(req)+len(resp) != 0 {
		t.Errorf("headers added: %v %v", req, resp)
	}
}
