package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testpki"
)

const webAccess = `apiVersion: wasmxds.dev/v1alpha1
kind: NodeAccess
metadata: {name: web}
spec:
  principals: ["spiffe://example.org/web/*"]
  labels: {app: web}
`

// With client certificates required, a real Envoy bootstrapped with TLS
// files (as by `wasmxds bootstrap --tls-*`) gets its listener and Wasm filter over mTLS
// and downloads the module over mTLS (the module server refuses anyone
// else); an Envoy whose certificate does not grant the labels it claims
// gets nothing, and status says why.
func TestMTLSDeliversOnlyToGrantedNodes(t *testing.T) {
	requireFull(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "e2e CA")
	caFile := ca.Write(t, dir, "ca")
	serverCert, serverKey := ca.Issue(t, testpki.Names{CN: "wasmxds", IPs: []string{"127.0.0.1"}}).Write(t, dir, "server")
	webCert, webKey := ca.Issue(t, testpki.Names{URIs: []string{"spiffe://example.org/web/edge-1"}}).Write(t, dir, "web")
	otherCert, otherKey := ca.Issue(t, testpki.Names{URIs: []string{"spiffe://example.org/billing/1"}}).Write(t, dir, "other")

	port := freePort(t)
	up := startUpstream(t)
	srv := startServerWith(t, serverOptions{scheme: "https", args: []string{
		"--tls-cert-file", serverCert, "--tls-key-file", serverKey, "--client-ca-file", caFile,
	}}, func(s *server) {
		s.writeSpec("base.yaml", docs(listenerSpec("web", "web", port, "web-upstream"), clusterSpec("web-upstream", up), webAccess))
		s.writeSpec("plugin.yaml", plugin{name: "add-header", app: "web", url: shared.registry.ref(refAddHeader),
			failStrategy: "FAIL_CLOSE", config: map[string]any{"header": "x-wasm", "value": "over-mtls"}}.spec())
	})

	web := newEnvoy(t, srv, "web-1", map[string]string{"app": "web"},
		mutualTLS(caFile, webCert, webKey))
	web.start()
	eventually(t, applyTimeout, steady(steadyReplies, expectHeader(port, "x-wasm", "over-mtls")))
	// The module server requires client certificates, so a download is one
	// over mTLS: a TLS handshake and a 200 on the module cluster.
	for _, stat := range []string{"cluster.wasmxds_modules.ssl.handshake", "cluster.wasmxds_modules.upstream_rq_2xx"} {
		if n, err := web.stat(stat); err != nil || n < 1 {
			t.Errorf("%s = %d (%v), want ≥ 1: the module was not downloaded over mTLS; wasm stats:\n%s", stat, n, err, web.wasmStats())
		}
	}

	other := newEnvoy(t, srv, "web-2", map[string]string{"app": "web"},
		mutualTLS(caFile, otherCert, otherKey))
	other.launch()
	var st struct {
		Refused []struct{ Identity, NodeID, Reason string } `json:"refused"`
		Nodes   []struct{ ID string }                       `json:"nodes"`
	}
	eventually(t, 30*time.Second, func() error {
		if err := srv.get("/debug/status", &st); err != nil {
			return err
		}
		if len(st.Refused) == 0 {
			return fmt.Errorf("no refusal in /debug/status yet")
		}
		return nil
	})
	if r := st.Refused[0]; r.Identity != "spiffe://example.org/billing/1" || r.NodeID != "web-2" || !strings.Contains(r.Reason, "granted nothing") {
		t.Errorf("refusal = %+v", r)
	}
	for _, n := range st.Nodes {
		if n.ID == "web-2" {
			t.Errorf("the refused node is served: %+v", st.Nodes)
		}
	}
	dump, err := other.admin("/config_dump?resource=dynamic_active_clusters")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump, "web-upstream") || strings.Contains(dump, "wasmxds_modules") {
		t.Errorf("the refused Envoy holds pushed clusters:\n%s", dump)
	}
}

const apiAccess = `apiVersion: wasmxds.dev/v1alpha1
kind: NodeAccess
metadata: {name: api}
spec:
  principals: ["spiffe://example.org/api/*"]
  labels: {app: api}
`

// revokePlugins holds one add-header plugin per app, both setting x-wasm
// to value.
func revokePlugins(value string) string {
	return docs(
		plugin{name: "add-header-web", app: "web", url: shared.registry.ref(refAddHeader), failStrategy: "FAIL_CLOSE",
			config: map[string]any{"header": "x-wasm", "value": value}}.spec(),
		plugin{name: "add-header-api", app: "api", url: shared.registry.ref(refAddHeader), failStrategy: "FAIL_CLOSE",
			config: map[string]any{"header": "x-wasm", "value": value}}.spec())
}

