package modref

import (
	"strings"
	"testing"
)

// FuzzParse checks what every caller relies on: Parse never panics, a
// successful parse's String re-parses to the same Ref (so the canonical
// form is a fixed point, whatever directory it is parsed in), and String
// never carries credentials before the host. Seeds are in testdata/fuzz.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := Parse(raw, "/specs/team")
		if err != nil {
			if r != (Ref{}) {
				t.Fatalf("Parse(%q) returned %+v with error %v", raw, r, err)
			}
			return
		}
		s := r.String()
		if s == "" {
			t.Fatalf("Parse(%q) = %+v with an empty String", raw, r)
		}
		if hasUserinfo(s) {
			t.Fatalf("Parse(%q).String() = %q carries credentials", raw, s)
		}
		again, err := Parse(s, "/elsewhere")
		if err != nil || again != r {
			t.Fatalf("Parse(%q) = %q, which re-parses to %+v, %v; want %+v", raw, s, again, err, r)
		}
	})
}

// hasUserinfo reports whether a canonical string has an "@" between "://"
// and the end of the host.
func hasUserinfo(s string) bool {
	_, rest, ok := strings.Cut(s, "://")
	if !ok {
		return true // every canonical form has a scheme and "://"
	}
	// The authority ends at the first '/', '?' or '#' (RFC 3986 3.2): an '@'
	// in a query ("http://h?@") is no userinfo.
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		rest = rest[:i]
	}
	return strings.Contains(rest, "@")
}
