package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/wasmxds/wasmxds/internal/bootstrap"
)

// statusJSONPlugins returns node's plugins as `wasmxds status --json` prints
// them (nodes[].plugins[]).
func statusJSONPlugins(s *server, nodeID string) (map[string]nodePlugin, error) {
	out, err := exec.Command(tools.wasmxds, "status", "--json", "--server", "http://"+s.adminAddr).Output()
	if err != nil {
		return nil, fmt.Errorf("wasmxds status --json: %w", err)
	}
	var st struct {
		Nodes []struct {
			ID      string       `json:"id"`
			Plugins []nodePlugin `json:"plugins"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return nil, err
	}
	for _, n := range st.Nodes {
		if n.ID == nodeID {
			plugins := map[string]nodePlugin{}
			for _, p := range n.Plugins {
				plugins[p.Name] = p
			}
			return plugins, nil
		}
	}
	return nil, fmt.Errorf("node %s not in wasmxds status --json", nodeID)
}

// ecdsModuleURL returns the module URL of Envoy's config of plugin name
// (its /config_dump of ECDS filters), and whether that config sets
// nack_on_code_cache_miss.
func ecdsModuleURL(e *envoy, name string) (url string, nackOnMiss bool, err error) {
	body, err := e.admin("/config_dump?resource=ecds_filters")
	if err != nil {
		return "", false, err
	}
	var dump struct {
		Configs []struct {
			Filter struct {
				Name        string `json:"name"`
				TypedConfig struct {
					Config struct {
						VMConfig struct {
							NackOnCodeCacheMiss bool `json:"nack_on_code_cache_miss"`
							Code                struct {
								Remote struct {
									HTTPURI struct {
										URI string `json:"uri"`
									} `json:"http_uri"`
								} `json:"remote"`
							} `json:"code"`
						} `json:"vm_config"`
					} `json:"config"`
				} `json:"typed_config"`
			} `json:"ecds_filter"`
		} `json:"configs"`
	}
	if err := json.Unmarshal([]byte(body), &dump); err != nil {
		return "", false, err
	}
	for _, c := range dump.Configs {
		if c.Filter.Name == "wasmxds."+name {
			vm := c.Filter.TypedConfig.Config.VMConfig
			return vm.Code.Remote.HTTPURI.URI, vm.NackOnCodeCacheMiss, nil
		}
	}
	return "", false, fmt.Errorf("envoy holds no ECDS config wasmxds.%s", name)
}

// TestFirstModuleConfirmed adds two FAIL_CLOSE plugins, one after the
// other, to a listener that serves steady traffic: first a healthy module,
// then one whose VM refuses to start. Envoy fetches each first module as
// the listener warms and ACKs it before the VM exists; wasmxds confirms it
// afterwards. The healthy plugin ends running, with its plain config (no
// attempt mark, no nack_on_code_cache_miss), and no request fails while it
// warms. The broken one shows failed with a reason in `wasmxds status
// --json` within 15 s, and no request sees the FAIL_CLOSE stand-in (403)
// while its listener warms: requests are refused first by the failed
// plugin itself (503), as without the confirmation, and only then by the
// stand-in the refused module is replaced with.
func TestFirstModuleConfirmed(t *testing.T) {
	requireFull(t)
	f := newSingle(t, serverOptions{}, "first", nil)
	firstModuleConfirmed(t, f, "filters/first-vm-start-fails:v1", "http://"+f.srv.httpAddr+"/", 15*time.Second)
}

// firstModuleConfirmed runs TestFirstModuleConfirmed on f, with the broken
// module pushed as badRef; Envoy fetches modules from URLs under urlPrefix,
// and the broken plugin is to show failed within failWithin of its edit.
func firstModuleConfirmed(t *testing.T, f *single, badRef, urlPrefix string, failWithin time.Duration) {
	t.Helper()
	bad := filepath.Join(repoRoot(), "e2e/testdata/vm-start-fails.wasm")
	if _, err := shared.registry.pushWasmxds(nil, bad, badRef); err != nil {
		t.Fatal(err)
	}
	app := f.app
	f.waitFor(t, func() error {
		r, err := get(f.port, "/")
		if err == nil && (r.status != http.StatusOK || r.body != upstreamBody) {
			err = fmt.Errorf("status %d body %q, want the upstream's 200", r.status, r.body)
		}
		return err
	})
	l := startLoad(t, f.port)
	defer l.stop()

	// A healthy first module: no request fails, and it ends running with
	// the plain config.
	good := plugin{name: "good", app: app, url: oci(refAddHeader), config: addHeader("x-good", "one"), failStrategy: "FAIL_CLOSE"}
	f.srv.writeSpec("good.yaml", good.spec())
	f.waitFor(t, expectHeader(f.port, "x-good", "one"))
	eventually(t, applyTimeout, func() error {
		plugins, err := statusJSONPlugins(f.srv, f.envoy.nodeID)
		if err != nil {
			return err
		}
		if p := plugins["good"]; p.State != "running" {
			return fmt.Errorf("plugin good: %+v, want running", p)
		}
		url, nackOnMiss, err := ecdsModuleURL(f.envoy, "good")
		if err != nil {
			return err
		}
		if strings.Contains(url, "?") || nackOnMiss || !strings.HasPrefix(url, urlPrefix) {
			return fmt.Errorf("envoy runs good from %s (nack_on_code_cache_miss %t), want the plain config from %s",
				url, nackOnMiss, urlPrefix)
		}
		_, err = ackedVersions(f.srv, f.envoy.nodeID)
		return err
	})
	if err := metricAtLeast(f.srv, "wasmxds_xds_module_confirmations_total", 1); err != nil {
		t.Errorf("the healthy first module was not confirmed: %v", err)
	}
	healthy := map[string]int{}
	for name := range loadClients {
		healthy[name] = len(l.snapshot(name))
		for _, s := range l.snapshot(name) {
			if s.err != nil || s.r.status != http.StatusOK {
				t.Errorf("%s client, while the healthy first module warmed: %v %d %q", name, s.err, s.r.status, s.r.body)
			}
		}
	}

	// A first module whose VM refuses to start.
	start := time.Now()
	broken := plugin{name: "broken", app: app, url: oci(badRef), failStrategy: "FAIL_CLOSE"}
	f.srv.writeSpec(pluginFile, broken.spec())
	var failed nodePlugin
	eventually(t, failWithin, func() error {
		plugins, err := statusJSONPlugins(f.srv, f.envoy.nodeID)
		if err != nil {
			return err
		}
		failed = plugins["broken"]
		if failed.State != "failed" || failed.Reason == "" || failed.SHA256 != fileSHA256(t, bad) {
			return fmt.Errorf("plugin broken: %+v, want failed with a reason", failed)
		}
		return nil
	})
	t.Logf("failed %s after the edit: %s", time.Since(start).Round(time.Millisecond), failed.Reason)
	if !strings.Contains(failed.Reason, "VM") {
		t.Errorf("reason %q does not say the VM failed", failed.Reason)
	}
	// The refused module is replaced with the FAIL_CLOSE stand-in.
	eventually(t, applyTimeout, steady(steadyReplies, func() error {
		r, err := get(f.port, "/")
		if err == nil && r.status != http.StatusForbidden {
			err = fmt.Errorf("status %d body %q, want the stand-in's 403", r.status, r.body)
		}
		return err
	}))
	l.stop()

	// New connections: the upstream's 200 until the listener with the
	// broken plugin took over, then the failed plugin's 503, then the
	// stand-in's 403, never a 403 before the first 503.
	seen := map[int]int{}
	var order []int
	for _, s := range l.snapshot("fresh-conn")[healthy["fresh-conn"]:] {
		if s.err != nil {
			t.Errorf("fresh-conn client, %s: %v", s.at.Format("15:04:05.000"), s.err)
			continue
		}
		if seen[s.r.status]++; len(order) == 0 || order[len(order)-1] != s.r.status {
			order = append(order, s.r.status)
		}
	}
	t.Logf("new connections after the broken plugin's edit: statuses in turn %v, counts %v", order, seen)
	first503, first403 := -1, -1
	for i, st := range order {
		switch {
		case st == http.StatusServiceUnavailable && first503 < 0:
			first503 = i
		case st == http.StatusForbidden && first403 < 0:
			first403 = i
		case st != http.StatusOK && st != http.StatusServiceUnavailable && st != http.StatusForbidden:
			t.Errorf("a new connection got status %d", st)
		}
	}
	if first403 >= 0 && (first503 < 0 || first403 < first503) {
		t.Errorf("the FAIL_CLOSE stand-in (403) answered before the failed plugin did (503): statuses in turn %v", order)
	}
	// Envoy's own failure answer holds until wasmxds learns of it, so the
	// 403s that follow are the refusal, not the warming.
	if first503 < 0 {
		t.Errorf("no new connection met the failed plugin (503) before its stand-in: statuses in turn %v", order)
	}
}

// snapshot returns the samples of one load client so far.
func (l *load) snapshot(name string) []sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]sample(nil), l.samples[name]...)
}

