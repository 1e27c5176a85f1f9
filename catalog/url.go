package catalog

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"

	"oras.land/oras-go/v2/registry"
)

var sha256RE = regexp.MustCompile(`^[a-f0-9]{64}$`)

// moduleURL is a plugin url after normalisation.
type moduleURL struct {
	url    string
	digest string // hex of an @sha256: pin inside an oci:// url
	latest bool   // oci:// reference by the "latest" tag or by no tag
}

// normaliseURL turns a WasmPlugin url into one the fetcher can use without
// knowing where the spec file lives: no scheme means oci://, and a relative
// file: url (no "//") is resolved against dir, the spec file's directory.
func normaliseURL(raw, dir string) (moduleURL, error) {
	if strings.HasPrefix(raw, "file:") && !strings.HasPrefix(raw, "file://") {
		return relativeFileURL(strings.TrimPrefix(raw, "file:"), dir)
	}
	if !strings.Contains(raw, "://") {
		raw = "oci://" + raw
	}
	scheme, rest, _ := strings.Cut(raw, "://")
	switch strings.ToLower(scheme) {
	case "oci":
		return ociURL(rest)
	case "http", "https":
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return moduleURL{}, fmt.Errorf("invalid %s url %q", scheme, raw)
		}
		return moduleURL{url: raw}, nil
	case "file":
		return absoluteFileURL(raw)
	default:
		return moduleURL{}, fmt.Errorf("unsupported URL scheme %q (want oci://, http://, https:// or file://)", scheme)
	}
}

func relativeFileURL(path, dir string) (moduleURL, error) {
	if path == "" {
		return moduleURL{}, errors.New("file: url has no path")
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(dir, path)
	}
	return moduleURL{url: fileURL(path)}, nil
}

func absoluteFileURL(raw string) (moduleURL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return moduleURL{}, fmt.Errorf("invalid file url %q", raw)
	}
	if u.Host != "" && u.Host != "localhost" {
		return moduleURL{}, fmt.Errorf("file url %q names host %q; only local files can be read", raw, u.Host)
	}
	if u.Path == "" || !strings.HasPrefix(u.Path, "/") {
		return moduleURL{}, fmt.Errorf("file url %q has no absolute path", raw)
	}
	return moduleURL{url: fileURL(u.Path)}, nil
}

func fileURL(path string) string {
	return (&url.URL{Scheme: "file", Path: filepath.ToSlash(filepath.Clean(path))}).String()
}

// ociURL validates registry/repository[:tag][@sha256:hex].
func ociURL(rest string) (moduleURL, error) {
	m := moduleURL{url: "oci://" + rest}
	base := rest
	if i := strings.Index(rest, "@"); i >= 0 {
		base = rest[:i]
		hex, ok := strings.CutPrefix(rest[i+1:], "sha256:")
		if !ok || !sha256RE.MatchString(hex) {
			return moduleURL{}, fmt.Errorf("oci url %q: digest must be sha256: followed by 64 lowercase hex characters", m.url)
		}
		m.digest = hex
	}
	ref, err := registry.ParseReference(base)
	if err != nil {
		return moduleURL{}, fmt.Errorf("oci url %q is not registry/repository[:tag][@sha256:digest]: %w", m.url, err)
	}
	m.latest = m.digest == "" && (ref.Reference == "" || ref.Reference == "latest")
	return m, nil
}
