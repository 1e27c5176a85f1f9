package xds

import (
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// reference is one name a resource expects another resource to carry.
type reference struct{ from, kind, name string }

// references lists every cross-resource name the snapshot must satisfy:
// listener → route config and ECDS extension, route and Wasm code → cluster.
func references(res *Resources) []reference {
	var refs []reference
	for _, l := range res.Listeners {
		refs = append(refs, listenerReferences(l)...)
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

// listenerReferences lists what every filter chain of l names: route
// configs, ECDS extensions, clusters and SDS secrets.
func listenerReferences(l *listenerv3.Listener) []reference {
	var refs []reference
	from := "listener " + l.Name
	for _, fc := range l.GetFilterChains() {
		for _, s := range downstreamTLS(fc).GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
			refs = append(refs, reference{from, "secret", s.GetName()})
		}
		for _, f := range fc.GetFilters() {
			if f.GetConfigDiscovery() != nil {
				refs = append(refs, reference{from, "extension", f.GetName()})
			}
			if c := tcpProxyCluster(f); c != "" {
				refs = append(refs, reference{from, "cluster", c})
			}
			if f.GetName() != hcmFilterName {
				continue
			}
			hcm := &hcmv3.HttpConnectionManager{}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				refs = append(refs, reference{from, "http_connection_manager", err.Error()})
				continue
			}
			refs = append(refs, hcmReferences(from, hcm)...)
		}
	}
	return refs
}

func hcmReferences(from string, hcm *hcmv3.HttpConnectionManager) []reference {
	var refs []reference
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
	return refs
}

// downstreamTLS is the TLS context of a filter chain, nil when plain.
func downstreamTLS(fc *listenerv3.FilterChain) *tlsv3.DownstreamTlsContext {
	ctx := &tlsv3.DownstreamTlsContext{}
	if fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx) != nil {
		return nil
	}
	return ctx
}

// tcpProxyCluster is the cluster of a tcp_proxy filter, "" for others.
func tcpProxyCluster(f *listenerv3.Filter) string {
	tp := &tcpproxyv3.TcpProxy{}
	if f.GetTypedConfig().UnmarshalTo(tp) != nil {
		return ""
	}
	return tp.GetCluster()
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
