package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/wasmxds/wasmxds/internal/testpki"
)

// httpsGet sends GET https://127.0.0.1:port/ with SNI serverName, trusting
// only roots, and returns the body and the serial of the certificate Envoy
// presented.
func httpsGet(port int, serverName string, roots *x509.CertPool) (string, string, error) {
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   &tls.Config{RootCAs: roots, ServerName: serverName, MinVersion: tls.VersionTLS12},
	}}
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("https://127.0.0.1:%d/", port), nil)
	if err != nil {
		return "", "", err
	}
	req.Host = serverName
	resp, err := c.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", "", fmt.Errorf("status %d, body %q", resp.StatusCode, b)
	}
	return string(b), resp.TLS.PeerCertificates[0].SerialNumber.String(), nil
}

// expectCert polls until a request with SNI serverName is answered with
// body over a certificate with the given serial.
func expectCert(port int, serverName string, roots *x509.CertPool, body, serial string) func() error {
	return func() error {
		got, gotSerial, err := httpsGet(port, serverName, roots)
		if err != nil {
			return err
		}
		if got != body || gotSerial != serial {
			return fmt.Errorf("%s: body %q over certificate %s, want %q over %s", serverName, got, gotSerial, body, serial)
		}
		return nil
	}
}

// moveInto writes b next to dst and renames it over dst, as certificate
// renewers and Kubernetes Secret volumes replace files.
func moveInto(t *testing.T, dst string, b []byte) {
	t.Helper()
	tmp := dst + ".new"
	testpki.WriteFile(t, tmp, b)
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// TestTLSListenerServesCertificatesBySNIAndPicksUpRotation terminates TLS
// in real Envoy: api.example.com gets its own certificate by SNI, any
// other name the listener's; both verify against the CA as curl --cacert
// would. Replacing the api certificate's files on disk changes what Envoy
// serves with no spec change and no push (every ACKed version stays).
func TestTLSListenerServesCertificatesBySNIAndPicksUpRotation(t *testing.T) {
	requireFull(t)
	t.Parallel()
	dir := t.TempDir()
	ca := testpki.NewCA(t, "gateway CA")
	apiLeaf := ca.Issue(t, testpki.Names{CN: "api", DNS: []string{"api.example.com"}})
	apiCert, apiKey := apiLeaf.Write(t, dir, "api")
	defLeaf := ca.Issue(t, testpki.Names{CN: "default", DNS: []string{"www.example.com"}})
	defCert, defKey := defLeaf.Write(t, dir, "default")

	const app = "tls-gateway"
	port := freePort(t)
	api, www := startNamedUpstream(t, "api\n"), startNamedUpstream(t, "www\n")
	srv := startServerWith(t, serverOptions{}, func(s *server) {
		s.writeSpec("gateway.yaml", docs(doc("Listener", "tls-gateway", map[string]any{
			"selector": map[string]any{"matchLabels": map[string]any{"app": app}},
			"port":     port,
			"tls":      map[string]any{"certFile": defCert, "keyFile": defKey},
			"hosts": []any{map[string]any{
				"domains": []any{"api.example.com"},
				"tls":     map[string]any{"certFile": apiCert, "keyFile": apiKey},
				"routes":  []any{map[string]any{"match": map[string]any{"prefix": "/"}, "cluster": "api"}},
			}},
			"routes": []any{map[string]any{"match": map[string]any{"prefix": "/"}, "cluster": "www"}},
		}), clusterSpec("api", api), clusterSpec("www", www)))
	})
	startEnvoy(t, srv, app+"-node", map[string]string{"app": app})
	roots := ca.Pool()
	serial := func(l testpki.Leaf) string { return l.TLS(t).Leaf.SerialNumber.String() }

	eventually(t, applyTimeout, steady(steadyReplies, expectCert(port, "api.example.com", roots, "api\n", serial(apiLeaf))))
	eventually(t, applyTimeout, steady(steadyReplies, expectCert(port, "www.example.com", roots, "www\n", serial(defLeaf))))
	before := waitAcked(t, srv, app+"-node")

	rotated := ca.Issue(t, testpki.Names{CN: "api rotated", DNS: []string{"api.example.com"}})
	newCert, newKey := rotated.Write(t, t.TempDir(), "api")
	for _, f := range [][2]string{{newKey, apiKey}, {newCert, apiCert}} {
		b, err := os.ReadFile(f[0])
		if err != nil {
			t.Fatal(err)
		}
		moveInto(t, f[1], b)
	}
	eventually(t, applyTimeout, steady(steadyReplies, expectCert(port, "api.example.com", roots, "api\n", serial(rotated))))
	if after := waitAcked(t, srv, app+"-node"); !reflect.DeepEqual(before, after) {
		t.Errorf("ACKed versions changed with the rotation (a push): before %v, after %v", before, after)
	}
}
