package xds

import (
	"strings"
	"testing"
	"time"

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
// for cache misses until the attempts run out (maxExpectedMiss): a VM that
// fails is then refused as without a proxy, the plugin failed on the node
// with a reason that names the VM, and the node gets the stand-in.
func TestFirstModuleDownloadedThroughAProxyIsConfirmed(t *testing.T) {
	a := strings.Repeat("a", 64)
	for _, m := range modes {
		t.Run(m.name+"/vm fails", func(t *testing.T) {
			srv, e, fe := startProxiedFirstModule(t, m.delta, a)
			srv.ModuleServed(a, proxyAddr)
			if p := pluginState(nodeStatus(t, srv, "n")); p.State != PluginPending {
				t.Errorf("after a download through a proxy: %+v, want pending until confirmed", p)
			}
			n := stepStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginFailed })
			if p := pluginState(n); !strings.Contains(p.Reason, "VM") || !strings.Contains(p.Reason, envoyCreateFailure) {
				t.Errorf("failed plugin = %+v, want a reason that names the VM and Envoy's words", p)
			}
			e.Await(t, "the stand-in", func(s xdstest.State) bool {
				return s.Type(resource.ExtensionConfigType).Resource(FilterNamePrefix+"p") != nil && heldURL(t, s) == ""
			})
			got := fe.configs()
			if len(got) != 1+maxExpectedMiss || got[0].nackOn {
				t.Fatalf("configs of p sent: %v, want the plain first module, its confirmation and re-pushes, %d in all",
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

// A download from a node's own address is that node's alone; one from an
// address no node connects from counts for every node.
func TestDownloadsCountForTheNodeOrThroughAProxy(t *testing.T) {
	d := newDeliveries()
	d.setAddr("n1", "10.0.0.1")
	d.setAddr("n2", "10.0.0.2")
	var dl downloads
	sha := strings.Repeat("a", 64)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dl.record(sha, "10.0.0.2", now)
	if s := dl.before(sha, "10.0.0.1", now.Add(1), d.nodeAddr); s.byNode || s.proxied || !s.anyone {
		t.Errorf("n2's download, for n1: %+v; want only seen by anyone", s)
	}
	if s := dl.before(sha, "10.0.0.2", now.Add(1), d.nodeAddr); !s.byNode {
		t.Error("n2's own download not counted for n2")
	}
	dl.record(sha, "192.0.2.10", now)
	if s := dl.before(sha, "10.0.0.1", now.Add(1), d.nodeAddr); s.byNode || !s.proxied {
		t.Errorf("a download through a proxy, for n1: %+v; want proxied, not n1's own", s)
	}
	if s := dl.before(sha, "10.0.0.1", now, d.nodeAddr); s.proxied {
		t.Error("a download finished at t counted as before t")
	}
	// A node that connects from the proxy's address makes its downloads
	// that node's.
	d.setAddr("n3", "192.0.2.10")
	other := strings.Repeat("b", 64)
	dl.record(other, "192.0.2.10", now)
	if s := dl.before(other, "10.0.0.1", now.Add(1), d.nodeAddr); s.byNode || s.proxied {
		t.Errorf("a download from n3's address, for n1: %+v; want neither", s)
	}
	d.setAddr("n3", "10.0.0.3")
	d.forget("n2")
	if d.nodeAddr("10.0.0.2") || d.nodeAddr("192.0.2.10") || !d.nodeAddr("10.0.0.1") || !d.nodeAddr("10.0.0.3") {
		t.Error("node addresses not kept up to date as nodes move and leave")
	}
}
