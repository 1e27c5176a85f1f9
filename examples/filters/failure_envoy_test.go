package filters_test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// policyFilter is fail-on-header with a failure policy, and for FAIL_RELOAD
// a reload backoff of one second.
func policyFilter(name, policy string) map[string]any {
	f := wasmFilter("fail-on-header", name, name, "")
	pc := f["typed_config"].(map[string]any)["config"].(map[string]any)
	pc["failure_policy"] = policy
	if policy == "FAIL_RELOAD" {
		pc["reload_config"] = map[string]any{"backoff": map[string]any{"base_interval": "1s"}}
	}
	return f
}

var failHeader = map[string]string{"x-fail": "1"}

// TestFailurePoliciesInEnvoy makes fail-on-header panic in a real Envoy
// (one worker, so one VM per plugin) under each failure policy and checks
// what later requests see.
func TestFailurePoliciesInEnvoy(t *testing.T) {
	up := echoUpstream(t)
	e := startEnvoy(t, bootstrap(t, up.Listener.Addr().String(),
		listener("closed", policyFilter("closed", "FAIL_CLOSED")),
		listener("open", policyFilter("open", "FAIL_OPEN")),
		listener("reload", policyFilter("reload", "FAIL_RELOAD")),
	))

	// crash checks the VM serves, then makes it panic; it returns the VM id
	// and what the client of the failing request saw.
	crash := func(t *testing.T, name string) (string, result) {
		t.Helper()
		url := e.listeners[name] + "/"
		r := do(t, url, nil)
		id := r.header.Get("x-vm-id")
		if r.status != http.StatusOK || id == "" || r.header.Get("x-vm-requests") != "1" {
			t.Fatalf("%s before the failure: %d %v, want 200 from the first request of a VM", name, r.status, r.header)
		}
		failed := do(t, url, failHeader)
		e.waitLog(t, "request header x-fail: 1 (vm "+id+")", 10*time.Second)
		return id, failed
	}
	// The failing request itself is answered by Envoy, never the upstream.
	checkFailed := func(t *testing.T, r result) {
		t.Helper()
		if r.status != http.StatusServiceUnavailable || r.header.Get("x-echo-x-fail") != "" {
			t.Errorf("the failing request: %d %q %v, want a 503 from Envoy", r.status, r.body, r.header)
		}
	}

	var reloadedAfter time.Duration
	t.Run("FAIL_RELOAD serves later requests from a new VM", func(t *testing.T) {
		id, failed := crash(t, "reload")
		checkFailed(t, failed)
		start := time.Now()
		var seen []string
		for {
			r := do(t, e.listeners["reload"]+"/", nil)
			seen = append(seen, r.header.Get("x-vm-id"))
			if r.status == http.StatusOK {
				if got := r.header.Get("x-vm-id"); got == "" || got == id || r.header.Get("x-vm-requests") != "1" {
					t.Fatalf("first 200 after the failure: %v, want a new VM's first request", r.header)
				}
				break
			}
			if r.status != http.StatusServiceUnavailable {
				t.Fatalf("while the VM is down: status %d, want 503", r.status)
			}
			if time.Since(start) > 30*time.Second {
				t.Fatalf("no new VM 30s after the failure")
			}
			time.Sleep(100 * time.Millisecond)
		}
		reloadedAfter = time.Since(start)
		t.Logf("reloaded after %v and %d requests", reloadedAfter.Round(time.Millisecond), len(seen))
		if !strings.Contains(e.log(), "fail-on-header: vm ") {
			t.Error("no VM start logged")
		}
	})

	t.Run("FAIL_OPEN skips the filter", func(t *testing.T) {
		_, failed := crash(t, "open")
		checkFailed(t, failed)
		for range 3 {
			r := do(t, e.listeners["open"]+"/", failHeader)
			if r.status != http.StatusOK || r.header.Get("x-vm-id") != "" || r.header.Get("x-echo-x-fail") != "1" {
				t.Fatalf("after the failure: %d %v, want 200 from the upstream without the filter", r.status, r.header)
			}
		}
	})

	t.Run("FAIL_CLOSED refuses later requests", func(t *testing.T) {
		_, failed := crash(t, "closed")
		checkFailed(t, failed)
		// Longer than FAIL_RELOAD took to bring a VM back: no reload here.
		time.Sleep(max(reloadedAfter, 2*time.Second))
		for range 3 {
			if r := do(t, e.listeners["closed"]+"/", nil); r.status != http.StatusServiceUnavailable {
				t.Fatalf("after the failure: %d %v, want 503", r.status, r.header)
			}
		}
	})

	// Envoy logs the Go panic (the runtime writes it to stderr in pieces)
	// and the trap that stopped the VM.
	for _, want := range []string{"wasm log closed closed closed: panic: ",
		"failed: Uncaught RuntimeError: unreachable"} {
		if !strings.Contains(e.log(), want) {
			t.Errorf("Envoy's log has no %q", want)
		}
	}
}
