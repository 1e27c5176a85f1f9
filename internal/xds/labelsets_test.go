package xds

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// Idle groups give their snapshot back: an Update translates only the
// label sets nodes use now, however many came and left, and a node that
// returns to an idle label set is built again to the same versions, so a
// node resuming with what it holds is sent nothing new.
func TestIdleGroupsKeepNoSnapshot(t *testing.T) {
	var mu sync.Mutex
	translated := map[string]int{}
	srv, addr, _ := startServerTranslating(t, ServerOptions{}, func(in Input, labels map[string]string) (*Resources, []Problem) {
		mu.Lock()
		translated[GroupKey(labels)]++
		mu.Unlock()
		return fakeTranslate(in, labels)
	})
	count := func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := map[string]int{}
		for k, v := range translated {
			out[k] = v
		}
		clear(translated)
		return out
	}
	srv.Update(testInput(8080, DeliveryLDS))
	for i := range 20 {
		e := connectEnvoy(t, addr, fmt.Sprintf("n-%d", i), map[string]string{"app": fmt.Sprintf("a%d", i)}, false)
		e.Await(t, "config", xdstest.Complete)
		e.Close()
	}
	waitFor(t, "every node gone", func() bool { return len(srv.Status()) == 0 })
	// The client's second dial (its resume) waits for gate.
	gate := make(chan struct{})
	var dials atomic.Int32
	dialer := grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		if dials.Add(1) > 1 {
			<-gate
		}
		return (&net.Dialer{}).DialContext(ctx, "tcp", a)
	})
	stay := xdstest.Start(t, addr, xdstest.Options{NodeID: "stay", Labels: map[string]string{"app": "a0"},
		DialOptions: []grpc.DialOption{dialer}, Resume: &xdstest.Resume{Backoff: time.Millisecond}})
	held := stay.Await(t, "config", xdstest.Complete)
	srv.mu.Lock()
	withSnapshot := 0
	for _, g := range srv.groups {
		if g.versions != nil {
			withSnapshot++
		}
	}
	groups := len(srv.groups)
	srv.mu.Unlock()
	if groups != 21 || withSnapshot != 1 {
		t.Errorf("%d groups, %d with a snapshot; want 21 kept (label set and bucket), 1 (the one in use) with a snapshot", groups, withSnapshot)
	}

	count()
	srv.Update(testInput(8081, DeliveryLDS))
	if got := count(); len(got) != 1 || got["app=a0"] != 1 {
		t.Errorf("an Update translated %v, want only the label set in use", got)
	}
	stay.Await(t, "the edit", func(s xdstest.State) bool {
		return s.Type(resource.ClusterType).Version != held.Type(resource.ClusterType).Version
	})

	// The node's stream breaks; while it is away its group is idle and an
	// Update (the same Input) takes the snapshot back. Resuming with what
	// it holds, the node is sent no other version (a state-of-the-world
	// stream is answered once with what it holds, which Envoy ignores).
	now := stay.State()
	responses := now.Type(resource.ClusterType).Responses
	for _, st := range srv.tracker.attachedStreams() {
		st.stream.revoke(status.Error(codes.Unavailable, "test: stream broken"))
	}
	waitFor(t, "the node gone", func() bool { return len(srv.Status()) == 0 })
	srv.Update(testInput(8081, DeliveryLDS))
	srv.mu.Lock()
	for key, g := range srv.groups {
		if g.versions != nil {
			t.Errorf("idle group %s kept its snapshot across an Update", key)
		}
	}
	srv.mu.Unlock()
	close(gate)
	waitFor(t, "the node back", func() bool {
		st := srv.Status()
		return len(st) == 1 && allACKed(st[0], 1)
	})
	for _, typeURL := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
		if got, held := stay.State().Type(typeURL).Version, now.Type(typeURL).Version; got != held {
			t.Errorf("%s: a node resuming with what it held was sent version %s, want the %s it held", typeLabel(typeURL), got, held)
		}
	}
	if got := stay.State().Type(resource.ClusterType).Responses; got < responses {
		t.Errorf("cluster responses went from %d to %d", responses, got)
	}
}

