package catalog

import (
	"github.com/wasmxds/wasmxds/internal/modref"
)

// parsePluginURL sets URL (the canonical spelling, as the fetcher pulls it)
// and SHA256 (lowercase hex), and reports whether the url is an OCI
// reference by the latest tag, written or implied.
func parsePluginURL(spec *fields, pl *Plugin, dir string) bool {
	raw, n := spec.str("url")
	if spec.missing("url") || (n != nil && raw == "") {
		spec.p.add(orNode(n, spec.line("url")), "%s: missing (oci://, http(s):// or file:// module location)", spec.sub("url"))
	}
	var ref modref.Ref
	if raw != "" {
		var err error
		if ref, err = modref.Parse(raw, dir); err != nil {
			spec.p.add(n, "%s: %v", spec.sub("url"), err)
		}
	}
	pl.URL = ref.String()
	sum, sn := spec.str("sha256")
	if sn == nil || sum == "" {
		return ref.Latest()
	}
	pin, err := modref.ParseSHA256(sum)
	switch {
	case err != nil:
		spec.p.add(sn, "%s: %v", spec.sub("sha256"), err)
	case ref.Digest != "" && ref.Digest != pin:
		spec.p.add(sn, "%s: %s does not match the digest in url (sha256:%s)", spec.sub("sha256"), pin, ref.Digest)
	default:
		pl.SHA256 = pin
	}
	return ref.Latest()
}
