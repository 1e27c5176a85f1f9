package controlplane

import (
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// dialEnvoy starts a fake state-of-the-world Envoy; rej, when set, decides
// which responses it NACKs.
func dialEnvoy(t *testing.T, addr, id string, labels map[string]string, rej *xdstest.Rejecter) *xdstest.Client {
	t.Helper()
	opts := xdstest.Options{NodeID: id, Labels: labels}
	if rej != nil {
		opts.NACK = rej.Decide
	}
	return xdstest.Start(t, addr, opts)
}

// wasmFilters returns the Wasm filters of the held listeners by filter
// name (LDS delivery: the filters are inline).
func wasmFilters(s xdstest.State) map[string]*wasmfilterv3.Wasm {
	out := map[string]*wasmfilterv3.Wasm{}
	for _, a := range s.Type(resource.ListenerType).Resources() {
		l := &listenerv3.Listener{}
		if a.UnmarshalTo(l) != nil {
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if f.GetTypedConfig().UnmarshalTo(hcm) != nil {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					w := &wasmfilterv3.Wasm{}
					if hf.GetTypedConfig().UnmarshalTo(w) == nil {
						out[hf.GetName()] = w
					}
				}
			}
		}
	}
	return out
}

// hasWasmConfig holds once the routes and the one Wasm filter arrived.
func hasWasmConfig(s xdstest.State) bool {
	return s.Type(resource.RouteType).Version != "" && len(wasmFilters(s)) == 1
}
