package bootstrap

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/wasmxds/wasmxds/internal/testpki"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// connectTimeout bounds how long Envoy may take to open its ADS stream:
// generous, since the machine is shared and Envoy retries with backoff.
const connectTimeout = 30 * time.Second

// testCA is a certificate authority made for one test (internal/testpki),
// with its certificate as a pool and as a PEM file.
type testCA struct {
	*testpki.CA
	pool *x509.CertPool
	path string // PEM file
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	ca := testpki.NewCA(t, name)
	return &testCA{CA: ca, pool: ca.Pool(), path: ca.Write(t, t.TempDir(), "ca")}
}

// leafCert is an issued certificate, in memory and as tls.crt and tls.key
// in its own directory.
type leafCert struct {
	tls      tls.Certificate
	dir      string
	certPath string
	keyPath  string
}

// issue signs a server certificate for names (DNS names or IP addresses),
// or a client certificate for a spiffe URI when client is set.
func (ca *testCA) issue(t *testing.T, client bool, names ...string) leafCert {
	t.Helper()
	n := testpki.Names{CN: names[0]}
	for _, name := range names {
		switch {
		case client:
			n.URIs = append(n.URIs, name)
		case net.ParseIP(name) != nil:
			n.IPs = append(n.IPs, name)
		default:
			n.DNS = append(n.DNS, name)
		}
	}
	leaf := ca.Issue(t, n)
	l := leafCert{dir: t.TempDir(), tls: leaf.TLS(t)}
	l.certPath, l.keyPath = leaf.Write(t, l.dir, "tls")
	return l
}

// adsStream is what the fake ADS server learnt from one stream.
type adsStream struct {
	node     string
	identity string // the client certificate's URI SAN; empty without one
}

// fakeADS is an ADS server that only records who opened a stream.
type fakeADS struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	streams chan adsStream
	metrics chan adsStream // metrics streams (see fakeMetrics)
	addr    string
	stop    func() // stops the server and waits for it; safe to call twice
}

// StreamAggregatedResources records the node and peer of the stream's first
// request, then holds the stream open until the client or server ends it.
func (f *fakeADS) StreamAggregatedResources(s discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	req, err := s.Recv()
	if err != nil {
		return err
	}
	return hold(s, f.streams, adsStream{node: req.GetNode().GetId()})
}

// hold records a stream's node and peer identity, then holds the stream
// open until the client or server ends it.
func hold(s grpc.ServerStream, streams chan adsStream, st adsStream) error {
	if p, ok := peer.FromContext(s.Context()); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.PeerCertificates) > 0 {
			if uris := info.State.PeerCertificates[0].URIs; len(uris) > 0 {
				st.identity = uris[0].String()
			}
		}
	}
	select {
	case streams <- st:
	case <-s.Context().Done():
	}
	<-s.Context().Done()
	return nil
}

// fakeMetrics records who opened a metrics stream (the bootstrap's stat
// sink), on the same server as fakeADS.
type fakeMetrics struct {
	metricsv3.UnimplementedMetricsServiceServer
	streams chan adsStream
}

func (f *fakeMetrics) StreamMetrics(s grpc.ClientStreamingServer[metricsv3.StreamMetricsMessage, metricsv3.StreamMetricsResponse]) error {
	msg, err := s.Recv()
	if err != nil {
		return err
	}
	return hold(s, f.streams, adsStream{node: msg.GetIdentifier().GetNode().GetId()})
}

// serveADS serves a fake ADS over TLS on addr (127.0.0.1:0 for any port).
// With clientCAs, a client certificate from those CAs is required.
func serveADS(t *testing.T, addr string, cert tls.Certificate, clientCAs *x509.CertPool) *fakeADS {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if clientCAs != nil {
		cfg.ClientCAs, cfg.ClientAuth = clientCAs, tls.RequireAndVerifyClientCert
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeADS{streams: make(chan adsStream, 16), metrics: make(chan adsStream, 16), addr: lis.Addr().String()}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(cfg)))
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(srv, f)
	metricsv3.RegisterMetricsServiceServer(srv, &fakeMetrics{streams: f.metrics})
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	f.stop = sync.OnceFunc(func() {
		srv.Stop()
		<-served
	})
	t.Cleanup(f.stop)
	return f
}

// next waits for the next stream Envoy opens.
func (f *fakeADS) next(t *testing.T, e *bootstrappedEnvoy) adsStream {
	t.Helper()
	return nextStream(t, e, f.streams, "ADS")
}

// nextMetrics waits for the next metrics stream Envoy opens.
func (f *fakeADS) nextMetrics(t *testing.T, e *bootstrappedEnvoy) adsStream {
	t.Helper()
	return nextStream(t, e, f.metrics, "metrics")
}

