//go:build !wasip1

package main

import (
	"testing"

	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/proxy-wasm/proxy-wasm-go-sdk/proxywasm/types"
)

// The SDK's host emulator does not implement changing TCP data, so the
// bytes a client sees are checked through Envoy (../envoy_test.go and the
// repository's e2e); here: which chunk gets a prefix, and the configuration.

func TestMarksTheFirstChunkOfEachDirection(t *testing.T) {
	c := &conn{down: marker{prefix: []byte("> ")}, up: marker{prefix: []byte("< ")}}
	steps := []struct {
		m    *marker
		size int
		want string
	}{
		{&c.down, 0, ""}, // an empty chunk is not marked
		{&c.down, 3, "> "},
		{&c.up, 5, "< "},
		{&c.down, 6, ""},
		{&c.up, 6, ""},
	}
	for i, s := range steps {
		if got := string(s.m.take(s.size)); got != s.want {
			t.Errorf("step %d: prefix %q, want %q", i, got, s.want)
		}
	}
}

func start(t *testing.T, config string) (proxytest.HostEmulator, types.OnPluginStartStatus) {
	t.Helper()
	host, reset := proxytest.NewHostEmulator(proxytest.NewEmulatorOption().
		WithPluginContext(newPlugin).WithPluginConfiguration([]byte(config)))
	t.Cleanup(reset)
	return host, host.StartPlugin()
}

func TestEmptyConfigPassesBytesThrough(t *testing.T) {
	host, st := start(t, `{}`)
	if st != types.OnPluginStartStatusOK {
		t.Fatalf("start: %v", st)
	}
	id, action := host.InitializeConnection()
	if action != types.ActionContinue {
		t.Fatalf("new connection: %v", action)
	}
	// The emulator panics if the filter tries to change the data.
	if a := host.CallOnDownstreamData(id, []byte("hi")); a != types.ActionContinue {
		t.Errorf("downstream data: %v", a)
	}
	if a := host.CallOnUpstreamData(id, []byte("ho")); a != types.ActionContinue {
		t.Errorf("upstream data: %v", a)
	}
	host.CompleteConnection(id)
}

func TestRejectsConfigThatIsNotAnObject(t *testing.T) {
	host, st := start(t, `["> "]`)
	if st != types.OnPluginStartStatusFailed {
		t.Fatal("a JSON list was accepted as configuration")
	}
	if len(host.GetErrorLogs()) == 0 {
		t.Error("no error logged")
	}
}