// TestSwapWhileTheFirstModuleIsConfirmed swaps a plugin's module in the
// moment after the node ACKed its first module, downloaded, while the first
// module's confirmation is on its way. The listener has warmed with the
// first module by then, and Envoy fetches another module only when a cache
// miss is NACKed: sent as a first module, the new one was never fetched,
// and the plugin stayed unloaded, its failure policy in front of every
// request, until the next change.
//
// The moment is made wide: the node's ADS connection goes through a relay
// that delays it by 300 ms each way, so that its ACK reaches wasmxds after
// the module server has seen the download (which does not go through the
// relay), and the confirmation's round trip takes over 600 ms; the new
// module is pulled beforehand (a plugin for other nodes uses it), so that
// the edit lands within that round trip.
func TestSwapWhileTheFirstModuleIsConfirmed(t *testing.T) {
	requireFull(t)
	mods := smallSwapModules(t, "filters/swap-early", 2)
	const app = "swap-early"
	p := plugin{name: "swap", app: app, url: oci(mods[0].ref)}
	other := plugin{name: "other", app: "elsewhere", url: oci(mods[1].ref)}
	f := newSingleServer(t, serverOptions{}, app, map[string]string{pluginFile: p.spec(), "other.yaml": other.spec()})
	relay := startDelayRelay(t, f.srv.xdsAddr, 300*time.Millisecond)
	f.envoy = newEnvoy(t, f.srv, app+"-node", map[string]string{"app": app},
		func(o *bootstrap.Options) { o.XDSAddress = relay })
	f.envoy.start()

	eventually(t, applyTimeout, func() error {
		st, err := debugStatus(f.srv)
		if err != nil {
			return err
		}
		plugins, err := st.nodePlugins(f.envoy.nodeID)
		if err != nil {
			return err
		}
		for _, n := range st.Nodes {
			if n.ID == f.envoy.nodeID && n.Types[resource.ExtensionConfigType].Acked != "" && plugins["swap"].State == "pending" {
				return nil
			}
		}
		return fmt.Errorf("the node has not ACKed its first module (plugin swap: %+v)", plugins["swap"])
	})
	p.url = oci(mods[1].ref)
	f.srv.writeSpec(pluginFile, p.spec())
	f.waitFor(t, expectEcho(f.port, "x-swap", mods[1].value))
	waitRunning(t, f.srv, f.envoy.nodeID, "swap")
}

// startDelayRelay relays TCP connections to target, each byte forwarded
// delay after it arrived, in order, both ways; it returns its address.
func startDelayRelay(t *testing.T, target string, delay time.Duration) string {
	t.Helper()
	return serveTCP(t, func(in net.Conn, keep func(net.Conn) bool) {
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			return
		}
		if !keep(out) {
			return
		}
		var wg sync.WaitGroup
		wg.Go(func() { delayCopy(out, in, delay) })
		delayCopy(in, out, delay)
		wg.Wait()
	})
}

// delayCopy copies src to dst, each chunk written delay after it was read,
// and closes both ends when either fails.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		due time.Time
		b   []byte
	}
	q := make(chan chunk, 4096)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range q {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.b); err != nil {
				src.Close()
				for range q {
				}
				return
			}
		}
		dst.Close()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{due: time.Now().Add(delay), b: append([]byte(nil), buf[:n]...)}
		}
		if err != nil {
			close(q)
			<-done
			return
		}
	}
}
