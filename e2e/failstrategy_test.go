package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
)

// fail-on-header (an example filter) panics on a request with x-fail: 1 and
// marks every other response with its VM's id.
const (
	vmIDHeader = "x-vm-id"
	failHeader = "x-fail"
)

// getFailing sends GET / through port with x-fail: 1 on a new connection.
func getFailing(port int) (reply, error) {
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("User-Agent", "wasmxds-e2e")
	req.Header.Set(failHeader, "1")
	resp, err := freshClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}, err
}

// vmIDs sends requests through port until it has seen the VM of every
// Envoy worker (new connections spread over the workers) and returns their
// ids.
func vmIDs(t *testing.T, port int) []string {
	t.Helper()
	var ids []string
	for range 200 {
		r, err := get(port, "/")
		if err != nil || r.status != http.StatusOK || r.header.Get(vmIDHeader) == "" {
			t.Fatalf("before the failure: %v %d %v, want 200 with %s", err, r.status, r.header, vmIDHeader)
		}
		if id := r.header.Get(vmIDHeader); !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
		if len(ids) == envoyConcurrency {
			return ids
		}
	}
	t.Fatalf("200 requests saw the VMs %v, want one per worker (%d)", ids, envoyConcurrency)
	return nil
}

// crashVMs sends requests with x-fail: 1 until Envoy's log shows that each
// VM in ids panicked, and returns the statuses the failing requests got.
func crashVMs(t *testing.T, e *envoy, port int, ids []string) []int {
	t.Helper()
	var statuses []int
	crashed := func() bool {
		log, _ := os.ReadFile(e.logPath)
		for _, id := range ids {
			if !strings.Contains(string(log), "request header x-fail: 1 (vm "+id+")") {
				return false
			}
		}
		return true
	}
	eventually(t, applyTimeout, func() error {
		if crashed() {
			return nil
		}
		r, err := getFailing(port)
		if err != nil {
			return err
		}
		statuses = append(statuses, r.status)
		return fmt.Errorf("not every VM of %v has panicked yet (statuses %v)", ids, statuses)
	})
	return statuses
}

// TestRuntimeFailureFollowsFailStrategy makes a filter panic in every
// worker of a real Envoy, once per failStrategy, and checks what later
// requests get: FAIL_CLOSE refuses them (503), FAIL_OPEN passes them
// without the filter, FAIL_RELOAD serves them from new VMs.
func TestRuntimeFailureFollowsFailStrategy(t *testing.T) {
	requireFull(t)
	t.Parallel()
	const app = "failstrategy"
	strategies := []string{"FAIL_CLOSE", "FAIL_OPEN", "FAIL_RELOAD"}
	ports := map[string]int{}
	var listeners, plugins []string
	for _, s := range strategies {
		ports[s] = freePort(t)
		name := strings.ToLower(strings.ReplaceAll(s, "_", "-"))
		listeners = append(listeners, listenerSpec(name, app, ports[s], app+"-upstream"))
		plugins = append(plugins, plugin{name: name, app: app, url: oci(refFailOn), failStrategy: s,
			ports: []int{ports[s]}}.spec())
	}
	f := newSingle(t, serverOptions{}, app, map[string]string{
		"listeners.yaml": docs(listeners...), pluginFile: docs(plugins...)})

	for _, s := range strategies {
		port := ports[s]
		f.waitFor(t, func() error {
			r, err := get(port, "/")
			if err == nil && (r.status != http.StatusOK || r.header.Get(vmIDHeader) == "") {
				err = fmt.Errorf("%s: status %d, headers %v, want 200 with %s", s, r.status, r.header, vmIDHeader)
			}
			return err
		})
	}
	// A first module is confirmed and then settles on its plain config:
	// each of those updates gives the plugin new VMs, so the VMs to crash
	// are those of the settled config.
	for _, s := range strategies {
		name := strings.ToLower(strings.ReplaceAll(s, "_", "-"))
		eventually(t, applyTimeout, func() error { return settled(f, name) })
	}

	t.Run("FAIL_CLOSE", func(t *testing.T) {
		port := ports["FAIL_CLOSE"]
		ids := vmIDs(t, port)
		t.Logf("failing requests got %v", crashVMs(t, f.envoy, port, ids))
		holds(t, "after every VM failed", func() error {
			r, err := get(port, "/")
			if err == nil && (r.status != http.StatusServiceUnavailable || r.body == upstreamBody) {
				err = fmt.Errorf("status %d body %q, want a 503 from Envoy", r.status, r.body)
			}
			return err
		})
	})

	t.Run("FAIL_OPEN", func(t *testing.T) {
		port := ports["FAIL_OPEN"]
		ids := vmIDs(t, port)
		t.Logf("failing requests got %v", crashVMs(t, f.envoy, port, ids))
		// Even the request that made the filter fail now passes.
		holds(t, "after every VM failed", func() error {
			r, err := getFailing(port)
			if err == nil && (r.status != http.StatusOK || r.body != upstreamBody ||
				r.header.Get(vmIDHeader) != "" || r.header.Get("x-echo-x-fail") != "1") {
				err = fmt.Errorf("status %d body %q headers %v, want the upstream's 200 without the filter",
					r.status, r.body, r.header)
			}
			return err
		})
	})

	t.Run("FAIL_RELOAD", func(t *testing.T) {
		port := ports["FAIL_RELOAD"]
		ids := vmIDs(t, port)
		t.Logf("failing requests got %v", crashVMs(t, f.envoy, port, ids))
		var refused []int
		f.waitFor(t, func() error {
			r, err := get(port, "/")
			if err != nil {
				return err
			}
			if r.status != http.StatusOK {
				refused = append(refused, r.status)
				return fmt.Errorf("status %d body %q, want 200 from a new VM", r.status, r.body)
			}
			if id := r.header.Get(vmIDHeader); id == "" || slices.Contains(ids, id) {
				return fmt.Errorf("%s = %q, want a VM other than the failed %v", vmIDHeader, id, ids)
			}
			return nil
		})
		t.Logf("answers before new VMs served: %v", refused)
	})
}

// settled reports, as an error until it holds, whether plugin name runs on
// f's Envoy with its plain config: confirmed, with no attempt mark.
func settled(f *single, name string) error {
	plugins, err := statusJSONPlugins(f.srv, f.envoy.nodeID)
	if err != nil {
		return err
	}
	if p := plugins[name]; p.State != "running" {
		return fmt.Errorf("plugin %s: %+v, want running", name, p)
	}
	url, nackOnMiss, err := ecdsModuleURL(f.envoy, name)
	if err != nil {
		return err
	}
	if strings.Contains(url, "?") || nackOnMiss {
		return fmt.Errorf("envoy runs %s from %s (nack_on_code_cache_miss %t), want the plain config", name, url, nackOnMiss)
	}
	return nil
}
