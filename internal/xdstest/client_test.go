package xdstest_test

import (
	"context"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

var modes = []struct {
	name  string
	delta bool
}{{"sotw", false}, {"delta", true}}

// adsServer is go-control-plane's reference ADS server on a loopback port,
// recording every request it receives.
type adsServer struct {
	cache cachev3.SnapshotCache
	addr  string
	gs    *grpc.Server
	sotw  chan *discoverygrpc.DiscoveryRequest
	delta chan *discoverygrpc.DeltaDiscoveryRequest
}

func startADS(t *testing.T) *adsServer {
	t.Helper()
	s := &adsServer{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		sotw: make(chan *discoverygrpc.DiscoveryRequest, 1000), delta: make(chan *discoverygrpc.DeltaDiscoveryRequest, 1000)}
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc:      func(_ int64, r *discoverygrpc.DiscoveryRequest) error { s.sotw <- r; return nil },
		StreamDeltaRequestFunc: func(_ int64, r *discoverygrpc.DeltaDiscoveryRequest) error { s.delta <- r; return nil },
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv := serverv3.NewServer(ctx, s.cache, cb)
	s.gs = grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = lis.Addr().String()
	served := make(chan struct{})
	go func() { defer close(served); _ = s.gs.Serve(lis) }()
	t.Cleanup(func() {
		cancel()
		s.gs.Stop()
		<-served
	})
	return s
}

func (s *adsServer) set(t *testing.T, node string, snap *cachev3.Snapshot) {
	t.Helper()
	if err := s.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

// awaitSotW waits until the server has received a SotW request matching
// pred.
func (s *adsServer) awaitSotW(t *testing.T, what string, pred func(*discoverygrpc.DiscoveryRequest) bool) *discoverygrpc.DiscoveryRequest {
	t.Helper()
	return awaitRequest(t, what, s.sotw, pred)
}

func (s *adsServer) awaitDelta(t *testing.T, what string, pred func(*discoverygrpc.DeltaDiscoveryRequest) bool) *discoverygrpc.DeltaDiscoveryRequest {
	t.Helper()
	return awaitRequest(t, what, s.delta, pred)
}

func awaitRequest[R any](t *testing.T, what string, ch chan R, pred func(R) bool) R {
	t.Helper()
	timeout := time.After(xdstest.AwaitTimeout)
	for {
		select {
		case r := <-ch:
			if pred(r) {
				return r
			}
		case <-timeout:
			t.Fatalf("the server never received %s", what)
		}
	}
}

// config is one version of a node's resources: an EDS cluster and a
// static one, a listener whose HTTP connection manager takes its routes
// from RDS and one filter from ECDS (unless noFilter), and what they name.
func config(t *testing.T, version, route string, noFilter bool) *cachev3.Snapshot {
	t.Helper()
	ads := &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	filters := []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}}}
	var extensions []types.Resource
	if !noFilter {
		filters = append([]*hcmv3.HttpFilter{{Name: "plugin-a", ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{
			ConfigDiscovery: &corev3.ExtensionConfigSource{ConfigSource: ads,
				TypeUrls: []string{"type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}},
		}}}, filters...)
		extensions = []types.Resource{&corev3.TypedExtensionConfig{Name: "plugin-a", TypedConfig: mustAny(t, &routerv3.Router{})}}
	}
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: "web", HttpFilters: filters,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: route, ConfigSource: ads}}}
	listener := &listenerv3.Listener{Name: "web", FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, hcm)},
	}}}}}
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ClusterType: {
			&clusterv3.Cluster{Name: "eds-backend", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads, ServiceName: "backend-svc"}},
			&clusterv3.Cluster{Name: "static", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}},
		},
		resource.EndpointType: {&endpointv3.ClusterLoadAssignment{ClusterName: "backend-svc"}},
		resource.ListenerType: {listener},
		resource.RouteType: {&routev3.RouteConfiguration{Name: route,
			VirtualHosts: []*routev3.VirtualHost{{Name: version, Domains: []string{"*"}}}}},
		resource.ExtensionConfigType: extensions,
	})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestFollowsReferencesLikeEnvoy(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := startADS(t)
			s.set(t, "n1", config(t, "v1", "web-routes", false))
			c := xdstest.Start(t, s.addr, xdstest.Options{Delta: m.delta, NodeID: "n1", Labels: map[string]string{"app": "web"}})
			st := c.Await(t, "a complete configuration", xdstest.Complete)

			want := map[string][]string{
				resource.ClusterType: {"eds-backend", "static"}, resource.EndpointType: {"backend-svc"},
				resource.ListenerType: {"web"}, resource.RouteType: {"web-routes"}, resource.ExtensionConfigType: {"plugin-a"},
			}
			for typeURL, names := range want {
				ts := st.Type(typeURL)
				if got := ts.Names(); !slices.Equal(got, names) || ts.Version != "v1" {
					t.Errorf("%s: holds %v at %q, want %v at v1", typeURL, got, ts.Version, names)
				}
				if typeURL != resource.ClusterType && typeURL != resource.ListenerType && !slices.Equal(ts.Subscribed, names) {
					t.Errorf("%s: asked for %v, want %v", typeURL, ts.Subscribed, names)
				}
			}
			var l listenerv3.Listener
			if err := st.Type(resource.ListenerType).Resource("web").UnmarshalTo(&l); err != nil || l.GetName() != "web" {
				t.Errorf("held listener: %v, %v", l.GetName(), err)
			}

			// A new listener naming another route and no ECDS filter moves
			// the subscriptions, as Envoy would.
			s.set(t, "n1", config(t, "v2", "other-routes", true))
			st = c.Await(t, "v2", func(s xdstest.State) bool {
				return xdstest.Complete(s) && s.Type(resource.RouteType).Version == "v2"
			})
			if got := st.Type(resource.RouteType).Subscribed; !slices.Equal(got, []string{"other-routes"}) {
				t.Errorf("routes asked for %v, want [other-routes]", got)
			}
			if got := st.Type(resource.ExtensionConfigType).Subscribed; len(got) != 0 {
				t.Errorf("extension configs asked for %v after the filter left, want none", got)
			}
			if m.delta {
				s.awaitDelta(t, "the unsubscription of plugin-a", func(r *discoverygrpc.DeltaDiscoveryRequest) bool {
					return r.GetTypeUrl() == resource.ExtensionConfigType && slices.Equal(r.GetResourceNamesUnsubscribe(), []string{"plugin-a"})
				})
			} else {
				s.awaitSotW(t, "the route subscription", func(r *discoverygrpc.DiscoveryRequest) bool {
					return r.GetTypeUrl() == resource.RouteType && slices.Equal(r.GetResourceNames(), []string{"other-routes"})
				})
			}
		})
	}
}

