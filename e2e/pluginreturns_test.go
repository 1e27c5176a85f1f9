package e2e

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestPluginReturnsWithAnotherModule removes a FAIL_CLOSE plugin from a
// listener, then adds it back with a module Envoy has never fetched, while
// new and keep-alive connections keep coming. No request may fail or see
// the FAIL_CLOSE stand-in (403).
//
//   - While the listener that carried the plugin drains (Envoy's drain time,
//     600 s by default), Envoy keeps the plugin's filter config: the new
//     module is a swap, which Envoy fetches before it lets go of the old one.
//     Sent as a first module there, it would be ACKed and never fetched.
//   - Once that listener has drained, Envoy has dropped the filter config:
//     the plugin comes back on a listener that warms, and its module is
//     fetched as a first module, before the listener takes traffic. A swap's
//     cache-miss NACK there would end the warming and put the stand-in in
//     front of traffic until the download and the re-push.
func TestPluginReturnsWithAnotherModule(t *testing.T) {
	requireFull(t)
	for _, tc := range []struct {
		name    string
		drained bool
	}{{"old listener draining", false}, {"old listener drained", true}} {
		t.Run(tc.name, func(t *testing.T) {
			app := "returns"
			if tc.drained {
				app = "returns-drained"
			}
			f := newSingleServer(t, serverOptions{}, app, nil)
			f.envoy = newEnvoy(t, f.srv, app+"-node", map[string]string{"app": app})
			if tc.drained {
				f.envoy.args = []string{"--drain-time-s", "1"}
			}
			f.envoy.start()

			const file = "returns.yaml"
			first := plugin{name: "returns", app: app, url: oci(refAddHeader), config: addHeader("x-returns", "first"),
				failStrategy: "FAIL_CLOSE"}
			f.srv.writeSpec(file, first.spec())
			f.waitFor(t, expectHeader(f.port, "x-returns", "first"))
			waitRunning(t, f.srv, f.envoy.nodeID, "returns")

			// The plugin leaves: the listener goes on without it.
			f.srv.removeSpec(file)
			f.waitFor(t, func() error {
				r, err := get(f.port, "/")
				if err != nil {
					return err
				}
				if r.status != http.StatusOK || r.header.Get("x-returns") != "" {
					return fmt.Errorf("status %d, x-returns %q: want the upstream's 200 without the plugin",
						r.status, r.header.Get("x-returns"))
				}
				return nil
			})
			if tc.drained {
				// Envoy drops the filter config once no listener names it.
				eventually(t, 30*time.Second, func() error {
					if url, _, err := ecdsModuleURL(f.envoy, "returns"); err == nil {
						return fmt.Errorf("envoy still holds wasmxds.returns (%s)", url)
					}
					return nil
				})
			} else if _, _, err := ecdsModuleURL(f.envoy, "returns"); err != nil {
				t.Fatalf("the draining listener's filter config: %v", err)
			}

			// It comes back with a module Envoy has never fetched.
			l := startLoad(t, f.port)
			defer l.stop()
			back := first
			back.url, back.config = oci(refConfigEcho), map[string]any{"back": tc.name}
			f.srv.writeSpec(file, back.spec())
			f.waitFor(t, expectHeader(f.port, "x-plugin-config", fmt.Sprintf(`{"back":%q}`, tc.name)))
			waitRunning(t, f.srv, f.envoy.nodeID, "returns")
			l.stop()
			for name := range loadClients {
				samples := l.snapshot(name)
				statuses := map[int]int{}
				for _, s := range samples {
					if s.err != nil && tc.drained && name == "keep-alive" {
						// With a drain time of 1 s, Envoy closes the
						// connections of the listener the plugin's return
						// replaced a second later: a request sent as it
						// closes sees EOF. The statuses are the point.
						t.Logf("%s client, %s: %v", name, s.at.Format("15:04:05.000"), s.err)
						continue
					}
					if s.err != nil {
						t.Errorf("%s client, %s: %v", name, s.at.Format("15:04:05.000"), s.err)
						continue
					}
					statuses[s.r.status]++
					if s.r.status != http.StatusOK {
						t.Errorf("%s client, %s: status %d body %q while the plugin came back", name,
							s.at.Format("15:04:05.000"), s.r.status, s.r.body)
					}
				}
				t.Logf("%s client: %d requests while the plugin came back, statuses %v", name, len(samples), statuses)
			}
		})
	}
}
