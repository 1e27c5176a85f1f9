package catalog

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path"
	"slices"
	"strings"
)

// tlsRef is a certificate of a listener, kept with where it was written so
// that assemble can check the files and report at the right line.
type tlsRef struct {
	tls  TLS
	path string // e.g. spec.hosts[0].tls
	line int
}

// parseTLS reads a tls: {certFile, keyFile} field. Both are absolute paths
// as Envoy sees them; Envoy reads them, not wasmxds.
func parseTLS(f *fields, out *[]tlsRef) *TLS {
	v := f.value("tls")
	if v == nil {
		return nil
	}
	tf := f.p.mapping(v, f.sub("tls"))
	defer tf.finish()
	if !tf.isMap() {
		return nil // already reported
	}
	t := &TLS{}
	ok := true
	for _, k := range []struct {
		key string
		dst *string
	}{{"certFile", &t.CertFile}, {"keyFile", &t.KeyFile}} {
		s, n := tf.str(k.key)
		switch {
		case n == nil && !tf.missing(k.key):
			ok = false // not a string; already reported
		case n == nil || s == "":
			tf.p.add(orNode(n, tf.line(k.key)), "%s: missing (a file path as Envoy sees it)", tf.sub(k.key))
			ok = false
		case !path.IsAbs(s):
			tf.p.add(n, "%s: %q must be an absolute path (as Envoy sees it)", tf.sub(k.key), s)
			ok = false
		}
		*k.dst = s
	}
	if !ok {
		return nil
	}
	*out = append(*out, tlsRef{tls: *t, path: tf.path, line: f.line("tls").Line})
	return t
}

// checkServerNames makes sure a host with its own certificate can be chosen
// by SNI, and by one certificate only: Envoy matches server names exactly
// or by a leading "*.", never IP addresses, and refuses a listener in which
// two filter chains claim one name. seen maps names to their lines.
func checkServerNames(hf *fields, vh VirtualHost, seen map[string]int) {
	at := hf.line("tls")
	for _, d := range vh.Domains {
		name, _ := splitDomainPort(d)
		if name == catchAllDomain || strings.HasSuffix(name, "*") || strings.HasPrefix(name, "[") ||
			net.ParseIP(name) != nil || (strings.HasPrefix(name, "*") && !strings.HasPrefix(name, "*.")) {
			hf.p.add(at, "%s: domain %q cannot select a certificate by SNI (a host with its own tls "+
				"needs DNS names, exact or *.suffix wildcards)", hf.sub("tls"), d)
		}
	}
	for _, name := range ServerNames(vh) {
		if first, dup := seen[name]; dup && first != at.Line {
			hf.p.add(at, "%s: server name %q already selects the certificate at line %d", hf.sub("tls"), name, first)
		}
		seen[name] = at.Line
	}
}

// ServerNames are the TLS server names (SNI) of a host's domains: without
// ports, each once, in domain order.
func ServerNames(vh VirtualHost) []string {
	var out []string
	for _, d := range vh.Domains {
		name, _ := splitDomainPort(d)
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out
}

// checkTLSFiles looks at a listener's certificate files when this host has
// them. A pair that does not load is an error (Envoy would refuse it); a
// file this host cannot see is only a warning, since Envoy may run on
// another filesystem.
func checkTLSFiles(r tlsRef) (errMsg, warnMsg string) {
	cert, cerr := os.ReadFile(r.tls.CertFile)
	key, kerr := os.ReadFile(r.tls.KeyFile)
	if err := errors.Join(cerr, kerr); err != nil {
		what := "cannot be read here"
		if errors.Is(err, fs.ErrNotExist) {
			what = "not found on this host"
		}
		return "", fmt.Sprintf("%s: %s (%v); Envoy must find the files at these paths, "+
			"and its refusal shows as a NACK in status", r.path, what, firstErr(cerr, kerr))
	}
	if _, err := tls.X509KeyPair(cert, key); err != nil {
		return fmt.Sprintf("%s: %s and %s are not a usable certificate and key: %v",
			r.path, r.tls.CertFile, r.tls.KeyFile, err), ""
	}
	return "", ""
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
