//go:build !wasip1

package main

import (
	"testing"

	"github.com/wasmxds/wasmxds/examples/filters/proxywasm"
)

func start(t *testing.T, config string) (*proxywasm.FakeHost, uint32) {
	t.Helper()
	h := proxywasm.NewFakeHost()
	root, err := h.StartPlugin(nil, []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	return h, root
}

func TestAddsResponseHeadersInOrder(t *testing.T) {
	h, root := start(t, `{"header": "x-wasm", "value": "hello", "headers": {"x-b": "2", "x-a": "1"}}`)
	s := h.NewStream(root)
	s.SendRequestHeaders([]proxywasm.Header{{Name: ":path", Value: "/"}}, true)
	s.SendResponseHeaders([]proxywasm.Header{{Name: ":status", Value: "200"}}, false)
	want := []proxywasm.Header{{Name: ":status", Value: "200"}, {Name: "x-wasm", Value: "hello"},
		{Name: "x-b", Value: "2"}, {Name: "x-a", Value: "1"}}
	if len(s.ResponseHeaders) != len(want) {
		t.Fatalf("response headers = %v, want %v", s.ResponseHeaders, want)
	}
	for i := range want {
		if s.ResponseHeaders[i] != want[i] {
			t.Errorf("header %d = %v, want %v", i, s.ResponseHeaders[i], want[i])
		}
	}
	if len(s.RequestHeaders) != 1 {
		t.Errorf("request changed without requestHeader: %v", s.RequestHeaders)
	}
}

func TestAppendsToRequestHeader(t *testing.T) {
	h, root := start(t, `{"requestHeader": "X-Chain", "requestValue": "b"}`)
	s := h.NewStream(root)
	s.SendRequestHeaders([]proxywasm.Header{{Name: "x-chain", Value: "a"}}, true)
	if v, _ := proxywasm.HeaderValue(s.RequestHeaders, "x-chain"); v != "a,b" || len(s.RequestHeaders) != 1 {
		t.Errorf("request headers = %v, want x-chain: a,b", s.RequestHeaders)
	}
	fresh := h.NewStream(root)
	fresh.SendRequestHeaders(nil, true)
	if v, _ := proxywasm.HeaderValue(fresh.RequestHeaders, "x-chain"); v != "b" {
		t.Errorf("request headers = %v, want x-chain: b", fresh.RequestHeaders)
	}
}

func TestRejectsBadConfiguration(t *testing.T) {
	for _, config := range []string{`{"headers": {"x-a": 1}}`, `{"header": `, `[]`} {
		h := proxywasm.NewFakeHost()
		if _, err := h.StartPlugin(nil, []byte(config)); err == nil {
			t.Errorf("configuration %s accepted", config)
		}
		if len(h.Logs) == 0 || h.Logs[0].Level != proxywasm.LogLevelError {
			t.Errorf("configuration %s: no error logged: %v", config, h.Logs)
		}
	}
}

func TestEmptyConfigurationChangesNothing(t *testing.T) {
	h, root := start(t, "")
	s := h.NewStream(root)
	s.SendRequestHeaders(nil, true)
	s.SendResponseHeaders(nil, true)
	if len(s.RequestHeaders)+len(s.ResponseHeaders) != 0 {
		t.Errorf("headers added: %v %v", s.RequestHeaders, s.ResponseHeaders)
	}
}
