package xds

import (
	"errors"
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
	return g != nil && !unsubscribed(g, plugin)
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
		wantSwapOfNew bool
	}{
		{name: "listeners dropped it", wantSwapOfNew: false},
		{name: "listener update refused", refuseDrop: true, wantSwapOfNew: true},
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
