package controlplane

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// sotwEnvoy plays a state-of-the-world Envoy on one ADS stream: clusters and
// listeners by wildcard, route configurations by the names listeners use;
// every response is ACKed unless a rejection is queued for its type.
type sotwEnvoy struct {
	t      *testing.T
	stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc
	done   chan struct{}
	conn   *grpc.ClientConn

	mu      sync.Mutex
	latest  map[string]*discoverygrpc.DiscoveryResponse // accepted, by type
	nonces  map[string]string
	routes  []string
	reject  map[string]string
	streamE error
}

func dialEnvoy(t *testing.T, addr, id string, labels map[string]any) *sotwEnvoy {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := structpb.NewStruct(map[string]any{"labels": labels})
	if err != nil {
		t.Fatal(err)
	}
	e := &sotwEnvoy{t: t, stream: stream, cancel: cancel, done: make(chan struct{}), conn: conn,
		latest: map[string]*discoverygrpc.DiscoveryResponse{}, nonces: map[string]string{}, reject: map[string]string{}}
	e.send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: id, Cluster: "test", Metadata: meta}, TypeUrl: resource.ClusterType})
	e.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resource.ListenerType})
	go e.loop()
	t.Cleanup(func() {
		cancel()
		<-e.done
		_ = conn.Close()
	})
	return e
}

func (e *sotwEnvoy) send(req *discoverygrpc.DiscoveryRequest) {
	if err := e.stream.Send(req); err != nil {
		e.mu.Lock()
		e.streamE = err
		e.mu.Unlock()
	}
}

func (e *sotwEnvoy) loop() {
	defer close(e.done)
	for {
		resp, err := e.stream.Recv()
		if err != nil {
			e.mu.Lock()
			e.streamE = err
			e.mu.Unlock()
			return
		}
		e.handle(resp)
	}
}

func (e *sotwEnvoy) handle(resp *discoverygrpc.DiscoveryResponse) {
	typeURL := resp.GetTypeUrl()
	e.mu.Lock()
	e.nonces[typeURL] = resp.GetNonce()
	ack := &discoverygrpc.DiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce(),
		VersionInfo: e.latest[typeURL].GetVersionInfo()}
	if typeURL == resource.RouteType {
		ack.ResourceNames = e.routes
	}
	if msg, ok := e.reject[typeURL]; ok {
		delete(e.reject, typeURL)
		ack.ErrorDetail = &status.Status{Code: 3, Message: msg}
		e.mu.Unlock()
		e.send(ack)
		return
	}
	e.latest[typeURL] = resp
	ack.VersionInfo = resp.GetVersionInfo()
	var routes []string
	if typeURL == resource.ListenerType {
		routes = routeNames(resp.GetResources())
	}
	changed := typeURL == resource.ListenerType && !slices.Equal(routes, e.routes)
	if changed {
		e.routes = routes
	}
	rdsReq := &discoverygrpc.DiscoveryRequest{TypeUrl: resource.RouteType, ResourceNames: routes,
		VersionInfo: e.latest[resource.RouteType].GetVersionInfo(), ResponseNonce: e.nonces[resource.RouteType]}
	e.mu.Unlock()
	e.send(ack)
	if changed {
		e.send(rdsReq)
	}
}

func routeNames(listeners []*anypb.Any) []string {
	var names []string
	for _, a := range listeners {
		for _, hcm := range managers(a) {
			if n := hcm.GetRds().GetRouteConfigName(); n != "" {
				names = append(names, n)
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func managers(a *anypb.Any) []*hcmv3.HttpConnectionManager {
	l := &listenerv3.Listener{}
	if a.UnmarshalTo(l) != nil {
		return nil
	}
	var out []*hcmv3.HttpConnectionManager
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if f.GetTypedConfig().UnmarshalTo(hcm) == nil {
				out = append(out, hcm)
			}
		}
	}
	return out
}

// wasmFilters returns the Wasm filters of the accepted listeners by filter
// name.
func (e *sotwEnvoy) wasmFilters() map[string]*wasmfilterv3.Wasm {
	out := map[string]*wasmfilterv3.Wasm{}
	for _, a := range e.response(resource.ListenerType).GetResources() {
		for _, hcm := range managers(a) {
			for _, hf := range hcm.GetHttpFilters() {
				w := &wasmfilterv3.Wasm{}
				if hf.GetTypedConfig().UnmarshalTo(w) == nil {
					out[hf.GetName()] = w
				}
			}
		}
	}
	return out
}

func (e *sotwEnvoy) response(typeURL string) *discoverygrpc.DiscoveryResponse {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.latest[typeURL]
}

func (e *sotwEnvoy) version(typeURL string) string { return e.response(typeURL).GetVersionInfo() }

func (e *sotwEnvoy) rejectNext(typeURL, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reject[typeURL] = msg
}

// waitFor polls cond until it holds, failing after a generous deadline or
// when the stream breaks.
func (e *sotwEnvoy) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		e.mu.Lock()
		err := e.streamE
		types := slices.Sorted(maps.Keys(e.latest))
		e.mu.Unlock()
		if err != nil {
			e.t.Fatalf("waiting for %s: stream failed: %v", what, err)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s (have %v)", what, types)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listenerNames are the listeners the fake Envoy holds.
func (e *sotwEnvoy) listenerNames() []string {
	var names []string
	for _, r := range e.response(resource.ListenerType).GetResources() {
		var l listenerv3.Listener
		if err := r.UnmarshalTo(&l); err == nil {
			names = append(names, l.GetName())
		}
	}
	return names
}

// close ends the stream and waits for the receive loop.
func (e *sotwEnvoy) close() {
	e.cancel()
	<-e.done
	_ = e.conn.Close()
}
