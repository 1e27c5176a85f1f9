//go:build !wasip1

package main

import (
	"testing"

	"github.com/wasmxds/wasmxds/examples/filters/proxywasm"
)

func TestEchoesConfigurationUnchanged(t *testing.T) {
	const config = ` {"a": [1, 2], "b": "x y"} `
	h := proxywasm.NewFakeHost()
	root, err := h.StartPlugin(nil, []byte(config))
	if err != nil {
		t.Fatal(err)
	}
	s := h.NewStream(root)
	s.SendResponseHeaders([]proxywasm.Header{{Name: headerName, Value: "from upstream"}}, true)
	if len(s.ResponseHeaders) != 1 || s.ResponseHeaders[0].Value != config {
		t.Errorf("response headers = %q, want one %s: %q", s.ResponseHeaders, headerName, config)
	}
}
