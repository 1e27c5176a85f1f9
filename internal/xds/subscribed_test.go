package xds

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// withoutPlugins is in with no plugins: the listener goes on without p.
func withoutPlugins(in Input) Input {
	st := *in.State
	st.Plugins = nil
	in.State, in.Modules = &st, nil
	return in
}

// subscribesTo reports whether a stream of node id's group subscribes to
// plugin's filter config, as the server last heard.
func subscribesTo(srv *Server, id, plugin string) bool {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	g := srv.groups[nodeGroupKey(id, nil)]
	return g != nil && !unsubscribedLocked(g, plugin)
}

// sameBucketAs returns a node id in the rollout bucket of id: a node with
// the same labels joins its group.
func sameBucketAs(id string) string {
	for i := 0; ; i++ {
		if other := fmt.Sprintf("m%d", i); NodeBucket(other) == NodeBucket(id) {
			return other
		}
	}
}

// A plugin whose filter config the node no longer subscribes to (no
// listener it holds names the filter) and that comes back with another
// module comes back on a listener that warms: its module is sent as a
// first module (no nack_on_code_cache_miss), as for a plugin never seen,
// since a swap's cache-miss NACK would end the warming and put the
// stand-in in front of traffic. A node that refused the listener update
// that dropped the plugin still subscribes and runs it: there the new
// module is a swap, which Envoy fetches.
func TestPluginNoLongerSubscribedComesBackAsAFirstModule(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	cases := []struct {
		name          string
		refuseDrop    bool // the node NACKs the listener update without p
		joiner        bool // another node of the group connects while p is away
		wantSwapOfNew bool
	}{
		{name: "listeners dropped it", wantSwapOfNew: false},
		{name: "listener update refused", refuseDrop: true, wantSwapOfNew: true},
		// The node that joins never asks for an extension config: its
		// listeners name none. It must not hold the plugin warm for the
		// group.
		{name: "another node joined meanwhile", joiner: true, wantSwapOfNew: false},
	}
	for _, m := range modes {
		for _, tc := range cases {
			t.Run(m.name+"/"+tc.name, func(t *testing.T) {
				srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
				srv.Update(deliveryInput("a"))
				fe := &firstModuleEnvoy{}
				judge := fe.judge(t, srv, "")
				var refuse atomic.Bool
				e := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", Delta: m.delta,
					NACKResources: func(r *xdstest.Response, res []*anypb.Any) error {
						if r.TypeURL == resource.ListenerType && refuse.Load() {
							return errors.New("listener update refused")
						}
						return judge(r, res)
					}})
				running := waitStatus(t, srv, "n", func(n NodeStatus) bool {
					lds := n.Types[resource.ListenerType]
					return pluginState(n).State == PluginRunning && lds.Acked != "" && lds.Acked == lds.Sent
				})
				withP := running.Types[resource.ListenerType].Acked

				refuse.Store(tc.refuseDrop)
				srv.Update(withoutPlugins(deliveryInput("a")))
				waitStatus(t, srv, "n", func(n NodeStatus) bool {
					lds := n.Types[resource.ListenerType]
					if tc.refuseDrop {
						return n.LastNack != nil && n.LastNack.TypeURL == resource.ListenerType
					}
					return lds.Acked != withP && lds.Acked == lds.Sent
				})
				waitFor(t, "the node's subscription to p", func() bool { return subscribesTo(srv, "n", "p") == tc.refuseDrop })
				refuse.Store(false)
				if tc.joiner {
					id := sameBucketAs("n")
					xdstest.Start(t, addr, xdstest.Options{NodeID: id, Delta: !m.delta})
					waitStatus(t, srv, id, func(n NodeStatus) bool {
						lds := n.Types[resource.ListenerType]
						return lds.Acked != "" && lds.Acked == lds.Sent
					})
					waitFor(t, "the group's subscriptions", func() bool { return !subscribesTo(srv, "n", "p") })
				}

				srv.Update(deliveryInput("b"))
				stepAwait(t, srv, e, "plugin p with module b", func(xdstest.State) bool {
					for _, c := range fe.configs() {
						if c.sha == b {
							return true
						}
					}
					return false
				})
				var firstOfB sentConfig
				for _, c := range fe.configs() {
					if c.sha == b {
						firstOfB = c
						break
					}
				}
				if firstOfB.nackOn != tc.wantSwapOfNew {
					t.Errorf("module b first sent as %v (configs of p: %v); want nack_on_code_cache_miss %t",
						firstOfB, fe.configs(), tc.wantSwapOfNew)
				}
				if got := fe.configs(); len(got) == 0 || got[0].sha != a {
					t.Errorf("configs of p: %v, want module a first", got)
				}
				n := waitStatus(t, srv, "n", func(n NodeStatus) bool {
					p := pluginState(n)
					return p.SHA256 == b && p.State == PluginRunning
				})
				if p := pluginState(n); p.Reason != "" {
					t.Errorf("plugin p: %+v", p)
				}
			})
		}
	}
}