// Without a client certificate one source address brings at most
// MaxLabelSetsPerSource label sets into being, idle ones included: a node
// with a new label set past that is refused, while nodes of label sets
// that exist still join.
func TestLabelSetsPerSourceAreCapped(t *testing.T) {
	srv, addr, _ := startServer(t, ServerOptions{MaxLabelSetsPerSource: 3})
	srv.Update(testInput(8080, DeliveryLDS))
	for i := range 3 {
		e := connectEnvoy(t, addr, fmt.Sprintf("n-%d", i), map[string]string{"app": fmt.Sprintf("a%d", i)}, false)
		e.Await(t, "config", xdstest.Complete)
		e.Close()
	}
	over := connectEnvoy(t, addr, "n-3", map[string]string{"app": "a3"}, false)
	if err := over.AwaitEnd(t, "a fourth label set from one address", 10*time.Second); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "label sets") {
		t.Errorf("fourth label set: %v, want PermissionDenied about label sets", err)
	}
	again := connectEnvoy(t, addr, "n-4", map[string]string{"app": "a1"}, false)
	again.Await(t, "config for an existing label set", xdstest.Complete)
	if r := srv.NodeDenials(); len(r) != 1 || r[0].NodeID != "n-3" {
		t.Errorf("refusals = %+v, want n-3's", r)
	}
}

// Label sets that came and went keep what their nodes ran (to send a
// returning node swaps, not first modules), but equal configs are kept
// once: the extension configs held across 30 idle label sets are the
// distinct configs, not one copy per label set.
func TestIdleLabelSetsShareTheirConfigs(t *testing.T) {
	srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
	srv.Update(deliveryInput("a"))
	for i := range 30 {
		e := xdstest.Start(t, addr, xdstest.Options{NodeID: fmt.Sprintf("n-%d", i), Labels: map[string]string{"set": fmt.Sprintf("s%d", i)}})
		e.Await(t, "config", xdstest.Complete)
		waitFor(t, "the ACK recorded", func() bool { return pluginState(nodeStatus(t, srv, fmt.Sprintf("n-%d", i))).State == PluginRunning })
		e.Close()
	}
	waitFor(t, "every node gone", func() bool { return len(srv.Status()) == 0 })
	srv.Update(deliveryInput("a"))

	srv.buildMu.Lock()
	srv.mu.Lock()
	defer srv.mu.Unlock()
	defer srv.buildMu.Unlock()
	configs := map[*corev3.TypedExtensionConfig]bool{}
	kept := 0
	for _, g := range srv.groups {
		for _, l := range g.lastGood {
			for _, e := range l {
				configs[e.ext] = true
				kept++
			}
		}
		for _, entries := range g.ecds {
			for _, e := range entries {
				configs[e.ext] = true
			}
		}
	}
	if kept < 30 || len(configs) > 2 {
		t.Errorf("%d last good configs kept as %d distinct messages; want one per label set (30) sharing at most 2 (first module, swap)", kept, len(configs))
	}
	if len(srv.interned) > len(configs) {
		t.Errorf("%d configs interned, %d in use", len(srv.interned), len(configs))
	}
}

// Bounds per source count an IPv6 client's /64 as one source: a host given
// a /64 could otherwise take a fresh address for every stream or label set.
func TestSourceKeyGroupsIPv6By64(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9"},
		{"192.0.2.7", "::ffff:192.0.2.7"},
	} {
		if ka, kb := sourceKey(tc.a), sourceKey(tc.b); ka != kb {
			t.Errorf("%s → %s and %s → %s: one source expected", tc.a, ka, tc.b, kb)
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"2001:db8:1:2::1", "2001:db8:1:3::1"},
		{"192.0.2.7", "192.0.2.8"},
		{"::1", "2001:db8::1"},
	} {
		if ka, kb := sourceKey(tc.a), sourceKey(tc.b); ka == kb {
			t.Errorf("%s and %s both count as %s", tc.a, tc.b, ka)
		}
	}
}
