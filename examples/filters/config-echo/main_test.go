//go:build !wasip1

package main

import (
	"slices"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

func TestEchoesConfigurationUnchanged(t *testing.T) {
	const config = ` {"a": [1, 2], "b": "x y"} `
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithPluginContext(newPlugin).WithPluginConfiguration([]byte(config)))
	defer reset()
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("start: %v", st)
	}
	id := host.InitializeHttpContext()
	host.CallOnResponseHeaders(id, [][2]string{{headerName, "from upstream"}}, true)
	if got, want := host.GetCurrentResponseHeaders(id), [][2]string{{headerName, config}}; !slices.Equal(got, want) {
		t.Errorf("response headers = %q, want %q", got, want)
	}
}
