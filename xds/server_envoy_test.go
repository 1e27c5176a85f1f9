package xds

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeEnvoy plays an Envoy on one ADS stream, SotW or delta: it subscribes
// to clusters and listeners, follows listeners to their route
// configurations and ECDS filters, and ACKs every response unless told to
// reject it.
type fakeEnvoy struct {
	t      *testing.T
	id     string
	delta  bool
	sotw   discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	dstr   discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	types  map[string]*typeState
	reject map[string]string // type URL → error for its next response
	err    error
}

// typeState is what the fake Envoy holds for one type.
type typeState struct {
	version    string                // last accepted version
	nonce      string                // last response's nonce
	responses  int                   // responses received, accepted or not
	resources  map[string]*anypb.Any // accepted resources by name
	subscribed []string              // names, for non-wildcard types
}

func connectEnvoy(t *testing.T, addr, id string, labels map[string]string, delta bool) *fakeEnvoy {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e := &fakeEnvoy{t: t, id: id, delta: delta, cancel: cancel, done: make(chan struct{}),
		types: map[string]*typeState{}, reject: map[string]string{}}
	client := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn)
	if delta {
		e.dstr, err = client.DeltaAggregatedResources(ctx)
	} else {
		e.sotw, err = client.StreamAggregatedResources(ctx)
	}
	if err != nil {
		t.Fatal(err)
	}
	node := fxNode(id, labels)
	e.send(resource.ClusterType, node, nil, nil, nil)
	e.send(resource.ListenerType, nil, nil, nil, nil)
	go e.loop()
	t.Cleanup(func() {
		e.close()
		_ = conn.Close()
	})
	return e
}

func fxNode(id string, labels map[string]string) *corev3.Node {
	fields := map[string]any{}
	for k, v := range labels {
		fields[k] = v
	}
	meta, err := structpb.NewStruct(map[string]any{"labels": fields})
	if err != nil {
		panic(err)
	}
	return &corev3.Node{Id: id, Cluster: "test", Metadata: meta}
}

// close ends the stream and waits for the receive loop to stop.
func (e *fakeEnvoy) close() {
	e.cancel()
	<-e.done
}

func (e *fakeEnvoy) state(typeURL string) *typeState {
	st := e.types[typeURL]
	if st == nil {
		st = &typeState{resources: map[string]*anypb.Any{}}
		e.types[typeURL] = st
	}
	return st
}

// rejectNext makes the fake Envoy NACK the next response of a type.
func (e *fakeEnvoy) rejectNext(typeURL, msg string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.reject[typeURL] = msg
}

// send issues a request: an ACK when nonce is set, a NACK when errMsg is.
func (e *fakeEnvoy) send(typeURL string, node *corev3.Node, names []string, ack *typeState, nack *status.Status) {
	var err error
	if e.delta {
		req := &discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNamesSubscribe: names, ErrorDetail: nack}
		if ack != nil {
			req.ResponseNonce = ack.nonce
		}
		err = e.dstr.Send(req)
	} else {
		req := &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: typeURL, ResourceNames: names, ErrorDetail: nack}
		if ack != nil {
			req.ResponseNonce, req.VersionInfo, req.ResourceNames = ack.nonce, ack.version, ack.subscribed
		}
		err = e.sotw.Send(req)
	}
	if err != nil {
		e.fail(err)
	}
}

func (e *fakeEnvoy) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = err
	}
}

func (e *fakeEnvoy) loop() {
	defer close(e.done)
	for {
		var err error
		if e.delta {
			var resp *discoverygrpc.DeltaDiscoveryResponse
			if resp, err = e.dstr.Recv(); err == nil {
				e.handle(resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo(), func(st *typeState) {
					for _, r := range resp.GetResources() {
						st.resources[r.GetName()] = r.GetResource()
					}
					for _, name := range resp.GetRemovedResources() {
						delete(st.resources, name)
					}
				})
			}
		} else {
			var resp *discoverygrpc.DiscoveryResponse
			if resp, err = e.sotw.Recv(); err == nil {
				e.handle(resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo(), func(st *typeState) {
					st.resources = map[string]*anypb.Any{}
					for _, r := range resp.GetResources() {
						st.resources[resourceName(r)] = r
					}
				})
			}
		}
		if err != nil {
			e.fail(err)
			return
		}
	}
}

