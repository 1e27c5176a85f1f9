package xds

import (
	"maps"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// Engine tests run the server on a fake clock (see startServerWrapping):
// no re-push, confirmation or idle expiry fires until the test steps the
// clock, so a test replays its sequence of events whatever the machine's
// load, and sleeps nowhere.

// testEpoch is the time every test server's fake clock starts at.
var testEpoch = time.Date(2030, time.January, 1, 0, 0, 0, 0, time.UTC)

// fakeClock is the fake clock a test server runs on.
func fakeClock(t testing.TB, srv *Server) *clocktesting.FakeClock {
	t.Helper()
	clk, ok := srv.clock.(*clocktesting.FakeClock)
	if !ok {
		t.Fatalf("the server runs on %T, not a fake clock", srv.clock)
	}
	return clk
}

// engineState is the test hook into the delivery engine's pending work.
// busy: a re-push or idle expiry is due or running, a build is under way,
// a response sent is not answered yet, or a node was not sent its group's
// current version of a type it asked for. next: when the earliest re-push
// that is not due yet is due, zero when none waits. A request the server
// is still handling (past recording it) does not show: wait first for
// what its answer brings, or for the requests to arrive (see settle).
func (s *Server) engineState() (busy bool, next time.Time) {
	now := s.clock.Now()
	if s.repush.running.Load() > 0 || s.idle.running.Load() > 0 {
		return true, time.Time{}
	}
	s.repush.mu.Lock()
	for _, rt := range s.repush.timers {
		if rt.t == nil || !rt.at.After(now) {
			busy = true
		}
		if next.IsZero() || rt.at.Before(next) {
			next = rt.at
		}
	}
	s.repush.mu.Unlock()
	if busy {
		return true, time.Time{}
	}
	if !s.buildMu.TryLock() {
		return true, time.Time{}
	}
	s.buildMu.Unlock()
	return !s.deliveredAll(), next
}

// deliveredAll reports whether every attached node answered the last
// response of each type and was sent (or holds) its group's current
// version of every type it asked for. A response the cache answered a
// request with at once shows as a version not sent yet.
func (s *Server) deliveredAll() bool {
	type node struct {
		group string
		delta bool
		types map[string]TypeStatus
	}
	s.tracker.mu.Lock()
	refused := map[string]bool{} // nodes sent nothing more
	for _, st := range s.tracker.streams {
		if st.refused {
			refused[st.nodeID] = true
		} else if st.attached && len(st.inflight) > 0 {
			s.tracker.mu.Unlock()
			return false
		}
	}
	nodes := make([]node, 0, len(s.tracker.nodes))
	for id, n := range s.tracker.nodes {
		if !refused[id] {
			nodes = append(nodes, node{group: n.Group, delta: n.Delta, types: maps.Clone(n.Types)})
		}
	}
	s.tracker.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range nodes {
		g := s.groups[n.group]
		if g == nil || g.versions == nil {
			continue // nothing built to send yet
		}
		for typeURL, ts := range n.types {
			// A delta node that resumed with the resources it holds is
			// sent nothing when they are current: no version to compare.
			resumed := n.delta && ts.Sent == ""
			if v, ok := g.versions[typeURL]; ok && ts.Sent != v && ts.Acked != v && !resumed {
				return false
			}
		}
	}
	return true
}

// stepUntil waits for cond, stepping the server's fake clock to its next
// re-push whenever the engine is quiet (see engineState): re-pushes fire
// in the order they fall due, each once the work before it is done, as on
// a real clock with a network much faster than the re-push delays. Idle
// expiry is stepped only by tests about it.
func stepUntil(t *testing.T, srv *Server, what string, cond func() bool) {
	t.Helper()
	clk := fakeClock(t, srv)
	waitFor(t, what, func() bool {
		if cond() {
			return true
		}
		if busy, next := srv.engineState(); !busy && !next.IsZero() {
			clk.SetTime(next)
		}
		return false
	})
}

// stepAwait is c.Await stepping the fake clock of srv (see stepUntil).
func stepAwait(t *testing.T, srv *Server, c *xdstest.Client, what string, cond func(xdstest.State) bool) xdstest.State {
	t.Helper()
	stepUntil(t, srv, what, func() bool {
		if err := c.Err(); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		return c.Check(cond)
	})
	return c.State()
}

// stepStatus is waitStatus stepping the fake clock of srv (see stepUntil).
func stepStatus(t *testing.T, srv *Server, id string, cond func(NodeStatus) bool) NodeStatus {
	t.Helper()
	var last NodeStatus
	stepUntil(t, srv, "status of "+id, func() bool {
		for _, n := range srv.Status() {
			if n.ID == id {
				last = n
				return cond(n)
			}
		}
		return false
	})
	return last
}

// settle steps the server's fake clock past every re-push it has pending,
// once the requests the clients made on their streams have reached it,
// until the engine is quiet with nothing pending: from then on the server
// sends nothing unless something new happens (an Update, a request, a
// download, a clock step). A test then checks that nothing else came.
func settle(t *testing.T, srv *Server, clients ...*xdstest.Client) {
	t.Helper()
	stepUntil(t, srv, "the server to settle", func() bool {
		for _, c := range clients {
			if !requestsArrived(srv, c) {
				return false
			}
		}
		busy, next := srv.engineState()
		return !busy && next.IsZero()
	})
}

// requestsArrived reports whether the server has seen a request of every
// type the client asks for.
func requestsArrived(srv *Server, c *xdstest.Client) bool {
	id := c.NodeProto().GetId()
	for _, n := range srv.Status() {
		if n.ID != id {
			continue
		}
		s := c.State()
		for _, typeURL := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType,
			resource.ExtensionConfigType, resource.EndpointType} {
			asked := typeURL == resource.ClusterType || typeURL == resource.ListenerType || len(s.Type(typeURL).Subscribed) > 0
			if _, seen := n.Types[typeURL]; asked && !seen {
				return false
			}
		}
		return true
	}
	return false
}