func nextStream(t *testing.T, e *bootstrappedEnvoy, streams chan adsStream, what string) adsStream {
	t.Helper()
	select {
	case s := <-streams:
		return s
	case <-time.After(connectTimeout):
		t.Fatalf("Envoy opened no %s stream within %v\n%s", what, connectTimeout, e.log())
		return adsStream{}
	}
}

// port is the port of the server's address.
func (f *fakeADS) port(t *testing.T) string {
	t.Helper()
	_, port, err := net.SplitHostPort(f.addr)
	if err != nil {
		t.Fatal(err)
	}
	return port
}

const envoyIdentity = "spiffe://wasmxds.test/envoy/edge-1"

// TestTLSConnects starts Envoy from bootstraps with TLS options
// against a gRPC server that requires (or not) a client certificate: Envoy
// must connect, and the server must see the certificate's identity.
func TestTLSConnects(t *testing.T) {
	ca := newTestCA(t, "wasmxds test CA")
	client := ca.issue(t, true, envoyIdentity)
	for _, tc := range []struct {
		name, host string
		mutual     bool
		sds        bool
	}{
		{name: "mutual, DNS name", host: "localhost", mutual: true},
		{name: "mutual, IP address", host: "127.0.0.1", mutual: true},
		{name: "mutual, file SDS", host: "localhost", mutual: true, sds: true},
		{name: "server verification only", host: "localhost"},
		{name: "server verification only, file SDS", host: "127.0.0.1", sds: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var clientCAs *x509.CertPool
			o := opts("edge-1")
			o.AdminPort, o.TLS.CAFile, o.StatsFlushInterval = 0, ca.path, 200*time.Millisecond
			if tc.mutual {
				clientCAs = ca.pool
				o.TLS.CertFile, o.TLS.KeyFile = client.certPath, client.keyPath
			}
			if tc.sds {
				o.TLS.SDSDir = t.TempDir()
			}
			ads := serveADS(t, "127.0.0.1:0", ca.issue(t, false, tc.host).tls, clientCAs)
			o.XDSAddress = net.JoinHostPort(tc.host, ads.port(t))
			envoy := startBootstrapEnvoy(t, render(t, o))
			got := ads.next(t, envoy)
			want := adsStream{node: "edge-1"}
			if tc.mutual {
				want.identity = envoyIdentity
			}
			if got != want {
				t.Errorf("server saw %+v, want %+v", got, want)
			}
			// Stats go over the same cluster, so the same TLS.
			if got := ads.nextMetrics(t, envoy); got != want {
				t.Errorf("metrics stream from %+v, want %+v", got, want)
			}
		})
	}
}

// TestTLSRefusesUnverifiedServer: a server certificate from
// another CA, or for another name, must not get Envoy's ADS stream.
func TestTLSRefusesUnverifiedServer(t *testing.T) {
	ca := newTestCA(t, "wasmxds test CA")
	other := newTestCA(t, "another CA")
	client := ca.issue(t, true, envoyIdentity)
	for _, tc := range []struct {
		name   string
		server leafCert
		stat   string // the counter that says why Envoy refused
	}{
		{"server certificate from another CA", other.issue(t, false, "localhost"), "cluster.wasmxds_xds.ssl.fail_verify_error"},
		{"server certificate for another name", ca.issue(t, false, "cp.example"), "cluster.wasmxds_xds.ssl.fail_verify_san"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ads := serveADS(t, "127.0.0.1:0", tc.server.tls, ca.pool)
			o := opts("edge-1")
			o.AdminPort, o.XDSAddress = 0, "localhost:"+ads.port(t)
			o.TLS = TLS{CAFile: ca.path, CertFile: client.certPath, KeyFile: client.keyPath}
			envoy := startBootstrapEnvoy(t, render(t, o))
			envoy.waitCounter(t, tc.stat, 1, connectTimeout)
			select {
			case s := <-ads.streams:
				t.Errorf("Envoy opened a stream to an unverified server: %+v", s)
			default:
			}
		})
	}
}

