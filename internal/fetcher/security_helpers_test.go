package fetcher

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/net/dns/dnsmessage"
)

// Credentials a leak must never show.
const (
	leakUser = "alice"
	leakPwd  = "S3cr3tPassw0rd-XYZ"
)

// recorder is an httptest server that records the Authorization header of
// every request it receives ("" when there was none).
type recorder struct {
	srv  *httptest.Server
	host string

	mu    sync.Mutex
	auths []string
}

func newRecorder(t *testing.T, h http.Handler) *recorder {
	t.Helper()
	rec := &recorder{}
	rec.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec.mu.Lock()
		rec.auths = append(rec.auths, r.Header.Get("Authorization"))
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(rec.srv.Close)
	rec.host = strings.TrimPrefix(rec.srv.URL, "http://")
	return rec
}

// seen returns the Authorization headers received so far.
func (rec *recorder) seen() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]string(nil), rec.auths...)
}

// withAuth counts the requests that carried an Authorization header.
func (rec *recorder) withAuth() int {
	n := 0
	for _, a := range rec.seen() {
		if a != "" {
			n++
		}
	}
	return n
}

// hostileRegistry is a registry behind basic auth (alice, leakPwd) that
// echoes the credentials it is sent back in its error bodies, as a
// careless or malicious registry could. Its blobs live on a second server,
// storage, at another origin: in redirect mode blob GETs are answered with
// a redirect there, as registries backed by object storage do.
type hostileRegistry struct {
	front, storage *recorder
	mode           atomic.Value // string; "": serve; "redirect": blobs on storage; "500": blob GETs fail
	// denyStorage makes the storage answer 403, echoing what it got.
	denyStorage atomic.Bool
}

func newHostileRegistry(t *testing.T) *hostileRegistry {
	t.Helper()
	inner := registry.New(registry.Logger(logDiscard()))
	hr := &hostileRegistry{}
	hr.mode.Store("")
	hr.storage = newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hr.denyStorage.Load() {
			echoCredentials(w, r, http.StatusForbidden, "DENIED")
			return
		}
		inner.ServeHTTP(w, r)
	}))
	hr.front = newRecorder(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hr.serve(inner, w, r)
	}))
	return hr
}

func (hr *hostileRegistry) serve(inner http.Handler, w http.ResponseWriter, r *http.Request) {
	if u, p, ok := r.BasicAuth(); !ok || u != leakUser || p != leakPwd {
		w.Header().Set("WWW-Authenticate", `Basic realm="hostile"`)
		echoCredentials(w, r, http.StatusUnauthorized, "UNAUTHORIZED")
		return
	}
	if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
		switch hr.mode.Load().(string) {
		case "redirect":
			http.Redirect(w, r, hr.storage.srv.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		case "500":
			echoCredentials(w, r, http.StatusInternalServerError, "UNKNOWN")
			return
		}
	}
	inner.ServeHTTP(w, r)
}

// echoCredentials answers with an OCI error body quoting the request's
// Authorization header and the password it decodes to.
func echoCredentials(w http.ResponseWriter, r *http.Request, status int, code string) {
	_, pwd, _ := r.BasicAuth()
	msg := "got Authorization " + r.Header.Get("Authorization") + " password " + pwd
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
}

// push publishes module on the registry (through its storage server,
// which needs no credentials) and returns the front's reference.
func (hr *hostileRegistry) push(t *testing.T, repoTag string, module []byte) string {
	t.Helper()
	if _, err := Push(context.Background(), module, hr.storage.host+"/"+repoTag,
		PushOptions{DockerConfig: writeDockerConfig(t, map[string]any{})}); err != nil {
		t.Fatalf("push: %v", err)
	}
	return hr.front.host + "/" + repoTag
}

// basicEntry is a docker config auths entry for user and password.
func basicEntry(user, pwd string) map[string]string {
	return map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pwd))}
}

// fakeDNS is a resolver answering every A query with addr and every other
// query with no records, in process: a test using it resolves names to
// any address without a DNS server.
type fakeDNS struct {
	addr netip.Addr
	wg   sync.WaitGroup

	mu    sync.Mutex
	asked []string
}

// newFakeDNS returns a net.Resolver backed by a fakeDNS answering addr.
func newFakeDNS(t *testing.T, addr string) (*net.Resolver, *fakeDNS) {
	t.Helper()
	d := &fakeDNS{addr: netip.MustParseAddr(addr)}
	t.Cleanup(d.wg.Wait)
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		client, server := net.Pipe()
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer server.Close()
			d.serve(server)
		}()
		return client, nil
	}}, d
}

// serve answers DNS-over-TCP framed queries (a net.Conn that is not a
// PacketConn gets TCP framing from Go's resolver) until the client hangs up.
func (d *fakeDNS) serve(c net.Conn) {
	for {
		var n uint16
		if err := binary.Read(c, binary.BigEndian, &n); err != nil {
			return
		}
		q := make([]byte, n)
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		resp, err := d.answer(q)
		if err != nil {
			return
		}
		if _, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(resp))), resp...)); err != nil {
			return
		}
	}
}

func (d *fakeDNS) answer(query []byte) ([]byte, error) {
	var m dnsmessage.Message
	if err := m.Unpack(query); err != nil {
		return nil, err
	}
	m.Header.Response, m.Header.Authoritative = true, true
	for _, q := range m.Questions {
		d.mu.Lock()
		d.asked = append(d.asked, q.Name.String())
		d.mu.Unlock()
		if q.Type == dnsmessage.TypeA && d.addr.Is4() {
			m.Answers = append(m.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AResource{A: d.addr.As4()},
			})
		}
		if q.Type == dnsmessage.TypeAAAA && d.addr.Is6() {
			m.Answers = append(m.Answers, dnsmessage.Resource{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeAAAA, Class: dnsmessage.ClassINET, TTL: 60},
				Body:   &dnsmessage.AAAAResource{AAAA: d.addr.As16()},
			})
		}
	}
	return m.Pack()
}

// wasAsked reports whether the resolver was asked about name.
func (d *fakeDNS) wasAsked(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, a := range d.asked {
		if a == name+"." {
			return true
		}
	}
	return false
}
