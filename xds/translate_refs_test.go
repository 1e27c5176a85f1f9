package xds

import (
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// reference is one name a resource expects another resource to carry.
type reference struct{ from, kind, name string }

// references lists every cross-resource name the snapshot must satisfy:
// listener → route config and ECDS extension, route and Wasm code → cluster.
func references(res *Resources) []reference {
	var refs []reference
	for _, l := range res.Listeners {
		from := "listener " + l.Name
		hcm, err := listenerHCM(l)
		if err != nil {
			refs = append(refs, reference{from, "http_connection_manager", err.Error()})
			continue
		}
		if rds := hcm.GetRds(); rds != nil {
			refs = append(refs, reference{from, "route", rds.GetRouteConfigName()})
		}
		for _, hf := range hcm.GetHttpFilters() {
			if hf.GetConfigDiscovery() != nil {
				refs = append(refs, reference{from, "extension", hf.GetName()})
			}
			if c := wasmCluster(hf.GetTypedConfig()); c != "" {
				refs = append(refs, reference{from, "cluster", c})
			}
		}
	}
	for _, rc := range res.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, r := range vh.GetRoutes() {
				if c := r.GetRoute().GetCluster(); c != "" {
					refs = append(refs, reference{"route " + rc.GetName(), "cluster", c})
				}
			}
		}
	}
	for _, e := range res.Extensions {
		if c := wasmCluster(e.GetTypedConfig()); c != "" {
			refs = append(refs, reference{"extension " + e.GetName(), "cluster", c})
		}
	}
	return refs
}

func listenerHCM(l *listenerv3.Listener) (*hcmv3.HttpConnectionManager, error) {
	hcm := &hcmv3.HttpConnectionManager{}
	err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm)
	return hcm, err
}

// unpackWasm returns the Wasm config in a, or nil when a holds something else.
func unpackWasm(a *anypb.Any) *wasmfilterv3.Wasm {
	w := &wasmfilterv3.Wasm{}
	if a == nil || a.UnmarshalTo(w) != nil {
		return nil
	}
	return w
}

func wasmCluster(a *anypb.Any) string {
	return unpackWasm(a).GetConfig().GetVmConfig().GetCode().GetRemote().GetHttpUri().GetCluster()
}

// filterNames returns the HTTP filter names of the listener's chain.
func filterNames(t *testing.T, l *listenerv3.Listener) []string {
	t.Helper()
	hcm, err := listenerHCM(l)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range hcm.GetHttpFilters() {
		names = append(names, f.GetName())
	}
	return names
}
