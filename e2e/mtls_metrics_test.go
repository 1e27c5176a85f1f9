package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"strings"
	"testing"
	"time"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/wasmxds/wasmxds/internal/testpki"
	"github.com/wasmxds/wasmxds/internal/xdstest"
)

// Each team may only be its own nodes.
const teamsAccess = `apiVersion: wasmxds.dev/v1alpha1
kind: NodeAccess
metadata: {name: team-a}
spec:
  principals: ["spiffe://example.org/team-a/*"]
  labels: {app: web}
  nodeIDs: ["a-*"]
---
apiVersion: wasmxds.dev/v1alpha1
kind: NodeAccess
metadata: {name: team-b}
spec:
  principals: ["spiffe://example.org/team-b/*"]
  labels: {app: web}
  nodeIDs: ["b-*"]
`

// With client certificates, a real Envoy reports its stats over mTLS as
// itself and its runtime shows in status; a metrics stream whose
// certificate is another team's, claiming that Envoy's node id, is
// refused like an ADS stream would be, and nothing it sends is kept.
func TestMTLSMetricsOnlyAsItself(t *testing.T) {
	requireFull(t)
	dir := t.TempDir()
	ca := testpki.NewCA(t, "e2e CA")
	caFile := ca.Write(t, dir, "ca")
	serverCert, serverKey := ca.Issue(t, testpki.Names{CN: "wasmxds", IPs: []string{"127.0.0.1"}}).Write(t, dir, "server")
	aCert, aKey := ca.Issue(t, testpki.Names{URIs: []string{"spiffe://example.org/team-a/1"}}).Write(t, dir, "a")
	port := freePort(t)
	up := startUpstream(t)
	srv := startServerWith(t, serverOptions{scheme: "https", args: []string{
		"--tls-cert-file", serverCert, "--tls-key-file", serverKey, "--client-ca-file", caFile,
	}}, func(s *server) {
		s.writeSpec("base.yaml", docs(listenerSpec("web", "web", port, "web-upstream"), clusterSpec("web-upstream", up), teamsAccess))
	})
	a := newEnvoy(t, srv, "a-1", map[string]string{"app": "web"}, statsEvery(time.Second),
		mutualTLS(caFile, aCert, aKey))
	a.start()
	eventually(t, applyTimeout, func() error { return nodeReports(srv, "a-1") })

	b := ca.Issue(t, testpki.Names{URIs: []string{"spiffe://example.org/team-b/1"}}).TLS(t)
	conn, err := grpc.NewClient(srv.xdsAddr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{b}})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := metricsv3.NewMetricsServiceClient(conn).StreamMetrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = stream.Send(&metricsv3.StreamMetricsMessage{
		Identifier:   &metricsv3.StreamMetricsMessage_Identifier{Node: xdstest.Node("a-1", "wasmxds", map[string]string{"app": "web"})},
		EnvoyMetrics: xdstest.Flush{Listeners: []string{"web"}, Requests: 1000, Errors5xx: 1000}.Families()})
	if err == nil {
		_, err = stream.CloseAndRecv()
	}
	if grpcstatus.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "team-b") {
		t.Fatalf("team b's certificate reporting as a-1: %v, want PermissionDenied naming the identity", err)
	}
	if err := metricAtLeast(srv, `wasmxds_telemetry_streams_refused_total{reason="unauthorized"}`, 1); err != nil {
		t.Error(err)
	}
}

// nodeReports checks that a node's Envoy reports: status has its
// telemetry.
func nodeReports(s *server, id string) error {
	var st struct {
		Nodes []struct {
			ID        string `json:"id"`
			Telemetry *struct {
				LastReport time.Time `json:"lastReport"`
			} `json:"telemetry"`
		} `json:"nodes"`
	}
	if err := s.get("/debug/status", &st); err != nil {
		return err
	}
	for _, n := range st.Nodes {
		if n.ID == id && n.Telemetry != nil {
			return nil
		}
	}
	return fmt.Errorf("node %s reports no telemetry: %+v", id, st.Nodes)
}
