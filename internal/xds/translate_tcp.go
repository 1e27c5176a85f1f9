package xds

import (
	"cmp"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	netrbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

const (
	tcpProxyFilterName = "envoy.filters.network.tcp_proxy"
	netWasmTypeURL     = "type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm"
	netRBACTypeURL     = "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC"
	// standInStatPrefix is the stat prefix of RBAC stand-ins.
	standInStatPrefix = "wasmxds_stand_in"
)

// tcpListenerParts translates a TCP listener: its NETWORK plugins in chain
// order, then tcp_proxy to its cluster.
func (t *translator) tcpListenerParts(l catalog.Listener, addr string) (*listenerParts, error) {
	if _, ok := t.cluster(l.Cluster); !ok {
		return nil, fmt.Errorf("cluster %q is missing or invalid", l.Cluster)
	}
	filters, exts, err := t.networkFilters(l)
	if err != nil {
		return nil, err
	}
	proxy, err := PackValid(&tcpproxyv3.TcpProxy{
		StatPrefix:       l.Name,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: l.Cluster},
	})
	if err != nil {
		return nil, err
	}
	filters = append(filters, &listenerv3.Filter{Name: tcpProxyFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: proxy}})
	lis := &listenerv3.Listener{
		Name:         l.Name,
		Address:      SocketAddress(cmp.Or(addr, defaultAddress), l.Port),
		FilterChains: []*listenerv3.FilterChain{{Filters: filters}},
	}
	if err := lis.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid listener: %w", err)
	}
	return &listenerParts{listener: lis, clusters: []string{l.Cluster}, extensions: exts}, nil
}

// networkFilters are the NETWORK plugins that apply to the listener, in
// chain order, held back and failing like HTTP plugins.
func (t *translator) networkFilters(l catalog.Listener) ([]*listenerv3.Filter, []*corev3.TypedExtensionConfig, error) {
	var filters []*listenerv3.Filter
	var exts []*corev3.TypedExtensionConfig
	for _, p := range t.plugins {
		if !p.OnListener(l) {
			continue
		}
		pf := t.pluginFilter(p)
		if pf.held {
			if t.in.Established[l.Name] {
				continue
			}
			return nil, nil, errHeld
		}
		if pf.err != nil {
			return nil, nil, fmt.Errorf("plugin %s cannot run and its deny-all stand-in failed: %w", p.Name, pf.err)
		}
		if pf.network == nil {
			continue
		}
		filters = append(filters, pf.network)
		if pf.ext != nil {
			exts = append(exts, pf.ext)
		}
	}
	return filters, exts, nil
}

// ecdsNetworkFilter refers to a NETWORK plugin's TypedExtensionConfig, with
// the failure policy's stand-in as default, as ecdsFilter does for HTTP.
func ecdsNetworkFilter(name string, def *anypb.Any) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_ConfigDiscovery{
		ConfigDiscovery: &corev3.ExtensionConfigSource{
			ConfigSource:  adsConfigSource(),
			DefaultConfig: def,
			TypeUrls:      []string{netWasmTypeURL, netRBACTypeURL},
		},
	}}
}

// networkStandIn is the network RBAC config standing in for a NETWORK
// plugin that cannot run: it lets connections through when the plugin
// fails open and closes them otherwise.
func networkStandIn(s catalog.FailStrategy) (*anypb.Any, error) {
	if s == catalog.FailOpen {
		return PackValid(&netrbacv3.RBAC{StatPrefix: standInStatPrefix})
	}
	return PackValid(denyAllNetworkRBAC())
}

func denyAllNetworkRBAC() *netrbacv3.RBAC {
	return &netrbacv3.RBAC{StatPrefix: standInStatPrefix, Rules: &rbacv3.RBAC{
		Action: rbacv3.RBAC_DENY,
		Policies: map[string]*rbacv3.Policy{"plugin-unavailable": {
			Permissions: []*rbacv3.Permission{{Rule: &rbacv3.Permission_Any{Any: true}}},
			Principals:  []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Any{Any: true}}},
		}},
	}}
}

// denyAllNetworkFilter closes every connection; always inline.
func denyAllNetworkFilter(name string) (*listenerv3.Filter, error) {
	a, err := PackValid(denyAllNetworkRBAC())
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}, nil
}
