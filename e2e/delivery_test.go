package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/wasmxds/wasmxds/internal/testproc"
)

// nodePlugin is one plugin's entry under nodes[].plugins in /debug/status.
type nodePlugin struct {
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	State  string `json:"state"`
	Reason string `json:"reason"`
}

// nodePlugins returns node's plugins from /debug/status.
func nodePlugins(s *server, nodeID string) (map[string]nodePlugin, error) {
	st, err := debugStatus(s)
	if err != nil {
		return nil, err
	}
	return st.nodePlugins(nodeID)
}

// nodePlugins returns node's plugins by name.
func (st status) nodePlugins(nodeID string) (map[string]nodePlugin, error) {
	for _, n := range st.Nodes {
		if n.ID == nodeID {
			out := map[string]nodePlugin{}
			for _, p := range n.Plugins {
				out[p.Name] = p
			}
			return out, nil
		}
	}
	return nil, fmt.Errorf("node %s not in /debug/status", nodeID)
}

// swapModule is one module of a swap series and the reply that shows it.
type swapModule struct {
	ref    string
	config map[string]any
	value  string // x-swap once this module runs
}

// smallSwapModules writes n distinct small modules (testdata/swap.wasm with
// its header value rewritten to v00, v01, …) and pushes them.
func smallSwapModules(t *testing.T, repo string, n int) []swapModule {
	t.Helper()
	base, err := os.ReadFile(filepath.Join(repoRoot(), "e2e/testdata/swap.wasm"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(base, []byte("v00")) != 1 {
		t.Fatal("testdata/swap.wasm must contain v00 exactly once")
	}
	return pushSeries(t, repo, n, func(i int) ([]byte, map[string]any, string) {
		v := fmt.Sprintf("v%02d", i)
		return bytes.Replace(base, []byte("v00"), []byte(v), 1), nil, v
	})
}

// bigSwapModules writes n distinct copies of the add-header example (about
// 2 MB, a plain-Go module) that differ in an appended custom section, each
// configured to add x-swap: vNN.
func bigSwapModules(t *testing.T, repo string, n int) []swapModule {
	t.Helper()
	base, err := os.ReadFile(filterPath("add-header"))
	if err != nil {
		t.Fatal(err)
	}
	return pushSeries(t, repo, n, func(i int) ([]byte, map[string]any, string) {
		v := fmt.Sprintf("v%02d", i)
		return append(slices.Clone(base), customSection("wasmxds-e2e", v)...), addHeader("x-swap", v), v
	})
}

// customSection is a Wasm custom section (id 0), which engines ignore.
func customSection(name, payload string) []byte {
	body := append([]byte{byte(len(name))}, name...)
	body = append(body, payload...)
	return append([]byte{0, byte(len(body))}, body...)
}

func pushSeries(t *testing.T, repo string, n int, make func(int) ([]byte, map[string]any, string)) []swapModule {
	t.Helper()
	dir := t.TempDir()
	var out []swapModule
	for i := range n {
		b, cfg, v := make(i)
		file := filepath.Join(dir, v+".wasm")
		if err := os.WriteFile(file, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ref := fmt.Sprintf("%s:%s", repo, v)
		if _, err := shared.registry.pushWasmxds(nil, file, ref); err != nil {
			t.Fatal(err)
		}
		out = append(out, swapModule{ref: ref, config: cfg, value: v})
	}
	return out
}

// TestModuleSwapUnderLoad swaps a plugin's module again and again while a
// keep-alive client and a new-connection-per-request client send a steady
// stream of requests. No request may fail, the keep-alive connection (opened
// before the first swap) must see every new module, and the listener must
// never change: a swap is an ECDS-only update. It records how long each
// new module took to show.
func TestModuleSwapUnderLoad(t *testing.T) {
	requireFull(t)
	for _, c := range []struct {
		name   string
		swaps  int
		series func(*testing.T, string, int) []swapModule
	}{
		{"small", 20, smallSwapModules},
		{"2MB", 5, bigSwapModules},
	} {
		t.Run(c.name, func(t *testing.T) {
			mods := c.series(t, "filters/swap-"+strings.ToLower(c.name), c.swaps+1)
			swapUnderLoad(t, "swap-"+strings.ToLower(c.name), mods)
		})
	}
}

func swapUnderLoad(t *testing.T, app string, mods []swapModule) {
	p := plugin{name: "swap", app: app, url: oci(mods[0].ref), config: mods[0].config}
	f := newSingle(t, serverOptions{}, app, map[string]string{pluginFile: p.spec()})
	f.waitFor(t, func() error {
		r, err := get(f.port, "/")
		if err != nil {
			return err
		}
		if got := r.header.Get("x-echo-x-swap") + r.header.Get("x-swap"); got != mods[0].value {
			return fmt.Errorf("status %d, x-swap %q, want %q", r.status, got, mods[0].value)
		}
		return nil
	})
	listener := waitAcked(t, f.srv, f.envoy.nodeID)[resource.ListenerType]

	l := startLoad(t, f.port)
	defer l.stop()
	var keepAlive, fresh []time.Duration
	requests := 0
	for i, m := range mods[1:] {
		p.url, p.config = oci(m.ref), m.config
		ka, fc := swapOnce(t, f, l, fmt.Sprintf("swap %d", i+1), p.spec(), m.value)
		keepAlive, fresh = append(keepAlive, ka.converged), append(fresh, fc.converged)
		requests += ka.requests + fc.requests
	}
	l.stop()
	if got := waitAcked(t, f.srv, f.envoy.nodeID)[resource.ListenerType]; got != listener {
		t.Errorf("the listener changed during module swaps: %s → %s", listener, got)
	}
	plugins, err := nodePlugins(f.srv, f.envoy.nodeID)
	if err != nil {
		t.Fatal(err)
	}
	if p := plugins["swap"]; p.State != "running" {
		t.Errorf("after the swaps the node reports %+v, want running", p)
	}
	line := fmt.Sprintf("%d module swaps (%s), %d requests (failures fail the test): edit → new module seen, p50/max: "+
		"keep-alive connection %s/%s, new connections %s/%s", len(mods)-1, app, requests,
		median(keepAlive), slices.Max(keepAlive).Round(time.Millisecond), median(fresh), slices.Max(fresh).Round(time.Millisecond))
	t.Log(line)
	writeResults(t, "module-"+app, []string{line})
}

// swapOnce applies one edit and waits until both clients have seen the new
// module on 20 consecutive requests; any failed request fails the test. It
// returns what each client saw, with how long it took to see the new module.
func swapOnce(t *testing.T, f *single, l *load, what, spec, value string) (keepAlive, fresh convergence) {
	t.Helper()
	// The small module adds a request header (the upstream echoes it), the
	// add-header example a response header.
	isNew := func(r reply) bool { return r.header.Get("x-echo-x-swap") == value || r.header.Get("x-swap") == value }
	from, edit, err := l.applyEdit(f, spec, 20, value, isNew)
	ka, fc := l.summary("keep-alive", from["keep-alive"], edit, isNew), l.summary("fresh-conn", from["fresh-conn"], edit, isNew)
	for name, c := range map[string]convergence{"keep-alive": ka, "fresh-conn": fc} {
		for _, e := range c.failures {
			t.Errorf("%s, %s client: failed request: %s", what, name, e)
		}
	}
	if err != nil {
		t.Fatalf("%s: %v\nEnvoy's Wasm stats:\n%s", what, err, f.envoy.wasmStats())
	}
	return ka, fc
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2].Round(time.Millisecond)
}

// TestRefusedModuleFailsOnItsNode swaps a plugin to a module whose VM
// refuses to start, in the same edit as another plugin's config change. The
// node must report the plugin failed with Envoy's reason within 15 s, keep
// running the plugin's previous module, and apply the other plugin's edit.
func TestRefusedModuleFailsOnItsNode(t *testing.T) {
	requireFull(t)
	mods := smallSwapModules(t, "filters/refuse-swap", 1)
	bad := filepath.Join(repoRoot(), "e2e/testdata/vm-start-fails.wasm")
	if _, err := shared.registry.pushWasmxds(nil, bad, "filters/vm-start-fails:v1"); err != nil {
		t.Fatal(err)
	}
	const app = "refuse"
	swap := plugin{name: "swap", app: app, url: oci(mods[0].ref)}
	good := plugin{name: "good", app: app, url: oci(refAddHeader), config: addHeader("x-good", "one")}
	f := newSingle(t, serverOptions{}, app, map[string]string{pluginFile: swap.spec(), "good.yaml": good.spec()})
	f.waitFor(t, func() error {
		if err := expectHeader(f.port, "x-good", "one")(); err != nil {
			return err
		}
		return expectEcho(f.port, "x-swap", "v00")()
	})

	start := time.Now()
	swap.url = oci("filters/vm-start-fails:v1")
	good.config = addHeader("x-good", "two")
	f.srv.writeSpec(pluginFile, swap.spec())
	f.srv.writeSpec("good.yaml", good.spec())
	badSHA := fileSHA256(t, bad)
	var failed nodePlugin
	eventually(t, 15*time.Second, func() error {
		plugins, err := nodePlugins(f.srv, f.envoy.nodeID)
		if err != nil {
			return err
		}
		failed = plugins["swap"]
		if failed.State != "failed" || failed.SHA256 != badSHA || failed.Reason == "" {
			return fmt.Errorf("plugin swap: %+v, want failed with module %s and a reason", failed, badSHA)
		}
		if g := plugins["good"]; g.State != "running" {
			return fmt.Errorf("plugin good: %+v, want running", g)
		}
		return nil
	})
	t.Logf("failed after %s: %s", time.Since(start).Round(time.Millisecond), failed.Reason)
	if !strings.Contains(failed.Reason, "VM") {
		t.Errorf("reason %q does not say the VM failed", failed.Reason)
	}
	// The other plugin's edit applied; the refused plugin keeps its module.
	f.waitFor(t, func() error {
		if err := expectHeader(f.port, "x-good", "two")(); err != nil {
			return err
		}
		return expectEcho(f.port, "x-swap", "v00")()
	})
}

// expectEcho polls until the upstream saw request header name with value.
func expectEcho(port int, name, want string) func() error {
	return expectHeader(port, "x-echo-"+name, want)
}

func fileSHA256(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// TestFiltersOnly runs configs/filters-only/envoy.yaml, an Envoy with its
// own static listener and cluster, against wasmxds serving
// configs/filters-only/plugins.yaml: the listener's config_discovery filter
// wasmxds.greeting gets the plugin's Wasm filter, whose module comes through
// the wasmxds_modules cluster sent over CDS; an edit reaches it as well.
func TestFiltersOnly(t *testing.T) {
	requireFull(t)
	dir := filepath.Join(repoRoot(), "configs/filters-only")
	specs, err := os.ReadFile(filepath.Join(dir, "plugins.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	spec := strings.Replace(string(specs), "oci://127.0.0.1:5000/filters/add-header:v1", oci(refAddHeader), 1)
	up := startUpstream(t)
	srv := startServerWith(t, serverOptions{}, func(s *server) { s.writeSpec("plugins.yaml", spec) })
	e := filtersOnlyEnvoy(t, dir, srv, up)
	port := e.listenPort

	eventually(t, applyTimeout, steady(steadyReplies, expectHeader(port, "x-wasm", "hello from wasmxds")))
	waitRunning(t, srv, e.nodeID, "greeting")
	srv.writeSpec("plugins.yaml", strings.Replace(spec, "hello from wasmxds", "edited", 1))
	eventually(t, applyTimeout, steady(steadyReplies, expectHeader(port, "x-wasm", "edited")))
}

// customEnvoy is an envoy running the example bootstrap, its ports
// and addresses moved to free ones.
type customEnvoy struct {
	*envoy
	listenPort int
}

func filtersOnlyEnvoy(t *testing.T, dir string, srv *server, upstream string) customEnvoy {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "envoy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	e := &envoy{t: t, nodeID: "filters-only-1", adminPort: freePort(t),
		bootstrap: filepath.Join(tmp, "envoy.yaml"), logPath: filepath.Join(tmp, "envoy.log")}
	listen := freePort(t)
	upHost, upPort, _ := strings.Cut(upstream, ":")
	xdsHost, xdsPort, _ := strings.Cut(srv.xdsAddr, ":")
	cfg := strings.NewReplacer(
		"port_value: 10000", fmt.Sprintf("port_value: %d", listen),
		"{address: 127.0.0.1, port_value: 8080}", fmt.Sprintf("{address: %s, port_value: %s}", upHost, upPort),
		"{address: 127.0.0.1, port_value: 18000}", fmt.Sprintf("{address: %s, port_value: %s}", xdsHost, xdsPort),
		"port_value: 9901", fmt.Sprintf("port_value: %d", e.adminPort),
	).Replace(string(b))
	if err := os.WriteFile(e.bootstrap, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	testproc.DumpOnFailure(t, "envoy "+e.nodeID, e.logPath)
	t.Cleanup(func() {
		if e.proc != nil {
			e.proc.Stop()
		}
	})
	e.start()
	return customEnvoy{envoy: e, listenPort: listen}
}

// waitRunning polls until /debug/status says node runs plugin name.
func waitRunning(t *testing.T, s *server, nodeID, name string) {
	t.Helper()
	eventually(t, applyTimeout, func() error {
		plugins, err := nodePlugins(s, nodeID)
		if err != nil {
			return err
		}
		if p := plugins[name]; p.State != "running" {
			return fmt.Errorf("plugin %s on %s: %+v", name, nodeID, p)
		}
		return nil
	})
}
