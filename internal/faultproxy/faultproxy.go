// Package faultproxy is an HTTP proxy for tests that stands between a client
// and a real server (a registry, say) on 127.0.0.1 and fails the way
// networks and servers fail: connections refused, 503s, slow or hanging
// responses, bodies cut off by a reset. The fault is switched at run time;
// each request sees the fault in force when it arrives.
package faultproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Mode is what the proxy does with a request.
type Mode string

// Modes.
const (
	// Pass forwards requests and responses unchanged.
	Pass Mode = "pass"
	// Down resets every connection as soon as it is accepted, and any
	// kept-alive connection at its next request: the server is gone.
	Down Mode = "down"
	// Unavailable answers 503 Service Unavailable.
	Unavailable Mode = "503"
	// Slow waits Fault.Delay, then forwards.
	Slow Mode = "slow"
	// Hang reads the request and never answers (until the client gives
	// up or the proxy closes).
	Hang Mode = "hang"
	// ResetMidBody forwards the response headers and the first half of
	// the body, then resets the connection.
	ResetMidBody Mode = "reset-mid-body"
)

// Fault is the proxy's behaviour. The zero value passes everything.
type Fault struct {
	Mode  Mode
	Delay time.Duration // for Slow
	// Match limits the fault to requests whose path contains it (say
	// "/blobs/" for OCI blob downloads); others pass. "" matches all.
	Match string
}

// applies reports whether the fault hits a request for path.
func (f Fault) applies(path string) bool {
	return f.Mode != "" && f.Mode != Pass && strings.Contains(path, f.Match)
}

// Proxy is a running fault-injecting proxy. Its methods are safe for
// concurrent use.
type Proxy struct {
	target *url.URL
	ln     net.Listener
	srv    *http.Server
	rp     *httputil.ReverseProxy
	closed chan struct{}
	served sync.WaitGroup // the accept loop and every handler

	mu      sync.Mutex
	fault   Fault
	closing bool // no handler may start

	requests atomic.Int64
	faulted  atomic.Int64
}

// connKey carries a request's connection, so a fault can reset it.
type connKey struct{}

// Start listens on 127.0.0.1 (a free port) and forwards to target, an
// http://host:port base URL.
func Start(target string) (*Proxy, error) {
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("faultproxy: target %q: want http://host:port", target)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultproxy: listen: %w", err)
	}
	p := &Proxy{target: u, closed: make(chan struct{})}
	p.ln = &faultListener{Listener: ln, p: p}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // registries build URLs from Host
		},
		ModifyResponse: p.modifyResponse,
		ErrorLog:       log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{Handler: http.HandlerFunc(p.serve), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:    log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context { return context.WithValue(ctx, connKey{}, c) }}
	p.served.Go(func() { _ = p.srv.Serve(p.ln) })
	return p, nil
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Set switches the fault for requests from now on.
func (p *Proxy) Set(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.fault = f
}

// Requests counts the requests received, faulted or not.
func (p *Proxy) Requests() int64 { return p.requests.Load() }

// Faulted counts the requests a fault hit (connections reset on accept
// are not requests and are not counted).
func (p *Proxy) Faulted() int64 { return p.faulted.Load() }

// Close stops the proxy: it closes the listener and every connection,
// releases hanging and delayed requests, and waits for its goroutines.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		return nil
	}
	p.closing = true
	p.mu.Unlock()
	close(p.closed)
	err := p.srv.Close()
	p.served.Wait()
	return err
}

// enter counts a handler in, unless the proxy is closing, and returns the
// fault in force.
func (p *Proxy) enter() (Fault, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return Fault{}, false
	}
	p.served.Add(1)
	return p.fault, true
}

func (p *Proxy) current() Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fault
}

// serve handles one request under the fault in force.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	f, ok := p.enter()
	if !ok {
		panic(http.ErrAbortHandler) // closing
	}
	defer p.served.Done()
	p.requests.Add(1)
	if !f.applies(r.URL.Path) {
		p.rp.ServeHTTP(w, r)
		return
	}
	p.faulted.Add(1)
	switch f.Mode {
	case Down:
		resetConn(r.Context())
		panic(http.ErrAbortHandler) // closes the connection with nothing sent
	case Unavailable:
		http.Error(w, "fault injected: service unavailable", http.StatusServiceUnavailable)
	case Slow:
		if !p.wait(r.Context(), time.After(f.Delay)) {
			panic(http.ErrAbortHandler) // no answer for a client gone or a proxy closing
		}
		p.rp.ServeHTTP(w, r)
	case Hang:
		p.wait(r.Context(), nil)
		panic(http.ErrAbortHandler)
	case ResetMidBody:
		p.rp.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), resetKey{}, true)))
	default:
		http.Error(w, "faultproxy: unknown mode "+string(f.Mode), http.StatusInternalServerError)
	}
}

// wait blocks until done fires (true), or the client or the proxy goes
// away (false). A nil done waits for the latter only.
func (p *Proxy) wait(ctx context.Context, done <-chan time.Time) bool {
	select {
	case <-done:
		return true
	case <-ctx.Done():
	case <-p.closed:
	}
	return false
}

// resetKey marks a request whose response body is to be cut off.
type resetKey struct{}

// modifyResponse cuts the body of a marked response after half its length:
// the reverse proxy then aborts the handler, which closes the connection,
// reset because its linger is zero.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	if resp.Request.Context().Value(resetKey{}) == nil {
		return nil
	}
	half := resp.ContentLength / 2
	if resp.ContentLength <= 0 {
		half = 1
	}
	resp.Body = &cutBody{ReadCloser: resp.Body, left: half, ctx: resp.Request.Context()}
	return nil
}

// cutBody returns left bytes of its body, then resets the client's
// connection and fails.
type cutBody struct {
	io.ReadCloser
	left int64
	ctx  context.Context
}

var errCut = errors.New("faultproxy: body cut off")

func (c *cutBody) Read(b []byte) (int, error) {
	if c.left <= 0 {
		resetConn(c.ctx)
		return 0, errCut
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.ReadCloser.Read(b)
	c.left -= int64(n)
	return n, err
}

// resetConn makes the closing of the request's client connection a reset
// (RST) rather than an orderly FIN.
func resetConn(ctx context.Context) {
	// The server hands handlers a *net.TCPConn for a TCP listener.
	if c, ok := ctx.Value(connKey{}).(*net.TCPConn); ok {
		_ = c.SetLinger(0)
	}
}

// faultListener resets connections at accept while the proxy is Down.
type faultListener struct {
	net.Listener
	p *Proxy
}

func (l *faultListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if f := l.p.current(); f.Mode != Down || f.Match != "" {
			return c, nil
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}
