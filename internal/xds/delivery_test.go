package xds

import (
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/catalog"
	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// envoyCreateFailure is what Envoy 1.40 answers both for a module it has
// not cached (nack_on_code_cache_miss) and for one whose VM failed.
const envoyCreateFailure = "Unable to create Wasm plugin p"

func deliveryInput(sha string) Input {
	sha = strings.Repeat(sha, 64/len(sha))
	return Input{
		State: &catalog.State{
			Listeners: []catalog.Listener{{Name: "l", Port: 10000, Routes: []catalog.Route{{Prefix: "/", Cluster: "c"}}}},
			Clusters:  []catalog.Cluster{{Name: "c", Endpoints: []catalog.Endpoint{{Host: "127.0.0.1", Port: 8080}}}},
			Plugins:   []catalog.Plugin{{Name: "p"}},
		},
		Modules:         map[string]PluginModule{"p": {Module: &Module{SHA256: sha, URL: "http://127.0.0.1:1/modules/sha256/" + sha}}},
		ModuleServerURL: "http://127.0.0.1:1",
		Delivery:        DeliveryECDS,
	}
}

// heldURL is the module URL of plugin p's config the fake Envoy accepted.
func heldURL(t *testing.T, s xdstest.State) string {
	t.Helper()
	return wasmURL(s.Type(resource.ExtensionConfigType).Resource(FilterNamePrefix + "p"))
}

// wasmURL is the module URL of a Wasm extension config, "" for none or
// another config (a stand-in).
func wasmURL(a *anypb.Any) string {
	ext := &corev3.TypedExtensionConfig{}
	w := &wasmfilterv3.Wasm{}
	if a == nil || a.UnmarshalTo(ext) != nil || ext.GetTypedConfig().UnmarshalTo(w) != nil {
		return ""
	}
	return w.GetConfig().GetVmConfig().GetCode().GetRemote().GetHttpUri().GetUri()
}

func pluginState(n NodeStatus) PluginStatus {
	for _, p := range n.Plugins {
		if p.Name == "p" {
			return p
		}
	}
	return PluginStatus{}
}

// A cache-miss NACK is expected: the plugin shows pending, not as a NACK,
// and the config is sent again once the module server has served the
// module, changed so that Envoy does not take it for the config it has. A
// NACK after the node downloaded the module is a failure: reported with a
// reason, and the node is sent the last good config, so one refused module
// blocks nothing else.
func TestCacheMissIsRepushedAndRefusalFails(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
			srv.Update(deliveryInput("a"))
			rej := &xdstest.Rejecter{}
			rej.RejectNext(resource.ExtensionConfigType, envoyCreateFailure)
			e := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", Delta: m.delta, NACK: rej.Decide})
			waitFor(t, "the cache miss", func() bool { return testutil.ToFloat64(srv.metrics.cacheMisses) == 1 })
			n := nodeStatus(t, srv, "n")
			// Pending until the re-push (at most repushBaseDelay away) is ACKed.
			if p := pluginState(n); p.State == PluginFailed || p.Reason != "" {
				t.Errorf("after a cache miss: %+v", p)
			}
			if n.LastNack != nil || testutil.ToFloat64(srv.metrics.nacks.WithLabelValues("extension_config")) != 0 {
				t.Errorf("expected cache miss reported as a NACK: %+v", n.LastNack)
			}

			plain := n.Types[resource.ExtensionConfigType].Sent // the version NACKed
			srv.ModuleServed(strings.Repeat("a", 64), "127.0.0.1:40000")
			// The re-push, then the confirmation of the module downloaded.
			n = stepStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginRunning })
			if p := pluginState(n); p.SHA256 != strings.Repeat("a", 64) || n.LastNack != nil {
				t.Errorf("after the re-push: %+v, last NACK %+v", p, n.LastNack)
			}
			if got := testutil.ToFloat64(srv.metrics.repushes); got != 1 {
				t.Errorf("re-pushes = %v, want 1", got)
			}
			// Once every node runs it, the config drops its attempt mark:
			// versions are content hashes of specs and modules again.
			e.Await(t, "settled config", func(s xdstest.State) bool {
				st := s.Type(resource.ExtensionConfigType)
				return st.Responses >= 3 && !strings.Contains(heldURL(t, s), "attempt") && st.Version != ""
			})
			n = waitStatus(t, srv, "n", func(n NodeStatus) bool {
				ts := n.Types[resource.ExtensionConfigType]
				return ts.Acked == ts.Sent
			})
			if got := n.Types[resource.ExtensionConfigType].Acked; got != plain {
				t.Errorf("settled on version %q, want the plain one %q", got, plain)
			}

			// A new module: missed, downloaded, then refused.
			// The VM refuses to start: the cache miss, then every re-push
			// after the download, is NACKed. One such NACK may be a busy
			// Envoy still reading the download, so only repeated ones make
			// the plugin failed. The download is recorded up front so that
			// every re-push follows it, however the timers fall.
			rej.RejectNextN(resource.ExtensionConfigType, envoyCreateFailure, 1+failAfterDownload)
			srv.ModuleServed(strings.Repeat("b", 64), "127.0.0.1:40001")
			srv.Update(deliveryInput("b"))
			waitFor(t, "the miss", func() bool { return testutil.ToFloat64(srv.metrics.cacheMisses) == 2 })
			n = stepStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginFailed })
			p := pluginState(n)
			if p.SHA256 != strings.Repeat("b", 64) || !strings.Contains(p.Reason, "did not create its VM") ||
				!strings.Contains(p.Reason, envoyCreateFailure) {
				t.Errorf("failed plugin = %+v", p)
			}
			if n.LastNack == nil || testutil.ToFloat64(srv.metrics.nacks.WithLabelValues("extension_config")) != 1 {
				t.Errorf("refusal not reported as a NACK: %+v", n.LastNack)
			}
			// The node gets its last good config back, and stays failed.
			e.Await(t, "last good config", func(s xdstest.State) bool {
				return strings.Contains(heldURL(t, s), strings.Repeat("a", 64))
			})
			n = waitStatus(t, srv, "n", func(n NodeStatus) bool {
				ts := n.Types[resource.ExtensionConfigType]
				return ts.Acked == ts.Sent
			})
			if p := pluginState(n); p.State != PluginFailed {
				t.Errorf("after the last good config: %+v", p)
			}
		})
	}
}

