package xds

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	wasmfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// sentConfig is how plugin p's config came in one ECDS response: its
// module, attempt mark and whether a cache miss is NACKed.
type sentConfig struct {
	sha     string
	attempt string // the module URL's query, "" when unmarked
	nackOn  bool
	state   PluginStatus // the node's plugin state on the server as it arrived
}

func (c sentConfig) String() string {
	return fmt.Sprintf("{%s nack_on_code_cache_miss=%t %q}", shortDigest(c.sha), c.nackOn, c.attempt)
}

// firstModuleEnvoy is a fake Envoy that records each config of plugin p it
// is sent and NACKs, as Envoy does a VM that fails, those that carry a
// module of failing and set nack_on_code_cache_miss (Envoy creates the VM
// before it answers them once the module is cached).
type firstModuleEnvoy struct {
	mu   sync.Mutex
	sent []sentConfig
}

func (f *firstModuleEnvoy) configs() []sentConfig {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]sentConfig(nil), f.sent...)
}

func (f *firstModuleEnvoy) judge(t *testing.T, srv *Server, failing string) func(*xdstest.Response, []*anypb.Any) error {
	return func(r *xdstest.Response, res []*anypb.Any) error {
		if r.TypeURL != resource.ExtensionConfigType {
			return nil
		}
		for i, name := range r.Names {
			if name != FilterNamePrefix+"p" {
				continue
			}
			ext, w := &corev3.TypedExtensionConfig{}, &wasmfilterv3.Wasm{}
			if res[i].UnmarshalTo(ext) != nil || ext.GetTypedConfig().UnmarshalTo(w) != nil {
				continue // the stand-in
			}
			vm := w.GetConfig().GetVmConfig()
			_, query, _ := strings.Cut(vm.GetCode().GetRemote().GetHttpUri().GetUri(), "?")
			c := sentConfig{sha: vm.GetCode().GetRemote().GetSha256(), attempt: query, nackOn: vm.GetNackOnCodeCacheMiss()}
			for _, n := range srv.Status() {
				if n.ID == "n" {
					c.state = pluginState(n)
				}
			}
			f.mu.Lock()
			f.sent = append(f.sent, c)
			f.mu.Unlock()
			if c.sha == failing && c.nackOn {
				return errors.New(envoyCreateFailure)
			}
		}
		return nil
	}
}

// startDownloadedFirstModule starts a server sending plugin p's first
// module, a, and fake Envoy "n" (firstModuleEnvoy, NACKing confirmations
// of failing). The module server has seen the node download a before the
// node's ACK (it counts when it finished before: the clock moves on in
// between).
func startDownloadedFirstModule(t *testing.T, delta bool, failing string) (*Server, *xdstest.Client, *firstModuleEnvoy) {
	t.Helper()
	srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
	srv.Update(deliveryInput("a"))
	srv.ModuleServed(strings.Repeat("a", 64), "127.0.0.1:40000")
	fakeClock(t, srv).Step(time.Millisecond)
	fe := &firstModuleEnvoy{}
	e := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", Delta: delta, NACKResources: fe.judge(t, srv, failing)})
	return srv, e, fe
}

// A plugin's first module is sent without nack_on_code_cache_miss, so the
// node's ACK may come before its VM exists. Once the module server has seen
// the node download it, the plugin is pending and the module is sent once
// more as a swap (nack_on_code_cache_miss, attempt-marked); its ACK makes
// the plugin running, and the config goes back to the plain one, whose
// version is the one first sent.
func TestFirstModuleConfirmedAfterItsDownload(t *testing.T) {
	a := strings.Repeat("a", 64)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, addr, _ := startServerTranslating(t, ServerOptions{}, Translate)
			srv.Update(deliveryInput("a"))
			fe := &firstModuleEnvoy{}
			e := xdstest.Start(t, addr, xdstest.Options{NodeID: "n", Delta: m.delta, NACKResources: fe.judge(t, srv, "")})
			// No download seen: Envoy had the module cached and created
			// the VM before it ACKed.
			n := waitStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginRunning })
			plain := n.Types[resource.ExtensionConfigType].Acked

			srv.ModuleServed(a, "127.0.0.1:40000")
			if p := pluginState(nodeStatus(t, srv, "n")); p.State != PluginPending {
				t.Errorf("after the node downloaded its first module: %+v, want pending until confirmed", p)
			}
			// The confirmation waits downloadSettle for Envoy to cache
			// the module.
			stepAwait(t, srv, e, "the confirmation and the plain config again", func(s xdstest.State) bool {
				return len(fe.configs()) >= 3 && s.Type(resource.ExtensionConfigType).Version != "" &&
					!strings.Contains(heldURL(t, s), "attempt")
			})
			n = waitStatus(t, srv, "n", func(n NodeStatus) bool {
				ts := n.Types[resource.ExtensionConfigType]
				return ts.Acked == ts.Sent && pluginState(n).State == PluginRunning
			})
			got := fe.configs()
			want := []sentConfig{{sha: a}, {sha: a, attempt: "attempt=1", nackOn: true}, {sha: a}}
			if len(got) != len(want) {
				t.Fatalf("configs of p sent: %v, want %v", got, want)
			}
			for i := range want {
				if got[i].sha != want[i].sha || got[i].attempt != want[i].attempt || got[i].nackOn != want[i].nackOn {
					t.Errorf("configs of p sent: %v, want %v", got, want)
					break
				}
			}
			if s := got[1].state.State; s != PluginPending {
				t.Errorf("while the confirmation was on its way the plugin was %q, want pending", s)
			}
			if v := n.Types[resource.ExtensionConfigType].Acked; v != plain {
				t.Errorf("settled on version %q, want the plain one first sent, %q", v, plain)
			}
			if c, r := testutil.ToFloat64(srv.metrics.confirmations), testutil.ToFloat64(srv.metrics.repushes); c != 1 || r != 0 {
				t.Errorf("confirmations = %v, re-pushes = %v; want 1 and 0", c, r)
			}
		})
	}
}

