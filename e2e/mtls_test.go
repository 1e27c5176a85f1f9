package e2e

import (
	"fmt"
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

// With client certificates required, a real Envoy bootstrapped with
// `wasmxds bootstrap --tls-*` gets its listener and Wasm filter over mTLS
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
		"--tls-ca-file", caFile, "--tls-cert-file", webCert, "--tls-key-file", webKey)
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
		"--tls-ca-file", caFile, "--tls-cert-file", otherCert, "--tls-key-file", otherKey)
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