// A plugin whose very first module a node refuses has no last good config
// there: the node gets the failure policy's stand-in, and the plugin stays
// failed in the node's status (it does not vanish from it).
func TestRefusedFirstModuleStaysFailed(t *testing.T) {
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
			srv.Update(deliveryInput("a"))
			rej := &xdstest.Rejecter{}
			rej.RejectNextN(resource.ExtensionConfigType, envoyCreateFailure, 1+failAfterDownload)
			srv.ModuleServed(strings.Repeat("a", 64), "127.0.0.1:40000")
			e := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", Delta: m.delta, NACK: rej.Decide})
			waitFor(t, "the cache miss", func() bool { return testutil.ToFloat64(srv.metrics.cacheMisses) >= 1 })
			stepStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginFailed })
			e.Await(t, "the stand-in", func(s xdstest.State) bool {
				a := s.Type(resource.ExtensionConfigType).Resource(FilterNamePrefix + "p")
				return a != nil && heldURL(t, s) == ""
			})
			n := waitStatus(t, srv, "n", func(n NodeStatus) bool {
				ts := n.Types[resource.ExtensionConfigType]
				return ts.Acked == ts.Sent
			})
			if p := pluginState(n); p.State != PluginFailed || p.SHA256 != strings.Repeat("a", 64) ||
				!strings.Contains(p.Reason, "did not create its VM") {
				t.Errorf("after the stand-in was ACKed: %+v, want failed with module a and its reason", p)
			}
		})
	}
}

func TestRepushDelayBacksOff(t *testing.T) {
	prev := time.Duration(0)
	for n := 1; n < 20; n++ {
		d := repushDelay(n)
		if d < prev || d > repushMaxDelay {
			t.Fatalf("delay %d = %v after %v", n, d, prev)
		}
		prev = d
	}
	if repushDelay(1) != repushBaseDelay || prev != repushMaxDelay {
		t.Errorf("delays from %v to %v", repushDelay(1), prev)
	}
}
