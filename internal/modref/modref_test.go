package modref

import (
	"errors"
	"strings"
	"testing"

	"github.com/wasmxds/wasmxds/internal/modref/modreftest"
)

const (
	hexA = "1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210"
	hexB = "2ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210"
)

// The rows are shared with the catalog and fetcher tests, so every
// consumer is held to the same table.
func TestParseCanonical(t *testing.T) {
	for _, c := range modreftest.Examples {
		got, err := Parse(c.In, "/specs/team")
		if err != nil {
			t.Errorf("Parse(%q) error %v; want %q", c.In, err, c.Want)
			continue
		}
		if got.String() != c.Want {
			t.Errorf("Parse(%q) = %q; want %q", c.In, got.String(), c.Want)
		}
	}
}

func TestParseFields(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Ref
	}{
		{"add-header:v1", Ref{Kind: KindOCI, Registry: "docker.io", Repository: "library/add-header", Tag: "v1"}},
		{"myorg/f", Ref{Kind: KindOCI, Registry: "docker.io", Repository: "myorg/f", Tag: "latest"}},
		{"oci://Reg.Example:5000/a/b@SHA256:" + strings.ToUpper(hexA),
			Ref{Kind: KindOCI, Registry: "reg.example:5000", Repository: "a/b", Digest: hexA}},
		{"r.io/a:v2@sha256:" + hexA, Ref{Kind: KindOCI, Registry: "r.io", Repository: "a", Tag: "v2", Digest: hexA}},
		{"HTTPS://Example.COM/A.wasm#frag", Ref{Kind: KindHTTP, URL: "https://example.com/A.wasm"}},
		{"file:../f.wasm", Ref{Kind: KindFile, Path: "/specs/f.wasm"}},
		{"file://localhost/x/../y.wasm", Ref{Kind: KindFile, Path: "/y.wasm"}},
	} {
		got, err := Parse(c.in, "/specs/team")
		if err != nil || got != c.want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
}

func TestRefPredicates(t *testing.T) {
	for _, c := range []struct {
		in                string
		latest, immutable bool
		oci               string
	}{
		{"r.io/a", true, false, "r.io/a:latest"},
		{"r.io/a:latest", true, false, "r.io/a:latest"},
		{"r.io/a:v1", false, false, "r.io/a:v1"},
		{"r.io/a@sha256:" + hexA, false, true, "r.io/a@sha256:" + hexA},
		{"r.io/a:latest@sha256:" + hexA, false, true, "r.io/a@sha256:" + hexA},
		{"https://h/a.wasm", false, false, ""},
		{"file:///a.wasm", false, false, ""},
	} {
		r, err := Parse(c.in, "")
		if err != nil {
			t.Fatalf("Parse(%q): %v", c.in, err)
		}
		if r.Latest() != c.latest || r.Immutable() != c.immutable {
			t.Errorf("%q: Latest %v Immutable %v; want %v %v", c.in, r.Latest(), r.Immutable(), c.latest, c.immutable)
		}
		if c.oci != "" && r.OCI().String() != c.oci {
			t.Errorf("%q: OCI() = %q; want %q (what the registry is asked for)", c.in, r.OCI().String(), c.oci)
		}
	}
}

