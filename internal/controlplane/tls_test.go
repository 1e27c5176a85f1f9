package controlplane

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/wasmxds/wasmxds/internal/testpki"
)

const nodeAccessSpec = `apiVersion: wasmxds.dev/v1alpha1
kind: NodeAccess
metadata: {name: web}
spec:
  principals: ["spiffe://example.org/web/*"]
  labels: {app: web}
  nodeIDs: ["web-*"]
`

// mtlsFixture is a control plane requiring client certificates.
type mtlsFixture struct {
	*serveFixture
	ca       *testpki.CA
	certFile string
	keyFile  string
}

func startMTLS(t *testing.T) *mtlsFixture {
	t.Helper()
	root := t.TempDir()
	ca := testpki.NewCA(t, "wasmxds test CA")
	certFile, keyFile := ca.Issue(t, testpki.Names{CN: "wasmxds", IPs: []string{"127.0.0.1"}}).Write(t, root, "server")
	f := &serveFixture{t: t, dir: filepath.Join(root, "configs")}
	if err := os.Mkdir(f.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f.write("listener.yaml", fmt.Sprintf(listenerSpec, 8080))
	f.write("access.yaml", nodeAccessSpec)
	f.cp = newTestCP(t, Options{ConfigDir: f.dir, CacheDir: filepath.Join(root, "cache"), Delivery: "lds",
		TLSCertFile: certFile, TLSKeyFile: keyFile, ClientCAFile: ca.Write(t, root, "ca")})
	runCP(t, f.cp)
	return &mtlsFixture{serveFixture: f, ca: ca, certFile: certFile, keyFile: keyFile}
}

// clientTLS is what a node with the given identity dials with.
func (m *mtlsFixture) clientTLS(t *testing.T, uri string) *tls.Config {
	cfg := &tls.Config{RootCAs: m.ca.Pool(), ServerName: "127.0.0.1"}
	if uri != "" {
		cfg.Certificates = []tls.Certificate{m.ca.Issue(t, testpki.Names{URIs: []string{uri}}).TLS(t)}
	}
	return cfg
}

// firstResponse opens an ADS stream as node id with labels and returns the
// first response, or the stream's error.
func firstResponse(t *testing.T, addr string, creds grpc.DialOption, id string, labels map[string]any) (*discoverygrpc.DiscoveryResponse, error) {
	t.Helper()
	conn, err := grpc.NewClient("passthrough:///"+addr, creds)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	meta, err := structpb.NewStruct(map[string]any{"labels": labels})
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: id, Metadata: meta},
		TypeUrl: resource.ClusterType}); err != nil {
		return nil, err
	}
	return stream.Recv()
}

func TestMTLSRefusesClientsWithoutAValidCertificate(t *testing.T) {
	m := startMTLS(t)
	labels := map[string]any{"app": "web"}
	addr := m.cp.XDSAddr()
	if _, err := firstResponse(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), "web-1", labels); err == nil {
		t.Error("a plaintext client got a response")
	}
	if _, err := firstResponse(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, ""))), "web-1", labels); err == nil {
		t.Error("a client without a certificate got a response")
	}
	other := testpki.NewCA(t, "another CA")
	foreign := &tls.Config{RootCAs: m.ca.Pool(), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{other.Issue(t, testpki.Names{URIs: []string{"spiffe://example.org/web/1"}}).TLS(t)}}
	if _, err := firstResponse(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(foreign)), "web-1", labels); err == nil {
		t.Error("a client with a certificate of another CA got a response")
	}
	resp, err := firstResponse(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, "spiffe://example.org/web/1"))), "web-1", labels)
	if err != nil || len(resp.GetResources()) == 0 {
		t.Fatalf("a granted node: %v, %d clusters", err, len(resp.GetResources()))
	}

	// Modules too: only clients with a certificate of the CA.
	url := m.cp.AdvertiseURL() + "/modules/sha256/" + strings.Repeat("a", 64)
	if !strings.HasPrefix(url, "https://") {
		t.Fatalf("advertised %s, want https with TLS on", url)
	}
	for name, cfg := range map[string]*tls.Config{"no certificate": m.clientTLS(t, ""), "another CA": foreign} {
		if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Get(url); err == nil {
			t.Errorf("module server answered a client with %s", name)
		}
	}
	resp2, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: m.clientTLS(t, "spiffe://example.org/web/1")}}).Get(url)
	if err != nil {
		t.Fatalf("module server refused a client with a valid certificate: %v", err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("unknown module = %d, want 503 (retry: another replica may have advertised it) to an authenticated client", resp2.StatusCode)
	}
}

// A node whose certificate does not grant the labels (or node id) it claims
// gets nothing: its stream ends with PermissionDenied naming what was
// refused, and status and a metric show the refusal.
func TestNodeAccessRefusesUngrantedClaims(t *testing.T) {
	m := startMTLS(t)
	addr := m.cp.XDSAddr()
	dial := func(uri string) grpc.DialOption {
		return grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, uri)))
	}
	cases := []struct {
		name, identity, id string
		labels             map[string]any
		refused            string
	}{
		{"another team's identity", "spiffe://example.org/billing/1", "web-1", map[string]any{"app": "web"}, "granted nothing"},
		{"a label not granted", "spiffe://example.org/web/1", "web-1", map[string]any{"app": "web", "team": "b"}, "team=b"},
		{"a node id not granted", "spiffe://example.org/web/1", "edge-1", map[string]any{"app": "web"}, `node id "edge-1"`},
	}
	for _, c := range cases {
		resp, err := firstResponse(t, addr, dial(c.identity), c.id, c.labels)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), c.refused) {
			t.Errorf("%s: got %d resources, err %v; want PermissionDenied naming %q", c.name, len(resp.GetResources()), err, c.refused)
		}
	}
	rep := m.status()
	if len(rep.Refused) != len(cases) || rep.Refused[0].Identity != "spiffe://example.org/billing/1" {
		t.Errorf("status refused = %+v, want the %d refusals", rep.Refused, len(cases))
	}
	if len(rep.Nodes) != 0 {
		t.Errorf("status nodes = %+v, want none: refused nodes are not served", rep.Nodes)
	}
	_, metrics := m.get("/metrics")
	if want := fmt.Sprintf("wasmxds_xds_nodes_refused_total %d", len(cases)); !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

// Certificates rotate without a restart: a new handshake gets the new one.
func TestServingCertificateRotates(t *testing.T) {
	m := startMTLS(t)
	serial := func() string {
		conn, err := tls.Dial("tcp", m.cp.HTTPAddr(), m.clientTLS(t, "spiffe://example.org/web/1"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	next := m.ca.Issue(t, testpki.Names{CN: "wasmxds", IPs: []string{"127.0.0.1"}})
	// Key first, then certificate: a reload between the two must not serve
	// a mismatched pair (it is refused and the old pair keeps serving).
	testpki.WriteFile(t, m.keyFile, next.KeyPEM)
	testpki.WriteFile(t, m.certFile, next.CertPEM)
	waitUntil(t, "the rotated certificate", func() bool { return serial() != before })
}
