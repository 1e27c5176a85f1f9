//go:build !wasip1

package main

import (
	"testing"

	"github.com/wasmxds/wasmxds/examples/filters/proxywasm"
)

func TestLogsUserAgentAtInfo(t *testing.T) {
	h := proxywasm.NewFakeHost()
	root, err := h.StartPlugin(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.NewStream(root).SendRequestHeaders([]proxywasm.Header{{Name: "user-agent", Value: "curl/8.0"}}, true)
	h.NewStream(root).SendRequestHeaders(nil, true)
	want := []proxywasm.LogEntry{
		{Level: proxywasm.LogLevelInfo, Message: "user-agent: curl/8.0"},
		{Level: proxywasm.LogLevelInfo, Message: "user-agent: -"},
	}
	if len(h.Logs) != len(want) || h.Logs[0] != want[0] || h.Logs[1] != want[1] {
		t.Errorf("logs = %v, want %v", h.Logs, want)
	}
}