func TestACKsEveryResponseByNonce(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := startADS(t)
			s.set(t, "n1", config(t, "v1", "web-routes", false))
			c := xdstest.Start(t, s.addr, xdstest.Options{Delta: m.delta, NodeID: "n1"})
			c.Await(t, "a complete configuration", xdstest.Complete)
			if first := s.awaitFirst(t, m.delta); first.node.GetId() != "n1" {
				t.Errorf("first request's node = %v, want n1", first.node)
			}
			responses := c.Responses()
			if len(responses) != 5 {
				t.Fatalf("responses = %+v, want one per type", responses)
			}
			for _, r := range responses {
				if r.NACKed {
					t.Errorf("%s NACKed", r.TypeURL)
				}
				if m.delta {
					s.awaitDelta(t, "the ACK of "+r.TypeURL, func(q *discoverygrpc.DeltaDiscoveryRequest) bool {
						return q.GetTypeUrl() == r.TypeURL && q.GetResponseNonce() == r.Nonce && q.GetErrorDetail() == nil
					})
					continue
				}
				s.awaitSotW(t, "the ACK of "+r.TypeURL, func(q *discoverygrpc.DiscoveryRequest) bool {
					return q.GetTypeUrl() == r.TypeURL && q.GetResponseNonce() == r.Nonce &&
						q.GetVersionInfo() == r.Version && q.GetErrorDetail() == nil
				})
			}
		})
	}
}

type firstRequest struct{ node *corev3.Node }

// awaitFirst returns the first request the server received; the channels
// are drained in order, so call it before any other await.
func (s *adsServer) awaitFirst(t *testing.T, delta bool) firstRequest {
	t.Helper()
	if delta {
		return firstRequest{s.awaitDelta(t, "a request", func(*discoverygrpc.DeltaDiscoveryRequest) bool { return true }).GetNode()}
	}
	return firstRequest{s.awaitSotW(t, "a request", func(*discoverygrpc.DiscoveryRequest) bool { return true }).GetNode()}
}

