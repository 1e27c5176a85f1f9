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

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/wasmxds/wasmxds/internal/testpki"
	"github.com/wasmxds/wasmxds/internal/xdstest"
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

// firstClusters opens an ADS stream as node id with labels (an xdstest
// client) and returns how many clusters its first cluster response held,
// or the error that ended the stream first.
func firstClusters(t *testing.T, addr string, creds grpc.DialOption, id string, labels map[string]string) (int, error) {
	t.Helper()
	c, err := xdstest.Dial(addr, xdstest.Options{NodeID: id, Labels: labels, DialOptions: []grpc.DialOption{creds}})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	werr := c.WaitFor(ctx, func(s xdstest.State) bool { return s.Type(resource.ClusterType).Responses > 0 })
	if werr != nil {
		if err := c.Err(); err != nil {
			return 0, err
		}
		return 0, werr
	}
	return len(c.State().Type(resource.ClusterType).Names()), nil
}

func TestMTLSRefusesClientsWithoutAValidCertificate(t *testing.T) {
	m := startMTLS(t)
	labels := map[string]string{"app": "web"}
	addr := m.cp.XDSAddr()
	if _, err := firstClusters(t, addr, grpc.WithTransportCredentials(insecure.NewCredentials()), "web-1", labels); err == nil {
		t.Error("a plaintext client got a response")
	}
	if _, err := firstClusters(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, ""))), "web-1", labels); err == nil {
		t.Error("a client without a certificate got a response")
	}
	other := testpki.NewCA(t, "another CA")
	foreign := &tls.Config{RootCAs: m.ca.Pool(), ServerName: "127.0.0.1",
		Certificates: []tls.Certificate{other.Issue(t, testpki.Names{URIs: []string{"spiffe://example.org/web/1"}}).TLS(t)}}
	if _, err := firstClusters(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(foreign)), "web-1", labels); err == nil {
		t.Error("a client with a certificate of another CA got a response")
	}
	clusters, err := firstClusters(t, addr, grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, "spiffe://example.org/web/1"))), "web-1", labels)
	if err != nil || clusters == 0 {
		t.Fatalf("a granted node: %v, %d clusters", err, clusters)
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
		labels             map[string]string
		refused            string
	}{
		{"another team's identity", "spiffe://example.org/billing/1", "web-1", map[string]string{"app": "web"}, "granted nothing"},
		{"a label not granted", "spiffe://example.org/web/1", "web-1", map[string]string{"app": "web", "team": "b"}, "team=b"},
		{"a node id not granted", "spiffe://example.org/web/1", "edge-1", map[string]string{"app": "web"}, `node id "edge-1"`},
	}
	for _, c := range cases {
		clusters, err := firstClusters(t, addr, dial(c.identity), c.id, c.labels)
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), c.refused) {
			t.Errorf("%s: got %d clusters, err %v; want PermissionDenied naming %q", c.name, clusters, err, c.refused)
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

// A NodeAccess edit that withdraws a connected node's grant ends its stream
// before the edit's configuration is pushed: the node never holds it,
// while a node still granted gets it. Restoring the grant admits the node
// again.
func TestWithdrawnGrantEndsConnectedNodes(t *testing.T) {
	m := startMTLS(t)
	connect := func(id, uri string) *xdstest.Client {
		return xdstest.Start(t, m.cp.XDSAddr(), xdstest.Options{NodeID: id, Labels: map[string]string{"app": "web"},
			DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(m.clientTLS(t, uri)))}})
	}
	web1 := connect("web-1", "spiffe://example.org/web/1")
	web2 := connect("web-2", "spiffe://example.org/web/2")
	for _, e := range []*xdstest.Client{web1, web2} {
		e.Await(t, "config", xdstest.Complete)
	}

	// One write: web/1 loses its grant and a listener is added.
	narrowed := strings.Replace(nodeAccessSpec, `["spiffe://example.org/web/*"]`, `["spiffe://example.org/web/2"]`, 1)
	m.write("access.yaml", narrowed+"---\n"+apiListenerSpec)
	if err := web1.AwaitEnd(t, "its grant was withdrawn", 20*time.Second); status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "grant withdrawn") {
		t.Errorf("web-1's stream ended with %v, want PermissionDenied saying the grant was withdrawn", err)
	}
	web2.Await(t, "the new listener", func(s xdstest.State) bool { return s.Type(resource.ListenerType).Has("api") })
	if web1.State().Type(resource.ListenerType).Has("api") {
		t.Error("web-1 received the configuration of the edit that withdrew its grant")
	}
	waitUntil(t, "web-1 refused in status", func() bool {
		rep := m.status()
		return len(rep.Refused) == 1 && len(rep.Nodes) == 1
	})
	rep := m.status()
	if r := rep.Refused[0]; r.Identity != "spiffe://example.org/web/1" || r.NodeID != "web-1" ||
		!strings.Contains(r.Reason, "grant withdrawn") || !strings.Contains(r.Reason, "granted nothing") {
		t.Errorf("refusal = %+v", r)
	}
	if rep.Nodes[0].ID != "web-2" {
		t.Errorf("status nodes = %+v, want web-2 only", rep.Nodes)
	}
	_, metrics := m.get("/metrics")
	if !strings.Contains(string(metrics), "wasmxds_xds_nodes_refused_total 1") {
		t.Error("/metrics lacks wasmxds_xds_nodes_refused_total 1")
	}

	// The edit takes effect after the catalog's debounce: until then a
	// reconnecting web-1 is refused.
	m.write("access.yaml", nodeAccessSpec+"---\n"+apiListenerSpec)
	waitUntil(t, "web-1 admitted again with the new listener", func() bool {
		back := connect("web-1", "spiffe://example.org/web/1")
		defer back.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return back.WaitFor(ctx, func(s xdstest.State) bool {
			return xdstest.Complete(s) && s.Type(resource.ListenerType).Has("api")
		}) == nil
	})
}
