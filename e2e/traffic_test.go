package e2e

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// upstreamBody is what the upstream answers, so a test can tell an
// upstream response from one Envoy or a filter produced.
const upstreamBody = "upstream ok\n"

// startUpstream starts an HTTP server that answers 200 and echoes every
// request header back as x-echo-<name>, values in arrival order, so that
// request-path filter effects and their order are visible to the client.
func startUpstream(t testing.TB) string {
	t.Helper()
	return startNamedUpstream(t, upstreamBody)
}

// startNamedUpstream is startUpstream answering with body.
func startNamedUpstream(t testing.TB, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for name, values := range r.Header {
			for _, v := range values {
				w.Header().Add("x-echo-"+strings.ToLower(name), v)
			}
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// reply is what a client saw.
type reply struct {
	status int
	header http.Header
	body   string
}

// freshClient opens a new connection per request, so requests spread over
// Envoy's workers and never ride a connection Envoy is draining.
var freshClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// get sends GET http://127.0.0.1:port/path through Envoy.
func get(port int, path string) (reply, error) {
	return do(freshClient, http.MethodGet, port, path)
}

func do(c *http.Client, method string, port int, path string) (reply, error) {
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("User-Agent", "wasmxds-e2e")
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{}, err
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: string(b)}, nil
}

// expectHeader returns a poll func that succeeds once a 200 response through
// port carries header name with value want (want "" means: absent).
func expectHeader(port int, name, want string) func() error {
	return func() error {
		r, err := get(port, "/")
		if err != nil {
			return err
		}
		if r.status != http.StatusOK {
			return fmt.Errorf("status %d, body %q", r.status, r.body)
		}
		if got := r.header.Get(name); got != want {
			return fmt.Errorf("header %s = %q, want %q (all headers: %v)", name, got, want, r.header)
		}
		return nil
	}
}

// steady returns a poll func that succeeds only when check holds for n
// consecutive requests, so a passing state is not a lucky single response.
func steady(n int, check func() error) func() error {
	return func() error {
		for i := range n {
			if err := check(); err != nil {
				return fmt.Errorf("request %d of %d: %w", i+1, n, err)
			}
		}
		return nil
	}
}
