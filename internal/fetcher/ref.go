package fetcher

import (
	"fmt"

	"oras.land/oras-go/v2/registry"

	"github.com/wasmxds/wasmxds/internal/modref"
)

type sourceKind int

const (
	kindOCI sourceKind = iota
	kindHTTP
	kindFile
)

// source is a parsed Request.URL. key is its canonical spelling (modref's),
// used for the index, to coalesce concurrent pulls of the same reference,
// and in logs and errors.
type source struct {
	kind sourceKind
	key  string
	mod  modref.Ref
	ref  registry.Reference // kindOCI
	url  string             // kindHTTP
	path string             // kindFile
}

// immutable reports whether the source can never resolve to other content.
func (s source) immutable() bool { return s.mod.Immutable() }

// parseSource parses a Request.URL with the project's one grammar. A
// relative file: URL has no directory to resolve against here and is
// refused; the catalog resolves those before they reach the fetcher.
func parseSource(raw string) (source, error) {
	r, err := modref.Parse(raw, "")
	if err != nil {
		return source{}, err
	}
	s := source{key: r.String(), mod: r}
	switch r.Kind {
	case modref.KindOCI:
		s.kind, s.ref = kindOCI, r.OCI()
	case modref.KindHTTP:
		s.kind, s.url = kindHTTP, r.URL
	case modref.KindFile:
		s.kind, s.path = kindFile, r.Path
	}
	return s, nil
}

// parseOCI parses a reference Push publishes to: OCI, by tag.
func parseOCI(raw string) (source, error) {
	s, err := parseSource(raw)
	switch {
	case err != nil:
		return source{}, err
	case s.kind != kindOCI:
		return source{}, fmt.Errorf("%w: %s is not an OCI reference (registry/repository:tag)", ErrInvalidReference, s.key)
	case s.mod.Digest != "":
		return source{}, fmt.Errorf("%w: %s: push to a tag, not a digest", ErrInvalidReference, s.key)
	}
	return s, nil
}

// parsePin parses an optional sha256 pin ("" = none) to lowercase hex.
func parsePin(pin string) (string, error) {
	if pin == "" {
		return "", nil
	}
	return modref.ParseSHA256(pin)
}
