package xdstest

import (
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// cannedSotW replays responses and discards requests: the client's own
// cost per response, without gRPC.
type cannedSotW struct {
	discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	responses []*discoverygrpc.DiscoveryResponse
	next      int
}

func (s *cannedSotW) Recv() (*discoverygrpc.DiscoveryResponse, error) {
	r := s.responses[s.next%len(s.responses)]
	s.next++
	return r, nil
}

func (s *cannedSotW) Send(*discoverygrpc.DiscoveryRequest) error { return nil }

// BenchmarkReceiveSotW is one simulated Envoy of a fleet (no history, no
// bodies, shared reference cache) taking the load generator's usual mix:
// three listeners with six ECDS filters, their routes, the six filters.
func BenchmarkReceiveSotW(b *testing.B) {
	var listeners, routes, filters []*anypb.Any
	for i := range 3 {
		name := fmt.Sprintf("listener-%d", i)
		hcm := &hcmv3.HttpConnectionManager{StatPrefix: name,
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: name}}}
		for j := range 6 {
			hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: fmt.Sprintf("plugin-%d", j),
				ConfigType: &hcmv3.HttpFilter_ConfigDiscovery{ConfigDiscovery: &corev3.ExtensionConfigSource{}}})
		}
		listeners = append(listeners, benchAny(b, &listenerv3.Listener{Name: name, FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: "hcm", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: benchAny(b, hcm)}}},
		}}}))
		routes = append(routes, benchAny(b, &routev3.RouteConfiguration{Name: name}))
	}
	for j := range 6 {
		filters = append(filters, benchAny(b, &corev3.TypedExtensionConfig{Name: fmt.Sprintf("plugin-%d", j),
			TypedConfig: benchAny(b, &routerv3.Router{})}))
	}
	stream := &cannedSotW{responses: []*discoverygrpc.DiscoveryResponse{
		{TypeUrl: resource.ListenerType, VersionInfo: "1", Nonce: "1", Resources: listeners},
		{TypeUrl: resource.RouteType, VersionInfo: "2", Nonce: "2", Resources: routes},
		{TypeUrl: resource.ExtensionConfigType, VersionInfo: "3", Nonce: "3", Resources: filters},
	}}
	c := &Client{opts: Options{NoHistory: true, NoBodies: true, Refs: NewRefCache()}, sotw: stream,
		types: map[string]*typeState{resource.ListenerType: newTypeState(true), resource.ClusterType: newTypeState(true)}}
	for range 3 { // subscribe to routes and filters
		if err := c.receiveSotW(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := c.receiveSotW(); err != nil {
			b.Fatal(err)
		}
	}
}

func benchAny(b *testing.B, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		b.Fatal(err)
	}
	return a
}
