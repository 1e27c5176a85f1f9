// Package modref is the one grammar for a module reference: the url of a
// WasmPlugin spec, the argument of `wasmxds pull` and `wasmxds push`, the
// URL a fetcher.Request names. Every caller parses with Parse and shows
// Ref.String, so the catalog, the fetcher, the CLI, status and logs agree on
// what a reference means and how it is spelled.
//
// The grammar:
//
//   - No scheme means oci://. An OCI reference is
//     [registry/]repository[:tag][@sha256:hex], with Docker's shorthand (as
//     Istio applies it): a first path element that is not a host (it has no
//     "." or ":" and is not "localhost") is part of a Docker Hub repository
//     on docker.io, and single-element Docker Hub repositories live under
//     library/. "index.docker.io" is spelled docker.io. No tag and no digest
//     means the tag latest.
//   - Canonical OCI form: oci://registry/repository:tag,
//     oci://registry/repository@sha256:hex, or, when both were given,
//     oci://registry/repository:tag@sha256:hex. With both, the digest alone
//     decides what is pulled (the tag is not checked against it, as in
//     Docker); the tag is kept only so that logs and status show what was
//     written.
//   - http:// and https:// URLs need a host. The fragment, which is never
//     sent to a server, is dropped; scheme and host are lowercased.
//   - file:///abs/path (or file://localhost/abs/path) names a local file.
//     file:rel/path (no "//") is resolved against the directory the caller
//     gives, the spec file's directory. Canonical form: file:///abs/path,
//     cleaned.
//   - Credentials (user:password@) are refused in every scheme: they belong
//     in an imagePullSecret or a docker config, not in a URL that is logged
//     and shown in status. Errors show such a URL with the credentials
//     replaced by xxxxx.
//
// A sha256 pin is 64 hex digits in any case, optionally prefixed with
// "sha256:"; ParseSHA256 returns it as lowercase hex, and ValidHex is the
// one check for a 64-hex-digit content address.
package modref

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"oras.land/oras-go/v2/registry"
)

// Kind is the source a Ref names.
type Kind int

// The kinds of source. The zero Kind belongs to no valid Ref.
const (
	KindOCI Kind = iota + 1
	KindHTTP
	KindFile
)

// DockerHub is the registry that Docker's shorthand references live on.
const DockerHub = "docker.io"

// ErrInvalid is wrapped by every error of this package: test with errors.Is.
var ErrInvalid = errors.New("invalid module reference")

// Error says which reference (or pin) was refused and why. Ref never holds
// credentials: they are replaced by xxxxx.
type Error struct {
	What   string // "module URL" or "sha256"
	Ref    string // as given, credentials redacted
	Reason string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.What, e.Ref, e.Reason)
}

// Unwrap makes every Error match ErrInvalid.
func (e *Error) Unwrap() error { return ErrInvalid }

// Ref is a parsed module reference. Two references to the same thing,
// however written, are equal Refs with equal Strings.
type Ref struct {
	Kind Kind
	// Registry is the OCI registry host[:port], lowercase.
	Registry string
	// Repository is the OCI repository, e.g. library/nginx on docker.io.
	Repository string
	// Tag is the OCI tag: "latest" when neither tag nor digest was given,
	// "" for a reference by digest alone.
	Tag string
	// Digest is the OCI manifest digest's 64 lowercase hex digits, or "".
	Digest string
	// URL is the canonical http(s) URL.
	URL string
	// Path is the absolute, cleaned path of a file.
	Path string
}

// schemeRE is RFC 3986's scheme grammar; anything else before "://" is not
// taken for a scheme (and so is part of an OCI reference).
var schemeRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*$`)

// Parse parses a module reference. dir is the directory a relative file:
// URL is resolved against (the spec file's directory); "" refuses relative
// file: URLs.
func Parse(raw, dir string) (Ref, error) {
	if isRelativeFile(raw) {
		return parseRelativeFile(raw, raw[5:], dir)
	}
	if _, _, ok := userinfo(raw); ok {
		return Ref{}, invalid(raw, errCredentials)
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok || !schemeRE.MatchString(scheme) {
		return parseOCI(raw, raw)
	}
	switch strings.ToLower(scheme) {
	case "oci":
		return parseOCI(raw, rest)
	case "http", "https":
		return parseHTTP(raw)
	case "file":
		return parseFile(raw)
	}
	return Ref{}, invalid(raw, "unsupported scheme %q (want oci://, http://, https://, file:///abs or file:rel)", scheme)
}

// String is the canonical spelling of r; it never holds credentials.
func (r Ref) String() string {
	switch r.Kind {
	case KindOCI:
		s := "oci://" + r.Registry + "/" + r.Repository
		if r.Tag != "" {
			s += ":" + r.Tag
		}
		if r.Digest != "" {
			s += "@sha256:" + r.Digest
		}
		return s
	case KindHTTP:
		return r.URL
	case KindFile:
		return fileURL(r.Path)
	}
	return ""
}

// Immutable reports whether r can never name other content: an OCI
// reference by digest.
func (r Ref) Immutable() bool { return r.Kind == KindOCI && r.Digest != "" }

// Latest reports whether r is an OCI reference by the latest tag (written
// or implied) and no digest: the content it names is expected to move.
func (r Ref) Latest() bool { return r.Kind == KindOCI && r.Digest == "" && r.Tag == "latest" }

// OCI returns r as an oras-go reference (by digest when r has one,
// otherwise by tag). It is meaningful only for KindOCI.
func (r Ref) OCI() registry.Reference {
	ref := registry.Reference{Registry: r.Registry, Repository: r.Repository, Reference: r.Tag}
	if r.Digest != "" {
		ref.Reference = "sha256:" + r.Digest
	}
	return ref
}

func invalid(raw, format string, args ...any) *Error {
	return &Error{What: "module URL", Ref: redact(raw), Reason: fmt.Sprintf(format, args...)}
}
