package xds

import (
	"net"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/wasmxds/wasmxds/internal/catalog"
)

// fakeTranslate is a small stand-in for Translate so that server tests do
// not depend on translation details: every cluster is emitted, listeners
// and plugins only where their selector matches, plugins as ECDS resources
// in ECDS mode.
func fakeTranslate(in Input, labels map[string]string) (*Resources, []Problem) {
	res := &Resources{}
	var problems []Problem
	for _, c := range in.State.Clusters {
		res.Clusters = append(res.Clusters, fakeCluster(c))
	}
	var plugins []string
	for _, p := range in.State.Plugins {
		if !catalog.Matches(p.Selector, labels) {
			continue
		}
		if in.Modules[p.Name].Module == nil {
			problems = append(problems, Problem{Source: p.Source, Kind: "WasmPlugin", Name: p.Name, Message: "module not resolved"})
			continue
		}
		plugins = append(plugins, p.Name)
		if in.Delivery == DeliveryECDS {
			res.Extensions = append(res.Extensions, &corev3.TypedExtensionConfig{
				Name: p.Name, TypedConfig: fxAny(&routerv3.Router{}),
			})
		}
	}
	for _, l := range in.State.Listeners {
		if !catalog.Matches(l.Selector, labels) {
			continue
		}
		res.Listeners = append(res.Listeners, fakeListener(l, plugins, in.Delivery))
		res.Routes = append(res.Routes, fakeRoute(l))
	}
	return res, problems
}

func fakeCluster(c catalog.Cluster) *clusterv3.Cluster {
	var lbs []*endpointv3.LbEndpoint
	for _, e := range c.Endpoints {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: fxSocketAddress(e.Host, e.Port)},
		}})
	}
	return &clusterv3.Cluster{
		Name:                 c.Name,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: c.Name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
		},
	}
}

func fxSocketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func fxADSSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func fakeListener(l catalog.Listener, plugins []string, delivery Delivery) *listenerv3.Listener {
	var filters []*hcmv3.HttpFilter
	for _, name := range plugins {
		f := &hcmv3.HttpFilter{Name: name}
		if delivery == DeliveryECDS {
			f.ConfigType = &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{
				ConfigSource: fxADSSource(),
				TypeUrls:     []string{"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
			}}
		} else {
			f.ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: fxAny(&routerv3.Router{})}
		}
		filters = append(filters, f)
	}
	filters = append(filters, &hcmv3.HttpFilter{
		Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: fxAny(&routerv3.Router{})},
	})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: l.Name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: l.Name, ConfigSource: fxADSSource(),
		}},
		HttpFilters: filters,
	}
	return &listenerv3.Listener{
		Name:    l.Name,
		Address: fxSocketAddress("0.0.0.0", l.Port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: fxAny(hcm)},
		}}}},
	}
}

func fakeRoute(l catalog.Listener) *routev3.RouteConfiguration {
	vh := &routev3.VirtualHost{Name: l.Name, Domains: []string{"*"}}
	for _, r := range l.Routes {
		vh.Routes = append(vh.Routes, &routev3.Route{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: r.Prefix}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: r.Cluster}}},
		})
	}
	return &routev3.RouteConfiguration{Name: l.Name, VirtualHosts: []*routev3.VirtualHost{vh}}
}

func fxAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// testState has two listeners, one per app, a shared cluster and one plugin
// per app.
func testState(backendPort uint32) *catalog.State {
	return &catalog.State{
		Listeners: []catalog.Listener{
			{Name: "ingress-a", Selector: map[string]string{"app": "a"}, Port: 10000,
				Routes: []catalog.Route{{Prefix: "/", Cluster: "backend"}}},
			{Name: "ingress-b", Selector: map[string]string{"app": "b"}, Port: 10001,
				Routes: []catalog.Route{{Prefix: "/", Cluster: "backend"}}},
		},
		Clusters: []catalog.Cluster{{Name: "backend", Endpoints: []catalog.Endpoint{{Host: "127.0.0.1", Port: backendPort}}}},
		Plugins: []catalog.Plugin{
			{Name: "plugin-a", Selector: map[string]string{"app": "a"}, Source: catalog.Source{File: "a.yaml", Line: 3}},
			{Name: "plugin-b", Selector: map[string]string{"app": "b"}, Source: catalog.Source{File: "b.yaml", Line: 7}},
		},
	}
}

func testInput(backendPort uint32, delivery Delivery) Input {
	mod := &Module{SHA256: "aa", URL: "http://127.0.0.1:1/modules/sha256/aa"}
	return Input{
		State:           testState(backendPort),
		Modules:         map[string]PluginModule{"plugin-a": {Module: mod}, "plugin-b": {Module: mod}},
		ModuleServerURL: "http://127.0.0.1:1",
		Delivery:        delivery,
	}
}

// startServer runs a real ADS server on a loopback port.
func startServer(t *testing.T, opts ServerOptions) (*Server, string, *prometheus.Registry) {
	return startServerTranslating(t, opts, fakeTranslate)
}

// startServerTranslating is startServer with a translation of the test's.
func startServerTranslating(t *testing.T, opts ServerOptions, translate func(Input, map[string]string) (*Resources, []Problem)) (*Server, string, *prometheus.Registry) {
	t.Helper()
	return startServerWrapping(t, opts, translate, nil)
}

// startServerWrapping is startServerTranslating with the delivery cache
// passed through wrap (see newServer). The server runs on a fake clock
// (see fakeClock) unless opts has a clock.
func startServerWrapping(t *testing.T, opts ServerOptions, translate func(Input, map[string]string) (*Resources, []Problem),
	wrap func(snapshotStore) snapshotStore) (*Server, string, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.Registerer = reg
	if opts.Clock == nil {
		opts.Clock = clocktesting.NewFakeClock(testEpoch)
	}
	srv, err := newServer(opts, wrap)
	if err != nil {
		t.Fatal(err)
	}
	srv.translate = translate
	gs := grpc.NewServer(GRPCServerOptions()...)
	srv.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(func() {
		srv.Close()
		gs.GracefulStop()
	})
	return srv, lis.Addr().String(), reg
}