// TestTLSReloadsRotatedCertificate: with TLS.SDSDir, a client
// certificate rotated the way Kubernetes updates a mounted Secret (an
// atomic swap of the ..data symlink) is what Envoy presents next, without
// a restart.
func TestTLSReloadsRotatedCertificate(t *testing.T) {
	ca := newTestCA(t, "wasmxds test CA")
	mount := t.TempDir()
	mountSecret(t, mount, ca.issue(t, true, envoyIdentity), "..v1")
	ads := serveADS(t, "127.0.0.1:0", ca.issue(t, false, "localhost").tls, ca.pool)
	o := opts("edge-1")
	o.AdminPort, o.XDSAddress = 0, "localhost:"+ads.port(t)
	o.TLS = TLS{CAFile: ca.path, CertFile: filepath.Join(mount, "tls.crt"), KeyFile: filepath.Join(mount, "tls.key"),
		SDSDir: t.TempDir()}
	envoy := startBootstrapEnvoy(t, render(t, o))
	if got := ads.next(t, envoy).identity; got != envoyIdentity {
		t.Fatalf("first connection presented %q, want %q", got, envoyIdentity)
	}

	const rotated = "spiffe://wasmxds.test/envoy/edge-1-rotated"
	// Envoy counts TLS context updates from SDS, file rotations included.
	const sdsUpdates = "cluster.wasmxds_xds.client_ssl_socket_factory.ssl_context_update_by_sds"
	updates := envoy.counter(t, sdsUpdates)
	mountSecret(t, mount, ca.issue(t, true, rotated), "..v2")
	envoy.waitCounter(t, sdsUpdates, updates+1, connectTimeout)

	// A new connection shows the certificate in use: restart the server.
	ads.stop()
	ads = serveADS(t, ads.addr, ca.issue(t, false, "localhost").tls, ca.pool)
	if got := ads.next(t, envoy).identity; got != rotated {
		t.Errorf("after rotation Envoy presented %q, want %q", got, rotated)
	}
}

// mountSecret lays out cert as Kubernetes mounts a Secret: the files live
// in a versioned directory, ..data points at it, and tls.crt and tls.key
// point through ..data. A second call swaps ..data in one rename.
func mountSecret(t *testing.T, mount string, cert leafCert, version string) {
	t.Helper()
	if err := os.Rename(cert.dir, filepath.Join(mount, version)); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(mount, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"tls.crt", "tls.key"} {
		link := filepath.Join(mount, f)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", f), link); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTLSOptionCombinations: TLS files go together sensibly, and a refused
// combination says why and renders nothing.
func TestTLSOptionCombinations(t *testing.T) {
	for name, tc := range map[string]struct {
		tls  TLS
		want string
	}{
		"cert without key":  {TLS{CAFile: "/ca.pem", CertFile: "/c.pem"}, "--tls-cert-file needs --tls-key-file"},
		"key without cert":  {TLS{CAFile: "/ca.pem", KeyFile: "/k.pem"}, "--tls-key-file needs --tls-cert-file"},
		"client without CA": {TLS{CertFile: "/c.pem", KeyFile: "/k.pem"}, "--tls-cert-file needs --tls-ca-file: Envoy presents its certificate only to a server it has verified"},
		"SDS without CA":    {TLS{SDSDir: "/sds", CertFile: "/c.pem", KeyFile: "/k.pem"}, "--tls-cert-file needs --tls-ca-file"},
		"SDS, no cert":      {TLS{SDSDir: "/sds"}, "--tls-sds-dir needs --tls-ca-file"},
		"relative CA":       {TLS{CAFile: "ca.pem"}, `--tls-ca-file "ca.pem": want an absolute path, as Envoy sees it`},
		"relative SDS dir":  {TLS{CAFile: "/ca.pem", SDSDir: "sds"}, `--tls-sds-dir "sds": want an absolute path, as Envoy sees it`},
	} {
		t.Run(name, func(t *testing.T) {
			o := opts("n")
			o.TLS = tc.tls
			b, err := Render(o)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %v, want one starting %q", err, tc.want)
			}
			if len(b.YAML) != 0 || len(b.SDSFiles) != 0 {
				t.Errorf("rendered a bootstrap anyway: %d bytes, %d SDS files", len(b.YAML), len(b.SDSFiles))
			}
		})
	}
}

// TestSDSFilesAreWrittenOnlyWhenAsked: Render leaves the SDS directory
// alone; WriteSDSFiles puts the CA and the client certificate there, and
// the bootstrap refers to them.
func TestSDSFilesAreWrittenOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	o := opts("n")
	o.TLS = TLS{CAFile: "/ca.pem", CertFile: "/c.pem", KeyFile: "/k.pem", SDSDir: dir}
	b, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	if written, _ := os.ReadDir(dir); len(written) != 0 {
		t.Fatalf("Render wrote %d files", len(written))
	}
	if err := b.WriteSDSFiles(); err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct{ name, refers string }{
		{"wasmxds-xds-ca.yaml", "/ca.pem"}, {"wasmxds-xds-client-cert.yaml", "/k.pem"},
	} {
		path := filepath.Join(dir, f.name)
		content, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(content), f.refers) {
			t.Errorf("%s does not name %s:\n%s", f.name, f.refers, content)
		}
		if !strings.Contains(string(b.YAML), path) {
			t.Errorf("the bootstrap does not refer to %s:\n%s", path, b.YAML)
		}
	}
	if written, _ := os.ReadDir(dir); len(written) != 2 {
		t.Errorf("WriteSDSFiles left %d files, want 2 (no temporary ones)", len(written))
	}
}
