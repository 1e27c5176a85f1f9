package controlplane

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// peerTLS authenticates replicas to each other. With --client-ca-file,
// peers speak TLS to each other's admin listener and each presents the
// serving certificate (--tls-cert-file): a peer must chain to the client CA
// and share a DNS or URI name with this replica's own certificate, so that
// an Envoy's client certificate, signed by the same CA, is not a replica.
// Peers are found by IP (a headless Service), so host names are not
// checked. Without a client CA, peers trust their network (plain HTTP).
type peerTLS struct {
	r *tlsReloader // nil: no TLS between peers
}

func (p *peerTLS) enabled() bool { return p != nil && p.r != nil }

// scheme is the URL scheme of requests to peers.
func (p *peerTLS) scheme() string {
	if p.enabled() {
		return "https"
	}
	return "http"
}

// authorize checks the client of a peer request.
func (p *peerTLS) authorize(r *http.Request) error {
	if !p.enabled() {
		return nil
	}
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 {
		return errors.New("no client certificate signed by --client-ca-file")
	}
	return p.sameIdentity(r.TLS.PeerCertificates[0])
}

// sameIdentity checks that a peer's certificate names what this replica's
// does.
func (p *peerTLS) sameIdentity(peer *x509.Certificate) error {
	cfg := p.r.current()
	if len(cfg.Certificates) == 0 || cfg.Certificates[0].Leaf == nil {
		return errors.New("no certificate of this replica to compare with")
	}
	own := cfg.Certificates[0].Leaf
	for _, n := range peer.DNSNames {
		if slices.Contains(own.DNSNames, n) {
			return nil
		}
	}
	for _, u := range peer.URIs {
		if slices.ContainsFunc(own.URIs, func(o *url.URL) bool { return o.String() == u.String() }) {
			return nil
		}
	}
	return fmt.Errorf("certificate %q shares no DNS or URI name with this replica's", peer.Subject.CommonName)
}

// clientConfig is the TLS configuration of requests to peers.
func (p *peerTLS) clientConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"http/1.1"},
		// Peers are addressed by IP: VerifyConnection checks the chain and
		// the identity instead of the host name.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &p.r.current().Certificates[0], nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("peer presented no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: p.r.current().ClientCAs,
				Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
			if err != nil {
				return fmt.Errorf("peer certificate: %w", err)
			}
			return p.sameIdentity(cs.PeerCertificates[0])
		},
	}
}

// serverConfig is the admin listener's TLS: client certificates are asked
// for and verified when given, and required only by the peer endpoint, so
// that probes and scrapers keep working without one.
func (p *peerTLS) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cfg := p.r.current().Clone()
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
			cfg.NextProtos = []string{"http/1.1"}
			return cfg, nil
		},
	}
}

// sniffListener serves plain HTTP and TLS on one port: a connection whose
// first byte is a TLS handshake record is served over TLS. Health probes,
// scrapers and `wasmxds status` keep plain HTTP; peers use TLS.
type sniffListener struct {
	net.Listener
	tls     *tls.Config
	conns   chan net.Conn
	done    chan struct{}
	once    sync.Once
	pending sync.WaitGroup
}

// sniffTimeout bounds how long a new connection may take to send its
// first byte.
const sniffTimeout = 10 * time.Second

func newSniffListener(l net.Listener, cfg *tls.Config) *sniffListener {
	return &sniffListener{Listener: l, tls: cfg, conns: make(chan net.Conn), done: make(chan struct{})}
}

// acceptLoop accepts connections and classifies each in its own goroutine
// until the listener closes; it returns once every classification ended.
func (s *sniffListener) acceptLoop() error {
	defer s.pending.Wait()
	for {
		c, err := s.Listener.Accept()
		if err != nil {
			_ = s.Close()
			return nil // closed: the admin server reports its own errors
		}
		s.pending.Go(func() { s.classify(c) })
	}
}

func (s *sniffListener) classify(c net.Conn) {
	_ = c.SetReadDeadline(time.Now().Add(sniffTimeout))
	br := bufio.NewReader(c)
	first, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		_ = c.Close()
		return
	}
	var conn net.Conn = &peekedConn{Conn: c, r: br}
	if first[0] == 0x16 { // TLS handshake record
		conn = tls.Server(conn, s.tls)
	}
	select {
	case s.conns <- conn:
	case <-s.done:
		_ = conn.Close()
	}
}

// Accept returns the next classified connection.
func (s *sniffListener) Accept() (net.Conn, error) {
	select {
	case c := <-s.conns:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting; acceptLoop then returns.
func (s *sniffListener) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.Listener.Close()
	})
	return err
}

// peekedConn reads what was peeked first.
type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(b []byte) (int, error) { return c.r.Read(b) }
