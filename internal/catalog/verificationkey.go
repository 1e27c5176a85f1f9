package catalog

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/wasmxds/wasmxds/internal/modref"
	"github.com/wasmxds/wasmxds/internal/sigkey"
)

// keyFilePrefix marks a verificationKey read from a file rather than given
// inline.
const keyFilePrefix = "file:"

// parseVerificationKey reads verificationKey: a PEM public key, inline or
// as file:<path> (relative to the spec's directory). The module it applies
// to must be an OCI reference: only those carry cosign signatures.
func parseVerificationKey(spec *fields, pl *Plugin, dir string) {
	raw, n := spec.str("verificationKey")
	if n == nil {
		return
	}
	text := raw
	if name, ok := strings.CutPrefix(strings.TrimSpace(raw), keyFilePrefix); ok {
		path := name
		if !filepath.IsAbs(path) {
			path = filepath.Join(dir, path)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err // the path as written, not as resolved, says which file
			}
			spec.p.add(n, "spec.verificationKey: cannot read %s: %v", name, err)
			return
		}
		text = string(b)
	}
	k, err := sigkey.Parse(text)
	if err != nil {
		spec.p.add(n, "spec.verificationKey: %v (want a PEM public key such as cosign.pub, inline or as file:<path>)", err)
		return
	}
	if ref, err := modref.Parse(pl.URL, ""); err == nil && ref.Kind != modref.KindOCI {
		spec.p.add(n, "spec.verificationKey: signatures are only checked on oci:// modules, not on %s", pl.URL)
		return
	}
	pl.VerificationKey, pl.KeyFingerprint = k.PEM, k.Fingerprint
}