func TestParseErrorsNameReferenceAndReason(t *testing.T) {
	for _, c := range []struct{ in, dir, reason string }{
		{"", "", "no registry or repository"},
		{"ftp://example.com/x.wasm", "", `unsupported scheme "ftp"`},
		{"oci://UPPER/Case:tag", "", `repository "UPPER/Case" must be lowercase`},
		{"MyOrg/f:v1", "", `repository "MyOrg/f" must be lowercase`},
		{"registry.local/x:bad tag", "", `tag "bad tag"`},
		{"registry.local/x:", "", `tag ""`},
		{"registry.local/x@sha256:abc", "", "what follows @ must be sha256: and 64 hex digits"},
		{"registry.local/x@md5:" + hexA, "", "what follows @ must be sha256:"},
		{"nginx@sha256:" + hexA[:63] + "g", "", "what follows @ must be sha256:"},
		{"reg.io:port/x", "", `registry "reg.io:port" is not a host`},
		{"https:///x.wasm", "", "no host"},
		{"https://h/%zz", "", "invalid URL escape"},
		{"file://server/share/x.wasm", "", `names host "server"`},
		{"file:///a.wasm?v=1", "", "query or fragment"},
		{"file:", "/d", "has no path"},
		{"file:x.wasm", "", "no directory to resolve it against"},
	} {
		_, err := Parse(c.in, c.dir)
		var e *Error
		if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
			t.Errorf("Parse(%q) = %v; want an *Error wrapping ErrInvalid", c.in, err)
			continue
		}
		if want := "invalid module URL " + quote(c.in) + ": "; !strings.HasPrefix(err.Error(), want) ||
			!strings.Contains(err.Error(), c.reason) {
			t.Errorf("Parse(%q) error %q; want it to start %q and say %q", c.in, err, want, c.reason)
		}
	}
}

func TestParseRefusesCredentialsWithoutEchoingThem(t *testing.T) {
	for _, c := range []struct{ in, shown string }{
		{"oci://bob:hunter2@reg.io/f:v1", "oci://xxxxx@reg.io/f:v1"},
		{"bob:hunter2@reg.io/f:v1", "xxxxx@reg.io/f:v1"},
		{"bob:hunter2@reg.io:5000", "xxxxx@reg.io:5000"},
		{"bob:hunter2@reg.io/f@sha256:" + hexA, "xxxxx@reg.io/f@sha256:" + hexA},
		{"https://bob:hunter2@example.com/a.wasm", "https://xxxxx@example.com/a.wasm"},
		{"https://hunter2@example.com", "https://xxxxx@example.com"},
		{"http://bob:hunter2@h/%zz", "http://xxxxx@h/%zz"},
		{"HTTPS://bob:hunter2@x@example.com?q", "HTTPS://xxxxx@example.com?q"},
		{"file://bob:hunter2@localhost/a.wasm", "file://xxxxx@localhost/a.wasm"},
	} {
		_, err := Parse(c.in, "")
		if err == nil {
			t.Errorf("Parse(%q) accepted credentials", c.in)
			continue
		}
		msg := err.Error()
		if strings.Contains(msg, "hunter2") {
			t.Errorf("Parse(%q) error echoes the password: %s", c.in, msg)
		}
		want := "invalid module URL " + quote(c.shown) + ": " + errCredentials
		if msg != want {
			t.Errorf("Parse(%q) error\n %s\nwant\n %s", c.in, msg, want)
		}
	}
}

func TestParseSHA256(t *testing.T) {
	for in, want := range map[string]string{
		hexA:                              hexA,
		strings.ToUpper(hexA):             hexA,
		"sha256:" + hexA:                  hexA,
		"SHA256:" + strings.ToUpper(hexA): hexA,
	} {
		if got, err := ParseSHA256(in); err != nil || got != want {
			t.Errorf("ParseSHA256(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "sha256:", hexA[:63], hexA + "0", hexA[:63] + "g", " " + hexA, "sha512:" + hexA} {
		_, err := ParseSHA256(in)
		if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "invalid sha256 "+quote(in)+": want 64 hex digits") {
			t.Errorf("ParseSHA256(%q) error %v; want one naming the pin and the rule", in, err)
		}
	}
}

func TestValidHex(t *testing.T) {
	for s, want := range map[string]bool{
		hexA: true, hexB: true, strings.ToUpper(hexA): false, hexA[:63]: false,
		hexA + "0": false, "sha256:" + hexA: false, "": false, hexA[:63] + "g": false,
	} {
		if ValidHex(s) != want {
			t.Errorf("ValidHex(%q) = %v; want %v", s, !want, want)
		}
	}
}

func quote(s string) string { return `"` + s + `"` }

// BenchmarkParse measures parsing the shared examples, one of each spelling.
func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, c := range modreftest.Examples {
			if _, err := Parse(c.In, "/specs"); err != nil {
				b.Fatal(err)
			}
		}
	}
}