// Withdrawing a connected Envoy's grant ends its ADS stream at once:
// status names it refused, and an edit made after that never reaches it
// (another Envoy, still granted, gets it) while it keeps serving its last
// configuration. Restoring the grant, it reconnects by itself and catches
// up.
func TestMTLSWithdrawnGrantStopsDeliveries(t *testing.T) {
	requireFull(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "e2e CA")
	caFile := ca.Write(t, dir, "ca")
	serverCert, serverKey := ca.Issue(t, testpki.Names{CN: "wasmxds", IPs: []string{"127.0.0.1"}}).Write(t, dir, "server")
	webCert, webKey := ca.Issue(t, testpki.Names{URIs: []string{"spiffe://example.org/web/edge-1"}}).Write(t, dir, "web")
	apiCert, apiKey := ca.Issue(t, testpki.Names{URIs: []string{"spiffe://example.org/api/edge-1"}}).Write(t, dir, "api")

	webPort, apiPort := freePort(t), freePort(t)
	up := startUpstream(t)
	srv := startServerWith(t, serverOptions{scheme: "https", args: []string{
		"--tls-cert-file", serverCert, "--tls-key-file", serverKey, "--client-ca-file", caFile,
	}}, func(s *server) {
		s.writeSpec("base.yaml", docs(listenerSpec("web", "web", webPort, "upstream"),
			listenerSpec("api", "api", apiPort, "upstream"), clusterSpec("upstream", up)))
		s.writeSpec("access-web.yaml", webAccess)
		s.writeSpec("access-api.yaml", apiAccess)
		s.writeSpec("plugin.yaml", revokePlugins("before-revoke"))
	})
	web := newEnvoy(t, srv, "web-1", map[string]string{"app": "web"},
		mutualTLS(caFile, webCert, webKey))
	api := newEnvoy(t, srv, "api-1", map[string]string{"app": "api"},
		mutualTLS(caFile, apiCert, apiKey))
	web.start()
	api.start()
	for _, port := range []int{webPort, apiPort} {
		eventually(t, applyTimeout, steady(steadyReplies, expectHeader(port, "x-wasm", "before-revoke")))
	}

	var st struct {
		Refused []struct{ Identity, NodeID, Reason string } `json:"refused"`
		Nodes   []struct{ ID string }                       `json:"nodes"`
	}
	withdrawn := func() error {
		if err := srv.get("/debug/status", &st); err != nil {
			return err
		}
		if slices.ContainsFunc(st.Nodes, func(n struct{ ID string }) bool { return n.ID == "web-1" }) {
			return fmt.Errorf("web-1 still connected: %+v", st.Nodes)
		}
		for _, r := range st.Refused {
			if r.NodeID == "web-1" && r.Identity == "spiffe://example.org/web/edge-1" && strings.Contains(r.Reason, "grant withdrawn") {
				return nil
			}
		}
		return fmt.Errorf("web-1's withdrawal not in refused: %+v", st.Refused)
	}
	start := time.Now()
	srv.removeSpec("access-web.yaml")
	eventually(t, 10*time.Second, withdrawn)
	t.Logf("web-1 refused %v after its grant was removed", time.Since(start).Round(time.Millisecond))
	if !slices.ContainsFunc(st.Nodes, func(n struct{ ID string }) bool { return n.ID == "api-1" }) {
		t.Errorf("api-1, still granted, is not connected: %+v", st.Nodes)
	}

	srv.writeSpec("plugin.yaml", revokePlugins("after-revoke"))
	eventually(t, applyTimeout, steady(steadyReplies, expectHeader(apiPort, "x-wasm", "after-revoke")))
	// The edit reached the granted Envoy; for a few seconds more, the
	// revoked one must keep serving its last configuration, without it.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := expectHeader(webPort, "x-wasm", "before-revoke")(); err != nil {
			t.Fatalf("web-1 after its grant was withdrawn: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	dump, err := web.admin("/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(dump, "after-revoke") {
		t.Error("web-1's config dump holds the edit made after its grant was withdrawn")
	}
	if !strings.Contains(dump, "before-revoke") {
		t.Error("web-1's config dump lost its last configuration")
	}

	// Envoy retries the stream with backoff (up to 30s between attempts).
	srv.writeSpec("access-web.yaml", webAccess)
	start = time.Now()
	eventually(t, applyTimeout+30*time.Second, steady(steadyReplies, expectHeader(webPort, "x-wasm", "after-revoke")))
	t.Logf("web-1 caught up %v after its grant was restored", time.Since(start).Round(time.Millisecond))
}
