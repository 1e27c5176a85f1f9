package xds

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

const (
	hcmFilterName    = "envoy.filters.network.http_connection_manager"
	routerFilterName = "envoy.filters.http.router"
	defaultAddress   = "0.0.0.0"
	// routeTimeout is Envoy's own default, written out so the pushed config
	// says what Envoy will do.
	routeTimeout = 15 * time.Second
)

// errHeld marks a new listener held back until a FAIL_CLOSE plugin's
// pending module is ready: serving it without the plugin would pass traffic
// the plugin should guard, and denying it all would be an outage.
var errHeld = errors.New("held back while a fail-closed plugin's module is pending")

// listenerParts is one listener's translation, committed only when every
// part is valid.
type listenerParts struct {
	listener   *listenerv3.Listener
	routes     *routev3.RouteConfiguration
	clusters   []string
	extensions []*corev3.TypedExtensionConfig
	secrets    []*tlsv3.Secret
}

// addListener translates a listener and its route configuration. When any
// part is invalid both are dropped and reported: serving the listener without
// the broken part could pass traffic its plugins should have guarded or send
// it to the wrong route, while a missing listener is plainly visible.
func (t *translator) addListener(l catalog.Listener) {
	parts, err := t.listenerParts(l)
	if errors.Is(err, errHeld) {
		return
	}
	if err == nil {
		err = t.claimAddress(parts.listener)
	}
	if err != nil {
		t.problem(l.Source, kindListener, l.Name, err)
		return
	}
	t.res.Listeners = append(t.res.Listeners, parts.listener)
	if parts.routes != nil {
		t.res.Routes = append(t.res.Routes, parts.routes)
	}
	for _, c := range parts.clusters {
		t.usedClusters[c] = true
	}
	for _, e := range parts.extensions {
		t.extensions[e.Name] = e
	}
	for _, s := range parts.secrets {
		t.secrets[s.Name] = s
	}
}

// claimAddress reserves the listener's address for it. Envoy rejects a
// second listener on the same address, failing the whole update, so the
// first by name keeps it and the next is reported.
func (t *translator) claimAddress(l *listenerv3.Listener) error {
	sa := l.GetAddress().GetSocketAddress()
	key := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
	if owner, taken := t.addresses[key]; taken {
		return fmt.Errorf("address %s is already used by listener %s", key, owner)
	}
	t.addresses[key] = l.Name
	return nil
}

func (t *translator) listenerParts(l catalog.Listener) (*listenerParts, error) {
	addr := cmp.Or(l.Address, defaultAddress)
	if _, err := netip.ParseAddr(addr); err != nil {
		return nil, fmt.Errorf("address %q is not an IP address", addr)
	}
	if l.Port == 0 {
		return nil, errors.New("listener has no port")
	}
	if l.Protocol == catalog.ProtocolTCP {
		return t.tcpListenerParts(l, addr)
	}
	filters, exts, targeted, err := t.httpFilters(l)
	if err != nil {
		return nil, err
	}
	rc, clusters, err := t.routeConfig(l, targeted)
	if err != nil {
		return nil, err
	}
	hcm, err := PackValid(&hcmv3.HttpConnectionManager{
		StatPrefix: l.Name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: rc.Name,
		}},
		HttpFilters: filters,
	})
	if err != nil {
		return nil, err
	}
	fc, err := filterChains(l, []*listenerv3.Filter{{
		Name:       hcmFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
	}})
	if err != nil {
		return nil, err
	}
	lis := &listenerv3.Listener{
		Name:            l.Name,
		Address:         SocketAddress(addr, l.Port),
		FilterChains:    fc.chains,
		ListenerFilters: fc.filters,
	}
	if err := lis.ValidateAll(); err != nil {
		return nil, fmt.Errorf("invalid listener: %w", err)
	}
	return &listenerParts{listener: lis, routes: rc, clusters: clusters, extensions: exts, secrets: fc.secrets}, nil
}

// httpFilters returns the listener's HTTP filter chain: the plugins that
// apply to some route of it, in chain order, then the router; and those of
// them limited to hosts and paths, which its routes turn on and off.
func (t *translator) httpFilters(l catalog.Listener) ([]*hcmv3.HttpFilter, []*corev3.TypedExtensionConfig, []targetedFilter, error) {
	var filters []*hcmv3.HttpFilter
	var exts []*corev3.TypedExtensionConfig
	var targeted []targetedFilter
	for _, p := range pluginsOn(t.plugins, l) {
		pf := t.pluginFilter(p)
		if pf.held {
			if t.in.Established[l.Name] {
				continue // the listener keeps running as it did before the plugin
			}
			return nil, nil, nil, errHeld
		}
		if pf.err != nil {
			return nil, nil, nil, fmt.Errorf("plugin %s cannot run and its deny-all stand-in failed: %w", p.Name, pf.err)
		}
		if pf.filter == nil {
			continue
		}
		filters = append(filters, pf.filter)
		if pf.ext != nil {
			exts = append(exts, pf.ext)
		}
		if len(p.Targets) > 0 {
			targeted = append(targeted, targetedFilter{plugin: p, filter: pf.filter.Name})
		}
	}
	router, err := PackValid(&routerv3.Router{})
	if err != nil {
		return nil, nil, nil, err
	}
	filters = append(filters, &hcmv3.HttpFilter{
		Name: routerFilterName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
	})
	return filters, exts, targeted, nil
}

// adsConfigSource makes Envoy fetch a resource over its ADS stream, which
// keeps the bootstrap down to one cluster.
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}
