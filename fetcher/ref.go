package fetcher

import (
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"oras.land/oras-go/v2/registry"
)

type sourceKind int

const (
	kindOCI sourceKind = iota
	kindHTTP
	kindFile
)

// source is a parsed Request.URL. key is its canonical spelling, used for
// the index and to coalesce concurrent pulls of the same reference.
type source struct {
	kind sourceKind
	key  string
	ref  registry.Reference // kindOCI
	url  string             // kindHTTP
	path string             // kindFile
}

// immutable reports whether the source can never resolve to other content.
func (s source) immutable() bool {
	if s.kind != kindOCI {
		return false
	}
	_, err := s.ref.Digest()
	return err == nil
}

func parseSource(raw string) (source, error) {
	raw = strings.TrimSpace(raw)
	scheme, rest, hasScheme := strings.Cut(raw, "://")
	if !hasScheme {
		scheme, rest = "oci", raw
	}
	switch strings.ToLower(scheme) {
	case "oci":
		return parseOCI(rest)
	case "http", "https":
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			return source{}, fmt.Errorf("%w: %q is not a valid http(s) URL", ErrInvalidReference, raw)
		}
		return source{kind: kindHTTP, key: u.String(), url: u.String()}, nil
	case "file":
		u, err := url.Parse(raw)
		if err != nil || (u.Host != "" && u.Host != "localhost") || !filepath.IsAbs(u.Path) {
			return source{}, fmt.Errorf("%w: %q: file URLs need an absolute path (file:///abs/path)", ErrInvalidReference, raw)
		}
		p := filepath.Clean(u.Path)
		return source{kind: kindFile, key: "file://" + p, path: p}, nil
	}
	return source{}, fmt.Errorf("%w: %q: unsupported scheme %q (use oci://, http(s):// or file://)",
		ErrInvalidReference, raw, scheme)
}

func parseOCI(s string) (source, error) {
	ref, err := registry.ParseReference(normalizeDockerHub(s))
	if err != nil {
		return source{}, fmt.Errorf("%w: %q: %w", ErrInvalidReference, s, err)
	}
	if ref.Reference == "" {
		ref.Reference = "latest"
	}
	return source{kind: kindOCI, key: "oci://" + ref.String(), ref: ref}, nil
}

// normalizeDockerHub applies Docker's shorthand: a first path element that
// is not a host ("name/repo", "repo") means Docker Hub, and single-element
// Docker Hub repositories live under library/.
func normalizeDockerHub(s string) string {
	first, rest, ok := strings.Cut(s, "/")
	isHost := ok && (strings.ContainsAny(first, ".:") || first == "localhost")
	if !isHost {
		rest, first = s, "docker.io"
	}
	if first == "docker.io" && !strings.Contains(strings.SplitN(rest, "@", 2)[0], "/") {
		rest = "library/" + rest
	}
	return first + "/" + rest
}

// parsePin validates a sha256 pin: 64 hex digits, optionally "sha256:"-prefixed.
func parsePin(pin string) (string, error) {
	if pin == "" {
		return "", nil
	}
	hex := strings.ToLower(strings.TrimPrefix(strings.TrimSpace(pin), "sha256:"))
	if !validHex(hex) {
		return "", fmt.Errorf("%w: sha256 %q is not 64 hex digits", ErrInvalidReference, pin)
	}
	return hex, nil
}

// validHex reports whether s is exactly 64 lowercase hex digits.
func validHex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
