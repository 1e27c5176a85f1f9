package catalog

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmxds/wasmxds/internal/testpki"
)

// TestListenerCertificateFilesAreChecked loads a TLS listener whose files
// are on this host: a matching pair applies, a pair that does not load is
// an error at the listener's tls line and leaves it out, and files this
// host does not have only warn (Envoy may see another filesystem).
func TestListenerCertificateFilesAreChecked(t *testing.T) {
	pki := t.TempDir()
	ca := testpki.NewCA(t, "catalog")
	cert, key := ca.Issue(t, testpki.Names{CN: "api", DNS: []string{"api.example.com"}}).Write(t, pki, "api")
	_, otherKey := ca.Issue(t, testpki.Names{CN: "other"}).Write(t, pki, "other")
	garbage := filepath.Join(pki, "garbage.pem")
	testpki.WriteFile(t, garbage, []byte("not a certificate"))
	missing := filepath.Join(pki, "missing.pem")

	cases := []struct {
		name, cert, key string
		errWords        []string // in the one error; none: the listener applies
		warnWords       []string // in the one warning
	}{
		{name: "pair", cert: cert, key: key},
		{name: "mismatched", cert: cert, key: otherKey, errWords: []string{"spec.tls:", "not a usable certificate and key", "private key does not match"}},
		{name: "garbage", cert: garbage, key: key, errWords: []string{"spec.tls:", garbage, "not a usable certificate"}},
		{name: "missing", cert: missing, key: key, warnWords: []string{"spec.tls:", "not found on this host", "NACK"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			spec := fmt.Sprintf(`apiVersion: wasmxds.dev/v1alpha1
kind: Listener
metadata: {name: tls}
spec:
  port: 8443
  tls: {certFile: %q, keyFile: %q}
  routes: [{match: {prefix: /}, cluster: c}]
---
apiVersion: wasmxds.dev/v1alpha1
kind: Cluster
metadata: {name: c}
spec: {endpoints: ["a:1"]}
`, c.cert, c.key)
			if err := os.WriteFile(filepath.Join(dir, "l.yaml"), []byte(spec), 0o644); err != nil {
				t.Fatal(err)
			}
			st := mustLoad(t, dir)
			checkOne(t, "error", st.Errors, c.errWords)
			checkOne(t, "warning", st.Warnings, c.warnWords)
			if applied := len(st.Listeners) == 1; applied != (c.errWords == nil) {
				t.Errorf("listener applied = %v, want %v", applied, c.errWords == nil)
			}
			if c.errWords == nil && (st.Listeners[0].TLS == nil || st.Listeners[0].TLS.CertFile != c.cert) {
				t.Errorf("listener TLS = %+v, want the cert %s", st.Listeners[0].TLS, c.cert)
			}
		})
	}
}

// checkOne asserts there is one problem, at the tls line (6), with every
// word, or none when words is empty.
func checkOne(t *testing.T, what string, got []SpecError, words []string) {
	t.Helper()
	if len(words) == 0 {
		if len(got) != 0 {
			t.Errorf("unexpected %ss: %v", what, got)
		}
		return
	}
	if len(got) != 1 {
		t.Fatalf("want one %s with %q, got %v", what, words, got)
	}
	if got[0].File != "l.yaml" || got[0].Line != 6 {
		t.Errorf("%s at %s:%d, want l.yaml:6", what, got[0].File, got[0].Line)
	}
	for _, w := range words {
		if !strings.Contains(got[0].Message, w) {
			t.Errorf("%s %q lacks %q", what, got[0].Message, w)
		}
	}
}