// handle applies (or rejects) one response and answers it, then follows new
// route and ECDS references as Envoy would.
func (e *fakeEnvoy) handle(typeURL, nonce, version string, apply func(*typeState)) {
	e.mu.Lock()
	st := e.state(typeURL)
	st.responses++
	st.nonce = nonce
	if msg, ok := e.reject[typeURL]; ok {
		delete(e.reject, typeURL)
		ack := *st
		e.mu.Unlock()
		e.send(typeURL, nil, nil, &ack, &status.Status{Code: 3, Message: msg})
		return
	}
	apply(st)
	st.version = version
	ack := *st
	var follow map[string][]string
	if typeURL == resource.ListenerType {
		follow = e.references(st)
	}
	e.mu.Unlock()
	e.send(typeURL, nil, nil, &ack, nil)
	for _, t := range slices.Sorted(maps.Keys(follow)) {
		e.subscribe(t, follow[t])
	}
}

// references lists the route configurations and ECDS filters the accepted
// listeners name.
func (e *fakeEnvoy) references(st *typeState) map[string][]string {
	refs := map[string][]string{resource.RouteType: nil, resource.ExtensionConfigType: nil}
	for _, a := range st.resources {
		l := &listenerv3.Listener{}
		if err := a.UnmarshalTo(l); err != nil {
			e.t.Errorf("listener: %v", err)
			continue
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
					continue
				}
				if name := hcm.GetRds().GetRouteConfigName(); name != "" {
					refs[resource.RouteType] = append(refs[resource.RouteType], name)
				}
				for _, hf := range hcm.GetHttpFilters() {
					if hf.GetConfigDiscovery() != nil {
						refs[resource.ExtensionConfigType] = append(refs[resource.ExtensionConfigType], hf.GetName())
					}
				}
			}
		}
	}
	for t, names := range refs {
		slices.Sort(names)
		refs[t] = slices.Compact(names)
	}
	return refs
}

// subscribe changes a non-wildcard subscription when its names changed.
func (e *fakeEnvoy) subscribe(typeURL string, names []string) {
	e.mu.Lock()
	st := e.state(typeURL)
	if slices.Equal(st.subscribed, names) || (len(names) == 0 && st.subscribed == nil) {
		e.mu.Unlock()
		return
	}
	st.subscribed = names
	ack := *st
	e.mu.Unlock()
	if e.delta {
		e.send(typeURL, nil, names, nil, nil)
		return
	}
	e.send(typeURL, nil, names, &ack, nil)
}

func resourceName(a *anypb.Any) string {
	m, err := a.UnmarshalNew()
	if err != nil {
		return ""
	}
	if n, ok := m.(interface{ GetName() string }); ok {
		return n.GetName()
	}
	return ""
}

// snapshot returns a copy of what the fake Envoy holds for a type.
func (e *fakeEnvoy) snapshot(typeURL string) typeState {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := *e.state(typeURL)
	st.resources = maps.Clone(st.resources)
	return st
}

func (e *fakeEnvoy) names(typeURL string) []string {
	return slices.Sorted(maps.Keys(e.snapshot(typeURL).resources))
}

// waitFor polls until cond holds for the fake Envoy, failing after a
// generous deadline.
func (e *fakeEnvoy) waitFor(what string, cond func(e *fakeEnvoy) bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond(e) {
		e.mu.Lock()
		err := e.err
		e.mu.Unlock()
		if err != nil {
			e.t.Fatalf("%s: waiting for %s: stream failed: %v", e.id, what, err)
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s: timed out waiting for %s; state: %s", e.id, what, e.describe())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *fakeEnvoy) describe() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := ""
	for _, t := range slices.Sorted(maps.Keys(e.types)) {
		st := e.types[t]
		out += fmt.Sprintf("\n  %s v=%q responses=%d names=%v", typeLabel(t), st.version, st.responses, slices.Sorted(maps.Keys(st.resources)))
	}
	return out
}

// hasConfig reports whether clusters, listeners and routes all arrived.
func hasConfig(e *fakeEnvoy) bool {
	for _, t := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
		if e.snapshot(t).version == "" {
			return false
		}
	}
	return true
}