// A first module whose VM fails: Envoy ACKs it (it fetches the module as its
// listener warms) but NACKs the confirmation, which has it create the VM
// from its cache. The plugin then fails on the node with Envoy's reason,
// the node gets the stand-in its failure policy calls for, and the module
// is sent no more.
func TestFirstModuleWhoseVMFailsIsRefused(t *testing.T) {
	a := strings.Repeat("a", 64)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, e, fe := startDownloadedFirstModule(t, m.delta, a)
			// The confirmation, then re-pushes backing off.
			n := stepStatus(t, srv, "n", func(n NodeStatus) bool { return pluginState(n).State == PluginFailed })
			p := pluginState(n)
			if p.SHA256 != a || !strings.Contains(p.Reason, "did not create its VM") || !strings.Contains(p.Reason, envoyCreateFailure) {
				t.Errorf("failed plugin = %+v, want module a, its VM and Envoy's words", p)
			}
			// The refusal is decided, then the NACK recorded, on the same
			// request: a status read between the two sees only the first.
			waitFor(t, "the refusal reported as a NACK (the node's last NACK and the NACK metric)", func() bool {
				got := waitStatus(t, srv, "n", func(NodeStatus) bool { return true })
				return got.LastNack != nil && testutil.ToFloat64(srv.metrics.nacks.WithLabelValues("extension_config")) == 1
			})
			e.Await(t, "the stand-in", func(s xdstest.State) bool {
				a := s.Type(resource.ExtensionConfigType).Resource(FilterNamePrefix + "p")
				return a != nil && heldURL(t, s) == ""
			})
			n = waitStatus(t, srv, "n", func(n NodeStatus) bool {
				ts := n.Types[resource.ExtensionConfigType]
				return ts.Acked == ts.Sent
			})
			if p := pluginState(n); p.State != PluginFailed {
				t.Errorf("after the stand-in: %+v, want failed", p)
			}
			got := fe.configs()
			if len(got) == 0 || got[0].nackOn || got[0].attempt != "" {
				t.Fatalf("configs of p sent: %v, want the plain first module first", got)
			}
			confirmations := got[1:]
			if len(confirmations) != failAfterDownload {
				t.Errorf("configs of p sent after the first: %v, want %d confirmations (a busy Envoy may answer one "+
					"while still reading the download)", confirmations, failAfterDownload)
			}
			for _, c := range confirmations {
				if !c.nackOn || c.attempt == "" || c.state.State != PluginPending {
					t.Errorf("confirmation %v sent with the plugin %+v, want nack_on_code_cache_miss, an attempt mark, pending", c, c.state)
				}
			}
			if c := testutil.ToFloat64(srv.metrics.confirmations); c != 1 {
				t.Errorf("confirmations = %v, want 1", c)
			}
			// Another download of the module starts nothing: it is refused.
			srv.ModuleServed(a, "127.0.0.1:40000")
			srv.repush.mu.Lock()
			for k := range srv.repush.timers {
				t.Errorf("re-push %+v scheduled after the module was refused", k)
			}
			srv.repush.mu.Unlock()
		})
	}
}

// A module swap that comes while the plugin's first module waits for its
// confirmation is a swap: the node fetched the first module as its
// listener warmed, and the listener is warm now. Envoy fetches a module it
// does not have, outside a listener's warming, only on a cache-miss NACK:
// sent without nack_on_code_cache_miss, the new module would never be
// fetched, and the plugin would stay unloaded (its failure policy in front
// of traffic) until the next change.
func TestSwapBeforeTheFirstModuleIsConfirmed(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("b", 64)
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			srv, e, fe := startDownloadedFirstModule(t, m.delta, "")
			// The first module ACKed after its download: its confirmation
			// waits downloadSettle, on a clock that does not move.
			waitStatus(t, srv, "n", func(n NodeStatus) bool {
				ts := n.Types[resource.ExtensionConfigType]
				return ts.Acked != "" && ts.Acked == ts.Sent && pluginState(n).State == PluginPending
			})
			srv.Update(deliveryInput("b"))
			e.Await(t, "module b", func(xdstest.State) bool {
				return slices.ContainsFunc(fe.configs(), func(c sentConfig) bool { return c.sha == b })
			})
			got := fe.configs()
			if len(got) == 0 || got[0].sha != a || got[0].nackOn {
				t.Fatalf("configs of p sent: %v, want the plain first module first", got)
			}
			for _, c := range got[1:] {
				if c.sha == b && !c.nackOn {
					t.Errorf("configs of p sent: %v; module b sent without nack_on_code_cache_miss after the first "+
						"module's listener warmed", got)
				}
			}
		})
	}
}

// A warmed first module makes another module a swap, and so does a module
// a node brought with it; the warmed module itself is no swap.
func TestSwappingAfterAWarmedFirstModule(t *testing.T) {
	g := newGroup(nil, 0)
	g.warmed["p"] = "b"
	if swapping(g, "p", "b") {
		t.Error("the warmed first module sent again counts as a swap")
	}
	if !swapping(g, "p", "c") {
		t.Error("another module than the warmed first one is not a swap")
	}
	g.held["p"] = heldUnknown // a node came running a module not known here
	if !swapping(g, "p", "b") {
		t.Error("the warmed module, to a node that came running another one, is not a swap")
	}
}
