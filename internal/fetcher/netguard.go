package fetcher

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// maxRedirects bounds the redirects one request may follow (registries
// answer blob GETs with one redirect to their storage; more is a loop or
// a detour).
const maxRedirects = 5

// metadataPrefixes are the addresses a fetch never contacts unless
// Options.AllowLinkLocal is set: link-local ranges, where every cloud's
// instance metadata service (169.254.169.254, AWS's fd00:ec2::254 aside)
// answers with instance credentials, and Alibaba Cloud's metadata address.
var metadataPrefixes = []netip.Prefix{
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("fd00:ec2::254/128"),
	netip.MustParsePrefix("100.100.100.200/32"),
}

// forbiddenAddr reports whether addr is a link-local or metadata address.
func forbiddenAddr(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range metadataPrefixes {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// refuseAddress is a net.Dialer Control function: it runs once the name
// was resolved and before connect(2), so a name resolving to a metadata
// address is caught as well as a literal one, and redirects too.
func refuseAddress(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot check dial address %q: %w", ErrRefused, address, err)
	}
	if forbiddenAddr(ap.Addr()) {
		return fmt.Errorf("%w: %s is a link-local or cloud metadata address", ErrRefused, ap.Addr().Unmap())
	}
	return nil
}

// netPolicy is what the HTTP client of a Fetcher enforces.
type netPolicy struct {
	allowLinkLocal bool
	// resolver, when set, replaces the system resolver (tests map names
	// to addresses with it).
	resolver *net.Resolver
}

// dialer returns the dialer of the default transport.
func (p netPolicy) dialer() *net.Dialer {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second, Resolver: p.resolver}
	if !p.allowLinkLocal {
		d.Control = refuseAddress
	}
	return d
}

// guardTransport refuses requests to literal metadata addresses before
// they reach base. The dialer catches resolved names; this also covers an
// HTTP proxy (which the dialer only sees the address of) and a
// caller-supplied Options.Transport.
type guardTransport struct{ base http.RoundTripper }

func (g guardTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if addr, err := netip.ParseAddr(r.URL.Hostname()); err == nil && forbiddenAddr(addr) {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, fmt.Errorf("%w: %s is a link-local or cloud metadata address", ErrRefused, addr.Unmap())
	}
	return g.base.RoundTrip(r)
}

// checkRedirect limits redirects. Registry credentials never follow a
// redirect to another origin: oras-go's auth.Client drops the
// Authorization header then, and http(s) sources carry none.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return fmt.Errorf("%w: more than %d redirects (the last to %s)", ErrRefused, maxRedirects, req.URL.Redacted())
	}
	return nil
}
