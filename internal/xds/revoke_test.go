package xds

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// grants is an AuthorizeFunc over node ids that a test can narrow.
type grants struct {
	mu  sync.Mutex
	ids map[string]bool
}

func newGrants(ids ...string) *grants {
	g := &grants{ids: map[string]bool{}}
	for _, id := range ids {
		g.ids[id] = true
	}
	return g
}

func (g *grants) withdraw(id string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.ids, id)
}

func (g *grants) authorize(_ string, node *corev3.Node) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.ids[node.GetId()] {
		return errors.New("node " + node.GetId() + " is not granted")
	}
	return nil
}

// verifyNoLeaks checks, once the test and every cleanup registered after
// it are done, that no goroutine started during the test is left.
func verifyNoLeaks(t *testing.T) {
	t.Helper()
	opt := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, opt) })
}

// A node whose grant is withdrawn while connected loses its stream at once
// and nothing after it; a node still granted keeps its stream and gets the
// next update; the withdrawn node cannot come back.
func TestReauthorizeEndsStreamsOfWithdrawnNodes(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			verifyNoLeaks(t)
			g := newGrants("a1", "b1")
			srv, addr, reg := startServer(t, ServerOptions{Authorize: g.authorize})
			srv.Update(testInput(8080, DeliveryLDS))
			a := connectEnvoy(t, addr, "a1", map[string]string{"app": "a"}, m.delta)
			b := connectEnvoy(t, addr, "b1", map[string]string{"app": "b"}, m.delta)
			for _, e := range []*xdstest.Client{a, b} {
				e.Await(t, "config", xdstest.Complete)
			}
			waitStatus(t, srv, "a1", func(n NodeStatus) bool { return allACKed(n, 3) })
			waitStatus(t, srv, "b1", func(n NodeStatus) bool { return allACKed(n, 3) })

			if n := srv.Reauthorize(g.authorize); n != 0 {
				t.Fatalf("Reauthorize with every grant in place ended %d streams", n)
			}
			g.withdraw("a1")
			if n := srv.Reauthorize(g.authorize); n != 1 {
				t.Fatalf("Reauthorize ended %d streams, want 1 (a1's)", n)
			}
			held := a.State()
			// The stream is ended by now; the update must not reach it, nor
			// be sent on it while it closes.
			srv.Update(testInput(9090, DeliveryLDS))

			if err := a.AwaitEnd(t, "its grant was withdrawn", 10*time.Second); status.Code(err) != codes.PermissionDenied ||
				!strings.Contains(err.Error(), "grant withdrawn") {
				t.Errorf("a1's stream ended with %v, want PermissionDenied saying the grant was withdrawn", err)
			}
			b.Await(t, "the update", func(s xdstest.State) bool {
				return s.Type(resource.ClusterType).Version != held.Type(resource.ClusterType).Version
			})
			if b.Err() != nil {
				t.Errorf("b1, still granted, lost its stream: %v", b.Err())
			}
			for _, typeURL := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
				if got, was := a.State().Type(typeURL), held.Type(typeURL); got.Version != was.Version || got.Responses != was.Responses {
					t.Errorf("%s: a1 went from version %q (%d responses) to %q (%d) after its grant was withdrawn",
						typeLabel(typeURL), was.Version, was.Responses, got.Version, got.Responses)
				}
			}

			waitFor(t, "a1 to leave status", func() bool {
				return !slices.ContainsFunc(srv.Status(), func(n NodeStatus) bool { return n.ID == "a1" })
			})
			if !slices.ContainsFunc(srv.Status(), func(n NodeStatus) bool { return n.ID == "b1" }) {
				t.Errorf("b1 left status: %+v", srv.Status())
			}
			refusals := srv.NodeDenials()
			if len(refusals) != 1 || refusals[0].NodeID != "a1" || !strings.Contains(refusals[0].Reason, "grant withdrawn") ||
				!strings.Contains(refusals[0].Reason, "not granted") {
				t.Errorf("refusals = %+v, want a1's, saying its grant was withdrawn and why", refusals)
			}
			if got := testutil.ToFloat64(srv.metrics.refused); got != 1 {
				t.Errorf("nodes refused = %v, want 1", got)
			}
			waitFor(t, "connected nodes gauge", func() bool { return gaugeValue(t, reg, "wasmxds_xds_connected_nodes") == 1 })

			// Reconnecting is refused on the first request.
			again := connectEnvoy(t, addr, "a1", map[string]string{"app": "a"}, m.delta)
			if err := again.AwaitEnd(t, "reconnecting without a grant", 10*time.Second); status.Code(err) != codes.PermissionDenied {
				t.Errorf("a1 reconnecting: %v, want PermissionDenied", err)
			}
			if v := again.State().Type(resource.ClusterType).Version; v != "" {
				t.Errorf("a1 reconnecting got clusters %q", v)
			}
			if n := len(srv.NodeDenials()); n != 2 {
				t.Errorf("%d refusals, want 2 (the withdrawal and the reconnection)", n)
			}
			// Nothing is left to end.
			if n := srv.Reauthorize(g.authorize); n != 0 {
				t.Errorf("Reauthorize again ended %d streams, want 0", n)
			}
		})
	}
}