func TestNACKKeepsTheLastAcceptedConfig(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			s := startADS(t)
			s.set(t, "n1", config(t, "v1", "web-routes", false))
			// Every v2 route configuration is rejected: go-control-plane
			// sends a NACKed version again in SotW.
			reject := func(r *xdstest.Response) error {
				if r.TypeURL == resource.RouteType && r.Version == "v2" {
					return errors.New("route: rejected")
				}
				return nil
			}
			c := xdstest.Start(t, s.addr, xdstest.Options{Delta: m.delta, NodeID: "n1", NACK: reject})
			c.Await(t, "v1", xdstest.Complete)

			s.set(t, "n1", config(t, "v2", "web-routes", false))
			st := c.Await(t, "the NACK", func(s xdstest.State) bool { return s.Type(resource.RouteType).NACKs >= 1 })
			routes := st.Type(resource.RouteType)
			var held routev3.RouteConfiguration
			if err := routes.Resource("web-routes").UnmarshalTo(&held); err != nil || routes.Version != "v1" ||
				held.GetVirtualHosts()[0].GetName() != "v1" {
				t.Errorf("after the NACK: routes %v at %q (%v), want the accepted web-routes of v1", routes.Names(), routes.Version, err)
			}
			var nacked xdstest.Response
			for _, r := range c.Responses() {
				if r.NACKed && nacked.TypeURL == "" {
					nacked = r
				}
			}
			if nacked.TypeURL != resource.RouteType || nacked.Error != "route: rejected" || !slices.Equal(nacked.Names, []string{"web-routes"}) || nacked.Version != "v2" {
				t.Errorf("NACKed response = %+v", nacked)
			}
			if m.delta {
				s.awaitDelta(t, "the NACK", func(q *discoverygrpc.DeltaDiscoveryRequest) bool {
					return q.GetResponseNonce() == nacked.Nonce && q.GetErrorDetail().GetMessage() == "route: rejected"
				})
			} else {
				s.awaitSotW(t, "the NACK", func(q *discoverygrpc.DiscoveryRequest) bool {
					return q.GetResponseNonce() == nacked.Nonce && q.GetErrorDetail().GetMessage() == "route: rejected" &&
						q.GetVersionInfo() == "v1"
				})
			}

			s.set(t, "n1", config(t, "v3", "web-routes", false))
			c.Await(t, "v3", func(s xdstest.State) bool {
				return xdstest.Complete(s) && s.Type(resource.RouteType).Version == "v3"
			})
		})
	}
}

func TestWaitForEndsOnStreamFailureAndClose(t *testing.T) {
	s := startADS(t)
	s.set(t, "n1", config(t, "v1", "web-routes", false))
	ended := make(chan error, 1)
	c := xdstest.Start(t, s.addr, xdstest.Options{NodeID: "n1", OnEnd: func(err error) { ended <- err }})
	c.Await(t, "v1", xdstest.Complete)

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	never := func(s xdstest.State) bool { return s.Type(resource.ClusterType).Version == "v9" }
	if err := c.WaitFor(ctx, never); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitFor past its deadline = %v, want DeadlineExceeded", err)
	}

	s.gs.Stop()
	if err := c.WaitFor(context.Background(), never); err == nil || errors.Is(err, xdstest.ErrClosed) {
		t.Errorf("WaitFor after the server stopped = %v, want the stream's error", err)
	}
	if c.Err() == nil || <-ended == nil {
		t.Errorf("Err() = %v after the server stopped; OnEnd told nothing", c.Err())
	}

	ended2 := make(chan error, 1)
	c2 := xdstest.Start(t, startADS(t).addr, xdstest.Options{NodeID: "n2", OnEnd: func(err error) { ended2 <- err }})
	c2.Close()
	if err := c2.WaitFor(context.Background(), never); !errors.Is(err, xdstest.ErrClosed) || c2.Err() != nil {
		t.Errorf("WaitFor after Close = %v (Err %v), want ErrClosed", err, c2.Err())
	}
	if err := <-ended2; err != nil {
		t.Errorf("OnEnd after Close = %v, want nil", err)
	}
}

func TestLightClientKeepsNamesOnly(t *testing.T) {
	s := startADS(t)
	s.set(t, "n1", config(t, "v1", "web-routes", false))
	var seen []string
	c := xdstest.Start(t, s.addr, xdstest.Options{NodeID: "n1", NoHistory: true, NoBodies: true, Refs: xdstest.NewRefCache(),
		OnResponse: func(_ *xdstest.Client, r *xdstest.Response, res []*anypb.Any) {
			if len(res) != len(r.Names) {
				t.Errorf("%s: %d resources for %d names", r.TypeURL, len(res), len(r.Names))
			}
			seen = append(seen, r.TypeURL)
		}})
	st := c.Await(t, "a complete configuration", xdstest.Complete)
	if got := c.Responses(); len(got) != 0 {
		t.Errorf("history with NoHistory: %d responses", len(got))
	}
	listeners := st.Type(resource.ListenerType)
	if !listeners.Has("web") || listeners.Resource("web") != nil || listeners.Responses != 1 {
		t.Errorf("listeners: names %v, body %v, %d responses; want web, no body, 1", listeners.Names(), listeners.Resource("web"), listeners.Responses)
	}
	c.Close() // OnResponse runs on the client's goroutine: stop it before reading seen
	if len(seen) != 5 {
		t.Errorf("OnResponse saw %v, want one response per type", seen)
	}
}

func TestRejecterNACKsOnce(t *testing.T) {
	var rej xdstest.Rejecter
	rej.RejectNext(resource.ClusterType, "bad cluster")
	if err := rej.Decide(&xdstest.Response{TypeURL: resource.ListenerType}); err != nil {
		t.Errorf("listener response: %v, want ACK", err)
	}
	if err := rej.Decide(&xdstest.Response{TypeURL: resource.ClusterType}); err == nil || err.Error() != "bad cluster" {
		t.Errorf("first cluster response: %v, want NACK \"bad cluster\"", err)
	}
	if err := rej.Decide(&xdstest.Response{TypeURL: resource.ClusterType}); err != nil {
		t.Errorf("second cluster response: %v, want ACK", err)
	}
}
