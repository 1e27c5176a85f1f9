package xds

import (
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// proxyAddr is where a proxy in front of the module server (an L7 load
// balancer, say) connects from: no node's ADS connection comes from it.
const proxyAddr = "192.0.2.10:41000"

// startProxiedFirstModule starts a server sending plugin p's first module,
// a, and fake Envoy "n" (NACKing confirmations of failing), and waits until
// the node ACKed it with no download seen: the plugin runs, as if Envoy had
// the module cached.
func startProxiedFirstModule(t *testing.T, delta bool, failing string) (*Server, *xdstest.Client, *firstModuleEnvoy) {
	t.Helper()
	srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
	srv.Update(deliveryInput("a"))
	fe := &firstModuleEnvoy{}
	e := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", Delta: delta, NACKResources: fe.judge(t, srv, failing)})
	waitStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginRunning })
	return srv, e, fe
}

// A first module whose download the module server sees come from an
// address no node connects from went through a proxy: it may be any
// node's, so the nodes that ACKed the module without a download seen are
// sent its confirmation, as if they had been seen downloading it. A proxied
// download may be another node's, so NACKs of the confirmation are taken
// for cache misses until the attempts run out (maxExpectedMiss, and no
// sooner than loadGiveUp after the first): a VM that fails is then refused
// as without a proxy, the plugin failed on the node with a reason that
// names the VM, and the node gets the stand-in.
func TestFirstModuleDownloadedThroughAProxyIsConfirmed(t *testing.T) {
	a := strings.Repeat("a", 64)
	for _, m := range modes {
		t.Run(m.name+"/vm fails", func(t *testing.T) {
			srv, e, fe := startProxiedFirstModule(t, m.delta, a)
			start := fakeClock(t, srv).Now()
			srv.ModuleServed(a, proxyAddr)
			if p := pluginState(nodeStatus(t, srv, "n")); p.State != PluginPending {
				t.Errorf("after a download through a proxy: %+v, want pending until confirmed", p)
			}
			n := stepStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginFailed })
			if took := fakeClock(t, srv).Now().Sub(start); took <= loadGiveUp {
				t.Errorf("refused %v after the download, want no sooner than %v", took, loadGiveUp)
			}
			if p := pluginState(n); !strings.Contains(p.Reason, "VM") || !strings.Contains(p.Reason, envoyCreateFailure) {
				t.Errorf("failed plugin = %+v, want a reason that names the VM and Envoy's words", p)
			}
			e.Await(t, "the stand-in", func(s xdstest.State) bool {
				return s.Type(resource.ExtensionConfigType).Resource(FilterNamePrefix+"p") != nil && heldURL(t, s) == ""
			})
			got := fe.configs()
			if len(got) < 1+maxExpectedMiss || got[0].nackOn {
				t.Fatalf("configs of p sent: %v, want the plain first module, its confirmation and re-pushes, %d at least",
					got, 1+maxExpectedMiss)
			}
			for _, c := range got[1:] {
				if !c.nackOn || c.attempt == "" {
					t.Errorf("confirmation %v: want nack_on_code_cache_miss and an attempt mark", c)
				}
			}
		})
		t.Run(m.name+"/vm runs", func(t *testing.T) {
			srv, e, fe := startProxiedFirstModule(t, m.delta, "")
			plain := nodeStatus(t, srv, "n").Types[resource.ExtensionConfigType].Acked
			srv.ModuleServed(a, proxyAddr)
			stepAwait(t, srv, e, "the confirmation and the plain config again", func(s xdstest.State) bool {
				return len(fe.configs()) >= 3 && !strings.Contains(heldURL(t, s), "attempt")
			})
			n := waitStatus(t, srv, "n", func(n NodeStatus) bool {
				ts := n.Types[resource.ExtensionConfigType]
				return ts.Acked == ts.Sent && pluginState(n).State == PluginRunning
			})
			if v := n.Types[resource.ExtensionConfigType].Acked; v != plain {
				t.Errorf("settled on version %q, want the plain one first sent, %q", v, plain)
			}
			if c := testutil.ToFloat64(srv.metrics.confirmations); c != 1 {
				t.Errorf("confirmations = %v, want 1", c)
			}
		})
	}
}