// What a group concludes from its streams' requests about whether any of
// its Envoys still holds plugin p's filter config.
func TestUnsubscribedFromWhatStreamsReport(t *testing.T) {
	p := FilterNamePrefix + "p"
	a, b := streamKey{id: 1}, streamKey{delta: true, id: 2}
	type event struct {
		key       streamKey
		sub       *subscription // an extension config request
		listeners bool          // an ACK of listeners
	}
	cases := []struct {
		name       string
		nodes      int
		filterless bool // the group's listeners name no extension config
		events     []event
		want       bool
	}{
		{name: "no open stream: its nodes may come back running p", nodes: 0, want: false},
		{name: "a stream that reported nothing yet", nodes: 1, want: false},
		{name: "SotW subscribes to p", nodes: 1, events: []event{{key: a, sub: &subscription{whole: true, names: []string{p}}}}, want: false},
		{name: "SotW drops p", nodes: 1, events: []event{
			{key: a, sub: &subscription{whole: true, names: []string{p, FilterNamePrefix + "q"}}},
			{key: a, sub: &subscription{whole: true, names: []string{FilterNamePrefix + "q"}}}}, want: true},
		{name: "SotW drops every name", nodes: 1, events: []event{
			{key: a, sub: &subscription{whole: true, names: []string{p}}},
			{key: a, sub: &subscription{whole: true}}}, want: true},
		// A stream that resumes after every filter config was dropped:
		// Envoy's first request of the type names nothing.
		{name: "SotW first request names none", nodes: 1, events: []event{
			{key: a, sub: &subscription{whole: true}}}, want: true},
		{name: "delta first request names none", nodes: 1, events: []event{
			{key: b, sub: &subscription{}}}, want: true},
		{name: "a request naming *", nodes: 1, events: []event{
			{key: a, sub: &subscription{whole: true, names: []string{wildcard}}}}, want: false},
		{name: "SotW repeats a name", nodes: 1, events: []event{
			{key: a, sub: &subscription{whole: true, names: []string{p, FilterNamePrefix + "q"}}},
			{key: a, sub: &subscription{whole: true, names: []string{FilterNamePrefix + "q", FilterNamePrefix + "q"}}}}, want: true},
		{name: "delta unsubscribes p", nodes: 1, events: []event{
			{key: b, sub: &subscription{names: []string{p}}},
			{key: b, sub: &subscription{drop: []string{p}}}}, want: true},
		{name: "delta comes back holding p (initial versions)", nodes: 1, events: []event{
			{key: b, sub: &subscription{names: []string{p}}}}, want: false},
		{name: "listeners naming no extension config ACKed", nodes: 1, filterless: true,
			events: []event{{key: a, listeners: true}}, want: true},
		// A delta Envoy may ACK listeners before it asks for the
		// extension configs they name.
		{name: "listeners naming extension configs ACKed, none asked for yet", nodes: 1,
			events: []event{{key: b, listeners: true}}, want: false},
		{name: "listeners ACKed after subscribing to p", nodes: 1, filterless: true, events: []event{
			{key: a, sub: &subscription{whole: true, names: []string{p}}}, {key: a, listeners: true}}, want: false},
		{name: "one of two streams still subscribes", nodes: 2, events: []event{
			{key: a, sub: &subscription{whole: true, names: []string{FilterNamePrefix + "q"}}},
			{key: b, sub: &subscription{names: []string{p}}}}, want: false},
		{name: "one of two streams reported nothing yet", nodes: 2, events: []event{
			{key: a, sub: &subscription{whole: true, names: []string{FilterNamePrefix + "q"}}}}, want: false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			g := newGroup(nil, 0)
			g.nodes, g.filterless = tc.nodes, tc.filterless
			g.versions = typeVersions{resource.ListenerType: "v1"}
			for _, e := range tc.events {
				if e.listeners {
					noteListenersAckedLocked(g, e.key, "v1")
				} else {
					noteSubscriptionLocked(g, e.key, *e.sub)
				}
			}
			if got := unsubscribedLocked(g, "p"); got != tc.want {
				t.Errorf("unsubscribed = %t, want %t (streams report %v)", got, tc.want, g.subscribed)
			}
		})
	}
}