// fakeStream is a server stream whose RecvMsg blocks until its context
// ends, as a transport read does while the client sends nothing.
type fakeStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent atomic.Int32
}

func (s *fakeStream) Context() context.Context { return s.ctx }

func (s *fakeStream) SendMsg(any) error {
	s.sent.Add(1)
	return nil
}

func (s *fakeStream) RecvMsg(any) error {
	<-s.ctx.Done()
	return s.ctx.Err()
}

// Once revoked, a stream sends nothing, a blocked RecvMsg returns at once
// and the RPC ends with the revocation's status whatever the handler
// returns; the read left behind ends with the RPC.
func TestRevokedStreamSendsNothing(t *testing.T) {
	verifyNoLeaks(t)
	ctx, endRPC := context.WithCancel(context.Background())
	defer endRPC()
	inner := &fakeStream{ctx: ctx}
	got := make(chan *revocable, 1)
	revoked := make(chan struct{})
	var sendErr, recvErr error
	handler := func(_ any, ss grpc.ServerStream) error {
		got <- revocableFrom(ss.Context())
		recvDone := make(chan error, 1)
		go func() { recvDone <- ss.RecvMsg(new(struct{})) }()
		if err := ss.SendMsg("before"); err != nil {
			return err
		}
		<-revoked
		sendErr = ss.SendMsg("after")
		select {
		case recvErr = <-recvDone:
		case <-time.After(10 * time.Second):
			recvErr = errors.New("RecvMsg still blocked 10s after revoke")
		}
		return nil // as go-control-plane does when its request channel closes
	}
	done := make(chan error, 1)
	ads := &grpc.StreamServerInfo{FullMethod: "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"}
	go func() { done <- revocableStreams(nil, inner, ads, handler) }()
	r := <-got
	if r == nil {
		t.Fatal("the stream's context does not carry the revocable stream")
	}
	waitFor(t, "the first message", func() bool { return inner.sent.Load() == 1 })
	r.revoke(status.Error(codes.PermissionDenied, "revoked"))
	close(revoked)
	err := <-done
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("RPC ended with %v, want PermissionDenied", err)
	}
	if status.Code(sendErr) != codes.PermissionDenied {
		t.Errorf("SendMsg after revoke = %v, want PermissionDenied", sendErr)
	}
	if status.Code(recvErr) != codes.PermissionDenied {
		t.Errorf("RecvMsg blocked across revoke = %v, want PermissionDenied", recvErr)
	}
	if n := inner.sent.Load(); n != 1 {
		t.Errorf("%d messages reached the transport, want 1 (the one before revoke)", n)
	}
	if err := r.RecvMsg(new(struct{})); status.Code(err) != codes.PermissionDenied {
		t.Errorf("RecvMsg after revoke = %v, want PermissionDenied", err)
	}
	endRPC()
}

// A node whose grant is withdrawn while its stream is idle (every response
// ACKed, nothing to send, no request coming) loses the stream at once:
// nothing else has to happen on it.
func TestWithdrawnIdleNodeLosesItsStreamAtOnce(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			verifyNoLeaks(t)
			g := newGrants("a1")
			srv, addr, _ := startServer(t, ServerOptions{Authorize: g.authorize})
			srv.Update(testInput(8080, DeliveryLDS))
			a := connectEnvoy(t, addr, "a1", map[string]string{"app": "a"}, m.delta)
			a.Await(t, "config", xdstest.Complete)
			waitStatus(t, srv, "a1", func(n NodeStatus) bool { return allACKed(n, 3) })
			g.withdraw("a1")
			if n := srv.Reauthorize(g.authorize); n != 1 {
				t.Fatalf("Reauthorize ended %d streams, want 1", n)
			}
			if err := a.AwaitEnd(t, "its grant was withdrawn, idle", 10*time.Second); status.Code(err) != codes.PermissionDenied ||
				!strings.Contains(err.Error(), "grant withdrawn") {
				t.Errorf("a1's stream ended with %v, want PermissionDenied saying the grant was withdrawn", err)
			}
		})
	}
}