// A download from a node's own address is that node's alone; one through
// a proxy counts for any node, when it finished since the node was sent
// the module. Addresses are nodes' while a node connects from them.
func TestDownloadsCountForTheNodeOrThroughAProxy(t *testing.T) {
	var dl downloads
	sha := strings.Repeat("a", 64)
	sent := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dl.record(sha, "10.0.0.2", sent.Add(time.Second), false)
	if s := dl.before(sha, "10.0.0.1", sent, sent.Add(2*time.Second)); s.byNode || s.proxied || !s.anyone {
		t.Errorf("another node's download: %+v; want only seen by anyone", s)
	}
	if s := dl.before(sha, "10.0.0.2", sent, sent.Add(2*time.Second)); !s.byNode {
		t.Error("the node's own download not counted for it")
	}
	if s := dl.before(sha, "10.0.0.2", sent, sent.Add(time.Second)); s.byNode {
		t.Error("a download finished at t counted as before t")
	}
	dl.record(sha, "192.0.2.10", sent.Add(time.Second), true)
	if s := dl.before(sha, "10.0.0.1", sent, sent.Add(2*time.Second)); s.byNode || !s.proxied {
		t.Errorf("a download through a proxy: %+v; want proxied, not the node's own", s)
	}
	if s := dl.before(sha, "10.0.0.1", sent.Add(1500*time.Millisecond), sent.Add(2*time.Second)); s.proxied {
		t.Error("a download through a proxy before the node was sent the module counted for it")
	}

	d := newDeliveries()
	d.setAddr("n1", "10.0.0.1")
	d.setAddr("n2", "10.0.0.2")
	d.setAddr("n2", "10.0.0.3") // reconnected from another address
	d.setAddr("n3", "10.0.0.1")
	d.forget("n1")
	if !d.nodeAddr("10.0.0.1") || d.nodeAddr("10.0.0.2") || !d.nodeAddr("10.0.0.3") {
		t.Error("node addresses not kept up to date as nodes move and leave")
	}
	d.forget("n3")
	if d.nodeAddr("10.0.0.1") {
		t.Error("an address no node connects from any more still counts as a node's")
	}
}

// A node behind a proxy that is still fetching its first module when
// other nodes' downloads come through the proxy is confirmed early and
// NACKs the confirmation as a cache miss each time the downloads bring its
// re-push forward. It is not refused for that: its module runs once its
// own fetch ends, well within loadGiveUp, and nothing is held back for its
// label set.
func TestSlowNodeBehindAProxyIsNotRefused(t *testing.T) {
	a := strings.Repeat("a", 64)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
			srv.Update(deliveryInput("a"))
			var fetching atomic.Bool
			fetching.Store(true)
			var nacks atomic.Int32
			e := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", Delta: m.delta,
				NACKResources: func(r *xdstest.Response, res []*anypb.Any) error {
					i := slices.Index(r.Names, FilterNamePrefix+"p")
					if r.TypeURL == resource.ExtensionConfigType && fetching.Load() && i >= 0 && strings.Contains(wasmURL(res[i]), "attempt") {
						nacks.Add(1)
						return errors.New(envoyCreateFailure)
					}
					return nil
				}})
			waitStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginRunning })
			clk := fakeClock(t, srv)
			// Other nodes' downloads through the proxy, every 200 ms for
			// 10 s, while this node's own fetch runs.
			for range 50 {
				srv.ModuleServed(a, proxyAddr)
				waitFor(t, "the engine idle", func() bool { busy, _ := srv.engineState(); return !busy })
				if p := pluginState(nodeStatus(t, srv, "n")); p.State == PluginFailed {
					t.Fatalf("refused while its fetch ran: %+v", p)
				}
				clk.Step(200 * time.Millisecond)
			}
			fetching.Store(false)
			srv.ModuleServed(a, proxyAddr)
			stepAwait(t, srv, e, "the plain config, running", func(s xdstest.State) bool {
				return s.Type(resource.ExtensionConfigType).Version != "" && !strings.Contains(heldURL(t, s), "attempt") &&
					pluginState(nodeStatus(t, srv, "n")).State == PluginRunning
			})
			if n := nacks.Load(); n < 2 {
				t.Errorf("%d confirmations NACKed while fetching, want the early confirmation and re-pushes", n)
			}
			if r := srv.LabelSetRefusals(); len(r) != 0 {
				t.Errorf("refusals %v, want none", r)
			}
		})
	}
}
