//go:build !wasip1

package main

import (
	"slices"
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
)

func TestLogsUserAgentAtInfo(t *testing.T) {
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().WithHttpContext(newStream))
	defer reset()
	host.CallOnRequestHeaders(host.InitializeHttpContext(), [][2]string{{"user-agent", "curl/8.0"}}, true)
	host.CallOnRequestHeaders(host.InitializeHttpContext(), nil, true)
	want := []string{"user-agent: curl/8.0", "user-agent: -"}
	if got := host.GetInfoLogs(); !slices.Equal(got, want) {
		t.Errorf("info logs = %q, want %q", got, want)
	}
}
